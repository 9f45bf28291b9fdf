// The explorer view: toolbar, legend, problem list, the Graphviz-drawn graph (fitted, pan and
// zoom, minimap), the details pane, and for comparisons the most-changed table and timeline.
// Drawing only; what is visible, searched, grouped and laid out comes from the DOM-free core.
import { DEFAULT_BUDGET, initialExpansion, visibleNodes } from "../core/grouping.js";
import { heatColour } from "../core/heat.js";
import { navigate } from "../core/keyboard.js";
import { toDot } from "../core/layout.js";
import { STATE_TABLE, type Graph } from "../core/model.js";
import { firstProblem, problemGroups, type IProblemGroup } from "../core/problems.js";
import { paths, reveal, search } from "../core/search.js";
import { GraphCanvas, svgElement } from "./canvas.js";
import { renderDetails } from "./details.js";
import { loadEngine, renderSvg, type IViz } from "./engine.js";
import type { IHost } from "./host.js";
import { ChangesTable, TimelinePanel, element, renderProblems } from "./panels.js";

const REVEAL_LIMIT = 20;
const EXPLAIN = new Map(STATE_TABLE.map((s) => [s.name, s]));

let measurer: CanvasRenderingContext2D | null = null;

/** Width in pixels of a label line as Graphviz's SVG draws it (10px sans-serif). */
function measure(line: string): number {
  measurer ??= document.createElement("canvas").getContext("2d");
  if (!measurer) return line.length * 6;
  measurer.font = "10px sans-serif";
  return measurer.measureText(line).width;
}

export class ExplorerView {
  readonly root: HTMLDivElement;
  private readonly graph: Graph;
  private readonly host: IHost;
  private readonly canvas = new GraphCanvas();
  private readonly pane = element("div", "ck-details");
  private readonly problems = element("div", "ck-problems");
  private readonly legend = element("div", "ck-legend");
  private readonly summary = element("span", "ck-summary");
  private readonly status = element("div", "ck-message");
  private readonly progressBar = element("div", "ck-progress");
  private readonly searchBox = element("input", "ck-search");
  private readonly searchCount = element("span", "ck-search-count");
  private readonly restoreButton = element("button", "ck-restore", "Restore selected");
  private readonly hideBox = element("input", "ck-hide-optimizer");
  private readonly changes: ChangesTable | null;
  private readonly timelinePanel: TimelinePanel | null;
  private expanded = new Set<number>();
  private matches = new Set<number>();
  private groups: IProblemGroup[] = [];
  private focused = -1;
  private viz: IViz | null = null;
  private visible: number[] = [];
  private searchTimer: ReturnType<typeof setTimeout> | undefined;
  private drawing = 0;
  /** Milliseconds of the last layout (read by the benchmark). */
  lastLayoutMs = 0;

  constructor(graph: Graph, host: IHost) {
    this.graph = graph;
    this.host = host;
    this.root = element("div", "ckptlab-explorer");
    this.root.tabIndex = 0;
    this.root.dataset.kind = graph.data.kind;
    this.hideBox.type = "checkbox";
    const hide = host.hideOptimizer();
    this.hideBox.checked = hide ?? graph.data.options.hide_optimizer ?? false;
    if (hide === null) host.update({ hide_optimizer: this.hideBox.checked });
    this.changes = graph.hasChange
      ? new ChangesTable(graph, (n) => {
          this.jump(n);
        })
      : null;
    this.timelinePanel = host.isRun()
      ? new TimelinePanel((a, b) => {
          this.host.send({ type: "pick", a, b });
        })
      : null;
    this.build();
    this.groups = problemGroups(graph, this.hideBox.checked);
    const saved = host.expanded();
    this.expanded = saved.length
      ? new Set(saved)
      : initialExpansion(
          graph,
          graph.data.options.budget ?? DEFAULT_BUDGET,
          this.hideBox.checked,
          firstProblem(this.groups),
        );
    if (!saved.length) host.update({ expanded: [...this.expanded] });
    this.listen();
  }

