import assert from "node:assert/strict";
import { test } from "node:test";
import { initialExpansion, visibleNodes } from "../src/core/grouping.js";
import { toDot } from "../src/core/layout.js";
import { synthetic } from "./helpers.js";

// How fast this runs is measured by benchmarks/bench_explorer.py, not asserted here.
test("100,000 values: the default view stays within the node limit and DOT draws only it", () => {
  const graph = synthetic(200, 500, 17);
  const expanded = initialExpansion(graph);
  const visible = visibleNodes(graph, expanded);
  const dot = toDot(graph, visible, {
    expanded,
    selected: new Set(),
    matches: new Set(),
    focused: -1,
  });
  assert.ok(visible.length > 1 && visible.length <= 150, `${visible.length} visible`);
  const drawn = dot.match(/^\s*n\d+ \[/gm) ?? [];
  assert.equal(drawn.length, visible.length);
});
