// The Graphviz WebAssembly engine in JupyterLab: one ES module in the extension's static files
// ({labextensions}/ckptlab/static/graphviz.js), fetched at most once per page. Setting
// globalThis.__ckptlabEngineUrl makes every explorer *widget* on the page load it from there
// too: src/render/engine.ts (shared by every view) imports it from there, once per page, and
// falls back to asking its kernel for the bundled copy only if that fails.

interface IEngineGlobal {
  __ckptlabEngineUrl?: string;
}

/** URL of the engine module under the page's labextensions URL. */
export function engineUrl(labextensionsUrl: string): string {
  return `${labextensionsUrl.replace(/\/+$/, "")}/ckptlab/static/graphviz.js`;
}

/** Point every view on the page (widgets included) at the served engine. */
export function installEngine(url: string): void {
  (globalThis as IEngineGlobal).__ckptlabEngineUrl = url;
}
