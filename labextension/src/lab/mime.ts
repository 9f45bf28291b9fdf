// The MIME renderer for application/vnd.ckptlab.graph+json: every explorer display carries this
// static bundle, so a saved notebook reopened without a kernel still shows the graph (states,
// legend, search, details), read-only. It ranks before the ipywidgets renderer: when the same
// output also holds a live widget view whose model exists, the live widget is shown instead
// (rendered through the notebook's own widget renderer); otherwise the static graph.
import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { Panel, Widget } from "@lumino/widgets";
import { Graph, MIME_TYPE, type IEnvelope, type IGraphJSON } from "../core/model.js";
import { decodeGraphBundle } from "../render/codec.js";
import { LocalHost } from "../render/host.js";
import { ExplorerView } from "../render/view.js";
import { depthExpansion, type ISettings } from "./settings.js";

export const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";
/** Sent by the live widget (src/widget.ts) with its current static bundle. */
export const SNAPSHOT_EVENT = "ckptlab-snapshot";

interface ISnapshot {
  bundle: IGraphJSON | IEnvelope;
  fallback: Record<string, string>;
}
/** Before ipywidgets' renderer (-10), after nothing that matters: only our MIME type. */
export const RANK = -20;
/**
 * How long a live widget may take before the static graph is shown meanwhile: short without a
 * kernel; long with one, so a live widget is not preceded by a static copy (a missing model is
 * reported by the widget renderer as soon as its manager has restored, and handled at once).
 */
const GRACE_MS = 600;
const GRACE_KERNEL_MS = 10_000;

/** The notebook an output lives in, as the renderer needs it. */
export interface INotebookContext {
  /** Its rendermime registry (with the widget renderer). */
  registry: IRenderMimeRegistry;
  /** Whether a kernel is connected (or connecting) now. */
  kernel(): boolean;
  /** Call `callback` whenever the kernel starts, stops or dies; returns the disconnector. */
  watchKernel(callback: () => void): () => void;
}

export interface IRendererContext {
  /** The notebook holding `node`, or null (an output outside a notebook). */
  findNotebook(node: HTMLElement): INotebookContext | null;
  settings(): ISettings;
}

/** Apply the settings to a graph before it is drawn: node limit and default expansion. */
export function prepareView(
  data: IGraphJSON,
  settings: ISettings,
  kernel: () => boolean = () => false,
): { graph: Graph; host: LocalHost } {
  // A copy: `data` may be the output's own JSON, which is saved with the notebook.
  const options = { ...data.options, budget: data.options.budget ?? settings.nodeLimit };
  const graph = new Graph({ ...data, options });
  const host = new LocalHost(kernel);
  const expanded = depthExpansion(graph, settings.expandDepth, settings.nodeLimit);
  if (expanded) host.update({ expanded: [...expanded] });
  return { graph, host };
}

/** Draw a view into a fresh Lumino widget; errors are shown as text. */
export function explorerWidget(
  build: () => Promise<{ graph: Graph; host: LocalHost }>,
  className: string,
): { widget: Widget; ready: Promise<void> } {
  const widget = new Widget();
  widget.addClass(className);
  widget.node.textContent = "Loading the checkpoint graph…";
  const ready = (async () => {
    try {
      const { graph, host } = await build();
      const view = new ExplorerView(graph, host);
      widget.node.replaceChildren(view.root);
      widget.node.dataset.nodes = String(graph.size);
      widget.node.dataset.values = String(graph.values[0] ?? 0);
      await view.start();
      widget.node.dataset.ready = "true";
    } catch (error) {
      widget.node.dataset.ready = "error";
      const message = document.createElement("pre");
      message.className = "ckptlab-error";
      message.textContent = `ckptlab: ${error instanceof Error ? error.message : String(error)}`;
      widget.node.replaceChildren(message);
    }
  })();
  return { widget, ready };
}

export class GraphRenderer extends Panel implements IRenderMime.IRenderer {
  private model: IRenderMime.IMimeModel | null = null;
  private staticShown = false;
  private liveShown = false;
  private wantsLive = false;
  private liveTried = false;
  private staticWidget: Widget | null = null;
  private live: IRenderMime.IRenderer | null = null;
  private observer: MutationObserver | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The static view's host, whose message follows the notebook's kernel once attached. */
  private staticHost: LocalHost | null = null;
  private notebook: INotebookContext | null = null;
  private unwatch: (() => void) | null = null;

  constructor(
    private readonly options: IRenderMime.IRendererOptions,
    private readonly context: IRendererContext,
  ) {
    super();
    this.addClass("ckptlab-mime");
    this.node.addEventListener(SNAPSHOT_EVENT, (event) => {
      this.saveSnapshot(event as CustomEvent<ISnapshot>);
    });
  }

