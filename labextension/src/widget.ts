// anywidget entry: adapts the kernel-side ExplorerWidget model to the shared view.
// Only this file knows about anywidget; the view and the core are shared with the
// JupyterLab extension (issue 7), which drives them from a static MIME bundle instead.
import { Graph, NO_STATE, type IGraphJSON } from "./core/model.js";
import type { BrowserMessage, ITimelineData } from "./core/wire.js";
import { decodeGraphBytes, encodeGraphBundle } from "./render/codec.js";
import type { HostKey, IDetails, IHost } from "./render/host.js";
import { ExplorerView } from "./render/view.js";

/** Event the live view's element sends (bubbling) with the current static bundle, so the
 * JupyterLab extension saves the latest state into the notebook. */
export const SNAPSHOT_EVENT = "ckptlab-snapshot";

interface IModel {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  save_changes(): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
  on(event: string, callback: (...args: unknown[]) => void): void;
  off(event?: string, callback?: (...args: unknown[]) => void): void;
}

function bytesOf(value: unknown): Uint8Array {
  if (value instanceof DataView)
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (value instanceof Uint8Array) return value;
  return new Uint8Array();
}

let engineRequest: Promise<ArrayBuffer | null> | null = null;

class KernelHost implements IHost {
  readonly live = true;
  private readonly listeners: [string, () => void][] = [];
  constructor(private readonly model: IModel) {}

  /** Stop listening to the model (the view is being replaced or removed). */
  dispose(): void {
    for (const [event, callback] of this.listeners) this.model.off(event, callback);
    this.listeners.length = 0;
  }

  states(): Uint8Array | null {
    const bytes = bytesOf(this.model.get("states"));
    return bytes.length ? bytes : null;
  }
  selected(): number[] {
    return (this.model.get("selected") as number[] | undefined) ?? [];
  }
  expanded(): number[] {
    return (this.model.get("expanded") as number[] | undefined) ?? [];
  }
  search(): string {
    return (this.model.get("search") as string | undefined) ?? "";
  }
  hideOptimizer(): boolean | null {
    const expanded = this.model.get("expanded") as number[] | undefined;
    // Before the first view opened (nothing expanded yet) the graph's own hint decides.
    return expanded?.length ? Boolean(this.model.get("hide_optimizer")) : null;
  }
  progress(): string {
    return (this.model.get("progress") as string | undefined) ?? "";
  }
  timeline(): ITimelineData | null {
    const data = this.model.get("timeline") as ITimelineData | undefined;
    return data && Array.isArray(data.points) ? data : null;
  }
  isRun(): boolean {
    return Boolean(this.model.get("is_run"));
  }
  send(message: BrowserMessage): void {
    this.model.send(message);
  }
  details(): IDetails {
    return (this.model.get("details") as IDetails | undefined) ?? {};
  }
  message(): string {
    return (this.model.get("message") as string | undefined) ?? "";
  }
  summary(): string {
    return (this.model.get("summary") as string | undefined) ?? "";
  }
  update(values: Parameters<IHost["update"]>[0]): void {
    for (const [key, value] of Object.entries(values)) this.model.set(key, value);
    this.model.save_changes();
  }
  restore(ids: number[]): void {
    this.send({ type: "restore", nodes: ids });
  }
  exportedSvg(svg: string): void {
    this.send({ type: "svg", svg });
  }
  on(key: HostKey, callback: () => void): void {
    this.listeners.push([`change:${key}`, callback]);
    this.model.on(`change:${key}`, callback);
  }
  engineSource(): Promise<ArrayBuffer | null> {
    engineRequest ??= new Promise((resolve) => {
      const listener = (...args: unknown[]): void => {
        const [content, buffers] = args as [{ type?: string }, DataView[] | undefined];
        if (content.type !== "engine") return;
        this.model.off("msg:custom", listener);
        const first = buffers?.[0];
        resolve(first ? bytesOf(first).slice().buffer : null);
      };
      this.model.on("msg:custom", listener);
      this.send({ type: "need-engine" });
    });
    const pending = engineRequest;
    pending.then(
      (result) => {
        if (!result) engineRequest = null;
      },
      () => (engineRequest = null),
    );
    return pending;
  }
}

/** The graph JSON with the model's current states, counts and summary (what a save keeps). */
function current(data: IGraphJSON, model: IModel): IGraphJSON {
  const states = bytesOf(model.get("states"));
  const state =
    states.length === data.nodes.state.length
      ? Array.from(states, (s) => (s === NO_STATE ? -1 : s))
      : data.nodes.state;
  const counts: Record<string, number> = {};
  for (const s of state)
    if (s >= 0) counts[data.states[s] ?? "?"] = (counts[data.states[s] ?? "?"] ?? 0) + 1;
  const summary = (model.get("summary") as string | undefined) ?? data.summary;
  return { ...data, summary, counts, nodes: { ...data.nodes, state } };
}

async function render({ model, el }: { model: IModel; el: HTMLElement }): Promise<() => void> {
  let host = new KernelHost(model);
  let data: IGraphJSON | null = null;
  const snapshot = async (): Promise<void> => {
    if (!data) return;
    const fallback = (model.get("fallback") as Record<string, string> | undefined) ?? {};
    const bundle = await encodeGraphBundle(current(data, model));
    el.dispatchEvent(
      new CustomEvent(SNAPSHOT_EVENT, { bubbles: true, detail: { bundle, fallback } }),
    );
  };
  const show = async (): Promise<void> => {
    data = await decodeGraphBytes(bytesOf(model.get("graph")));
    const view = new ExplorerView(new Graph(data, host.states() ?? undefined), host);
    el.replaceChildren(view.root);
    await view.start();
  };
  const onGraph = (): void => {
    // The tree changed (objects created since) or new data: a fresh view over a fresh host.
    host.dispose();
    host = new KernelHost(model);
    void show().then(snapshot);
  };
  const onFallback = (): void => {
    void snapshot();
  };
  model.on("change:graph", onGraph);
  model.on("change:fallback", onFallback);
  await show();
  return () => {
    model.off("change:graph", onGraph);
    model.off("change:fallback", onFallback);
    host.dispose();
  };
}

export default { render };
