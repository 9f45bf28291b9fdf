// Paths on the Jupyter server (contents API paths, "/"-separated, relative to the server root),
// the directory state file (`checkpoint`, TensorFlow's text format) and the Python code the
// "Open in notebook" action writes. DOM-free and JupyterLab-free (unit-tested).

export const STATE_FILE = "checkpoint";
export const ROOT_DOCUMENT = "zarr.json";

/** Join and normalise contents paths ("a/b", "../c" -> "a/c"); never climbs above the root. */
export function joinPath(...parts: string[]): string {
  const out: string[] = [];
  for (const part of parts) {
    for (const segment of part.split("/")) {
      if (!segment || segment === ".") continue;
      if (segment === "..") out.pop();
      else out.push(segment);
    }
  }
  return out.join("/");
}

/**
 * Names Jupyter Server routes elsewhere at the end of a contents URL: `<dir>/checkpoints` lists
 * a file's checkpoints (`[]` for a folder of that name), `<dir>/checkpoints/<id>` is one of
 * them, `<dir>/trust` trusts notebooks.
 */
const RESERVED_SEGMENTS = new Set(["checkpoints", "trust"]);

/** Whether a contents path has a segment the server would route away from the contents API. */
export function hasReservedSegment(path: string): boolean {
  return joinPath(path)
    .split("/")
    .some((segment) => RESERVED_SEGMENTS.has(segment));
}

/**
 * `path` as the URL path after `api/contents/`: each segment percent-encoded, and the first
 * letter of a reserved name too (`%63heckpoints`), so the server's reserved routes do not
 * match while its contents handler, which decodes the path, reads the same folder.
 */
export function contentsUrlPath(path: string): string {
  return joinPath(path)
    .split("/")
    .filter(Boolean)
    .map((segment) => {
      const encoded = encodeURIComponent(segment);
      if (!RESERVED_SEGMENTS.has(segment)) return encoded;
      const first = segment.charCodeAt(0).toString(16).toUpperCase();
      return `%${first}${encoded.slice(1)}`;
    })
    .join("/");
}

export function dirname(path: string): string {
  const parts = joinPath(path).split("/");
  parts.pop();
  return parts.join("/");
}

export function basename(path: string): string {
  return joinPath(path).split("/").pop() ?? "";
}

export interface IStateFile {
  latest: string;
  all: string[];
}

const LINE = /^\s*([a-z_]+)\s*:\s*(.*?)\s*$/;
const FIELDS = new Set([
  "model_checkpoint_path",
  "all_model_checkpoint_paths",
  "all_model_checkpoint_timestamps",
  "last_preserved_timestamp",
]);

function quoted(raw: string): string | null {
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === "string" ? value : null;
  } catch {
    return null;
  }
}

/** Parse a state file as ckptlab's parse_state does; errors name the line. */
export function parseStateFile(text: string, source: string): IStateFile {
  let latest: string | null = null;
  const all: string[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (!line.trim() || line.trimStart().startsWith("#")) continue;
    const match = LINE.exec(line);
    const field = match?.[1] ?? "";
    const raw = match?.[2] ?? "";
    const bad = new Error(
      `Checkpoint state file ${source} does not parse at line ${String(index + 1)}: ` +
        `${JSON.stringify(line.slice(0, 80))}; expected lines like 'model_checkpoint_path: "ckpt-1"'.`,
    );
    if (!match || !FIELDS.has(field)) throw bad;
    if (field === "model_checkpoint_path" || field === "all_model_checkpoint_paths") {
      const value = quoted(raw);
      if (value === null) throw bad;
      if (field === "model_checkpoint_path") latest = value;
      else all.push(value);
    } else if (!Number.isFinite(Number(raw)) || !raw) {
      throw bad;
    }
  }
  if (latest === null) {
    throw new Error(`Checkpoint state file ${source} has no model_checkpoint_path.`);
  }
  return { latest, all };
}

/**
 * The contents path of the checkpoint a state file points to. Relative paths are relative to
 * the state file's directory; absolute ones must lie under the server root (`serverRoot`, an
 * absolute local path from the page config) or null is returned.
 */
export function resolveCheckpoint(
  stateFilePath: string,
  target: string,
  serverRoot: string,
): string | null {
  if (target.startsWith("/")) {
    const root = serverRoot.replace(/\/+$/, "");
    if (!root || (target !== root && !target.startsWith(`${root}/`))) return null;
    return joinPath(target.slice(root.length));
  }
  return joinPath(dirname(stateFilePath), target);
}

/** A Python string literal for any text (JSON's escapes are all valid Python escapes). */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/** Notebook code exploring the checkpoint folder `name`, relative to the notebook's folder. */
export function exploreCode(name: string): string {
  return `import ckptlab as ck\n\nck.explore(${pythonString(name)})`;
}

/** A one-cell notebook (nbformat 4) running `code`, with the kernel spec when one is known. */
export function notebookJson(
  code: string,
  kernel?: { name: string; display_name: string; language: string } | null,
): Record<string, unknown> {
  return {
    cells: [{ cell_type: "code", metadata: {}, source: code, outputs: [], execution_count: null }],
    metadata: kernel
      ? {
          kernelspec: {
            name: kernel.name,
            display_name: kernel.display_name,
            language: kernel.language,
          },
        }
      : {},
    nbformat: 4,
    nbformat_minor: 5,
  };
}
