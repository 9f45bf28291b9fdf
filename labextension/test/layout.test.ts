import assert from "node:assert/strict";
import { test } from "node:test";
import { instance } from "@viz-js/viz";
import { visibleNodes } from "../src/core/grouping.js";
import { dotString, toDot } from "../src/core/layout.js";
import { Graph } from "../src/core/model.js";
import { fixture } from "./helpers.js";

const all = (graph: Graph): Set<number> => new Set(Array.from({ length: graph.size }, (_, i) => i));
const options = (graph: Graph) => ({
  expanded: all(graph),
  selected: new Set<number>(),
  matches: new Set<number>(),
  focused: -1,
});

test("DOT strings escape quotes, backslashes and control characters", () => {
  assert.equal(dotString('a"b\\c\n'), '"a\\"b\\\\c "');
  assert.equal(dotString("x".repeat(200)).length, 82);
  assert.equal(dotString("a&amp;b"), '"a&amp;amp;b"', "entities stay literal text");
  // Bidi controls would draw a name reversed ("\u202eevil\u202c gnp.exe" reads "exe.png live").
  assert.equal(dotString("\u202eevil\u202c gnp.exe"), '" evil  gnp.exe"');
  assert.equal(dotString("a\u200eb\u200fc\u202ad\u2066e\u2069f\u2028g"), '"a b c d e f g"');
  assert.equal(dotString("café 模型 a\u00a0b"), '"café 模型 a b"', "letters stay, odd spaces go");
});

test("node ids are indices, names only inside quoted labels", () => {
  const graph = new Graph(fixture());
  const dot = toDot(graph, visibleNodes(graph, all(graph)), options(graph));
  for (const line of dot.split("\n").filter((l) => l.includes("[id="))) {
    assert.match(line, /^ {2}n\d+ \[id="n\d+", class="[a-z_ -]+", label="/);
  }
  assert.match(dot, /program \(4, 2\) float32\\ncheckpoint \(4, 1\) float32/);
  assert.match(dot, /n\d+ -> n\d+ \[style=dashed, constraint=false, class="ck-suggest"\]/);
});

test("hostile names stay text through Graphviz: no element, no handler", async () => {
  const graph = new Graph(fixture());
  const viz = await instance();
  const dot = toDot(graph, visibleNodes(graph, all(graph)), options(graph));
  const svg = viz.renderString(dot, { format: "svg" });
  assert.ok(
    !/<img|<script|onerror=/i.test(svg.replace(/&lt;img|&lt;\/?script|onerror=&quot;/gi, "")),
  );
  assert.match(svg, /&lt;img src=x oner…window.__pwned=1&quot;&gt;/, "elided, still text");
  assert.equal((svg.match(/<g id="n\d+" class="node/g) ?? []).length, graph.size);
});

test("a crafted bundle cannot put DOT attributes in through its closed sets", () => {
  const link = 'restored", URL="javascript:alert(1)';
  const hostile = (change: (data: ReturnType<typeof fixture>) => void): (() => Graph) => {
    const data = fixture();
    change(data);
    return () => new Graph(data);
  };
  assert.throws(
    hostile((d) => (d.states = d.states.map((s) => (s === "restored" ? link : s)))),
    /unknown state "restored\\", URL=/,
  );
  assert.throws(
    hostile((d) => (d.edges = d.edges.map(([a, b]) => [a, b, link as "suggest"]))),
    /unknown edge kind/,
  );
  assert.throws(
    hostile((d) => (d.kind = link as "match")),
    /unknown view kind/,
  );
});

test("collapsed groups show counts, with their problems", () => {
  const graph = new Graph(fixture());
  const dot = toDot(graph, [0, 1], { ...options(graph), expanded: new Set([0]) });
  assert.match(dot, /model\/\\n9 values, 3 unused, 3 missing, 1 shape conflict/);
});
