// Side panels of the explorer: the problem list, the most-changed table and the training-run
// timeline. Text only (textContent), never HTML: every name is untrusted.
import { formatChange, heatColour } from "../core/heat.js";
import { FLAG_OPTIMIZER, type Graph } from "../core/model.js";
import { problemReason, type IProblemGroup } from "../core/problems.js";
import { paths } from "../core/search.js";
import { sparkPath } from "../core/spark.js";
import { pointTitle, timelineLegend } from "../core/timeline.js";
import { NO_PROBLEMS, type ITimelineData } from "../core/wire.js";
import { svgElement } from "./canvas.js";

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = "",
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  if (text) el.textContent = text;
  return el;
}

/** Problems grouped by kind; a click focuses the node (opening its groups). */
export function renderProblems(
  pane: HTMLElement,
  graph: Graph,
  groups: readonly IProblemGroup[],
  onFocus: (node: number) => void,
  limit = 50,
): void {
  pane.replaceChildren();
  if (!groups.length) {
    pane.append(element("div", "ck-no-problems", NO_PROBLEMS[graph.data.kind] ?? ""));
    return;
  }
  const all = paths(graph);
  for (const group of groups) {
    const section = element("details", `ck-problem-group ck-kind-${group.kind}`);
    section.open = true;
    const head = element("summary", "ck-problem-title");
    head.append(
      element("span", "", group.title),
      element("span", "ck-problem-count", String(group.nodes.length)),
    );
    section.append(head);
    const list = element("ul", "ck-problem-list");
    for (const node of group.nodes.slice(0, limit)) {
      const state = graph.stateName(node) ?? "none";
      const item = element("li", `ck-problem st-${state}`);
      item.dataset.node = String(node);
      item.tabIndex = 0;
      const reason = problemReason(graph, node, all);
      item.title = `${all[node] ?? ""}${reason ? `\n${reason}` : ""}`;
      item.append(element("span", "ck-swatch"), pathText(all[node] ?? ""));
      if (reason) item.append(element("div", "ck-problem-reason", reason));
      item.addEventListener("click", () => {
        onFocus(node);
      });
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter") onFocus(node);
      });
      list.append(item);
    }
    if (group.nodes.length > limit) {
      list.append(element("li", "ck-more", `… and ${group.nodes.length - limit} more`));
    }
    section.append(list);
    pane.append(section);
  }
}

/** A path that wraps after its slashes, not inside a name (text nodes and <wbr> only). */
function pathText(path: string): HTMLSpanElement {
  const span = element("span", "ck-problem-path");
  path.split("/").forEach((part, i) => {
    if (i > 0) span.append("/", document.createElement("wbr"));
    span.append(part);
  });
  return span;
}

type SortKey = "path" | "rel" | "max";

/** Values and modules ranked by change; column headings sort. */
export class ChangesTable {
  readonly root = element("div", "ck-changes");
  private sort: SortKey = "rel";
  private descending = true;
  private modules = true;

  constructor(
    private readonly graph: Graph,
    private readonly onFocus: (node: number) => void,
    /** Whether optimizer values are hidden (then they are not ranked either). */
    private readonly hideOptimizer: () => boolean = () => false,
  ) {}

  render(limit = 30): void {
    const graph = this.graph;
    const all = paths(graph);
    const rows: number[] = [];
    const hide = this.hideOptimizer();
    for (let i = 1; i < graph.size; i++) {
      if (graph.relChange(i) === null) continue;
      if (hide && graph.flags(i) & FLAG_OPTIMIZER) continue;
      if (this.modules ? graph.isGroup(i) : !graph.isGroup(i)) rows.push(i);
    }
    const key = (i: number): number | string =>
      this.sort === "path"
        ? (all[i] ?? "")
        : this.sort === "rel"
          ? (graph.relChange(i) ?? 0)
          : (graph.maxAbs[i] ?? 0);
    rows.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return this.descending ? -order : order;
    });
    const toggle = element("div", "ck-changes-mode");
    for (const [label, modules] of [
      ["modules", true],
      ["values", false],
    ] as const) {
      const button = element("button", modules === this.modules ? "ck-on" : "", label);
      button.addEventListener("click", () => {
        this.modules = modules;
        this.render(limit);
      });
      toggle.append(button);
    }
    const table = element("table", "ck-changes-table");
    const head = element("tr", "");
    for (const [label, sortKey] of [
      [this.modules ? "module" : "value", "path"],
      ["relative L2", "rel"],
      ["max |b − a|", "max"],
    ] as const) {
      const th = element("th", `ck-sort${sortKey === this.sort ? " ck-sorted" : ""}`, label);
      th.dataset.sort = sortKey;
      if (sortKey === this.sort) th.textContent = `${label} ${this.descending ? "▼" : "▲"}`;
      th.addEventListener("click", () => {
        this.descending = this.sort === sortKey ? !this.descending : sortKey !== "path";
        this.sort = sortKey;
        this.render(limit);
      });
      head.append(th);
    }
    table.append(head);
    for (const i of rows.slice(0, limit)) {
      const tr = element("tr", "ck-change-row");
      tr.dataset.node = String(i);
      const rel = graph.relChange(i) ?? 0;
      const name = element("td", "ck-change-path", all[i] || "(root)");
      name.title = all[i] ?? "";
      const heat = element("td", "ck-change-rel", formatChange(rel));
      heat.style.background = heatColour(rel);
      heat.style.color = "#1b1b1b";
      const max = graph.maxAbs[i] ?? 0;
      tr.append(name, heat, element("td", "", Number.isNaN(max) ? "–" : max.toPrecision(3)));
      tr.addEventListener("click", () => {
        this.onFocus(i);
      });
      table.append(tr);
    }
    this.root.replaceChildren(element("div", "ck-changes-title", "Most changed"), toggle, table);
  }
}

