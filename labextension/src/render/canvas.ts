// The graph canvas: the laid-out SVG fitted to the widget, with pan (drag), zoom (buttons,
// Ctrl/Cmd + wheel) and a minimap. Zooming and panning change only the viewBox: selection,
// focus and classes on the nodes are untouched.

const SVG_NS = "http://www.w3.org/2000/svg";
/** Below this scale labels are unreadable: the first view centres on the problem instead. */
export const MIN_READABLE = 0.6;

interface IBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

export class GraphCanvas {
  readonly root: HTMLDivElement;
  private readonly stage: HTMLDivElement;
  private readonly minimap: HTMLDivElement;
  private readonly lens: HTMLDivElement;
  private svg: SVGSVGElement | null = null;
  private full: IBox = { x: 0, y: 0, w: 1, h: 1 };
  private view: IBox = { x: 0, y: 0, w: 1, h: 1 };
  private drag: { x: number; y: number; view: IBox } | null = null;

  constructor() {
    this.root = document.createElement("div");
    this.root.className = "ck-canvas";
    this.stage = document.createElement("div");
    this.stage.className = "ck-stage";
    this.minimap = document.createElement("div");
    this.minimap.className = "ck-minimap";
    this.minimap.title = "Overview: click to move there";
    this.lens = document.createElement("div");
    this.lens.className = "ck-lens";
    const zoom = document.createElement("div");
    zoom.className = "ck-zoom";
    for (const [text, title, action] of [
      [
        "+",
        "Zoom in",
        () => {
          this.zoom(1.25);
        },
      ],
      [
        "−",
        "Zoom out",
        () => {
          this.zoom(0.8);
        },
      ],
      [
        "⤢",
        "Fit the graph",
        () => {
          this.fit();
        },
      ],
    ] as const) {
      const button = document.createElement("button");
      button.textContent = text;
      button.title = title;
      button.className = "ck-zoom-button";
      button.addEventListener("click", action);
      zoom.append(button);
    }
    this.root.append(this.stage, this.minimap, zoom);
    this.listen();
  }

  /** Width and height (pixels) the graph has on screen. */
  private size(): { w: number; h: number } {
    return { w: this.stage.clientWidth || 600, h: this.stage.clientHeight || 400 };
  }

  /** Show a newly laid-out SVG; keeps the view where `keep` was (node id), else fits. */
  show(svg: SVGSVGElement, keep: { node: number; at: [number, number] } | null): void {
    const box = svg.viewBox.baseVal;
    this.full = { x: box.x, y: box.y, w: box.width || 1, h: box.height || 1 };
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
    this.svg = svg;
    this.stage.replaceChildren(svg);
    const copy = svg.cloneNode(true) as SVGSVGElement;
    copy.removeAttribute("id");
    copy.setAttribute("preserveAspectRatio", "xMidYMid meet");
    this.minimap.replaceChildren(copy, this.lens);
    const centre = keep ? this.centreOf(keep.node) : null;
    if (keep && centre) {
      const { w, h } = this.size();
      const scale = this.scale();
      this.setView({
        x: centre[0] - keep.at[0] / scale,
        y: centre[1] - keep.at[1] / scale,
        w: w / scale,
        h: h / scale,
      });
    } else {
      this.fit();
    }
  }

  /** Fit the whole graph, or, where that would make labels unreadable, a readable part. */
  fit(focus = -1): void {
    const { w, h } = this.size();
    const scale = Math.min(w / this.full.w, h / this.full.h, 1.2);
    if (scale >= MIN_READABLE || focus < 0) {
      const s = Math.max(scale, Math.min(MIN_READABLE, 1));
      const vw = w / s;
      const vh = h / s;
      this.setView({ x: this.full.x, y: this.full.y, w: vw, h: vh });
      if (scale >= MIN_READABLE) {
        // centre the picture in the spare room
        this.setView({
          x: this.full.x - (vw - this.full.w) / 2,
          y: this.full.y - (vh - this.full.h) / 2,
          w: vw,
          h: vh,
        });
      }
      return;
    }
    this.setView({ x: this.full.x, y: this.full.y, w: w / MIN_READABLE, h: h / MIN_READABLE });
    this.reveal(focus);
  }

  /** Scale of graph units to pixels. */
  scale(): number {
    return this.size().w / this.view.w;
  }

  /** Where node `i` is on screen (pixels from the stage's top left), or null. */
  screenOf(node: number): [number, number] | null {
    const c = this.centreOf(node);
    if (!c) return null;
    const s = this.scale();
    return [(c[0] - this.view.x) * s, (c[1] - this.view.y) * s];
  }

