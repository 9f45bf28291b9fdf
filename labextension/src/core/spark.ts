// Sparklines as SVG path data (values over a run; nulls leave gaps). DOM-free.

/** `M x y L ...` for `values` in a `width` x `height` box (y grows downwards). */
export function sparkPath(values: readonly (number | null)[], width: number, height: number) {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return "";
  const low = Math.min(...finite);
  const high = Math.max(...finite);
  const span = high - low || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let path = "";
  let pen = "M";
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = "M";
      return;
    }
    const x = i * step;
    const y = height - 1 - ((v - low) / span) * (height - 2);
    path += `${pen}${x.toFixed(1)} ${y.toFixed(1)} `;
    pen = "L";
  });
  return path.trim();
}
