import assert from "node:assert/strict";
import { test } from "node:test";
import { pointTitle, timelineLegend } from "../src/core/timeline.js";
import type { ITimelinePoint } from "../src/core/wire.js";

function point(step: number, error: string | null = null): ITimelinePoint {
  const readable = error === null;
  return {
    path: `run/checkpoint-${step}/model.safetensors`,
    step,
    time: null,
    nbytes: readable ? 2048 : null,
    values: readable ? 3 : null,
    weight_norm: readable ? 1 : null,
    update_ratio: readable && step > 2 ? 0.5 : null,
    error,
  };
}

test("a readable point's tooltip has its size and update", () => {
  assert.equal(
    pointTitle(point(4), "today"),
    "step 4 · today · 2.0 KB · update 0.50\nrun/checkpoint-4/model.safetensors",
  );
});

test("an unreadable point says why instead of statistics it does not have", () => {
  const title = pointTitle(point(8, "model.safetensors is not a readable safetensors file"), "");
  assert.equal(
    title,
    "step 8 · unreadable: model.safetensors is not a readable safetensors file\n" +
      "run/checkpoint-8/model.safetensors",
  );
});

test("the legend names the checkpoints that cannot be read", () => {
  const points = [point(2), point(4, "damaged"), point(6), point(8, "being written")];
  assert.equal(
    timelineLegend({ points, modules: [], a: 0, b: 2 }),
    "4 checkpoints, steps 2–8 (cannot read step 4, 8: hover its point for why): comparing " +
      "a = step 2 with b = step 6. Click two points to compare others.",
  );
  assert.doesNotMatch(
    timelineLegend({ points: [point(2), point(4)], modules: [], a: 0, b: 1 }),
    /cannot/,
  );
});
