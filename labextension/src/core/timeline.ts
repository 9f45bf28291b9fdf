// The training-run timeline as text: a point's tooltip and the legend. DOM-free.
import { formatChange } from "./heat.js";
import type { ITimelineData, ITimelinePoint } from "./wire.js";

/** A point's tooltip: step, time (`when`), size and update, or why it cannot be read. */
export function pointTitle(point: ITimelinePoint, when: string): string {
  const step = `step ${point.step ?? "?"}`;
  if (point.error !== null) return `${step} · unreadable: ${point.error}\n${point.path}`;
  const size = point.nbytes === null ? "" : ` · ${(point.nbytes / 1024).toFixed(1)} KB`;
  const update = point.update_ratio === null ? "–" : formatChange(point.update_ratio);
  return `${step} · ${when}${size} · update ${update}\n${point.path}`;
}

/** What the run holds, which checkpoints cannot be read, and which two are compared. */
export function timelineLegend(data: ITimelineData): string {
  const { points } = data;
  const unreadable = points.filter((p) => p.error !== null).map((p) => p.step ?? "?");
  const marked = unreadable.length
    ? ` (cannot read step ${unreadable.join(", ")}: hover its point for why)`
    : "";
  return (
    `${points.length} checkpoints, steps ${points[0]?.step ?? "?"}–${points.at(-1)?.step ?? "?"}` +
    `${marked}: comparing a = step ${points[data.a]?.step ?? data.a} with b = step ` +
    `${points[data.b]?.step ?? data.b}. Click two points to compare others.`
  );
}
