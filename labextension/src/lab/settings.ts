// The extension's settings (schema/plugin.json) and what they change in a view. DOM-free.
import type { Graph } from "../core/model.js";

export type ColorScheme = "default" | "colorblind" | "high-contrast";

export interface ISettings {
  /** Levels opened below the root when a view opens; -1: automatic (first level with a problem). */
  expandDepth: number;
  /** Visible nodes a view opens with at most, before further groups stay collapsed. */
  nodeLimit: number;
  colorScheme: ColorScheme;
}

export const DEFAULT_SETTINGS: Readonly<ISettings> = {
  expandDepth: -1,
  nodeLimit: 150,
  colorScheme: "default",
};

const SCHEMES: readonly ColorScheme[] = ["default", "colorblind", "high-contrast"];

/** Settings from the registry's composite value, with defaults for anything missing or wrong. */
export function readSettings(composite: Record<string, unknown> | null | undefined): ISettings {
  const value = composite ?? {};
  const depth = value.expandDepth;
  const limit = value.nodeLimit;
  const scheme = value.colorScheme;
  return {
    expandDepth:
      typeof depth === "number" && Number.isInteger(depth) && depth >= -1
        ? depth
        : DEFAULT_SETTINGS.expandDepth,
    nodeLimit:
      typeof limit === "number" && Number.isInteger(limit) && limit >= 1
        ? limit
        : DEFAULT_SETTINGS.nodeLimit,
    colorScheme: SCHEMES.includes(scheme as ColorScheme)
      ? (scheme as ColorScheme)
      : DEFAULT_SETTINGS.colorScheme,
  };
}

/**
 * Groups to open for a fixed depth: every group less than `depth` levels below the root,
 * breadth-first, while at most `limit` nodes are visible. Null for the automatic rule
 * (depth -1), which the shared view applies itself with `limit` as its budget.
 */
export function depthExpansion(graph: Graph, depth: number, limit: number): Set<number> | null {
  if (depth < 0) return null;
  const expanded = new Set<number>([0]);
  let visible = 1 + (graph.children[0]?.length ?? 0);
  const queue: [number, number][] = (graph.children[0] ?? []).map((c) => [c, 1]);
  for (let head = 0; head < queue.length; head++) {
    const [node, level] = queue[head] as [number, number];
    if (level > depth || !graph.isGroup(node)) continue;
    const kids = graph.children[node] ?? [];
    if (visible + kids.length > limit) continue;
    expanded.add(node);
    visible += kids.length;
    for (const kid of kids) queue.push([kid, level + 1]);
  }
  return expanded;
}
