// The ckptlab JupyterLab extension: registration only. The pieces live in mime.ts (static
// graphs in outputs), viewer.ts (checkpoints from the file browser), engine.ts (the served
// Graphviz engine) and settings.ts.
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin,
} from "@jupyterlab/application";
import {
  MainAreaWidget,
  ToolbarButton,
  WidgetTracker,
  showErrorMessage,
} from "@jupyterlab/apputils";
import { PageConfig } from "@jupyterlab/coreutils";
import { IFileBrowserFactory } from "@jupyterlab/filebrowser";
import { INotebookTracker } from "@jupyterlab/notebook";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { ISettingRegistry } from "@jupyterlab/settingregistry";
import { engineUrl, installEngine } from "./engine.js";
import { rendererFactory, RANK } from "./mime.js";
import { basename, dirname, exploreCode, notebookJson } from "./paths.js";
import { DEFAULT_SETTINGS, readSettings, type ISettings } from "./settings.js";
import { CheckpointViewer } from "./viewer.js";

const PLUGIN_ID = "ckptlab:plugin";
const STATE_FILE_TYPE = "ckptlab-state";

export const CommandIDs = {
  open: "ckptlab:open-checkpoint",
  openInNotebook: "ckptlab:open-in-notebook",
} as const;

function activate(
  app: JupyterFrontEnd,
  rendermime: IRenderMimeRegistry,
  settingRegistry: ISettingRegistry | null,
  browsers: IFileBrowserFactory | null,
  notebooks: INotebookTracker | null,
  restorer: ILayoutRestorer | null,
): void {
  let settings: ISettings = { ...DEFAULT_SETTINGS };
  const applyScheme = (): void => {
    document.body.dataset.ckptlabScheme = settings.colorScheme;
  };
  applyScheme();
  if (settingRegistry) {
    settingRegistry
      .load(PLUGIN_ID)
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
  }

  // Absolute (scheme and host): the widget ESM runs from a blob: URL, where "/lab/..." does
  // not resolve as a module specifier.
  const labextensions = PageConfig.getOption("fullLabextensionsUrl") || "/lab/extensions";
  installEngine(new URL(engineUrl(labextensions), window.location.href).href);

  rendermime.addFactory(
    rendererFactory({
      settings: () => settings,
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
      void tracker.add(widget);
      app.shell.add(widget, "main");
      app.shell.activateById(widget.id);
      await content.ready;
      if (content.node.querySelector(".ckptlab-error")) {
        const text = content.node.querySelector(".ckptlab-error")?.textContent ?? "";
        void showErrorMessage("ckptlab", text.replace(/^ckptlab: /, ""));
      }
      return widget;
    },
  });

  app.commands.addCommand(CommandIDs.openInNotebook, {
    label: "Open checkpoint in a notebook (ck.explore)",
    execute: async (args) => {
      const folder = typeof args.path === "string" ? args.path : "";
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
    },
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

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "ckptlab: checkpoint graphs in outputs without a kernel, and a checkpoint viewer",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ISettingRegistry, IFileBrowserFactory, INotebookTracker, ILayoutRestorer],
  activate,
};

export default plugin;
