// The checkpoint viewer: a main-area tab showing a checkpoint folder's object graph, shapes,
// dtypes and sizes, read from its zarr.json through the Jupyter contents API (no kernel).
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection, type Contents } from "@jupyterlab/services";
import { Panel } from "@lumino/widgets";
import { Graph } from "../core/model.js";
import { checkpointView, isCheckpointRoot, parseDocument } from "./checkpoint.js";
import { ViewerHost } from "./hosts.js";
import { explorerWidget } from "./mime.js";
import {
  ROOT_DOCUMENT,
  STATE_FILE,
  basename,
  contentsUrlPath,
  hasReservedSegment,
  joinPath,
  parseStateFile,
  resolveCheckpoint,
} from "./paths.js";
import { depthExpansion, type ISettings } from "./settings.js";

/**
 * A contents model. Paths with a segment the server reserves (a folder named `checkpoints`)
 * are requested with that name percent-encoded: the contents manager would send them as they
 * are, and the server would answer from its file-checkpoints route instead.
 */
async function getModel(
  contents: Contents.IManager,
  path: string,
  options: Contents.IFetchOptions,
): Promise<Contents.IModel> {
  if (!hasReservedSegment(path)) return contents.get(path, options);
  const settings = contents.serverSettings;
  const query = URLExt.objectToQueryString({
    ...(options.type ? { type: options.type } : {}),
    ...(options.format ? { format: options.format } : {}),
    content: options.content ? "1" : "0",
  });
  const url = `${URLExt.join(settings.baseUrl, "api/contents")}/${contentsUrlPath(path)}${query}`;
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) throw new ServerConnection.ResponseError(response);
  return (await response.json()) as Contents.IModel;
}

/** Read a text file through the contents API; null when it does not exist. */
async function readText(contents: Contents.IManager, path: string): Promise<string | null> {
  try {
    const model = await getModel(contents, path, { content: true, format: "text", type: "file" });
    return typeof model.content === "string" ? model.content : null;
  } catch {
    return null;
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new Error(`${path} is not valid JSON (${error instanceof Error ? error.message : ""}).`);
  }
}

/**
 * The checkpoint folder for a file-browser item: a folder holding a ckptlab checkpoint itself,
 * a folder with a `checkpoint` state file (its latest checkpoint), or that state file.
 */
export async function resolveFolder(
  contents: Contents.IManager,
  path: string,
  serverRoot: string,
): Promise<{ folder: string; zarrJson: unknown }> {
  const clean = joinPath(path);
  let stateFile: string | null = null;
  if (basename(clean) === STATE_FILE) {
    const item = await getModel(contents, clean, { content: false });
    if (item.type !== "directory") stateFile = clean;
  }
  if (stateFile === null) {
    const rootPath = joinPath(clean, ROOT_DOCUMENT);
    const text = await readText(contents, rootPath);
    if (text !== null) {
      const zarrJson = parseJson(text, rootPath);
      if (isCheckpointRoot(zarrJson)) return { folder: clean, zarrJson };
    }
    stateFile = joinPath(clean, STATE_FILE);
  }
  const state = await readText(contents, stateFile);
  if (state === null) {
    throw new Error(
      `No ckptlab checkpoint in ${clean || "/"}: it has neither a zarr.json with a ckptlab ` +
        `document nor a '${STATE_FILE}' state file.`,
    );
  }
  const latest = parseStateFile(state, stateFile).latest;
  const folder = resolveCheckpoint(stateFile, latest, serverRoot);
  if (folder === null) {
    throw new Error(`${stateFile} points to ${latest}, which is outside the Jupyter server root.`);
  }
  const rootPath = joinPath(folder, ROOT_DOCUMENT);
  const text = await readText(contents, rootPath);
  if (text === null)
    throw new Error(`${stateFile} points to ${folder}, which has no ${ROOT_DOCUMENT}.`);
  return { folder, zarrJson: parseJson(text, rootPath) };
}

export interface IViewerOptions {
  path: string;
  contents: Contents.IManager;
  serverRoot: string;
  settings: ISettings;
}

/** The viewer's content: resolves the folder, then draws its graph. */
export class CheckpointViewer extends Panel {
  /** The checkpoint folder shown (set once resolved). */
  folder: string | null = null;
  readonly ready: Promise<void>;

  constructor(options: IViewerOptions) {
    super();
    this.addClass("ckptlab-viewer");
    this.node.dataset.path = options.path;
    const { widget, ready } = explorerWidget(async () => {
      const { folder, zarrJson } = await resolveFolder(
        options.contents,
        options.path,
        options.serverRoot,
      );
      this.folder = folder;
      this.node.dataset.folder = folder;
      const doc = parseDocument(zarrJson, folder || "/");
      const { graph: data, keys } = checkpointView(doc, folder || "/");
      data.options.budget = options.settings.nodeLimit;
      const graph = new Graph(data);
      const host = new ViewerHost(
        keys,
        `Read from ${joinPath(folder, ROOT_DOCUMENT)} through the Jupyter contents API, without ` +
          "a kernel. Value statistics and restores need one: use “Open in notebook”.",
      );
      const expanded = depthExpansion(
        graph,
        options.settings.expandDepth,
        options.settings.nodeLimit,
      );
      if (expanded) host.update({ expanded: [...expanded] });
      this.onResolved?.(folder);
      return { graph, host };
    }, "ckptlab-viewer-graph");
    this.addWidget(widget);
    this.ready = ready;
  }

  /** Called when the folder is known (the tab's title and toolbar use it). */
  onResolved: ((folder: string) => void) | null = null;
}
