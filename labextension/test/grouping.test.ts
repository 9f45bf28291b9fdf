import assert from "node:assert/strict";
import { test } from "node:test";
import { groupSummary, initialExpansion, visibleNodes } from "../src/core/grouping.js";
import { FLAG_OPTIMIZER, Graph } from "../src/core/model.js";
import { fixture, synthetic } from "./helpers.js";

test("a small graph opens fully, except its optimizer: one collapsed group", () => {
  const graph = new Graph(fixture());
  const expanded = initialExpansion(graph, 150);
  const optimizer = Array.from({ length: graph.size }, (_, i) => i).filter(
    (i) => graph.flags(i) & FLAG_OPTIMIZER && graph.isGroup(i),
  );
  assert.ok(optimizer.length > 0);
  assert.ok(optimizer.every((i) => !expanded.has(i)));
  const top = optimizer.filter((i) => !(graph.flags(graph.parent(i)) & FLAG_OPTIMIZER));
  const hidden = top.reduce((n, i) => n + graph.subtree(i).length - 1, 0);
  assert.equal(visibleNodes(graph, expanded).length, graph.size - hidden);
});

test("the first problem opens whatever the budget", () => {
  const graph = synthetic(100, 1000, 42);
  const layer42 = graph.children[1]?.[42] as number;
  const conflict = (graph.children[layer42] ?? []).find((i) => graph.problems(i) > 0) as number;
  const expanded = initialExpansion(graph, 150, false, conflict);
  assert.ok(visibleNodes(graph, expanded).includes(conflict));
});

test("a big graph opens collapsed down to the first level with a problem", () => {
  const graph = synthetic(100, 1000, 42); // 100,000 values
  const expanded = initialExpansion(graph, 150);
  const visible = visibleNodes(graph, expanded);
  assert.ok(visible.length <= 150, `${visible.length} visible`);
  assert.ok(expanded.has(1), "model opens: it holds the problem");
  const layer42 = graph.children[1]?.[42] as number;
  assert.ok(!expanded.has(layer42), "1,000 children do not fit the budget");
  assert.ok(visible.includes(layer42));
  assert.match(groupSummary(graph, layer42), /^1000 values, 1 shape conflict$/);
});

test("within budget, only groups holding problems open", () => {
  const graph = synthetic(10, 5, 3);
  const expanded = initialExpansion(graph, 20);
  const layers = graph.children[1] as number[];
  assert.ok(expanded.has(layers[3] as number));
  assert.equal(layers.filter((l) => expanded.has(l)).length, 1);
});

test("hiding the optimizer hides flagged nodes", () => {
  const graph = new Graph(fixture());
  const all = visibleNodes(graph, new Set(Array.from({ length: graph.size }, (_, i) => i)));
  const shown = visibleNodes(graph, new Set(all), true);
  const optimizer = all.filter((i) => graph.flags(i) & FLAG_OPTIMIZER);
  assert.ok(optimizer.length > 0);
  assert.equal(shown.length, all.length - optimizer.length);
});

test("visible nodes come in depth-first order", () => {
  const graph = synthetic(2, 2);
  const order = visibleNodes(graph, new Set([0, 1, 2, 5]));
  assert.deepEqual(
    order.map((i) => graph.name(i)),
    ["(root)", "model", "layer_0", "w0", "w1", "layer_1", "w0", "w1"],
  );
});
