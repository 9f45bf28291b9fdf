// Browser codecs for the graph payload: gzip via (De)CompressionStream, base64 via atob/btoa.
// The DOM-free core takes these as arguments.
import {
  decodeBundle,
  decodeBytes,
  type IEnvelope,
  type IGraphJSON,
  SCHEMA_NAME,
  SCHEMA_VERSION,
} from "../core/model.js";

/** Payloads above this size are stored gzip+base64 (as Python's ckptlab.inspect._mime does). */
export const INLINE_LIMIT = 256 * 1024;

export async function gunzip(bytes: Uint8Array): Promise<string> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).text();
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function decodeGraphBytes(bytes: Uint8Array): Promise<IGraphJSON> {
  return decodeBytes(bytes, gunzip);
}

export function decodeGraphBundle(data: IGraphJSON | IEnvelope): Promise<IGraphJSON> {
  return decodeBundle(data, gunzip, fromBase64);
}

/** The MIME payload of `data`: inline JSON, or its gzip+base64 envelope when large. */
export async function encodeGraphBundle(data: IGraphJSON): Promise<IGraphJSON | IEnvelope> {
  const text = JSON.stringify(data);
  if (text.length <= INLINE_LIMIT) return data;
  return {
    format: SCHEMA_NAME,
    version: SCHEMA_VERSION,
    encoding: "gzip+base64",
    data: toBase64(await gzip(text)),
  };
}
