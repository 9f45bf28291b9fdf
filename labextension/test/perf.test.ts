import assert from "node:assert/strict";
import { test } from "node:test";
import { initialExpansion, visibleNodes } from "../src/core/grouping.js";
import { toDot } from "../src/core/layout.js";
import { synthetic } from "./helpers.js";

test("100,000 values: aggregates, default expansion and DOT in well under a second", () => {
  const t0 = performance.now();
  const graph = synthetic(200, 500, 17);
  const expanded = initialExpansion(graph);
  const visible = visibleNodes(graph, expanded);
  toDot(graph, visible, { expanded, selected: new Set(), matches: new Set(), focused: -1 });
  const ms = performance.now() - t0;
  assert.ok(visible.length <= 150);
  assert.ok(ms < 1500, `${ms.toFixed(0)} ms`);
});
