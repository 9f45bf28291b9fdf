import assert from "node:assert/strict";
import { test } from "node:test";
import { Graph } from "../src/core/model.js";
import { firstProblem, problemGroups, problemReason } from "../src/core/problems.js";
import { paths } from "../src/core/search.js";
import { fixture } from "./helpers.js";

test("problems are grouped by kind, conflicts first, each node listed once", () => {
  const graph = new Graph(fixture());
  const groups = problemGroups(graph);
  const kinds = groups.map((g) => g.kind);
  assert.equal(kinds[0], "conflict");
  assert.ok(kinds.includes("renamed"));
  const listed = groups.flatMap((g) => g.nodes);
  assert.equal(new Set(listed).size, listed.length, "no node in two groups");
  assert.equal(firstProblem(groups), groups[0]?.nodes[0]);
});

test("a renamed object is one entry, with its likely match, not its values again", () => {
  const graph = new Graph(fixture());
  const all = paths(graph);
  const groups = problemGroups(graph);
  const renamed = groups.find((g) => g.kind === "renamed");
  assert.ok(renamed);
  const program = renamed.nodes.find((i) => all[i] === "model/hidden_renamed");
  assert.ok(program !== undefined, renamed.nodes.map((i) => all[i]).join(", "));
  assert.match(problemReason(graph, program, all), /^likely model\/hidden \(renamed\?/);
  const inside = new Set([...graph.subtree(program)].filter((i) => i !== program));
  const elsewhere = groups.filter((g) => g.kind !== "renamed").flatMap((g) => g.nodes);
  assert.ok(inside.size > 0);
  assert.ok(elsewhere.every((i) => !inside.has(i)));
  const stored = graph.data.suggestions.find(([p]) => p === program)?.[1] as number;
  assert.ok(graph.subtree(stored).every((i) => !elsewhere.includes(i)));
});
