// Which nodes are visible: the default expansion (open down to the first level with a
// problem, within a node budget), visibility under expansion, and group labels. DOM-free.
import { FLAG_OPTIMIZER, STATE_TABLE, type Graph } from "./model.js";

export const DEFAULT_BUDGET = 150;

function hidden(graph: Graph, i: number, hideOptimizer: boolean): boolean {
  return hideOptimizer && (graph.flags(i) & FLAG_OPTIMIZER) !== 0;
}

function shownChildren(graph: Graph, i: number, hideOptimizer: boolean): number[] {
  return (graph.children[i] ?? []).filter((c) => !hidden(graph, c, hideOptimizer));
}

/**
 * The groups to open first. Small graphs open fully; big ones open breadth-first only the
 * groups that contain a problem, while the number of visible nodes stays within `budget`
 * (a graph without problems opens breadth-first within the budget).
 */
export function initialExpansion(
  graph: Graph,
  budget: number = DEFAULT_BUDGET,
  hideOptimizer = false,
  first = -1,
): Set<number> {
  const expanded = new Set<number>([0]);
  let visible = 1 + shownChildren(graph, 0, hideOptimizer).length;
  const anyProblem = graph.problems(0) > 0;
  const queue = shownChildren(graph, 0, hideOptimizer);
  let total = 0;
  for (let i = 0; i < graph.size; i++) if (!hidden(graph, i, hideOptimizer)) total++;
  // Optimizers stay one collapsed group each: their slots mirror the model and would bury it.
  const wanted = (i: number): boolean =>
    graph.isGroup(i) &&
    (graph.flags(i) & FLAG_OPTIMIZER) === 0 &&
    (total <= budget || !anyProblem || graph.problems(i) > 0);
  for (const group of first >= 0 ? graph.ancestors(first).reverse() : []) {
    if (group === 0 || expanded.has(group) || hidden(graph, group, hideOptimizer)) continue;
    expanded.add(group); // the first problem is visible whatever the budget
    visible += shownChildren(graph, group, hideOptimizer).length;
  }
  for (let head = 0; head < queue.length; head++) {
    const group = queue[head] as number;
    const kids = shownChildren(graph, group, hideOptimizer);
    if (expanded.has(group)) {
      queue.push(...kids);
      continue;
    }
    if (!wanted(group)) continue;
    if (visible + kids.length > budget) continue;
    expanded.add(group);
    visible += kids.length;
    queue.push(...kids);
  }
  return expanded;
}

/** Visible nodes in depth-first order: the root, and children of expanded nodes. */
export function visibleNodes(graph: Graph, expanded: ReadonlySet<number>, hideOptimizer = false) {
  const out: number[] = [];
  const stack = [0];
  while (stack.length) {
    const i = stack.pop() as number;
    out.push(i);
    if (expanded.has(i)) {
      const kids = shownChildren(graph, i, hideOptimizer);
      for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k] as number);
    }
  }
  return out;
}

const SHORT = new Map(STATE_TABLE.map((s) => [s.name, s]));

/** "48 values, 3 shape conflicts, 2 missing": what a collapsed group holds. */
export function groupSummary(graph: Graph, i: number): string {
  const n = graph.values[i] ?? 0;
  const parts = [`${n} value${n === 1 ? "" : "s"}`];
  const counts = graph.stateCounts(i);
  for (const [s, count] of counts) {
    const name = graph.data.states[s] ?? "";
    const label = SHORT.get(name);
    if (label?.problem) parts.push(`${count} ${count === 1 ? label.one : label.many}`);
  }
  return parts.join(", ");
}
