import assert from "node:assert/strict";
import { test } from "node:test";
import { visibleNodes } from "../src/core/grouping.js";
import { navigate } from "../src/core/keyboard.js";
import { synthetic } from "./helpers.js";

test("arrows move through the visible tree; Enter and Right expand; Space selects", () => {
  const graph = synthetic(2, 2);
  const expanded = new Set([0, 1]);
  const visible = visibleNodes(graph, expanded);
  const layer0 = graph.children[1]?.[0] as number;
  assert.deepEqual(navigate(graph, visible, expanded, 1, "ArrowDown"), { focus: layer0 });
  assert.deepEqual(navigate(graph, visible, expanded, layer0, "ArrowUp"), { focus: 1 });
  assert.deepEqual(navigate(graph, visible, expanded, layer0, "ArrowRight"), {
    focus: layer0,
    toggle: layer0,
  });
  assert.deepEqual(navigate(graph, visible, expanded, layer0, "Enter"), {
    focus: layer0,
    toggle: layer0,
  });
  assert.deepEqual(navigate(graph, visible, expanded, layer0, "ArrowLeft"), { focus: 1 });
  assert.deepEqual(navigate(graph, visible, expanded, 1, "ArrowLeft"), { focus: 1, toggle: 1 });
  assert.deepEqual(navigate(graph, visible, expanded, layer0, " "), {
    focus: layer0,
    select: layer0,
  });
  assert.equal(navigate(graph, visible, expanded, layer0, "x"), null);
});
