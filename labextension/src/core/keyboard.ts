// Keyboard navigation over the visible tree: arrows move, Enter expands/collapses,
// Space toggles selection. DOM-free: returns what to do.
import type { Graph } from "./model.js";

export interface INavigation {
  focus: number;
  toggle?: number;
  select?: number;
}

export function navigate(
  graph: Graph,
  visible: readonly number[],
  expanded: ReadonlySet<number>,
  current: number,
  key: string,
): INavigation | null {
  const at = Math.max(visible.indexOf(current), 0);
  const here = visible[at] ?? 0;
  switch (key) {
    case "ArrowDown":
      return { focus: visible[Math.min(at + 1, visible.length - 1)] ?? here };
    case "ArrowUp":
      return { focus: visible[Math.max(at - 1, 0)] ?? here };
    case "ArrowLeft":
      if (graph.isGroup(here) && expanded.has(here) && here !== 0)
        return { focus: here, toggle: here };
      return { focus: Math.max(graph.parent(here), 0) };
    case "ArrowRight":
      if (graph.isGroup(here) && !expanded.has(here)) return { focus: here, toggle: here };
      return { focus: graph.children[here]?.[0] ?? here };
    case "Enter":
      return graph.isGroup(here) ? { focus: here, toggle: here } : { focus: here };
    case " ":
      return { focus: here, select: here };
    default:
      return null;
  }
}