  private build(): void {
    const header = element("div", "ck-header");
    const source = element("code", "ck-source", this.graph.data.source);
    source.title = this.graph.data.source;
    header.append(element("b", "ck-title", this.graph.data.title), source, this.summary);
    this.searchBox.type = "search";
    this.searchBox.placeholder = "Search ( / ): text or /regex/";
    this.searchBox.title = "Search full paths: a substring, or /regex/; Enter jumps to the next";
    this.searchBox.value = this.host.search();
    const hide = element("label", "ck-hide");
    hide.title = "Hide optimizer objects and slots (hidden at first when the program has none)";
    hide.append(this.hideBox, document.createTextNode(" hide optimizer"));
    const collapse = element("button", "ck-collapse", "Collapse");
    const expandProblems = element("button", "ck-expand-problems", "Open problems");
    const exportButton = element("button", "ck-export", "Export SVG");
    collapse.addEventListener("click", () => {
      this.setExpanded(new Set([0]));
    });
    expandProblems.addEventListener("click", () => {
      this.setExpanded(this.problemExpansion());
    });
    exportButton.addEventListener("click", () => {
      this.exportSvg();
    });
    this.restoreButton.title = "run_restore_ops(only=...) for the values under the selection";
    this.restoreButton.addEventListener("click", () => {
      this.status.textContent = "Restoring…";
      this.host.restore(this.host.selected());
    });
    this.restoreButton.hidden = !(this.host.live && this.graph.data.can_restore);
    const toolbar = element("div", "ck-toolbar");
    toolbar.append(this.searchBox, this.searchCount, hide, expandProblems, collapse);
    if (this.host.live && this.graph.data.kind === "match" && !this.graph.hasChange) {
      const compare = element("button", "ck-compare-values", "Compare values");
      compare.title =
        "Colour matched values by how the program's value differs from the stored one";
      compare.addEventListener("click", () => {
        this.host.send({ type: "compare-values" });
      });
      toolbar.append(compare);
    }
    toolbar.append(this.restoreButton, exportButton);
    this.progressBar.append(
      element("div", "ck-progress-fill"),
      element("span", "ck-progress-text"),
    );
    this.progressBar.hidden = true;
    const middle = element("div", "ck-graph");
    middle.append(this.canvas.root);
    const body = element("div", "ck-body");
    body.append(this.problems, middle, this.pane);
    this.root.append(header, toolbar, this.progressBar);
    if (this.timelinePanel) this.root.append(this.timelinePanel.root);
    this.root.append(this.legend, body);
    if (this.changes) this.root.append(this.changes.root);
    this.root.append(this.status);
  }

  private problemExpansion(): Set<number> {
    const out = new Set<number>([0]);
    for (const group of this.groups) {
      for (const node of group.nodes) for (const a of this.graph.ancestors(node)) out.add(a);
    }
    return out;
  }

