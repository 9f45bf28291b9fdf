"""DOT text for a graph view (internal, pure).

The browser lays out the DOT the TypeScript core writes; this writer gives the same picture to
Python users (``widget.to_dot()``, ``graphviz.Source``, files).  Node ids are ``n<id>``, never a
name; every name is untrusted and only ever appears inside a quoted, escaped DOT string.
"""

from __future__ import annotations

from collections.abc import Collection

from ckptlab.inspect._graphview import GraphView
from ckptlab.inspect._wire import SLOT

COLOURS = {
    "restored": "#2e7d32",
    "bound": "#0277bd",
    "pending": "#f9a825",
    "checkpoint_only": "#757575",
    "program_only": "#c62828",
    "shape_conflict": "#ad1457",
    "dtype_conflict": "#6a1b9a",
    "inconsistent": "#e65100",
    "stored": "#546e7a",
    "program": "#546e7a",
    "added": "#2e7d32",
    "removed": "#c62828",
    "changed": "#ef6c00",
    "unchanged": "#78909c",
}
"""Light-theme colour of each view state (the browser uses CSS variables with these defaults)."""
MAX_LABEL = 80


def dot_string(text: str) -> str:
    r"""Quote ``text`` as a DOT string: backslashes, quotes and control characters escaped.

    ``&`` becomes ``&amp;`` so Graphviz shows entity-like names (``&lt;``) literally.

    Examples
    --------
    >>> print(dot_string('a"b\\c\n'))
    "a\"b\\c "
    """
    cleaned = "".join(c if c.isprintable() else " " for c in text[:MAX_LABEL])
    escaped = cleaned.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return '"' + escaped + '"'


def label_of(view: GraphView, node_id: int) -> str:
    """A node's label: its name; an optimizer slot names its slot and variable.

    Examples
    --------
    >>> from ckptlab.inspect._placement import object_value
    >>> from ckptlab.inspect._graphview import build_view
    >>> slot = object_value("m/w/.OPTIMIZER_SLOT/opt/m", state="stored")
    >>> view = build_view([slot], title="t", source="s", kind="checkpoint", summary="")
    >>> label_of(view, len(view.nodes) - 1)
    'm of m/w'
    """
    node = view.nodes[node_id]
    if node.flags & SLOT and node.parent >= 0:
        return f"{view.nodes[node.parent].name} of {node.name}"
    return node.name


def view_dot(view: GraphView, visible: Collection[int] | None = None) -> str:
    """DOT for ``view`` (all nodes, or just ``visible``), coloured by state.

    Examples
    --------
    >>> from ckptlab.inspect._graphview import ViewValue, build_view
    >>> view = build_view([ViewValue(path=("w",), state="restored")], title="t", source="s",
    ...                   kind="match", summary="")
    >>> "n1 [" in view_dot(view)
    True
    """
    shown = set(range(len(view.nodes))) if visible is None else set(visible)
    lines = [
        "digraph ckptlab {",
        '  graph [rankdir=LR, nodesep=0.12, ranksep=0.35, fontname="sans-serif"];',
        '  node [shape=box, style="rounded,filled", fontsize=10, fontname="sans-serif", '
        'height=0.25, fillcolor="#eceff1", color="#90a4ae"];',
        '  edge [arrowsize=0.5, color="#90a4ae"];',
    ]
    for node in view.nodes:
        if node.id not in shown:
            continue
        attrs = [f"label={dot_string(label_of(view, node.id))}", f"id={dot_string(f'n{node.id}')}"]
        if node.state is not None:
            colour = COLOURS[node.state]
            attrs += [f'color="{colour}"', f'fillcolor="{colour}33"', f'class="st-{node.state}"']
        lines.append(f"  n{node.id} [{', '.join(attrs)}];")
        if node.parent >= 0 and node.parent in shown:
            lines.append(f"  n{node.parent} -> n{node.id};")
    for source, target, kind in view.edges:
        if source in shown and target in shown:
            style = "dashed" if kind == "suggest" else "dotted"
            lines.append(f"  n{source} -> n{target} [style={style}, constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"
