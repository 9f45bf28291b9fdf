import assert from "node:assert/strict";
import { test } from "node:test";
import { Graph } from "../src/core/model.js";
import { paths, reveal, search } from "../src/core/search.js";
import { fixture, synthetic } from "./helpers.js";

test("substring search is case-insensitive over full paths", () => {
  const graph = new Graph(fixture());
  const result = search(graph, "ENCODER/K");
  assert.deepEqual(
    result.matches.map((i) => paths(graph)[i]),
    ["model/encoder/kernel", "optimizer/slots/m/model/encoder/kernel"],
  );
});

test("/regex/ search, and a bad pattern reports an error", () => {
  const graph = new Graph(fixture());
  assert.equal(search(graph, "/^model/h[a-z]+$/").total, 2);
  assert.ok(search(graph, "/([/").error);
});

test("search results are capped but all counted", () => {
  const graph = synthetic(10, 100);
  const result = search(graph, "w1", 5);
  assert.equal(result.matches.length, 5);
  assert.equal(result.total, 10 * 11);
});

test("revealing a match expands its ancestors", () => {
  const graph = synthetic(3, 3);
  const target = search(graph, "layer_2/w1").matches[0] as number;
  assert.deepEqual([...reveal(graph, [target])].sort(), [0, 1, graph.parent(target)].sort());
});
