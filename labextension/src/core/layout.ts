// DOT for the visible part of the graph, laid out in the browser by Graphviz (WebAssembly).
// Node ids are "n<index>", never a name; every name is untrusted and only appears inside a
// quoted DOT string with backslashes, quotes and control characters escaped. DOM-free.
import { groupSummary } from "./grouping.js";
import { FLAG_SYNTHETIC, describeSpec, type Graph } from "./model.js";

export const MAX_LABEL = 80;

/**
 * Quote `text` as a DOT string (same rules as Python's ckptlab.inspect.dot_string):
 * backslashes, quotes and control characters escaped, and `&` written as `&amp;` so Graphviz
 * shows entity-like names literally.
 */
export function dotString(text: string): string {
  let cleaned = "";
  for (const ch of text.slice(0, MAX_LABEL)) {
    const code = ch.codePointAt(0) ?? 0;
    cleaned += code < 0x20 || (code >= 0x7f && code < 0xa0) ? " " : ch;
  }
  const escaped = cleaned.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/&/g, "&amp;");
  return `"${escaped}"`;
}

export interface IDotOptions {
  expanded: ReadonlySet<number>;
  selected: ReadonlySet<number>;
  matches: ReadonlySet<number>;
  focused: number;
}

function label(graph: Graph, i: number, expanded: boolean): string {
  const name = graph.name(i);
  const lines = [graph.isGroup(i) && !expanded ? `${name}/ [+]` : name];
  if (graph.isGroup(i) && !expanded) lines.push(groupSummary(graph, i));
  const state = graph.stateName(i);
  const stored = graph.spec(i, "stored");
  const program = graph.spec(i, "program");
  if (
    state === "shape_conflict" ||
    state === "dtype_conflict" ||
    (state === "changed" && stored && program)
  ) {
    if (program)
      lines.push(`${graph.data.kind === "diff" ? "a" : "program"} ${describeSpec(program)}`);
    if (stored)
      lines.push(`${graph.data.kind === "diff" ? "b" : "checkpoint"} ${describeSpec(stored)}`);
  } else if (stored ?? program) {
    lines.push(describeSpec((stored ?? program) as NonNullable<typeof stored>));
  }
  // Each line is escaped on its own; "\n" is DOT's line break, added here, never from a name.
  return lines.map((line) => dotString(line).slice(1, -1)).join("\\n");
}

/** DOT for `visible` nodes: tree edges, suggestions, and the focused node's slot edges. */
export function toDot(graph: Graph, visible: readonly number[], options: IDotOptions): string {
  const shown = new Set(visible);
  const out = [
    "digraph ckptlab {",
    '  graph [rankdir=LR, nodesep=0.08, ranksep=0.3, bgcolor="transparent", splines=polyline, ordering=out];',
    '  node [shape=box, style="rounded,filled", fontsize=10, fontname="sans-serif", height=0.2, margin="0.08,0.03", fillcolor="#eceff1", color="#90a4ae"];',
    '  edge [arrowsize=0.4, color="#90a4ae"];',
  ];
  for (const i of visible) {
    const isOpen = options.expanded.has(i);
    const classes = ["ck-node"];
    const state = graph.stateName(i);
    classes.push(state ? `st-${state}` : "st-none");
    if (graph.isGroup(i)) classes.push(isOpen ? "ck-open" : "ck-collapsed");
    if (graph.isGroup(i) && graph.problems(i) > 0) classes.push("ck-has-problem");
    if (graph.flags(i) & FLAG_SYNTHETIC) classes.push("ck-synthetic");
    if (options.selected.has(i)) classes.push("ck-selected");
    if (options.matches.has(i)) classes.push("ck-match");
    if (options.focused === i) classes.push("ck-focused");
    const extra = graph.isGroup(i) && !isOpen ? ", peripheries=2" : "";
    out.push(
      `  n${i} [id="n${i}", class="${classes.join(" ")}", label="${label(graph, i, isOpen)}"${extra}];`,
    );
    const parent = graph.parent(i);
    if (parent >= 0 && shown.has(parent)) out.push(`  n${parent} -> n${i} [class="ck-tree"];`);
  }
  for (const [from, to, kind] of graph.data.edges) {
    // Slot -> variable edges would cross the whole picture: they show for the focused node.
    const wanted = kind === "suggest" || from === options.focused || to === options.focused;
    if (wanted && shown.has(from) && shown.has(to)) {
      const style = kind === "suggest" ? "dashed" : "dotted";
      out.push(`  n${from} -> n${to} [style=${style}, constraint=false, class="ck-${kind}"];`);
    }
  }
  out.push("}");
  return out.join("\n");
}