  /** The live widget repainted: keep its state as the output's static bundle (saved). */
  private saveSnapshot(event: CustomEvent<ISnapshot>): void {
    const model = this.model;
    if (!model || !this.liveShown) return;
    const { bundle, fallback } = event.detail;
    const data: Record<string, unknown> = { ...model.data, [MIME_TYPE]: bundle };
    for (const mime of ["text/html", "text/plain"]) {
      if (typeof fallback[mime] === "string") data[mime] = fallback[mime];
    }
    model.setData({ data: data as IRenderMime.IMimeModel["data"] });
    this.node.dataset.snapshots = String(Number(this.node.dataset.snapshots ?? 0) + 1);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    if (this.liveShown && model === this.model) return; // our own snapshot: the live view stays
    this.reset();
    this.model = model;
    this.wantsLive = WIDGET_MIME in model.data && model.trusted;
    if (!this.wantsLive) {
      await this.showStatic();
      return;
    }
    if (this.isAttached) this.tryLive();
  }

  protected override onAfterAttach(msg: Parameters<Panel["onAfterAttach"]>[0]): void {
    super.onAfterAttach(msg);
    if (this.wantsLive && !this.liveTried) this.tryLive();
    this.watchKernel();
  }

  /**
   * Let the static view's message follow the notebook's kernel. Only an attached output can
   * find its notebook, and an untrusted one is rendered (static at once) before it is attached,
   * so this runs both when the view is built and when the output is attached.
   */
  private watchKernel(): void {
    const host = this.staticHost;
    if (!host || this.unwatch || !this.isAttached) return;
    this.notebook = this.context.findNotebook(this.node);
    this.unwatch =
      this.notebook?.watchKernel(() => {
        host.kernelChanged();
      }) ?? null;
    host.kernelChanged();
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.reset();
    super.dispose();
  }

  private reset(): void {
    clearTimeout(this.timer);
    this.observer?.disconnect();
    this.observer = null;
    this.live?.dispose();
    this.live = null;
    this.staticWidget?.dispose();
    this.staticWidget = null;
    this.unwatch?.();
    this.unwatch = null;
    this.staticHost = null;
    this.notebook = null;
    this.staticShown = this.liveShown = this.liveTried = false;
    delete this.node.dataset.mode;
  }

  /** Render the output's widget view with the notebook's widget renderer, if it can. */
  private tryLive(): void {
    this.liveTried = true;
    const model = this.model;
    const notebook = this.context.findNotebook(this.node);
    const registry = notebook?.registry;
    if (!model || !registry?.getFactory(WIDGET_MIME)) {
      void this.showStatic();
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        if (!this.liveShown) void this.showStatic();
      },
      notebook?.kernel() ? GRACE_KERNEL_MS : GRACE_MS,
    );
    const live = registry.createRenderer(WIDGET_MIME);
    this.live = live;
    live.hide();
    this.addWidget(live);
    const check = (): void => {
      if (this.live !== live) return;
      const children = live instanceof Panel ? live.widgets.length : live.node.childElementCount;
      if (children > 0 && !this.liveShown) {
        this.liveShown = true;
        clearTimeout(this.timer);
        this.observer?.disconnect();
        this.staticWidget?.dispose();
        this.staticWidget = null;
        live.show();
        this.node.dataset.mode = "live";
      } else if ((live.node.textContent ?? "").startsWith("Error displaying widget")) {
        this.observer?.disconnect();
        live.dispose();
        this.live = null;
        void this.showStatic();
      }
    };
    this.observer = new MutationObserver(check);
    this.observer.observe(live.node, { childList: true, characterData: true, subtree: true });
    live.renderModel(model).then(check, () => {
      void this.showStatic();
    });
  }

  private async showStatic(): Promise<void> {
    const model = this.model;
    if (this.staticShown || this.liveShown || !model) return;
    this.staticShown = true;
    const data = model.data[this.options.mimeType] as unknown as IGraphJSON | IEnvelope;
    // The message says truthfully whether a kernel runs, also after it starts or stops.
    const kernel = (): boolean => this.notebook?.kernel() ?? false;
    const { widget, ready } = explorerWidget(async () => {
      const prepared = prepareView(await decodeGraphBundle(data), this.context.settings(), kernel);
      if (this.model !== model) return prepared; // re-rendered meanwhile: not the current view
      this.staticHost = prepared.host;
      this.watchKernel();
      return prepared;
    }, "ckptlab-static");
    this.staticWidget = widget;
    this.addWidget(widget);
    this.node.dataset.mode = "static";
    await ready;
  }
}

export function rendererFactory(context: IRendererContext): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [MIME_TYPE],
    defaultRank: RANK,
    createRenderer: (options) => new GraphRenderer(options, context),
  };
}
