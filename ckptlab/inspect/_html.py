"""HTML summary of a match report: the fallback display outside widget front ends (internal)."""

from __future__ import annotations

from html import escape

from ckptlab.core import STATES, MatchReport

_COLOURS = {
    "restored": "#2e7d32",
    "bound": "#0277bd",
    "pending": "#f9a825",
    "checkpoint_only": "#757575",
    "program_only": "#c62828",
    "shape_conflict": "#ad1457",
    "dtype_conflict": "#6a1b9a",
    "inconsistent": "#e65100",
}
MAX_ROWS = 200


def report_html(report: MatchReport, *, title: str = "MatchReport") -> str:
    """A table of every problem in ``report`` (matched values are only counted).

    Every name from a checkpoint is escaped.

    Examples
    --------
    >>> "<table" in report_html(MatchReport(checkpoint="<c>", entries=()))
    True
    """
    rows = []
    problems = [e for e in report.entries if e.state not in ("restored", "bound")]
    for entry in problems[:MAX_ROWS]:
        colour = _COLOURS[entry.state]
        stored = entry.stored.describe() if entry.stored else ""
        program = entry.program.describe() if entry.program else ""
        rows.append(
            f'<tr><td style="color:{colour}">{escape(entry.state)}</td>'
            f"<td><code>{escape(entry.pretty)}</code></td><td>{escape(program)}</td>"
            f"<td>{escape(stored)}</td><td>{escape(entry.reason)}</td></tr>"
        )
    if len(problems) > MAX_ROWS:
        rows.append(f'<tr><td colspan="5">... and {len(problems) - MAX_ROWS} more</td></tr>')
    legend = " ".join(
        f'<span style="color:{_COLOURS[s]}">&#9632; {escape(s)}</span>' for s in STATES
    )
    return (
        f'<div class="ckptlab-report"><b>{escape(title)}</b> for <code>{escape(report.checkpoint)}'
        f"</code>: {escape(report.summary())}<br><small>{legend}</small>"
        "<table><thead><tr><th>state</th><th>path</th><th>program</th><th>checkpoint</th>"
        f"<th>why</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
