// The checkpoint viewer's pure half: zarr.json -> graph view JSON, kept identical to Python's
// CheckpointSource.view() through the fixtures tests/labextension/lab_fixtures.py writes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Graph } from "../src/core/model.js";
import {
  DocumentError,
  checkpointView,
  escapeLocalName,
  humanBytes,
  isCheckpointRoot,
  nameValue,
  objectValue,
  parseDocument,
  unescapeLocalName,
} from "../src/lab/checkpoint.js";

const FIXTURES = new URL("../../test/lab-fixtures/", import.meta.url);
const SOURCE = "fixtures/CHECKPOINT";

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), "utf-8")) as unknown;
}

for (const name of ["adam", "hostile", "saver", "adam-v2", "hostile-v2", "saver-v2"]) {
  test(`${name}: the TypeScript view equals Python's`, () => {
    const doc = parseDocument(fixture(`${name}.zarr.json`), SOURCE);
    const { graph } = checkpointView(doc, SOURCE);
    assert.deepEqual(JSON.parse(JSON.stringify(graph)), fixture(`${name}.view.json`));
    const drawn = new Graph(graph);
    assert.equal(
      drawn.values[0],
      Object.values(graph.counts).reduce((a, b) => a + b, 0),
    );
  });
}

test("every placed value knows its key", () => {
  const doc = parseDocument(fixture("adam.zarr.json"), SOURCE);
  const { graph, keys } = checkpointView(doc, SOURCE);
  const withValue = graph.nodes.state.filter((s) => s >= 0).length;
  assert.equal(keys.size, withValue);
  for (const key of keys.values()) assert.ok(doc.values.has(key), key);
  const kernel = [...keys.values()].find((k) => k.startsWith("model/head/kernel/"));
  assert.equal(kernel, "model/head/kernel/.ATTRIBUTES/VARIABLE_VALUE");
});

test("hostile names stay data: never parsed, only carried as text", () => {
  const doc = parseDocument(fixture("hostile.zarr.json"), SOURCE);
  const names = checkpointView(doc, SOURCE).graph.nodes.name;
  assert.ok(names.includes("<img src=x onerror=alert(1)>"));
  assert.ok(names.includes("</script><script>alert(2)</script>"));
  assert.ok(names.includes("a.b/c"));
});

test("escaping round-trips and a lone dot is kept as it is", () => {
  for (const name of ["a.b/c", "..", ".S", "plain", ""]) {
    assert.equal(unescapeLocalName(escapeLocalName(name)), name);
  }
  assert.equal(escapeLocalName("a.b/c"), "a..b.Sc");
  assert.equal(unescapeLocalName("a.x"), null);
  assert.deepEqual(objectValue("m/a.x", "k", null, false).path, ["m", "a.x"]);
});

test("optimizer slots go under their optimizer, linked to the variable", () => {
  const value = objectValue("m/w/.OPTIMIZER_SLOT/opt/m", "k", null, false);
  assert.deepEqual(value.path, ["opt", "slots", "m", "m/w"]);
  assert.deepEqual(value.link, ["m", "w"]);
  assert.equal(value.syntheticDepth, 1);
  assert.ok(value.optimizer && value.slot);
});

test("name-based keys split on / and .", () => {
  assert.deepEqual(nameValue("model.layers.0.weight", null).path, [
    "model",
    "layers",
    "0",
    "weight",
  ]);
  assert.deepEqual(nameValue("...", null).path, ["..."]);
});

test("sizes read like Python's (half to even)", () => {
  assert.equal(humanBytes(0), "0 B");
  assert.equal(humanBytes(1023), "1023 B");
  assert.equal(humanBytes(1280), "1.2 KB"); // Python: f"{1.25:.1f}" == "1.2"
  assert.equal(humanBytes(1536), "1.5 KB");
  assert.equal(humanBytes(1.75 * 1024 * 1024), "1.8 MB");
  assert.equal(humanBytes(3 * 1024 ** 4), "3072.0 GB");
});

test("format 3 documents: invalid columns are refused with the field named", () => {
  const good = fixture("adam.zarr.json") as { attributes: { ckptlab: Record<string, unknown> } };
  const document = good.attributes.ckptlab;
  assert.equal(document.format_version, 3);
  const broken = (patch: Record<string, unknown>): unknown => ({
    ...good,
    attributes: { ckptlab: { ...document, ...patch } },
  });
  const values = document.values as Record<"key" | "shape" | "array", unknown[]>;
  const graph = document.graph as Record<string, unknown>;
  const edges = graph.edges as Record<"child", unknown[]>;
  assert.throws(
    () =>
      parseDocument(
        broken({ values: { ...values, shape: [[-1], ...values.shape.slice(1)] } }),
        "x",
      ),
    /values\.shape\[0\]/,
  );
  assert.throws(
    () =>
      parseDocument(broken({ values: { ...values, array: [99, ...values.array.slice(1)] } }), "x"),
    /values\.array\[0\]/,
  );
  assert.throws(
    () => parseDocument(broken({ values: { ...values, key: values.key.slice(1) } }), "x"),
    /columns of equal length/,
  );
  assert.throws(
    () =>
      parseDocument(
        broken({
          graph: { ...graph, edges: { ...edges, child: [999, ...edges.child.slice(1)] } },
        }),
        "x",
      ),
    /graph\.edges\.child\[0\]/,
  );
  assert.throws(() => parseDocument(broken({ arrays: {} }), "x"), /document\.arrays/);
});

test("invalid documents are refused with the field named", () => {
  const good = fixture("adam-v2.zarr.json") as {
    attributes: { ckptlab: Record<string, unknown> };
  };
  const broken = (patch: Record<string, unknown>): unknown => ({
    ...good,
    attributes: { ckptlab: { ...good.attributes.ckptlab, ...patch } },
  });
  assert.equal(isCheckpointRoot({ zarr_format: 3, node_type: "group", attributes: {} }), false);
  assert.throws(() => parseDocument({ node_type: "array" }, "x"), /not a ckptlab checkpoint/);
  assert.throws(() => parseDocument(broken({ format_version: 99 }), "x"), /format_version 99/);
  assert.throws(() => parseDocument(broken({ kind: "weird" }), "x"), /document\.kind/);
  assert.throws(
    () => parseDocument(broken({ values: { k: { shape: [-1], dtype: "float32" } } }), "x"),
    (error: unknown) =>
      error instanceof DocumentError && /values\["k"\]\.shape/.test(error.message),
  );
  assert.throws(
    () => parseDocument(broken({ values: { k: { shape: [1], dtype: "object" } } }), "x"),
    /values\["k"\]\.dtype/,
  );
  assert.throws(
    () => parseDocument(broken({ graph: { nodes: [{ children: [["a", 7]] }] } }), "x"),
    /graph\.nodes\[0\]\.children\[0\]/,
  );
});
