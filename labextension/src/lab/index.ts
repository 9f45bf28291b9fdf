// The ckptlab JupyterLab extension: registration only. What activation sets up lives in
// setup.ts (settings, the served engine, the MIME renderer, the checkpoint viewer); the pieces
// themselves in mime.ts, viewer.ts, engine.ts and settings.ts.
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin,
} from "@jupyterlab/application";
import { IFileBrowserFactory } from "@jupyterlab/filebrowser";
import { INotebookTracker } from "@jupyterlab/notebook";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { ISettingRegistry } from "@jupyterlab/settingregistry";
import {
  PLUGIN_ID,
  registerRenderer,
  registerViewer,
  serveEngine,
  watchSettings,
} from "./setup.js";

export { CommandIDs } from "./setup.js";

function activate(
  app: JupyterFrontEnd,
  rendermime: IRenderMimeRegistry,
  settingRegistry: ISettingRegistry | null,
  browsers: IFileBrowserFactory | null,
  notebooks: INotebookTracker | null,
  restorer: ILayoutRestorer | null,
): void {
  const settings = watchSettings(settingRegistry);
  serveEngine();
  registerRenderer(rendermime, notebooks, settings);
  registerViewer(app, settings, browsers, restorer);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "ckptlab: checkpoint graphs in outputs without a kernel, and a checkpoint viewer",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ISettingRegistry, IFileBrowserFactory, INotebookTracker, ILayoutRestorer],
  activate,
};

export default plugin;
