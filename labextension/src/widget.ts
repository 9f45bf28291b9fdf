// anywidget entry: adapts the kernel-side ExplorerWidget model to the shared view.
// Only this file knows about anywidget; the view and the core are shared with the
// JupyterLab extension (issue 7), which drives them from a static MIME bundle instead.
import { Graph, decodeBytes } from "./core/model.js";
import type { HostKey, IDetails, IHost } from "./render/host.js";
import { ExplorerView } from "./render/view.js";

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
  hideOptimizer(): boolean {
    return Boolean(this.model.get("hide_optimizer"));
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
    this.model.send({ type: "restore", nodes: ids });
  }
  exportedSvg(svg: string): void {
    this.model.send({ type: "svg", svg });
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
      this.model.send({ type: "need-engine" });
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

async function render({ model, el }: { model: IModel; el: HTMLElement }): Promise<() => void> {
  let host = new KernelHost(model);
  const show = async (): Promise<void> => {
    const data = await decodeBytes(bytesOf(model.get("graph")));
    const view = new ExplorerView(new Graph(data, host.states() ?? undefined), host);
    el.replaceChildren(view.root);
    await view.start();
  };
  const onGraph = (): void => {
    // The tree changed (objects created since): a fresh view over a fresh host.
    host.dispose();
    host = new KernelHost(model);
    void show();
  };
  model.on("change:graph", onGraph);
  await show();
  return () => {
    model.off("change:graph", onGraph);
    host.dispose();
  };
}

export default { render };