/** The training run: one point per checkpoint, per-module sparklines, two picks to compare. */
export class TimelinePanel {
  readonly root = element("div", "ck-timeline");
  private picking: number[] = [];

  constructor(private readonly onPick: (a: number, b: number) => void) {
    this.root.append(element("div", "ck-timeline-empty", "Reading the run…"));
  }

  render(data: ITimelineData): void {
    const { points } = data;
    const chart = element("div", "ck-timeline-points");
    const width = 560;
    const height = 56;
    const svg = svgElement("svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "ck-timeline-svg");
    const norms = points.map((p) => p.weight_norm);
    const line = svgElement("path");
    line.setAttribute("d", sparkPath(norms, width - 20, height - 16));
    line.setAttribute("transform", "translate(10 4)");
    line.setAttribute("class", "ck-timeline-line");
    svg.append(line);
    const step = points.length > 1 ? (width - 20) / (points.length - 1) : 0;
    points.forEach((point, i) => {
      const dot = svgElement("circle");
      dot.setAttribute("cx", String(10 + i * step));
      dot.setAttribute("cy", String(height - 6));
      dot.setAttribute("r", i === data.a || i === data.b ? "6" : "4");
      const unreadable = point.error !== null;
      dot.setAttribute(
        "class",
        `ck-point${i === data.a ? " ck-point-a" : ""}${i === data.b ? " ck-point-b" : ""}` +
          (unreadable ? " ck-point-unreadable" : ""),
      );
      dot.dataset.index = String(i);
      const title = svgElement("title");
      const when = point.time ? new Date(point.time * 1000).toLocaleString() : "";
      title.textContent = pointTitle(point, when);
      dot.append(title);
      if (!unreadable) {
        dot.addEventListener("click", () => {
          this.pick(i);
        });
      }
      svg.append(dot);
    });
    chart.append(svg);
    const legend = element("div", "ck-timeline-legend", timelineLegend(data));
    const table = element("table", "ck-sparks");
    const head = element("tr", "");
    head.append(
      element("th", "", "module"),
      element("th", "", "weight norm"),
      element("th", "", "update ratio"),
      element("th", "", "last"),
    );
    table.append(head);
    for (const series of data.modules.slice(0, 40)) {
      const tr = element("tr", "ck-spark-row");
      const name = element("td", "ck-spark-module", series.module || "(root)");
      name.title = series.module;
      tr.append(name, spark(series.weight_norm), spark(series.update_ratio));
      const last = series.update_ratio.at(-1) ?? null;
      const cell = element("td", "ck-spark-last", last === null ? "–" : formatChange(last));
      if (last !== null) cell.style.background = heatColour(last);
      tr.append(cell);
      table.append(tr);
    }
    const scroller = element("div", "ck-sparks-scroll");
    scroller.append(table);
    this.root.replaceChildren(chart, legend, scroller);
  }

  private pick(i: number): void {
    this.picking = [...this.picking, i].slice(-2);
    for (const dot of this.root.querySelectorAll(".ck-point")) {
      dot.classList.toggle(
        "ck-picking",
        this.picking.includes(Number(dot.getAttribute("data-index"))),
      );
    }
    if (this.picking.length === 2) {
      const [a, b] = this.picking as [number, number];
      this.picking = [];
      if (a !== b) this.onPick(Math.min(a, b), Math.max(a, b));
    }
  }
}

function spark(values: readonly (number | null)[]): HTMLTableCellElement {
  const cell = element("td", "ck-spark");
  const svg = svgElement("svg");
  svg.setAttribute("width", "120");
  svg.setAttribute("height", "18");
  const path = svgElement("path");
  path.setAttribute("d", sparkPath(values, 120, 18));
  svg.append(path);
  cell.append(svg);
  return cell;
}
