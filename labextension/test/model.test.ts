import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { test } from "node:test";
import {
  Graph,
  SCHEMA_NAME,
  SCHEMA_VERSION,
  decodeBundle,
  decodeBytes,
  describeSpec,
  nbytes,
} from "../src/core/model.js";
import { fixture, schema } from "./helpers.js";

const gunzip = (bytes: Uint8Array): Promise<string> =>
  Promise.resolve(gunzipSync(bytes).toString("utf8"));
const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "base64"));

test("the schema file and the TypeScript reader agree on name, version and states", () => {
  const props = schema().$defs.graph.properties as {
    format: { const: string };
    version: { const: number };
    states: { prefixItems: { const: string }[] };
  };
  assert.equal(props.format.const, SCHEMA_NAME);
  assert.equal(props.version.const, SCHEMA_VERSION);
  assert.deepEqual(
    props.states.prefixItems.map((p) => p.const),
    fixture().states,
  );
});

test("the Python fixture decodes, with aggregates per group", () => {
  const graph = new Graph(fixture());
  assert.equal(graph.name(0), "(root)");
  const model = graph.children[0]?.[0] as number;
  assert.equal(graph.name(model), "model");
  assert.equal(graph.values[0], 12);
  assert.ok(graph.problems(model) > 0);
  assert.equal(graph.counts().get("checkpoint_only"), 3);
  assert.deepEqual(graph.path(3), ["model", "encoder", "kernel"]);
});

test("gzip bytes and the gzip+base64 envelope decode to the same graph", async () => {
  const data = fixture();
  const bytes = gzipSync(Buffer.from(JSON.stringify(data)));
  assert.deepEqual(await decodeBytes(new Uint8Array(bytes), gunzip), data);
  const envelope = {
    format: SCHEMA_NAME,
    version: SCHEMA_VERSION,
    encoding: "gzip+base64" as const,
    data: bytes.toString("base64"),
  };
  assert.deepEqual(await decodeBundle(envelope, gunzip, fromBase64), data);
  assert.equal(await decodeBundle(data, gunzip, fromBase64), data);
});

test("an unknown version is refused with a message saying what to do", async () => {
  await assert.rejects(
    decodeBundle({ ...fixture(), version: 99 }, gunzip, fromBase64),
    /Upgrade ckptlab/,
  );
});

test("state bytes replace states and recompute counts", () => {
  const graph = new Graph(fixture());
  const bytes = new Uint8Array(graph.size).fill(255);
  for (let i = 0; i < graph.size; i++) if ((graph.state[i] ?? -1) >= 0) bytes[i] = 0;
  graph.setStates(bytes);
  assert.deepEqual([...graph.counts()], [["restored", 12]]);
  assert.equal(graph.problems(0), 0);
});

test("specs describe like Python and give byte sizes", () => {
  assert.equal(describeSpec(["float32", [3], 4]), "(3,) float32");
  assert.equal(describeSpec(["float32", [null, 4], 4]), "(?, 4) float32");
  assert.equal(nbytes(["float32", [3, 4], 4]), 48);
  assert.equal(nbytes(["float32", [null, 4], 4]), null);
});
