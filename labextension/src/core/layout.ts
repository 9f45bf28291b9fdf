// DOT for the visible part of the graph, laid out in the browser by Graphviz (WebAssembly).
// Node ids are "n<index>", never a name; every name is untrusted and only appears inside a
// quoted DOT string with backslashes, quotes and control characters escaped. DOM-free.
import { groupSummary } from "./grouping.js";
import { formatChange } from "./heat.js";
import { FLAG_SLOT, FLAG_SYNTHETIC, describeSpec, type Graph } from "./model.js";

export const MAX_LABEL = 80;
/** Longer names are elided in the middle on the graph (the full path is the node's tooltip). */
export const MAX_NAME = 34;
/** Points per inch in DOT sizes. */
const POINTS = 72;

/** `text` shortened to `max` characters with an ellipsis in the middle. */
export function elide(text: string, max = MAX_NAME): string {
  if (text.length <= max) return text;
  const head = Math.ceil((max - 1) * 0.45);
  return `${text.slice(0, head)}…${text.slice(text.length - (max - 1 - head))}`;
}

/**
 * What Python's `str.isprintable` rejects: control and format characters (bidi overrides such
 * as U+202E would draw a name reversed), separators other than the space, surrogates.
 */
const UNPRINTABLE = /[\p{C}\p{Z}]/u;

/**
 * Quote `text` as a DOT string (same rules as Python's ckptlab.inspect.dot_string):
 * backslashes, quotes and unprintable characters escaped, and `&` written as `&amp;` so
 * Graphviz shows entity-like names literally.
 */
export function dotString(text: string): string {
  let cleaned = "";
  for (const ch of text.slice(0, MAX_LABEL)) {
    cleaned += ch !== " " && UNPRINTABLE.test(ch) ? " " : ch;
  }
  const escaped = cleaned.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/&/g, "&amp;");
  return `"${escaped}"`;
}

/** A class name as DOT carries it: letters, digits, `_` and `-` only (never a quote). */
function cssClass(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, "_");
}

export interface IDotOptions {
  expanded: ReadonlySet<number>;
  selected: ReadonlySet<number>;
  matches: ReadonlySet<number>;
  focused: number;
  /** Width in pixels of a label line as the browser draws it (so labels fit their boxes). */
  measure?: (line: string) => number;
}

/** The lines of a node's label (each untrusted; escaped when written into DOT). */
export function labelLines(graph: Graph, i: number, expanded: boolean): string[] {
  const name = elide(graph.name(i));
  const collapsed = graph.isGroup(i) && !expanded;
  const lines = [collapsed ? `${name}/` : name];
  const parent = graph.parent(i);
  if (graph.flags(i) & FLAG_SLOT && parent >= 0) lines.push(`${elide(graph.name(parent))} slot`);
  if (collapsed) lines.push(groupSummary(graph, i));
  const state = graph.stateName(i);
  const stored = graph.spec(i, "stored");
  const program = graph.spec(i, "program");
  const diff = graph.data.kind === "diff";
  if (
    state === "shape_conflict" ||
    state === "dtype_conflict" ||
    (state === "changed" && stored && program && describeSpec(stored) !== describeSpec(program))
  ) {
    if (program) lines.push(`${diff ? "a" : "program"} ${describeSpec(program)}`);
    if (stored) lines.push(`${diff ? "b" : "checkpoint"} ${describeSpec(stored)}`);
  } else if (stored ?? program) {
    lines.push(describeSpec((stored ?? program) as NonNullable<typeof stored>));
  }
  const change = graph.relChange(i);
  if (change !== null && change > 0) lines.push(`Δ ${formatChange(change)}`);
  return lines;
}

function label(lines: readonly string[]): string {
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
    classes.push(state ? `st-${cssClass(state)}` : "st-none");
    if (graph.isGroup(i)) classes.push(isOpen ? "ck-open" : "ck-collapsed");
    if (graph.isGroup(i) && graph.problems(i) > 0) classes.push("ck-has-problem");
    if (graph.flags(i) & FLAG_SYNTHETIC) classes.push("ck-synthetic");
    if (options.selected.has(i)) classes.push("ck-selected");
    if (options.matches.has(i)) classes.push("ck-match");
    if (options.focused === i) classes.push("ck-focused");
    if (graph.relChange(i) !== null) classes.push("ck-heat");
    const lines = labelLines(graph, i, isOpen);
    let extra = graph.isGroup(i) && !isOpen ? ", peripheries=2" : "";
    if (options.measure) {
      const widest = Math.max(...lines.map((line) => options.measure?.(line) ?? 0));
      extra += `, width=${((widest + 22) / POINTS).toFixed(3)}`;
    }
    out.push(
      `  n${i} [id="n${i}", class="${classes.join(" ")}", label="${label(lines)}"${extra}];`,
    );
    const parent = graph.parent(i);
    if (parent >= 0 && shown.has(parent)) out.push(`  n${parent} -> n${i} [class="ck-tree"];`);
  }
  for (const [from, to, kind] of graph.data.edges) {
    // Slot -> variable edges would cross the whole picture: they show for the focused node.
    const wanted = kind === "suggest" || from === options.focused || to === options.focused;
    if (wanted && shown.has(from) && shown.has(to)) {
      const style = kind === "suggest" ? "dashed" : "dotted";
      const cls = `ck-${cssClass(kind)}`;
      out.push(`  n${from} -> n${to} [style=${style}, constraint=false, class="${cls}"];`);
    }
  }
  out.push("}");
  return out.join("\n");
}
