// Search over full display paths: substring (case-insensitive) or /regex/. DOM-free.
import type { Graph } from "./model.js";

const pathCache = new WeakMap<Graph, string[]>();

/** Full display path of every node ("model/dense/kernel"), computed once per graph. */
export function paths(graph: Graph): string[] {
  let cached = pathCache.get(graph);
  if (!cached) {
    cached = new Array<string>(graph.size);
    cached[0] = "";
    for (let i = 1; i < graph.size; i++) {
      const parent = cached[graph.parent(i)] ?? "";
      cached[i] = parent ? `${parent}/${graph.name(i)}` : graph.name(i);
    }
    pathCache.set(graph, cached);
  }
  return cached;
}

export interface ISearchResult {
  matches: number[];
  total: number;
  error: string | null;
}

function matcher(query: string): (text: string) => boolean {
  const regex = /^\/(.+)\/([imsu]*)$/.exec(query);
  if (regex) {
    const re = new RegExp(
      regex[1] as string,
      regex[2]?.includes("i") ? regex[2] : `${regex[2] ?? ""}i`,
    );
    return (text) => re.test(text);
  }
  const needle = query.toLowerCase();
  return (text) => text.toLowerCase().includes(needle);
}

/** Nodes whose path matches `query` (at most `limit` returned, all counted). */
export function search(graph: Graph, query: string, limit = 200): ISearchResult {
  const q = query.trim();
  if (!q) return { matches: [], total: 0, error: null };
  let test: (text: string) => boolean;
  try {
    test = matcher(q);
  } catch (e) {
    return { matches: [], total: 0, error: e instanceof Error ? e.message : String(e) };
  }
  const all = paths(graph);
  const matches: number[] = [];
  let total = 0;
  for (let i = 1; i < graph.size; i++) {
    if (test(all[i] ?? "")) {
      total++;
      if (matches.length < limit) matches.push(i);
    }
  }
  return { matches, total, error: null };
}

/** Groups to expand so that every node in `ids` becomes visible. */
export function reveal(graph: Graph, ids: Iterable<number>): Set<number> {
  const out = new Set<number>();
  for (const i of ids) for (const a of graph.ancestors(i)) out.add(a);
  return out;
}