  /** Move (not zoom) so that node `i` is inside the view, with a margin. */
  reveal(node: number): void {
    const box = this.boxOf(node);
    if (!box) return;
    const margin = 24 / this.scale();
    const v = { ...this.view };
    if (box.x < v.x + margin || box.x + box.w > v.x + v.w - margin) {
      v.x = Math.min(Math.max(box.x + box.w / 2 - v.w / 2, this.full.x - margin), box.x - margin);
    }
    if (box.y < v.y + margin || box.y + box.h > v.y + v.h - margin) {
      v.y = box.y + box.h / 2 - v.h / 2;
    }
    this.setView(v);
  }

  /** Whether node `i` lies wholly inside the view. */
  visible(node: number): boolean {
    const box = this.boxOf(node);
    const v = this.view;
    return (
      !!box &&
      box.x >= v.x &&
      box.y >= v.y &&
      box.x + box.w <= v.x + v.w &&
      box.y + box.h <= v.y + v.h
    );
  }

  zoom(factor: number, at?: [number, number]): void {
    const { w, h } = this.size();
    const [px, py] = at ?? [w / 2, h / 2];
    const s = this.scale();
    const gx = this.view.x + px / s;
    const gy = this.view.y + py / s;
    const next = Math.min(Math.max(s * factor, 0.05), 4);
    this.setView({ x: gx - px / next, y: gy - py / next, w: w / next, h: h / next });
  }

  private nodeShape(node: number): SVGGraphicsElement | null {
    return this.svg?.querySelector<SVGGraphicsElement>(`g.node[data-node="${node}"]`) ?? null;
  }

  private boxOf(node: number): IBox | null {
    const g = this.nodeShape(node);
    if (!g || !this.svg) return null;
    const b = g.getBBox();
    // Graphviz puts everything in a translated group: map to viewBox units.
    const graph = this.svg.querySelector<SVGGraphicsElement>("g.graph");
    const m = graph?.transform.baseVal.consolidate()?.matrix;
    return { x: b.x + (m?.e ?? 0), y: b.y + (m?.f ?? 0), w: b.width, h: b.height };
  }

  private centreOf(node: number): [number, number] | null {
    const b = this.boxOf(node);
    return b ? [b.x + b.w / 2, b.y + b.h / 2] : null;
  }

  private setView(v: IBox): void {
    this.view = v;
    this.svg?.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    const mw = this.minimap.clientWidth || 160;
    const mh = this.minimap.clientHeight || 100;
    const k = Math.min(mw / this.full.w, mh / this.full.h);
    const ox = (mw - this.full.w * k) / 2;
    const oy = (mh - this.full.h * k) / 2;
    Object.assign(this.lens.style, {
      left: `${ox + (v.x - this.full.x) * k}px`,
      top: `${oy + (v.y - this.full.y) * k}px`,
      width: `${v.w * k}px`,
      height: `${v.h * k}px`,
    });
    const whole = v.w >= this.full.w && v.h >= this.full.h;
    this.minimap.hidden = whole;
  }

  private listen(): void {
    this.stage.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || (event.target as Element).closest("g.node")) return;
      this.drag = { x: event.clientX, y: event.clientY, view: { ...this.view } };
      this.stage.setPointerCapture(event.pointerId);
      this.stage.classList.add("ck-dragging");
    });
    this.stage.addEventListener("pointermove", (event) => {
      if (!this.drag) return;
      const s = this.scale();
      this.setView({
        ...this.drag.view,
        x: this.drag.view.x - (event.clientX - this.drag.x) / s,
        y: this.drag.view.y - (event.clientY - this.drag.y) / s,
      });
    });
    const stop = (): void => {
      this.drag = null;
      this.stage.classList.remove("ck-dragging");
    };
    this.stage.addEventListener("pointerup", stop);
    this.stage.addEventListener("pointercancel", stop);
    this.stage.addEventListener(
      "wheel",
      (event) => {
        if (!(event.ctrlKey || event.metaKey)) return; // plain wheel scrolls the notebook
        event.preventDefault();
        const rect = this.stage.getBoundingClientRect();
        this.zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, [
          event.clientX - rect.left,
          event.clientY - rect.top,
        ]);
      },
      { passive: false },
    );
    this.minimap.addEventListener("click", (event) => {
      const rect = this.minimap.getBoundingClientRect();
      const k = Math.min(rect.width / this.full.w, rect.height / this.full.h);
      const ox = (rect.width - this.full.w * k) / 2;
      const oy = (rect.height - this.full.h * k) / 2;
      const gx = this.full.x + (event.clientX - rect.left - ox) / k;
      const gy = this.full.y + (event.clientY - rect.top - oy) / k;
      this.setView({ ...this.view, x: gx - this.view.w / 2, y: gy - this.view.h / 2 });
    });
  }

  /** The SVG element on screen (for export). */
  current(): SVGSVGElement | null {
    return this.svg;
  }

  /** The graph's own size in graph units (for export). */
  extent(): IBox {
    return { ...this.full };
  }
}

export function svgElement<K extends keyof SVGElementTagNameMap>(tag: K): SVGElementTagNameMap[K] {
  return document.createElementNS(SVG_NS, tag);
}
