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

export function loadEngine(source: () => Promise<ArrayBuffer | null>): Promise<IViz> {
  const g = globalThis as IEngineGlobal;
  g.__ckptlabEngine ??= (async () => {
    let url = g.__ckptlabEngineUrl;
    if (!url) {
      const bytes = await source();
      if (!bytes || bytes.byteLength === 0)
        throw new Error("ckptlab: no Graphviz engine available");
      url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
    }
    const module = (await import(/* @vite-ignore */ url)) as IEngineModule;
    return module.instance();
  })();
  g.__ckptlabEngine.catch(() => {
    delete g.__ckptlabEngine; // let a later view retry
  });
  return g.__ckptlabEngine;
}
