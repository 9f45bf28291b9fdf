// The Graphviz WebAssembly engine in JupyterLab: one ES module in the extension's static files
// ({labextensions}/ckptlab/static/graphviz.js), fetched at most once per page. Setting
// globalThis.__ckptlabEngineUrl makes every explorer *widget* on the page load it from there
// too (src/render/engine.ts reads it) instead of asking its kernel for the bundled copy.
import type { IViz } from "../render/engine.js";

interface IEngineGlobal {
  __ckptlabEngine?: Promise<IViz>;
  __ckptlabEngineUrl?: string;
}

interface IEngineModule {
  instance(): Promise<IViz>;
}

/** URL of the engine module under the page's labextensions URL. */
export function engineUrl(labextensionsUrl: string): string {
  return `${labextensionsUrl.replace(/\/+$/, "")}/ckptlab/static/graphviz.js`;
}

/** Point every view on the page (widgets included) at the served engine. */
export function installEngine(url: string): void {
  (globalThis as IEngineGlobal).__ckptlabEngineUrl = url;
}

/**
 * Start loading the engine with the browser's own import() (not the bundler's), shared through
 * the same global promise the widget ESM uses, so the module is fetched once.
 */
export function preloadEngine(): Promise<IViz> {
  const g = globalThis as IEngineGlobal;
  const url = g.__ckptlabEngineUrl;
  if (!url) return Promise.reject(new Error("ckptlab: the engine URL is not set"));
  g.__ckptlabEngine ??= (import(/* webpackIgnore: true */ url) as Promise<IEngineModule>).then(
    (module) => module.instance(),
  );
  const pending = g.__ckptlabEngine;
  pending.catch(() => {
    if (g.__ckptlabEngine === pending) delete g.__ckptlabEngine; // a later view retries
  });
  return pending;
}
