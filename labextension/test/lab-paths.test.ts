// Contents paths, the state file, the "Open in notebook" code and the settings.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Graph } from "../src/core/model.js";
import { buildView, nameValue } from "../src/lab/checkpoint.js";
import {
  basename,
  contentsUrlPath,
  dirname,
  exploreCode,
  joinPath,
  parseStateFile,
  pythonString,
  hasReservedSegment,
  resolveCheckpoint,
} from "../src/lab/paths.js";
import { DEFAULT_SETTINGS, depthExpansion, readSettings } from "../src/lab/settings.js";

test("contents paths join and normalise without climbing above the root", () => {
  assert.equal(joinPath("a/b", "../c"), "a/c");
  assert.equal(joinPath("", "x", "./y/"), "x/y");
  assert.equal(joinPath("a", "../../.."), "");
  assert.equal(dirname("a/b/ckpt-3"), "a/b");
  assert.equal(dirname("ckpt-3"), "");
  assert.equal(basename("a/b/ckpt-3/"), "ckpt-3");
});

test("folders named like the server's own routes are read under an encoded name", () => {
  assert.equal(contentsUrlPath("checkpoints/checkpoint"), "%63heckpoints/checkpoint");
  assert.equal(contentsUrlPath("runs/trust/zarr.json"), "runs/%74rust/zarr.json");
  assert.equal(contentsUrlPath("a b/#1/ckpt-2"), "a%20b/%231/ckpt-2");
  assert.equal(contentsUrlPath("my_checkpoints/x"), "my_checkpoints/x");
  assert.equal(decodeURIComponent(contentsUrlPath("checkpoints/trust")), "checkpoints/trust");
  assert.ok(hasReservedSegment("checkpoints"));
  assert.ok(hasReservedSegment("a/checkpoints/ckpt-1"));
  assert.ok(!hasReservedSegment("checkpoints2/ckpt-1"));
});

test("the state file parses like ckptlab's parse_state", () => {
  const state = parseStateFile(
    [
      'model_checkpoint_path: "ckpt-2"',
      'all_model_checkpoint_paths: "ckpt-1"',
      'all_model_checkpoint_paths: "ckpt-2"',
      "all_model_checkpoint_timestamps: 1764000000.5",
      "# a comment",
      "",
      "last_preserved_timestamp: 1763999999.0",
    ].join("\n"),
    "d/checkpoint",
  );
  assert.deepEqual(state, { latest: "ckpt-2", all: ["ckpt-1", "ckpt-2"] });
  assert.throws(() => parseStateFile("", "d/checkpoint"), /no model_checkpoint_path/);
  assert.throws(() => parseStateFile("model_checkpoint_path: ckpt", "s"), /line 1/);
  assert.throws(() => parseStateFile('bogus: "x"', "s"), /line 1/);
});

test("the latest checkpoint resolves relative to the state file, or under the root", () => {
  assert.equal(resolveCheckpoint("runs/a/checkpoint", "ckpt-3", "/srv"), "runs/a/ckpt-3");
  assert.equal(
    resolveCheckpoint("runs/a/checkpoint", "/srv/runs/b/ckpt-1", "/srv/"),
    "runs/b/ckpt-1",
  );
  assert.equal(resolveCheckpoint("checkpoint", "/elsewhere/ckpt-1", "/srv"), null);
  assert.equal(resolveCheckpoint("checkpoint", "/srvx/ckpt-1", "/srv"), null);
});

test("Open in notebook writes a safe Python string literal", () => {
  assert.equal(exploreCode("ckpt-3"), 'import ckptlab as ck\n\nck.explore("ckpt-3")');
  assert.equal(pythonString('a"b\\c\n'), '"a\\"b\\\\c\\n"');
  assert.equal(pythonString("x\u2028y"), '"x\u2028y"');
});

function chain(): Graph {
  // (root) -> a -> b -> c -> w, plus 30 siblings under a
  const values = [nameValue("a/b/c/w", { shape: [1], dtype: "float32" })];
  for (let i = 0; i < 30; i++)
    values.push(nameValue(`a/s${String(i)}`, { shape: [], dtype: "int8" }));
  const { graph } = buildView(values, { title: "t", source: "s", kind: "checkpoint", summary: "" });
  return new Graph(graph);
}

test("a fixed expand depth opens that many levels, within the node limit", () => {
  const graph = chain();
  assert.equal(depthExpansion(graph, -1, 150), null);
  assert.deepEqual([...(depthExpansion(graph, 0, 150) ?? [])], [0]);
  assert.deepEqual([...(depthExpansion(graph, 1, 150) ?? [])], [0, 1]);
  assert.deepEqual([...(depthExpansion(graph, 9, 150) ?? [])].sort(), [0, 1, 2, 3]);
  assert.deepEqual([...(depthExpansion(graph, 9, 10) ?? [])], [0]);
});

test("settings fall back to defaults for missing or wrong values", () => {
  assert.deepEqual(readSettings(null), DEFAULT_SETTINGS);
  assert.deepEqual(readSettings({ expandDepth: 2, nodeLimit: 40, colorScheme: "colorblind" }), {
    expandDepth: 2,
    nodeLimit: 40,
    colorScheme: "colorblind",
  });
  assert.deepEqual(
    readSettings({ expandDepth: -5, nodeLimit: 0, colorScheme: "neon" }),
    DEFAULT_SETTINGS,
  );
});
