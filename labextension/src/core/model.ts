// The graph view as the browser holds it: decoding the versioned JSON that Python writes
// (ckptlab/inspect/graph.schema.json) and the per-node aggregates every view needs.
// DOM-free (compiled without the DOM lib): decompression is passed in by the caller
// (render/codec.ts in the browser, node:zlib in tests).
import { PROBLEM_STATES } from "./wire.js";

export {
  FLAG_OPTIMIZER,
  FLAG_SLOT,
  FLAG_SYNTHETIC,
  NO_STATE,
  PROBLEM_STATES,
  STATE_TABLE,
} from "./wire.js";

export const SCHEMA_NAME = "ckptlab.graph";
export const SCHEMA_VERSION = 1;
export const MIME_TYPE = "application/vnd.ckptlab.graph+json";

/** Non-finite numbers travel as strings ("inf", "nan"): JSON has none. */
export type ChangeCell = [number | string, number | string, number | string];

export type Spec = [dtype: string, shape: (number | null)[], itemsize: number];

export interface IGraphJSON {
  format: string;
  version: number;
  title: string;
  source: string;
  kind: "match" | "checkpoint" | "program" | "diff";
  summary: string;
  can_restore: boolean;
  states: string[];
  counts: Record<string, number>;
  nodes: {
    parent: number[];
    name: string[];
    state: number[];
    flags: number[];
    stored: number[];
    program: number[];
    reason: number[];
    /** Comparisons only: [max |b - a|, ||b - a||², ||a||²] per node, or null. */
    change?: (ChangeCell | null)[];
  };
  specs: Spec[];
  strings: string[];
  edges: [number, number, "slot" | "suggest"][];
  suggestions: [number, number, string][];
  options: { budget?: number; hide_optimizer?: boolean };
}

export interface IEnvelope {
  format: string;
  version: number;
  encoding: "gzip+base64";
  data: string;
}

/** Decompresses gzip bytes to text (DecompressionStream in browsers, zlib in node). */
export type Gunzip = (bytes: Uint8Array) => Promise<string>;
/** Decodes base64 text to bytes. */
export type FromBase64 = (text: string) => Uint8Array;

function checkVersion(data: { format?: unknown; version?: unknown }): void {
  if (data.format !== SCHEMA_NAME || data.version !== SCHEMA_VERSION) {
    throw new Error(
      `ckptlab: unsupported graph format ${String(data.format)} v${String(data.version)}; ` +
        `this front end reads ${SCHEMA_NAME} v${SCHEMA_VERSION}. Upgrade ckptlab.`,
    );
  }
}

/** Decode gzip-compressed JSON bytes (the widget's `graph` trait). */
export async function decodeBytes(bytes: Uint8Array, gunzip: Gunzip): Promise<IGraphJSON> {
  const data = JSON.parse(await gunzip(bytes)) as IGraphJSON;
  checkVersion(data);
  return data;
}

/** Decode the MIME bundle's JSON: the graph itself or its gzip+base64 envelope. */
export async function decodeBundle(
  data: IGraphJSON | IEnvelope,
  gunzip: Gunzip,
  fromBase64: FromBase64,
): Promise<IGraphJSON> {
  checkVersion(data);
  if ("encoding" in data) return decodeBytes(fromBase64(data.data), gunzip);
  return data;
}

/** The graph with its tree and aggregates; states can change (after restores). */
export class Graph {
  readonly data: IGraphJSON;
  readonly size: number;
  readonly children: number[][];
  /** Number of values in each node's subtree (itself included). */
  readonly values: Int32Array;
  /** Values per state below each node: `tally[node * states + state]` (flat, for 100k nodes). */
  readonly tally: Int32Array;
  private readonly stateTotal: number;
  state: Int16Array;
  private readonly problemIndex: ReadonlySet<number>;

  constructor(data: IGraphJSON, states?: Uint8Array) {
    this.data = data;
    const { parent } = data.nodes;
    this.size = parent.length;
    this.children = Array.from({ length: this.size }, () => []);
    for (let i = 1; i < this.size; i++) {
      const p = parent[i] ?? -1;
      if (p < 0 || p >= i) throw new Error(`ckptlab: node ${i} has parent ${p}`);
      (this.children[p] as number[]).push(i);
    }
    this.problemIndex = new Set(
      data.states.map((s, i) => (PROBLEM_STATES.has(s) ? i : -1)).filter((i) => i >= 0),
    );
    this.state = Int16Array.from(data.nodes.state);
    this.values = new Int32Array(this.size);
    this.stateTotal = data.states.length;
    this.tally = new Int32Array(this.size * this.stateTotal);
    this.setStates(states);
    const change = data.nodes.change;
    this.hasChange = Array.isArray(change) && change.length === this.size;
    this.delta = new Float64Array(this.size);
    this.base = new Float64Array(this.size);
    this.maxAbs = new Float64Array(this.size).fill(Number.NaN);
    if (this.hasChange && change) {
      for (let i = this.size - 1; i >= 0; i--) {
        const cell = change[i];
        if (cell) {
          this.maxAbs[i] = toNumber(cell[0]);
          this.delta[i] = (this.delta[i] ?? 0) + toNumber(cell[1]);
          this.base[i] = (this.base[i] ?? 0) + toNumber(cell[2]);
        }
        const p = parent[i] ?? -1;
        if (p >= 0) {
          this.delta[p] = (this.delta[p] ?? 0) + (this.delta[i] ?? 0);
          this.base[p] = (this.base[p] ?? 0) + (this.base[i] ?? 0);
          const m = this.maxAbs[i] ?? Number.NaN;
          if (!Number.isNaN(m) && !(m <= (this.maxAbs[p] ?? Number.NaN))) this.maxAbs[p] = m;
        }
      }
    }
  }