  private listen(): void {
    this.canvas.root.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target : null;
      const toggle = target?.closest("g.ck-toggle");
      const node = target?.closest("g.node")?.getAttribute("data-node");
      if (!node) return;
      if (toggle) this.toggle(Number(node));
      else this.click(Number(node), event);
    });
    this.canvas.root.addEventListener("dblclick", (event) => {
      const node = event.target instanceof Element ? event.target.closest("g.node") : null;
      const id = Number(node?.getAttribute("data-node") ?? -1);
      if (id >= 0 && this.graph.isGroup(id)) this.toggle(id);
    });
    this.root.addEventListener("keydown", (event) => {
      this.key(event);
    });
    this.searchBox.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => {
        this.runSearch(this.searchBox.value, true);
      }, 150);
    });
    this.hideBox.addEventListener("change", () => {
      this.host.update({ hide_optimizer: this.hideBox.checked });
      this.groups = problemGroups(this.graph, this.hideBox.checked);
      this.renderProblemList();
      void this.draw();
    });
    this.host.on("states", () => {
      const states = this.host.states();
      if (states) this.graph.setStates(states);
      this.groups = problemGroups(this.graph, this.hideBox.checked);
      this.renderProblemList();
      void this.draw(this.focused);
    });
    this.host.on("selected", () => {
      this.paint();
      this.updateRestore();
    });
    this.host.on("expanded", () => {
      const next = new Set(this.host.expanded());
      if (next.size !== this.expanded.size || [...next].some((i) => !this.expanded.has(i))) {
        this.expanded = next;
        void this.draw();
      }
    });
    this.host.on("details", () => {
      this.showDetails();
    });
    this.host.on("message", () => {
      this.status.textContent = this.host.message();
    });
    this.host.on("summary", () => {
      this.summary.textContent = this.host.summary() ?? this.graph.data.summary;
    });
    this.host.on("progress", () => {
      this.showProgress();
    });
    this.host.on("timeline", () => {
      const data = this.host.timeline();
      if (data && this.timelinePanel) this.timelinePanel.render(data);
    });
  }

  /** Lay out and draw, fitted and centred on the problems; resolves when the SVG is shown. */
  async start(): Promise<void> {
    this.summary.textContent = this.host.summary() ?? this.graph.data.summary;
    this.status.textContent = this.host.message();
    this.renderLegend();
    this.renderProblemList();
    this.changes?.render();
    this.showProgress();
    if (this.timelinePanel) {
      const data = this.host.timeline();
      if (data) this.timelinePanel.render(data);
      else this.host.send({ type: "need-timeline" });
    }
    if (this.host.search()) this.runSearch(this.host.search(), false);
    this.canvas.root.dataset.loading = "true";
    try {
      this.viz = await loadEngine(() => this.host.engineSource());
    } catch (error) {
      this.status.textContent = `ckptlab: ${error instanceof Error ? error.message : String(error)}`;
      return;
    }
    delete this.canvas.root.dataset.loading;
    await this.draw();
    const first = firstProblem(this.groups);
    this.canvas.fit(first);
    if (first >= 0 && !this.canvas.visible(first)) this.canvas.reveal(first);
    this.showDetails();
  }

  private setExpanded(next: Set<number>, anchor = -1): void {
    this.expanded = next;
    this.host.update({ expanded: [...next] });
    void this.draw(anchor);
  }

  private toggle(node: number): void {
    const next = new Set(this.expanded);
    if (next.has(node)) next.delete(node);
    else next.add(node);
    this.setExpanded(next, node);
  }

  /** Lay out and draw; `anchor` (a node) keeps its place on screen. */
  async draw(anchor = -1): Promise<void> {
    const viz = this.viz;
    if (!viz) return;
    const ticket = ++this.drawing;
    const t0 = performance.now();
    const visible = visibleNodes(this.graph, this.expanded, this.hideBox.checked);
    const dot = toDot(this.graph, visible, {
      expanded: this.expanded,
      selected: new Set(this.host.selected()),
      matches: this.matches,
      focused: this.focused,
      measure,
    });
    const at = anchor >= 0 ? this.canvas.screenOf(anchor) : null;
    const hadGraph = this.canvas.current() !== null;
    this.root.dataset.busy = "true";
    const [svg, where] = await renderSvg(viz, dot, visible.length);
    if (ticket !== this.drawing) return; // a newer draw superseded this one
    delete this.root.dataset.busy;
    this.visible = visible;
    this.decorate(svg);
    this.canvas.show(svg, at ? { node: anchor, at } : null);
    if (!at && hadGraph && this.focused >= 0) this.canvas.reveal(this.focused);
    this.lastLayoutMs = performance.now() - t0;
    this.root.dataset.visible = String(this.visible.length);
    this.root.dataset.layoutMs = this.lastLayoutMs.toFixed(1);
    this.root.dataset.layoutIn = where;
    this.renderLegend();
    this.paint();
    this.updateRestore();
  }

  /** Node ids, full-path tooltips, expand/collapse controls and heat colours on the SVG. */
  private decorate(svg: SVGSVGElement): void {
    const all = paths(this.graph);
    for (const g of svg.querySelectorAll("g.node")) {
      const id = Number((g.getAttribute("id") ?? "").slice(1));
      g.setAttribute("data-node", String(id));
      const title = g.querySelector("title");
      const reason = this.graph.reason(id);
      if (title) title.textContent = `${all[id] || "(root)"}${reason ? `\n${reason}` : ""}`;
      const shape = g.querySelector<SVGGraphicsElement>("path, polygon");
      const rel = this.graph.relChange(id);
      if (shape && rel !== null) {
        shape.style.fill = heatColour(rel);
        shape.style.fillOpacity = "0.9";
        g.classList.add("ck-heated");
      }
      if (shape && this.graph.isGroup(id) && id !== 0) this.addToggle(g, shape, id);
    }
  }

  private addToggle(g: Element, shape: SVGGraphicsElement, id: number): void {
    // The shape's own points (no getBBox: the SVG is not in the page yet).
    const points = (shape.getAttribute("d") ?? shape.getAttribute("points") ?? "")
      .match(/-?\d+(\.\d+)?/g)
      ?.map(Number);
    if (!points || points.length < 4) return;
    const xs = points.filter((_, i) => i % 2 === 0);
    const ys = points.filter((_, i) => i % 2 === 1);
    const open = this.expanded.has(id);
    const control = svgElement("g");
    control.setAttribute("class", `ck-toggle${open ? " ck-toggle-open" : ""}`);
    const cx = Math.max(...xs);
    const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const circle = svgElement("circle");
    circle.setAttribute("cx", String(cx));
    circle.setAttribute("cy", String(cy));
    circle.setAttribute("r", "6");
    const sign = svgElement("text");
    sign.setAttribute("x", String(cx));
    sign.setAttribute("y", String(cy + 3.5));
    sign.setAttribute("text-anchor", "middle");
    sign.textContent = open ? "−" : "+";
    const tip = svgElement("title");
    tip.textContent = open ? "Collapse (Enter)" : "Expand (Enter)";
    control.append(circle, sign, tip);
    g.append(control);
  }

  private paint(): void {
    const selected = new Set(this.host.selected());
    for (const g of this.canvas.root.querySelectorAll("g.node")) {
      const id = Number(g.getAttribute("data-node"));
      g.classList.toggle("ck-selected", selected.has(id));
      g.classList.toggle("ck-focused", id === this.focused);
      g.classList.toggle("ck-match", this.matches.has(id));
    }
    for (const li of this.problems.querySelectorAll("li[data-node]")) {
      li.classList.toggle("ck-focused", Number(li.getAttribute("data-node")) === this.focused);
    }
  }

  private renderLegend(): void {
    this.legend.replaceChildren();
    const order = this.graph.data.states;
    const counts = [...this.graph.counts()].sort(
      (a, b) => order.indexOf(a[0]) - order.indexOf(b[0]),
    );
    for (const [state, count] of counts) {
      const info = EXPLAIN.get(state);
      const chip = element("span", `ck-chip st-${state}`);
      chip.title = info?.explain ?? state;
      chip.append(
        element("span", "ck-swatch"),
        document.createTextNode(` ${info?.one ?? state} ${count}`),
      );
      this.legend.append(chip);
    }
    if (this.graph.hasChange) {
      const scale = element("span", "ck-chip ck-heat-scale");
      scale.title = "Relative L2 change ||b − a|| / ||a|| per value, and per module (log scale)";
      scale.append(
        document.createTextNode("change: "),
        element("span", "ck-heat-bar"),
        document.createTextNode(" 1e-6 … ≥1"),
      );
      this.legend.append(scale);
    }
  }

  private renderProblemList(): void {
    renderProblems(this.problems, this.graph, this.groups, (node) => {
      this.jump(node);
    });
    // Comparisons list their changes in the most-changed table instead.
    this.problems.hidden = this.graph.data.kind !== "match" || !this.groups.length;
  }

  private showProgress(): void {
    const text = this.host.progress();
    this.progressBar.hidden = !text;
    if (!text) return;
    const [fraction = "0", ...rest] = text.split(" ");
    const fill = this.progressBar.querySelector<HTMLElement>(".ck-progress-fill");
    if (fill) fill.style.width = `${(Number(fraction) * 100).toFixed(1)}%`;
    const label = this.progressBar.querySelector(".ck-progress-text");
    if (label) label.textContent = rest.join(" ");
  }

  private updateRestore(): void {
    this.restoreButton.disabled = this.host.selected().length === 0;
  }

  private focus(node: number): void {
    const linked = (i: number): boolean =>
      this.graph.data.edges.some(([a, b, kind]) => kind === "slot" && (a === i || b === i));
    const relayout = linked(node) || linked(this.focused);
    this.focused = node;
    this.host.update({ focused: node });
    if (relayout) void this.draw(node);
    this.paint();
    this.showDetails();
    if (!this.canvas.visible(node)) this.canvas.reveal(node);
  }

  /** Open the node's groups, select and focus it (the problem list, links, tables). */
  private jump(node: number): void {
    const opened = reveal(this.graph, [node]);
    this.host.update({ selected: [node] });
    if ([...opened].some((i) => !this.expanded.has(i))) {
      this.focused = node;
      this.expanded = new Set([...this.expanded, ...opened]);
      this.host.update({ expanded: [...this.expanded], focused: node });
      void this.draw().then(() => {
        this.focus(node);
      });
      return;
    }
    this.focus(node);
  }

  /** Click selects and shows details; Ctrl/Cmd toggles, Shift adds the subtree. */
  private click(node: number, event: MouseEvent): void {
    const selected = new Set(this.host.selected());
    if (event.shiftKey) {
      for (const i of this.graph.subtree(node)) selected.add(i);
    } else if (event.ctrlKey || event.metaKey) {
      if (selected.has(node)) selected.delete(node);
      else selected.add(node);
    } else {
      selected.clear();
      selected.add(node);
    }
    this.host.update({ selected: [...selected] });
    this.focus(node);
    this.root.focus({ preventScroll: true });
  }

  private key(event: KeyboardEvent): void {
    event.stopPropagation(); // keep JupyterLab's command-mode shortcuts out of the widget
    if (event.target === this.searchBox) {
      if (event.key === "Enter") this.nextMatch();
      if (event.key === "Escape") this.root.focus();
      return;
    }
    if (event.key === "/") {
      event.preventDefault();
      this.searchBox.focus();
      return;
    }
    const move = navigate(this.graph, this.visible, this.expanded, this.focused, event.key);
    if (!move) return;
    event.preventDefault();
    if (move.select !== undefined) {
      const selected = new Set(this.host.selected());
      if (selected.has(move.select)) selected.delete(move.select);
      else selected.add(move.select);
      this.host.update({ selected: [...selected] });
    }
    if (move.toggle !== undefined) this.toggle(move.toggle);
    this.focus(move.focus);
  }

  private nextMatch(): void {
    const ordered = this.visible.filter((i) => this.matches.has(i));
    if (!ordered.length) return;
    const at = ordered.indexOf(this.focused);
    this.focus(ordered[(at + 1) % ordered.length] as number);
  }

  private runSearch(query: string, sync: boolean): void {
    if (sync) this.host.update({ search: query });
    const result = search(this.graph, query);
    this.matches = new Set(result.matches);
    this.searchCount.textContent = result.error
      ? "invalid pattern"
      : query.trim()
        ? `${result.total} match${result.total === 1 ? "" : "es"}`
        : "";
    const opened = reveal(this.graph, result.matches.slice(0, REVEAL_LIMIT));
    if ([...opened].some((i) => !this.expanded.has(i))) {
      this.setExpanded(new Set([...this.expanded, ...opened]));
    } else {
      this.paint();
    }
    if (result.matches[0] !== undefined && sync) this.focus(result.matches[0]);
  }

  private showDetails(): void {
    renderDetails(this.pane, this.graph, this.focused, this.host.details(), this.host.live, (n) => {
      this.jump(n);
    });
    if (this.focused >= 0 && this.graph.isGroup(this.focused) && this.focused !== 0) {
      const open = this.expanded.has(this.focused);
      const button = element("button", "ck-toggle-button", open ? "Collapse" : "Expand");
      button.addEventListener("click", () => {
        this.toggle(this.focused);
        this.showDetails();
      });
      this.pane.prepend(button);
    }
  }

  /** The whole graph as a standalone SVG (computed colours inlined), downloaded and sent. */
  exportSvg(): string {
    const svg = this.canvas.current();
    if (!svg) return "";
    const copy = svg.cloneNode(true) as SVGSVGElement;
    const extent = this.canvas.extent();
    copy.setAttribute("viewBox", `${extent.x} ${extent.y} ${extent.w} ${extent.h}`);
    copy.setAttribute("width", String(extent.w));
    copy.setAttribute("height", String(extent.h));
    const originals = svg.querySelectorAll("*");
    const copies = copy.querySelectorAll("*");
    originals.forEach((el, i) => {
      const style = getComputedStyle(el);
      const target = copies[i];
      if (!target) return;
      for (const prop of [
        "fill",
        "stroke",
        "stroke-width",
        "fill-opacity",
        "font-family",
        "font-size",
      ]) {
        target.setAttribute(prop, style.getPropertyValue(prop));
      }
    });
    for (const control of copy.querySelectorAll("g.ck-toggle")) control.remove();
    copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
    const text = new XMLSerializer().serializeToString(copy);
    this.host.exportedSvg(text);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    link.download = "ckptlab-graph.svg";
    link.click();
    setTimeout(() => {
      URL.revokeObjectURL(link.href);
    }, 1000);
    return text;
  }
}
