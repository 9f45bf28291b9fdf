// The Graphviz WebAssembly engine, loaded once per page and shared by every view.
// Sources, in order: a URL set by the JupyterLab extension (globalThis.__ckptlabEngineUrl,
// issue 7: served from the extension's static files), then the host (the kernel sends the
// bundled module once).

export interface IViz {
  renderSVGElement(dot: string): SVGSVGElement;
  graphvizVersion: string;
}

interface IEngineModule {
  instance(): Promise<IViz>;
}

interface IEngineGlobal {
  __ckptlabEngine?: Promise<IViz>;
  __ckptlabEngineUrl?: string;
  /** Absolute URL the engine module was imported from (for the layout worker). */
  __ckptlabEngineModule?: string;
  __ckptlabLayoutWorker?: LayoutWorker | null;
}

async function importEngine(url: string): Promise<IViz> {
  const module = (await import(/* @vite-ignore */ /* webpackIgnore: true */ url)) as IEngineModule;
  return module.instance();
}

async function fromHost(source: () => Promise<ArrayBuffer | null>): Promise<IViz> {
  const bytes = await source();
  if (!bytes || bytes.byteLength === 0) throw new Error("ckptlab: no Graphviz engine available");
  // Kept (not revoked): the layout worker imports the same module.
  const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
  const viz = await importEngine(url);
  (globalThis as IEngineGlobal).__ckptlabEngineModule = url;
  return viz;
}

export function loadEngine(source: () => Promise<ArrayBuffer | null>): Promise<IViz> {
  const g = globalThis as IEngineGlobal;
  g.__ckptlabEngine ??= (async () => {
    const served = g.__ckptlabEngineUrl;
    if (served) {
      // Absolute, because this module itself may have been loaded from a blob: URL (anywidget),
      // against which a path such as "/lab/extensions/..." does not resolve.
      const base = typeof document === "undefined" ? undefined : document.baseURI;
      try {
        const absolute = new URL(served, base).href;
        const viz = await importEngine(absolute);
        g.__ckptlabEngineModule = absolute;
        return viz;
      } catch {
        // fall back to the copy the host (the kernel) can send
      }
    }
    return fromHost(source);
  })();
  const pending = g.__ckptlabEngine;
  pending.catch(() => {
    if (g.__ckptlabEngine === pending) delete g.__ckptlabEngine; // let a later view retry
  });
  return pending;
}

// Big layouts run in a Web Worker so the page stays responsive; the worker imports the same
// engine module. Without Worker support (or if it fails) layouts run on the main thread.
const WORKER_SOURCE = `
let viz = null;
onmessage = async (event) => {
  const { id, dot, engine } = event.data;
  try {
    viz ??= (await import(engine)).instance();
    const svg = (await viz).renderString(dot, { format: "svg" });
    postMessage({ id, svg });
  } catch (error) {
    postMessage({ id, error: String(error) });
  }
};
`;

interface IReply {
  id: number;
  svg?: string;
  error?: string;
}

class LayoutWorker {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, [(svg: string) => void, (e: Error) => void]>();

  constructor(private readonly engine: string) {
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    this.worker = new Worker(url, { type: "module" });
    this.worker.onmessage = (event: MessageEvent<IReply>) => {
      const waiting = this.pending.get(event.data.id);
      this.pending.delete(event.data.id);
      if (event.data.svg !== undefined) waiting?.[0](event.data.svg);
      else waiting?.[1](new Error(event.data.error ?? "layout failed"));
    };
    this.worker.onerror = () => {
      for (const [, reject] of this.pending.values()) reject(new Error("layout worker failed"));
      this.pending.clear();
    };
  }

  render(dot: string): Promise<string> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, [resolve, reject]);
      this.worker.postMessage({ id, dot, engine: this.engine });
    });
  }
}

function layoutWorker(): LayoutWorker | null {
  const g = globalThis as IEngineGlobal;
  if (g.__ckptlabLayoutWorker !== undefined) return g.__ckptlabLayoutWorker;
  const engine =
    g.__ckptlabEngineModule ??
    (g.__ckptlabEngineUrl && typeof document !== "undefined"
      ? new URL(g.__ckptlabEngineUrl, document.baseURI).href
      : undefined);
  try {
    g.__ckptlabLayoutWorker =
      engine && typeof Worker !== "undefined" ? new LayoutWorker(engine) : null;
  } catch {
    g.__ckptlabLayoutWorker = null;
  }
  return g.__ckptlabLayoutWorker;
}

/** Nodes above which layouts go to the worker. */
export const WORKER_THRESHOLD = 200;

/** Lay out `dot` as an SVG element: in the worker for big graphs, else (or on failure) here. */
export async function renderSvg(
  viz: IViz,
  dot: string,
  nodes: number,
): Promise<[SVGSVGElement, "worker" | "main"]> {
  const worker = nodes > WORKER_THRESHOLD ? layoutWorker() : null;
  if (worker) {
    try {
      const text = await worker.render(dot);
      const parsed = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
      if (parsed instanceof SVGSVGElement) return [parsed, "worker"];
    } catch {
      (globalThis as IEngineGlobal).__ckptlabLayoutWorker = null; // main thread from now on
    }
  }
  return [viz.renderSVGElement(dot), "main"];
}
