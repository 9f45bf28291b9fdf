// The explorer view: toolbar, legend, the Graphviz-drawn graph and the details pane.
// Drawing only; what is visible, searched and laid out comes from the DOM-free core.
import { DEFAULT_BUDGET, initialExpansion, visibleNodes } from "../core/grouping.js";
import { navigate } from "../core/keyboard.js";
import { toDot } from "../core/layout.js";
import type { Graph } from "../core/model.js";
import { reveal, search } from "../core/search.js";
import { renderDetails } from "./details.js";
import { loadEngine, renderSvg, type IViz } from "./engine.js";
import type { IHost } from "./host.js";

const REVEAL_LIMIT = 20;

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = "",
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  if (text) el.textContent = text;
  return el;
}

export class ExplorerView {
  readonly root: HTMLDivElement;
  private readonly graph: Graph;
  private readonly host: IHost;
  private readonly canvas = element("div", "ck-graph");
  private readonly pane = element("div", "ck-details");
  private readonly legend = element("div", "ck-legend");
  private readonly summary = element("span", "ck-summary");
  private readonly status = element("div", "ck-message");
  private readonly searchBox = element("input", "ck-search");
  private readonly searchCount = element("span", "ck-search-count");
  private readonly restoreButton = element("button", "ck-restore", "Restore selected");
  private readonly hideBox = element("input", "ck-hide-optimizer");
  private expanded = new Set<number>();
  private matches = new Set<number>();
  private focused = -1;
  private viz: IViz | null = null;
  private visible: number[] = [];
  private searchTimer: ReturnType<typeof setTimeout> | undefined;
  /** Milliseconds of the last layout (read by the benchmark). */
  lastLayoutMs = 0;

  constructor(graph: Graph, host: IHost) {
    this.graph = graph;
    this.host = host;
    this.root = element("div", "ckptlab-explorer");
    this.root.tabIndex = 0;
    this.build();
    const saved = host.expanded();
    this.expanded = saved.length
      ? new Set(saved)
      : initialExpansion(graph, graph.data.options.budget ?? DEFAULT_BUDGET, host.hideOptimizer());
    if (!saved.length) host.update({ expanded: [...this.expanded] });
    this.listen();
  }

  private build(): void {
    const header = element("div", "ck-header");
    header.append(
      element("b", "ck-title", this.graph.data.title),
      element("code", "ck-source", this.graph.data.source),
      this.summary,
    );
    this.searchBox.type = "search";
    this.searchBox.placeholder = "Search names (/) — text or /regex/";
    this.searchBox.value = this.host.search();
    this.hideBox.type = "checkbox";
    this.hideBox.checked = this.host.hideOptimizer();
    const hide = element("label", "ck-hide");
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
    this.restoreButton.addEventListener("click", () => {
      this.status.textContent = "Restoring…";
      this.host.restore(this.host.selected());
    });
    this.restoreButton.hidden = !(this.host.live && this.graph.data.can_restore);
    const toolbar = element("div", "ck-toolbar");
    toolbar.append(
      this.searchBox,
      this.searchCount,
      hide,
      expandProblems,
      collapse,
      this.restoreButton,
      exportButton,
    );
    const body = element("div", "ck-body");
    body.append(this.canvas, this.pane);
    this.root.append(header, toolbar, this.legend, body, this.status);
  }

  private problemExpansion(): Set<number> {
    const out = new Set<number>([0]);
    for (let i = 0; i < this.graph.size; i++) {
      if (this.graph.isGroup(i) && this.graph.problems(i) > 0) out.add(i);
    }
    return out;
  }

  private listen(): void {
    this.canvas.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target.closest("g.node") : null;
      const id = target?.getAttribute("data-node");
      if (id) this.click(Number(id), event);
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
      void this.draw();
    });
    this.host.on("states", () => {
      const states = this.host.states();
      if (states) this.graph.setStates(states);
      void this.draw();
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
  }

  /** Lay out and draw; resolves when the SVG is in the page. */
  async start(): Promise<void> {
    this.summary.textContent = this.host.summary() ?? this.graph.data.summary;
    this.status.textContent = this.host.message();
    if (this.host.search()) this.runSearch(this.host.search(), false);
    this.canvas.textContent = "Loading the layout engine…";
    try {
      this.viz = await loadEngine(() => this.host.engineSource());
    } catch (error) {
      this.canvas.textContent = `ckptlab: ${error instanceof Error ? error.message : String(error)}`;
      return;
    }
    await this.draw();
    this.showDetails();
  }

  private setExpanded(next: Set<number>): void {
    this.expanded = next;
    this.host.update({ expanded: [...next] });
    void this.draw();
  }

  private toggle(node: number): void {
    const next = new Set(this.expanded);
    if (next.has(node)) next.delete(node);
    else next.add(node);
    this.setExpanded(next);
  }

  private drawing = 0;

  async draw(): Promise<void> {
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
    });
    this.root.dataset.busy = "true";
    const [svg, where] = await renderSvg(viz, dot, visible.length);
    if (ticket !== this.drawing) return; // a newer draw superseded this one
    delete this.root.dataset.busy;
    this.visible = visible;
    for (const g of svg.querySelectorAll("g.node")) {
      g.setAttribute("data-node", (g.getAttribute("id") ?? "").slice(1));
    }
    this.canvas.replaceChildren(svg);
    this.lastLayoutMs = performance.now() - t0;
    this.root.dataset.visible = String(this.visible.length);
    this.root.dataset.layoutMs = this.lastLayoutMs.toFixed(1);
    this.root.dataset.layoutIn = where;
    this.renderLegend();
    this.paint();
    this.updateRestore();
  }

  private paint(): void {
    const selected = new Set(this.host.selected());
    for (const g of this.canvas.querySelectorAll("g.node")) {
      const id = Number(g.getAttribute("data-node"));
      g.classList.toggle("ck-selected", selected.has(id));
      g.classList.toggle("ck-focused", id === this.focused);
      g.classList.toggle("ck-match", this.matches.has(id));
    }
  }

  private renderLegend(): void {
    this.legend.replaceChildren();
    const order = this.graph.data.states;
    const counts = [...this.graph.counts()].sort(
      (a, b) => order.indexOf(a[0]) - order.indexOf(b[0]),
    );
    for (const [state, count] of counts) {
      const chip = element("span", `ck-chip st-${state}`);
      chip.append(
        element("span", "ck-swatch"),
        document.createTextNode(` ${state.replace(/_/g, " ")} ${count}`),
      );
      this.legend.append(chip);
    }
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
    if (relayout) void this.draw();
    this.paint();
    this.showDetails();
    const g = this.canvas.querySelector(`g.node[data-node="${node}"]`);
    if (g && "scrollIntoView" in g) g.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  private jump(node: number): void {
    const opened = reveal(this.graph, [node]);
    if ([...opened].some((i) => !this.expanded.has(i))) {
      this.setExpanded(new Set([...this.expanded, ...opened]));
    }
    this.focus(node);
  }

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
    if (!event.shiftKey && !event.ctrlKey && !event.metaKey && this.graph.isGroup(node)) {
      this.toggle(node);
    }
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
  }

  /** The current view as a standalone SVG (computed colours inlined), downloaded and sent. */
  exportSvg(): string {
    const svg = this.canvas.querySelector("svg");
    if (!svg) return "";
    const copy = svg.cloneNode(true) as SVGSVGElement;
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
