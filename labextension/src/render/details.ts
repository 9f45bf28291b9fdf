// The details pane: what is known about one node. Text only (textContent), never HTML.
import { groupSummary } from "../core/grouping.js";
import { STATE_TABLE, describeSpec, nbytes, type Graph } from "../core/model.js";
import { paths } from "../core/search.js";
import { formatChange } from "../core/heat.js";
import type { IChange, IHistogram } from "../core/wire.js";
import type { IDetails, IStats } from "./host.js";

const SVG_NS = "http://www.w3.org/2000/svg";
/** How each state reads (the legend's words: "not yet written", not "bound"). */
const LABELS = new Map(STATE_TABLE.map((s) => [s.name, s.one]));

function row(table: HTMLElement, label: string, value: string, cls = ""): void {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label;
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  tr.append(th, td);
  table.append(tr);
}

function human(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit] ?? ""}`;
}

function fmt(x: number | undefined): string {
  return x === undefined
    ? "–"
    : Math.abs(x) >= 1e5 || (x !== 0 && Math.abs(x) < 1e-3)
      ? x.toExponential(3)
      : String(Number(x.toFixed(5)));
}

export function histogram(stats: IStats): SVGSVGElement | null {
  const h = stats.histogram;
  if (!h || h.counts.length === 0) return null;
  const width = 200;
  const height = 40;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "ck-histogram");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const top = Math.max(...h.counts, 1);
  const bar = width / h.counts.length;
  h.counts.forEach((count, i) => {
    const rect = document.createElementNS(SVG_NS, "rect");
    const barHeight = (count / top) * (height - 2);
    rect.setAttribute("x", String(i * bar));
    rect.setAttribute("y", String(height - barHeight));
    rect.setAttribute("width", String(Math.max(bar - 1, 1)));
    rect.setAttribute("height", String(barHeight));
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${fmt(h.edges[i])} … ${fmt(h.edges[i + 1])}: ${count}`;
    rect.append(title);
    svg.append(rect);
  });
  return svg;
}

/** Two distributions on one scale: a (outline) behind b (filled). */
export function overlay(a: IHistogram, b: IHistogram, diff: boolean): HTMLElement {
  const width = 220;
  const height = 48;
  const box = document.createElement("div");
  box.className = "ck-overlay";
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "ck-histogram ck-histogram-overlay");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  const top = Math.max(...a.counts, ...b.counts, 1);
  const bar = width / Math.max(b.counts.length, 1);
  for (const [counts, cls] of [
    [b.counts, "ck-bar-b"],
    [a.counts, "ck-bar-a"],
  ] as const) {
    counts.forEach((count, i) => {
      const rect = document.createElementNS(SVG_NS, "rect");
      const h = (count / top) * (height - 2);
      rect.setAttribute("x", String(i * bar));
      rect.setAttribute("y", String(height - h));
      rect.setAttribute("width", String(Math.max(bar - 1, 1)));
      rect.setAttribute("height", String(h));
      rect.setAttribute("class", cls);
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `${fmt(b.edges[i])} … ${fmt(b.edges[i + 1])}: ${count}`;
      rect.append(title);
      svg.append(rect);
    });
  }
  const legend = document.createElement("div");
  legend.className = "ck-overlay-legend";
  legend.textContent = diff ? "outline: a · filled: b" : "outline: checkpoint · filled: program";
  box.append(svg, legend);
  return box;
}

function statsRows(table: HTMLElement, stats: IStats): void {
  if (stats.error) {
    row(table, "read error", stats.error, "ck-bad");
    return;
  }
  row(table, "min / max", `${fmt(stats.min)} / ${fmt(stats.max)}`);
  row(table, "mean / std", `${fmt(stats.mean)} / ${fmt(stats.std)}`);
  row(
    table,
    "NaN / Inf",
    `${stats.nan ?? 0} / ${stats.inf ?? 0}`,
    stats.nan || stats.inf ? "ck-bad" : "",
  );
  if (stats.zeros !== undefined) row(table, "zeros", String(stats.zeros));
}

export function renderDetails(
  pane: HTMLElement,
  graph: Graph,
  node: number,
  details: IDetails,
  live: boolean,
  onJump: (node: number) => void,
): void {
  pane.replaceChildren();
  if (node < 0 || node >= graph.size) {
    pane.textContent = "Click a node to see its details. Shift-click selects a subtree.";
    return;
  }
  const title = document.createElement("div");
  title.className = "ck-details-title";
  title.textContent = paths(graph)[node] || graph.name(node);
  const table = document.createElement("table");
  pane.append(title, table);
  const state = graph.stateName(node);
  if (state) row(table, "state", LABELS.get(state) ?? state, `ck-state st-${state}`);
  const reason = graph.reason(node);
  if (reason) row(table, "why", reason);
  const diff = graph.data.kind === "diff";
  const program = graph.spec(node, "program");
  const stored = graph.spec(node, "stored");
  if (program) row(table, diff ? "a" : "program", describeSpec(program));
  if (stored) row(table, diff ? "b" : "checkpoint", describeSpec(stored));
  const size = stored ? nbytes(stored) : program ? nbytes(program) : null;
  if (size !== null) row(table, "bytes", human(size));
  if (graph.isGroup(node)) row(table, "holds", groupSummary(graph, node));
  const fresh = details.node === node ? details : {};
  if (fresh.key) row(table, "key", fresh.key);
  if (fresh.expected_key) row(table, "expected key", fresh.expected_key);
  if (fresh.checksum) row(table, "checksum", fresh.checksum);
  if (fresh.change) {
    const change: IChange = fresh.change;
    const what = diff ? "b vs a" : "program vs checkpoint";
    row(table, `max |Δ| (${what})`, fmt(change.max_abs));
    row(table, "relative L2", formatChange(change.rel_l2), change.rel_l2 > 0 ? "ck-changed" : "");
  }
  if (fresh.error) row(table, "error", fresh.error, "ck-bad");
  if (fresh.stats) {
    statsRows(table, fresh.stats);
    const a = fresh.change?.a;
    const b = fresh.change?.b;
    const chart = a && b ? overlay(a, b, diff) : histogram(fresh.stats);
    if (chart) pane.append(chart);
  } else if (fresh.no_stats) {
    row(table, "statistics", fresh.no_stats);
  } else if (state && live && fresh.node !== node) {
    // Not answered yet; an answer without statistics (an error) is not waited for.
    row(table, "statistics", "reading…");
  }
  for (const [from, to, kind] of graph.data.edges) {
    if (kind !== "slot" || (from !== node && to !== node)) continue;
    const link = document.createElement("button");
    link.className = "ck-suggestion";
    const other = from === node ? to : from;
    link.textContent = `${from === node ? "optimizer slot of" : "has optimizer slot"} ${paths(graph)[other] ?? ""}`;
    link.addEventListener("click", () => {
      onJump(other);
    });
    pane.append(link);
  }
  for (const [a, b, why] of graph.data.suggestions) {
    if (a !== node && b !== node) continue;
    const other = a === node ? b : a;
    const hint = document.createElement("button");
    hint.className = "ck-suggestion";
    hint.textContent = `likely match: ${paths(graph)[other] ?? ""} (${why})`;
    hint.addEventListener("click", () => {
      onJump(other);
    });
    pane.append(hint);
  }
}
