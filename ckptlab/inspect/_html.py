"""HTML summaries of reports and graph views: the fallback outside widget front ends (internal)."""

from __future__ import annotations

from html import escape

from ckptlab.core import STATES, MatchReport, printable
from ckptlab.inspect._dot import COLOURS
from ckptlab.inspect._graphview import GraphView
from ckptlab.inspect._wire import NO_PROBLEMS, PROBLEM_STATES

_COLOURS = COLOURS
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


def view_html(view: GraphView, *, max_rows: int = MAX_ROWS) -> str:
    """The static fallback of an explorer: summary, legend with counts, a table of problems.

    This is what nbconvert, GitHub and front ends without widgets show.  Every name is escaped.

    Examples
    --------
    >>> from ckptlab.inspect._graphview import ViewValue, build_view
    >>> bad = ViewValue(path=("<img src=x>",), state="program_only", reason="not in the checkpoint")
    >>> view = build_view([bad], title="t", source="s", kind="match", summary="1 missing")
    >>> html = view_html(view)
    >>> "<img" in html, "&lt;img src=x&gt;" in html
    (False, True)
    """
    counts = view.counts()
    legend = " ".join(
        f'<span style="color:{COLOURS[s]}">&#9632; {escape(s)} ({n})</span>'
        for s, n in counts.items()
    )
    problems = list(view.values(PROBLEM_STATES))
    rows = []
    for node in problems[:max_rows]:
        value = node.value
        assert value is not None
        stored = value.stored.describe() if value.stored else ""
        program = value.program.describe() if value.program else ""
        assert node.state is not None
        rows.append(
            f'<tr><td style="color:{COLOURS[node.state]}">{escape(node.state)}</td>'
            f"<td><code>{escape('/'.join(view.path_of(node.id)))}</code></td>"
            f"<td>{escape(program)}</td><td>{escape(stored)}</td><td>{escape(value.reason)}</td></tr>"
        )
    if len(problems) > max_rows:
        rows.append(f'<tr><td colspan="5">... and {len(problems) - max_rows} more</td></tr>')
    table = (
        "<table><thead><tr><th>state</th><th>path</th><th>program</th><th>checkpoint</th>"
        f"<th>why</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else f"<p>{escape(NO_PROBLEMS[view.kind])}</p>"
    )
    hints = "".join(
        f"<li><code>{escape('/'.join(view.path_of(s.program)))}</code> &#8596; "
        f"<code>{escape('/'.join(view.path_of(s.checkpoint)))}</code>: {escape(s.why)}</li>"
        for s in view.suggestions[:max_rows]
    )
    suggestions = f"<p><b>Likely matches</b></p><ul>{hints}</ul>" if hints else ""
    return (
        f'<div class="ckptlab-explorer-static"><b>{escape(view.title)}</b> '
        f"<code>{escape(view.source)}</code>: {escape(view.summary)}<br>"
        f"<small>{legend}</small>{table}{suggestions}</div>"
    )


def view_text(view: GraphView) -> str:
    """One paragraph of plain text: title, source, summary and the first problems.

    Every name is shown with control characters escaped (:func:`ckptlab.core.printable`).
    """
    lines = [printable(f"{view.title} {view.source}: {view.summary}")]
    problems = list(view.values(PROBLEM_STATES))
    lines += [f"  {n.state}: {printable('/'.join(view.path_of(n.id)))}" for n in problems[:20]]
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more")
    return "\n".join(lines)
