// Heat colours for value changes (relative L2, ||b - a|| / ||a||) on a log scale. DOM-free.

/** Changes at or below this are "no change"; at or above HOT they are the hottest colour. */
export const COLD = 1e-6;
export const HOT = 1;

/** Position of a relative change on the scale, 0 (unchanged) to 1 (HOT or more). */
export function heatLevel(rel: number): number {
  if (!(rel > COLD)) return 0;
  if (!Number.isFinite(rel) || rel >= HOT) return 1;
  return Math.log(rel / COLD) / Math.log(HOT / COLD);
}

/** A colour from pale yellow through orange to deep red (readable on light and dark). */
export function heatColour(rel: number): string {
  const t = heatLevel(rel);
  const hue = 55 - 55 * t;
  const light = 82 - 42 * t;
  return `hsl(${hue.toFixed(0)}, 90%, ${light.toFixed(0)}%)`;
}

/** A change as short text: "0", "3.1e-4", "0.042", "inf". */
export function formatChange(rel: number): string {
  if (rel === 0) return "0";
  if (!Number.isFinite(rel)) return "inf";
  return rel >= 0.01 && rel < 1000 ? rel.toPrecision(2) : rel.toExponential(1);
}
