// What a view needs from where it lives: a live kernel model (anywidget) or a static MIME
// bundle (JupyterLab extension, no kernel). Both implement IHost. Messages and details follow
// the wire contract (core/wire.ts, generated from Python).
import type { BrowserMessage, INodeDetails, IStats, ITimelineData } from "../core/wire.js";

export type IDetails = INodeDetails;
export type { IStats };

export type HostKey =
  | "states"
  | "selected"
  | "expanded"
  | "search"
  | "hide_optimizer"
  | "details"
  | "message"
  | "summary"
  | "graph"
  | "progress"
  | "timeline"
  | "fallback";

export interface IHost {
  /** No kernel behind the view: no restore, no statistics. */
  readonly live: boolean;
  states(): Uint8Array | null;
  selected(): number[];
  expanded(): number[];
  search(): string;
  /** null: not decided yet (the view then follows the graph's own hint). */
  hideOptimizer(): boolean | null;
  details(): IDetails;
  message(): string;
  summary(): string | null;
  update(values: {
    selected?: number[];
    expanded?: number[];
    search?: string;
    hide_optimizer?: boolean;
    focused?: number;
  }): void;
  restore(ids: number[]): void;
  exportedSvg(svg: string): void;
  on(key: HostKey, callback: () => void): void;
  /** The Graphviz engine module's source, when the host can supply it. */
  engineSource(): Promise<ArrayBuffer | null>;
  /** Long work in the kernel: "<fraction> <text>", "" when idle. */
  progress(): string;
  /** A training run's timeline (null until computed, or for other explorers). */
  timeline(): ITimelineData | null;
  /** Whether this explorer shows a training run. */
  isRun(): boolean;
  /** Send a command to the kernel (compare values, timeline, pick checkpoints). */
  send(message: BrowserMessage): void;
}

/** A host without a kernel: state lives in memory (the MIME renderer, tests). */
export class LocalHost implements IHost {
  readonly live = false;
  private values = {
    selected: [] as number[],
    expanded: [] as number[],
    search: "",
    hide_optimizer: null as boolean | null,
  };
  private listeners = new Map<HostKey, (() => void)[]>();

  /** `kernel`: a kernel runs, but this output's widget is gone (a reopened notebook). */
  constructor(private readonly kernel = false) {}

  states(): null {
    return null;
  }
  selected(): number[] {
    return this.values.selected;
  }
  expanded(): number[] {
    return this.values.expanded;
  }
  search(): string {
    return this.values.search;
  }
  hideOptimizer(): boolean | null {
    return this.values.hide_optimizer;
  }
  details(): IDetails {
    return {};
  }
  message(): string {
    return this.kernel
      ? "Saved view: re-run the cell for statistics, live colours and restores."
      : "Static view (no kernel): statistics and restore need a running kernel.";
  }
  summary(): null {
    return null;
  }
  update(values: Parameters<IHost["update"]>[0]): void {
    for (const [key, value] of Object.entries(values)) {
      if (key in this.values) {
        (this.values as Record<string, unknown>)[key] = value;
        for (const f of this.listeners.get(key as HostKey) ?? []) f();
      }
    }
  }
  restore(): void {
    /* no kernel */
  }
  exportedSvg(): void {
    /* nothing to tell */
  }
  on(key: HostKey, callback: () => void): void {
    this.listeners.set(key, [...(this.listeners.get(key) ?? []), callback]);
  }
  engineSource(): Promise<null> {
    return Promise.resolve(null);
  }
  progress(): string {
    return "";
  }
  timeline(): null {
    return null;
  }
  isRun(): boolean {
    return false;
  }
  send(): void {
    /* no kernel */
  }
}
