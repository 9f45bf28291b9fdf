// What the ckptlab JupyterLab extension sets up when activated, one function per piece:
// settings and colour scheme, the served Graphviz engine, the MIME renderer, the checkpoint
// viewer (file type, commands, context menu, layout restorer). index.ts only registers.
import type { ILayoutRestorer, JupyterFrontEnd } from "@jupyterlab/application";
import {
  MainAreaWidget,
  ToolbarButton,
  WidgetTracker,
  showErrorMessage,
} from "@jupyterlab/apputils";
import { PageConfig } from "@jupyterlab/coreutils";
import type { IFileBrowserFactory } from "@jupyterlab/filebrowser";
import type { INotebookTracker } from "@jupyterlab/notebook";
import type { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import type { ISettingRegistry } from "@jupyterlab/settingregistry";
import { engineUrl, installEngine } from "./engine.js";
import { rendererFactory, RANK } from "./mime.js";
import { basename, dirname, exploreCode, notebookJson } from "./paths.js";
import { DEFAULT_SETTINGS, readSettings, type ISettings } from "./settings.js";
import { CheckpointViewer } from "./viewer.js";

export const PLUGIN_ID = "ckptlab:plugin";
const STATE_FILE_TYPE = "ckptlab-state";

export const CommandIDs = {
  open: "ckptlab:open-checkpoint",
  openInNotebook: "ckptlab:open-in-notebook",
} as const;

/** The settings as they are now (updated when the user changes them). */
export function watchSettings(registry: ISettingRegistry | null): () => ISettings {
  let settings: ISettings = { ...DEFAULT_SETTINGS };
  const applyScheme = (): void => {
    document.body.dataset.ckptlabScheme = settings.colorScheme;
  };
  applyScheme();
  registry
    ?.load(PLUGIN_ID)
    .then((loaded) => {
      const update = (): void => {
        settings = readSettings(loaded.composite);
        applyScheme();
      };
      update();
      loaded.changed.connect(update);
    })
    .catch((reason: unknown) => {
      console.warn("ckptlab: settings not loaded", reason);
    });
  return () => settings;
}

/** Serve the Graphviz engine once per page from the extension's static files. */
export function serveEngine(): void {
  // Absolute (scheme and host): the widget ESM runs from a blob: URL, where "/lab/..." does
  // not resolve as a module specifier.
  const labextensions = PageConfig.getOption("fullLabextensionsUrl") || "/lab/extensions";
  installEngine(new URL(engineUrl(labextensions), window.location.href).href);
}

/** The renderer of application/vnd.ckptlab.graph+json outputs. */
export function registerRenderer(
  rendermime: IRenderMimeRegistry,
  notebooks: INotebookTracker | null,
  settings: () => ISettings,
): void {
  rendermime.addFactory(
    rendererFactory({
      settings,
      findNotebook: (node) => {
        const panel = notebooks?.find((p) => p.node.contains(node));
        if (!panel) return null;
        const kernel = panel.sessionContext.session?.kernel;
        return {
          registry: panel.content.rendermime,
          kernel:
            !!kernel && kernel.status !== "dead" && kernel.connectionStatus !== "disconnected",
        };
      },
    }),
    RANK,
  );
}

/** The checkpoint viewer: its file type, commands, context-menu items and restorer. */
export function registerViewer(
  app: JupyterFrontEnd,
  settings: () => ISettings,
  browsers: IFileBrowserFactory | null,
  restorer: ILayoutRestorer | null,
): void {
  app.docRegistry.addFileType({
    name: STATE_FILE_TYPE,
    displayName: "Checkpoint state file",
    pattern: "^checkpoint$",
    extensions: [],
    mimeTypes: ["text/plain"],
    contentType: "file",
    fileFormat: "text",
  });
  const tracker = new WidgetTracker<MainAreaWidget<CheckpointViewer>>({ namespace: "ckptlab" });
  if (restorer) {
    void restorer.restore(tracker, {
      command: CommandIDs.open,
      args: (widget) => ({ path: widget.content.node.dataset.path ?? "" }),
      name: (widget) => widget.content.node.dataset.path ?? "",
    });
  }
  const selectedPath = (): string | null => {
    const browser = browsers?.tracker.currentWidget;
    const item = browser?.selectedItems().next();
    return item && !item.done ? item.value.path : null;
  };
  app.commands.addCommand(CommandIDs.open, {
    label: "Open in ckptlab checkpoint viewer",
    caption: "Show this checkpoint's object graph, shapes, dtypes and sizes (no kernel needed)",
    execute: async (args) => {
      const path = typeof args.path === "string" ? args.path : selectedPath();
      if (path === null) return null;
      const widget = openViewer(app, path, settings());
      void tracker.add(widget);
      app.shell.add(widget, "main");
      app.shell.activateById(widget.id);
      await widget.content.ready;
      const error = widget.content.node.querySelector(".ckptlab-error");
      if (error)
        void showErrorMessage("ckptlab", (error.textContent ?? "").replace(/^ckptlab: /, ""));
      return widget;
    },
  });
  app.commands.addCommand(CommandIDs.openInNotebook, {
    label: "Open checkpoint in a notebook (ck.explore)",
    execute: (args) => openInNotebook(app, typeof args.path === "string" ? args.path : ""),
  });
  app.contextMenu.addItem({
    command: CommandIDs.open,
    selector: '.jp-DirListing-item[data-isdir="true"]',
    rank: 60,
  });
  app.contextMenu.addItem({
    command: CommandIDs.open,
    selector: `.jp-DirListing-item[data-file-type="${STATE_FILE_TYPE}"]`,
    rank: 1,
  });
}

/** A viewer tab for `path`, with its "Open in notebook" button. */
function openViewer(
  app: JupyterFrontEnd,
  path: string,
  settings: ISettings,
): MainAreaWidget<CheckpointViewer> {
  const content = new CheckpointViewer({
    path,
    contents: app.serviceManager.contents,
    serverRoot: PageConfig.getOption("serverRoot"),
    settings,
  });
  const widget = new MainAreaWidget({ content });
  widget.id = `ckptlab-viewer-${String(Date.now())}`;
  widget.title.label = `${basename(path) || "/"} (checkpoint)`;
  widget.title.caption = path;
  widget.title.closable = true;
  widget.toolbar.addItem(
    "open-in-notebook",
    new ToolbarButton({
      label: "Open in notebook",
      tooltip: "A new notebook with ck.explore(...) for this checkpoint (statistics, restores)",
      className: "ckptlab-open-in-notebook",
      onClick: () => {
        if (content.folder !== null) {
          void app.commands.execute(CommandIDs.openInNotebook, { path: content.folder });
        }
      },
    }),
  );
  content.onResolved = (folder) => {
    widget.title.label = `${basename(folder) || "/"} (checkpoint)`;
    widget.title.caption = folder;
  };
  return widget;
}

/** A new notebook next to `folder` with ck.explore("<folder>"), opened. */
async function openInNotebook(app: JupyterFrontEnd, folder: string): Promise<string> {
  // Written through the contents API, then opened: the cell is there before any editor.
  const contents = app.serviceManager.contents;
  const untitled = await contents.newUntitled({ path: dirname(folder), type: "notebook" });
  await app.serviceManager.kernelspecs.ready;
  const specs = app.serviceManager.kernelspecs.specs;
  const spec = specs ? specs.kernelspecs[specs.default] : undefined;
  await contents.save(untitled.path, {
    type: "notebook",
    format: "json",
    content: notebookJson(exploreCode(basename(folder) || "."), spec),
  });
  await app.commands.execute("docmanager:open", { path: untitled.path });
  return untitled.path;
}