  /** Whether the graph carries value changes (a comparison). */
  readonly hasChange: boolean;
  /** ||b - a||² summed over the subtree. */
  readonly delta: Float64Array;
  /** ||a||² summed over the subtree. */
  readonly base: Float64Array;
  /** Largest |b - a| in the subtree (NaN: nothing compared). */
  readonly maxAbs: Float64Array;

  /** Relative L2 change of the values below `i` (null: nothing compared there). */
  relChange(i: number): number | null {
    if (!this.hasChange || Number.isNaN(this.maxAbs[i] ?? Number.NaN)) return null;
    const delta = this.delta[i] ?? 0;
    const base = this.base[i] ?? 0;
    if (delta === 0) return 0;
    return base === 0 ? Infinity : Math.sqrt(delta / base);
  }

  /** Replace the states (one byte per node, 255 = no value) and recompute the aggregates. */
  setStates(states?: Uint8Array): void {
    if (states && states.length === this.size) {
      this.state = Int16Array.from(states, (s) => (s === 255 ? -1 : s));
    }
    this.values.fill(0);
    this.tally.fill(0);
    const width = this.stateTotal;
    const { parent } = this.data.nodes;
    for (let i = this.size - 1; i >= 0; i--) {
      const s = this.state[i] ?? -1;
      if (s >= 0) {
        this.values[i] = (this.values[i] ?? 0) + 1;
        this.tally[i * width + s] = (this.tally[i * width + s] ?? 0) + 1;
      }
      const p = parent[i] ?? -1;
      if (p >= 0 && (this.values[i] ?? 0) > 0) {
        this.values[p] = (this.values[p] ?? 0) + (this.values[i] ?? 0);
        for (let k = 0; k < width; k++) {
          this.tally[p * width + k] =
            (this.tally[p * width + k] ?? 0) + (this.tally[i * width + k] ?? 0);
        }
      }
    }
  }

  /** `[state index, count]` of the values below `i` (states with no value left out). */
  stateCounts(i: number): [number, number][] {
    const out: [number, number][] = [];
    for (let k = 0; k < this.stateTotal; k++) {
      const n = this.tally[i * this.stateTotal + k] ?? 0;
      if (n) out.push([k, n]);
    }
    return out;
  }

  name(i: number): string {
    return this.data.nodes.name[i] ?? "";
  }

  parent(i: number): number {
    return this.data.nodes.parent[i] ?? -1;
  }

  flags(i: number): number {
    return this.data.nodes.flags[i] ?? 0;
  }

  stateName(i: number): string | null {
    const s = this.state[i] ?? -1;
    return s >= 0 ? (this.data.states[s] ?? null) : null;
  }

  spec(i: number, side: "stored" | "program"): Spec | null {
    const index = this.data.nodes[side][i] ?? -1;
    return index >= 0 ? (this.data.specs[index] ?? null) : null;
  }

  reason(i: number): string {
    const index = this.data.nodes.reason[i] ?? -1;
    return index >= 0 ? (this.data.strings[index] ?? "") : "";
  }

  isGroup(i: number): boolean {
    return (this.children[i]?.length ?? 0) > 0;
  }

  /** Number of values in problem states in the subtree of `i`. */
  problems(i: number): number {
    let n = 0;
    for (const [s, count] of this.stateCounts(i)) if (this.problemIndex.has(s)) n += count;
    return n;
  }

  /** Display names from the root (excluded) to `i`. */
  path(i: number): string[] {
    const names: string[] = [];
    for (let at = i; at > 0; at = this.parent(at)) names.push(this.name(at));
    return names.reverse();
  }

  ancestors(i: number): number[] {
    const out: number[] = [];
    for (let at = this.parent(i); at >= 0; at = this.parent(at)) out.push(at);
    return out;
  }

  /** `i` and every node below it. */
  subtree(i: number): number[] {
    const out: number[] = [];
    const stack = [i];
    while (stack.length) {
      const at = stack.pop() as number;
      out.push(at);
      for (const c of this.children[at] ?? []) stack.push(c);
    }
    return out;
  }

  /** Current count of values per state name. */
  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [s, n] of this.stateCounts(0)) out.set(this.data.states[s] ?? "?", n);
    return out;
  }
}

/** Bytes of a value with this spec, or null for unknown dims. */
export function nbytes(spec: Spec): number | null {
  let n = spec[2];
  for (const d of spec[1]) {
    if (d === null) return null;
    n *= d;
  }
  return n;
}

/** Text such as `(3, 4) float32`, as Python's ValueSpec.describe. */
export function describeSpec(spec: Spec): string {
  const dims = spec[1].map((d) => (d === null ? "?" : String(d)));
  return `(${dims.join(", ")}${dims.length === 1 ? "," : ""}) ${spec[0]}`;
}

function toNumber(x: number | string): number {
  if (typeof x === "number") return x;
  return x === "inf" ? Infinity : x === "-inf" ? -Infinity : NaN;
}
