// What a view needs from where it lives: a live kernel model (anywidget) or a static MIME
// bundle (JupyterLab extension, no kernel). Both implement IHost.

export interface IStats {
  size?: number;
  min?: number;
  max?: number;
  mean?: number;
  std?: number;
  nan?: number;
  inf?: number;
  zeros?: number;
  nbytes?: number;
  error?: string;
  histogram?: { counts: number[]; edges: number[] };
}

export interface IDetails {
  node?: number;
  path?: string;
  key?: string;
  checksum?: string;
  stats?: IStats;
  max_abs_diff?: number;
  error?: string;
}

export type HostKey =
  | "states"
  | "selected"
  | "expanded"
  | "search"
  | "hide_optimizer"
  | "details"
  | "message"
  | "summary"
  | "graph";

export interface IHost {
  /** No kernel behind the view: no restore, no statistics. */
  readonly live: boolean;
  states(): Uint8Array | null;
  selected(): number[];
  expanded(): number[];
  search(): string;
  hideOptimizer(): boolean;
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
}

/** A host without a kernel: state lives in memory (the MIME renderer, tests). */
export class LocalHost implements IHost {
  readonly live = false;
  private values = {
    selected: [] as number[],
    expanded: [] as number[],
    search: "",
    hide_optimizer: false,
  };
  private listeners = new Map<HostKey, (() => void)[]>();

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
  hideOptimizer(): boolean {
    return this.values.hide_optimizer;
  }
  details(): IDetails {
    return {};
  }
  message(): string {
    return "Static view (no kernel): statistics and restore need a running kernel.";
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
}
