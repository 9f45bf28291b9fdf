// The problem list: what did not match, grouped by kind (conflicts, renamed?, missing, unused,
// pending, changed), most urgent first. DOM-free.
import { FLAG_OPTIMIZER, STATE_TABLE, type Graph } from "./model.js";
import { PROBLEM_GROUPS, type ProblemKind } from "./wire.js";

export interface IProblemGroup {
  kind: ProblemKind;
  title: string;
  /** Node ids, in tree order (for "renamed?": the program-side node of each suggestion). */
  nodes: number[];
}

/** Why a node is in the problem list: its reason, or for "renamed?" the likely match. */
export function problemReason(graph: Graph, node: number, all: readonly string[]): string {
  for (const [program, checkpoint, why] of graph.data.suggestions) {
    if (program === node) return `likely ${all[checkpoint] ?? ""} (${why})`;
  }
  return graph.reason(node);
}

const KIND = new Map(STATE_TABLE.map((s) => [s.name, s.problem]));

/** Problems grouped by kind, in the order shown; optimizer values left out when hidden. */
export function problemGroups(graph: Graph, hideOptimizer = false): IProblemGroup[] {
  const byKind = new Map<ProblemKind, number[]>();
  const renamed = new Set<number>();
  for (const [program, checkpoint] of graph.data.suggestions) {
    renamed.add(program);
    renamed.add(checkpoint);
    byKind.set("renamed", [...(byKind.get("renamed") ?? []), program]);
  }
  for (let i = 0; i < graph.size; i++) {
    const state = graph.stateName(i);
    const kind = state ? KIND.get(state) : null;
    if (!kind || renamed.has(i)) continue;
    if (hideOptimizer && graph.flags(i) & FLAG_OPTIMIZER) continue;
    const list = byKind.get(kind) ?? [];
    list.push(i);
    byKind.set(kind, list);
  }
  return PROBLEM_GROUPS.filter(([kind]) => byKind.has(kind)).map(([kind, title]) => ({
    kind,
    title,
    nodes: byKind.get(kind) ?? [],
  }));
}

/** The node a first view should show: the first conflict, else the first problem, else -1. */
export function firstProblem(groups: readonly IProblemGroup[]): number {
  return groups[0]?.nodes[0] ?? -1;
}
