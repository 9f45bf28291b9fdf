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
}

async function importEngine(url: string): Promise<IViz> {
  const module = (await import(/* @vite-ignore */ /* webpackIgnore: true */ url)) as IEngineModule;
  return module.instance();
}

async function fromHost(source: () => Promise<ArrayBuffer | null>): Promise<IViz> {
  const bytes = await source();
  if (!bytes || bytes.byteLength === 0) throw new Error("ckptlab: no Graphviz engine available");
  const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
  try {
    return await importEngine(url);
  } finally {
    URL.revokeObjectURL(url);
  }
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
        return await importEngine(new URL(served, base).href);
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
