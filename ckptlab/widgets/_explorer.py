"""The explorer widget: traits and commands over a graph view (anywidget).

One model per graph.  The graph view JSON is sent once (gzip-compressed, as a binary buffer);
afterwards only selection, expansion, search, the focused node's details and the per-node
state bytes travel.  The Graphviz WebAssembly engine is sent at most once per page, on request.
Messages and details follow the wire contract in :mod:`ckptlab.inspect._wire`.

The widget follows its source: a status tells it when a restore binds, queues or writes (from
any code, or another widget on the same status), and after every notebook cell small programs
are re-checked (objects attached since).  Changes are pushed as state bytes, or as a new graph
when the tree itself changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import anywidget
import traitlets

from ckptlab.core import gc_paused, printable
from ckptlab.inspect import (
    VIEW_STATES,
    ExplorerSource,
    GraphView,
    view_dot,
    view_html,
    view_mimebundle,
    view_text,
)

logger = logging.getLogger("ckptlab")
STATIC = pathlib.Path(__file__).parent / "static"
_MISSING_ESM = """
export default { render({ el }) {
  el.textContent = "ckptlab: the explorer front end is not built (run `make js`).";
} };
"""


def _moved(ids: Iterable[int], old: GraphView, new: GraphView) -> list[int]:
    """The ids in ``new`` of the nodes ``ids`` named in ``old`` (by path; gone ones dropped)."""
    moved = (new.find(old.path_of(i)) for i in ids if 0 <= i < len(old.nodes))
    return [i for i in moved if i is not None]


def _asset(name: str, fallback: str) -> str:
    """A bundled front-end file's text.

    Text, not a path: anywidget watches a path for changes (hot reload) and subscribes every
    widget to the watcher, which then keeps every explorer, and its checkpoint, alive for good.
    """
    path = STATIC / name
    return path.read_text(encoding="utf-8") if path.exists() else fallback


class ExplorerWidget(anywidget.AnyWidget):
    """Interactive object graph coloured by state, with details, search and restore.

    Build one with :func:`ck.explore` or ``ck.diff(a, b).widget()``.  Everything the buttons do
    is also a method: :meth:`select`, :meth:`expand`, :meth:`restore_selected`, :meth:`to_dot`.
    """

    _esm = _asset("explorer.js", _MISSING_ESM)
    _css = _asset("explorer.css", "")

    graph = traitlets.Bytes(b"").tag(sync=True)
    """The graph view JSON, gzip-compressed (sent once)."""
    states = traitlets.Bytes(b"").tag(sync=True)
    """Current state of every node (one byte per node), updated after restores."""
    summary = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    expanded = traitlets.List(traitlets.Int()).tag(sync=True)
    """Expanded groups; empty until the front end opens its default view."""
    search = traitlets.Unicode("").tag(sync=True)
    hide_optimizer = traitlets.Bool(False).tag(sync=True)
    focused = traitlets.Int(-1).tag(sync=True)
    details = traitlets.Dict().tag(sync=True)
    """Details of the focused node, with value statistics (computed on focus)."""
    message = traitlets.Unicode("").tag(sync=True)
    can_restore = traitlets.Bool(False).tag(sync=True)
    fallback = traitlets.Dict().tag(sync=True)
    """``text/html`` and ``text/plain`` of the current state (the saved notebook's fallback)."""
    timeline = traitlets.Dict().tag(sync=True)
    """A training run's points and per-module series (:class:`~ckptlab.inspect._wire.TimelineData`),
    computed when the front end asks; empty for other explorers."""
    is_run = traitlets.Bool(False).tag(sync=True)
    progress = traitlets.Unicode("").tag(sync=True)
    """Long work in the kernel: ``"<fraction> <text>"``, empty when idle."""
    svg = traitlets.Unicode("").tag(sync=False)
    """The last SVG the front end exported (``Export SVG``)."""

    def __init__(self, source: ExplorerSource, **kwargs: Any) -> None:
        self._source = source
        self._view: GraphView = source.view()
        self._pending = False
        super().__init__(
            graph=self._view.to_bytes(),
            states=self._view.state_codes(),
            summary=self._view.summary,
            can_restore=self._view.can_restore,
            fallback=_fallback(self._view),
            is_run=hasattr(source, "timeline_data"),
            **kwargs,
        )
        self.on_msg(self._on_message)
        source.watch(self._changed)
        _follow(self)

    # -- data ---------------------------------------------------------------------------------

    @property
    def view(self) -> GraphView:
        """The current graph view (pure data)."""
        return self._view

    def to_dot(self, *, visible_only: bool = False) -> str:
        """DOT text of the graph (or of the expanded part); names are escaped."""
        visible = self._visible() if visible_only else None
        return view_dot(self._view, visible)

    def to_graphviz(self, *, visible_only: bool = False) -> Any:
        """The DOT as a ``graphviz.Source`` (rendering it to files needs the ``dot`` binary)."""
        import graphviz

        return graphviz.Source(self.to_dot(visible_only=visible_only))

    def _visible(self) -> set[int]:
        shown = {0}
        for node_id in self.expanded:
            if 0 <= node_id < len(self._view.nodes):
                shown.update(self._view.children[node_id])
        return shown

    # -- commands -----------------------------------------------------------------------------

    def _ids(self, paths: Iterable[str | Sequence[str]]) -> list[int]:
        ids = []
        for path in paths:
            parts = tuple(p for p in path.split("/") if p) if isinstance(path, str) else tuple(path)
            node_id = self._view.find(parts)
            if node_id is None:
                raise KeyError(f"No node at {'/'.join(parts)!r} in this explorer.")
            ids.append(node_id)
        return ids

    def select(self, paths: Iterable[str | Sequence[str]]) -> None:
        """Select nodes by display path (``"model/dense"``; a tuple of names for odd names)."""
        self.selected = self._ids(paths)

    def expand(self, paths: Iterable[str | Sequence[str]]) -> None:
        """Expand groups by display path (their ancestors too)."""
        opened = set(self.expanded)
        for node_id in self._ids(paths):
            while node_id >= 0:
                opened.add(node_id)
                node_id = self._view.nodes[node_id].parent
        self.expanded = sorted(opened)

    def restore_selected(self) -> str:
        """Restore the values under the selected nodes (``run_restore_ops(only=...)``)."""
        if not self.selected:
            self.message = "Select nodes first (click; shift-click selects a subtree)."
            return self.message
        before = self._view.state_codes()
        try:
            call = self._source.restore(self._view, list(self.selected))
        except Exception as error:
            self.message = f"Restore failed: {error}"
            raise
        self.refresh()
        restored = VIEW_STATES.index("restored")
        after = self._view.state_codes()
        count = sum(1 for a, b in zip(before, after, strict=False) if b == restored != a)
        if call.startswith("Nothing"):
            self.message = call
        else:
            self.message = f"Restored {count} value{'' if count == 1 else 's'}: {call}"
        return self.message

    def refresh(self) -> None:
        """Recompute states (after restores or program changes) and push them to the view."""
        self._pending = False
        with gc_paused():
            self._show(self._source.view())

    def _show(self, fresh: GraphView, *, resend: bool = False) -> None:
        """Make ``fresh`` the current view: states only, or the whole graph if the tree changed."""
        if fresh.same_shape(self._view) and not resend:
            changed = fresh.state_codes() != self._view.state_codes()
            self._view = fresh
        else:  # the tree changed (objects created since), or new data: send the whole graph
            old, self._view = self._view, fresh
            self.selected = _moved(self.selected, old, fresh)
            self.expanded = _moved(self.expanded, old, fresh)
            self.focused = next(iter(_moved([self.focused], old, fresh)), -1)
            self.graph = fresh.to_bytes()
            changed = True
        self.states = fresh.state_codes()
        self.summary = fresh.summary
        if changed:
            self.fallback = _fallback(fresh)
        if self.focused >= 0 and changed:
            self._load_details(self.focused)

    def _changed(self) -> None:
        """The source changed (a restore wrote, queued or bound): repaint soon, once."""
        if self._pending:
            return
        self._pending = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script): repaint now
            self.refresh()
            return
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._pending:
            self.refresh()

    def _after_cell(self) -> None:
        """After a notebook cell: pick up restores and, for small programs, attached objects."""
        if self._pending or self._source.recheck(self._view):
            self.refresh()

    def compare_values(self) -> None:
        """Colour matched values by how the program's value differs from the stored one."""
        compare = getattr(self._source, "compare_values", None)
        if compare is None:
            raise ValueError("Only an explorer of a restore status compares program values.")
        self.progress = "0 comparing values"
        try:
            with gc_paused():
                self._show(compare(), resend=True)
        finally:
            self.progress = ""

    def pick(self, a: int | str | os.PathLike[str], b: int | str | os.PathLike[str]) -> None:
        """Training runs: compare checkpoints ``a`` and ``b`` from now on.

        Each is an index into the timeline, oldest first (``-1`` is the newest), or a
        checkpoint's path as the timeline shows it, or its last part (``ckpt-10``).  Anything
        else raises :class:`ck.InvalidArgumentError` naming the valid ones; an unreadable
        checkpoint raises its error.  Either way the comparison stays as it was.
        """
        source: Any = self._source
        if getattr(source, "pick", None) is None:
            raise ValueError("Only the explorer of a training run picks checkpoints.")
        with gc_paused():
            self._show(source.pick(a, b), resend=True)
        if self.timeline:  # the indices the run's points are drawn by
            self.timeline = {**self.timeline, "a": source.a_index, "b": source.b_index}

    def load_timeline(self) -> dict[str, Any]:
        """Training runs: compute the timeline (lazily, cached per checkpoint) and show it."""
        compute = getattr(self._source, "timeline_data", None)
        if compute is None:
            raise ValueError("Only the explorer of a training run has a timeline.")

        def progress(fraction: float, text: str) -> None:
            self.progress = f"{fraction:.3f} {text}" if text else ""

        with gc_paused():
            self.timeline = dict(compute(progress))
        self.progress = ""
        return dict(self.timeline)

    def timeline_table(self, *, modules: bool = False) -> Any:
        """Training runs: the timeline as a pandas DataFrame (or a list of dicts without pandas).

        One row per checkpoint (step, time, size, weight norm, update ratio), or with
        ``modules=True`` one per (checkpoint, module).
        """
        timeline = getattr(self._source, "timeline", None)
        if timeline is None:
            raise ValueError("Only the explorer of a training run has a timeline.")
        rows = timeline.rows(modules=modules)
        try:
            import pandas  # type: ignore[import-untyped]
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    # -- front end ------------------------------------------------------------------------------

    @traitlets.observe("focused")
    def _on_focus(self, change: dict[str, Any]) -> None:
        self._load_details(change["new"])

    def _load_details(self, node_id: int) -> None:
        if not 0 <= node_id < len(self._view.nodes):
            self.details = {}
            return
        try:
            self.details = dict(self._source.details(self._view, node_id))
        except Exception as error:  # shown in the pane; the kernel keeps going
            logger.exception("ckptlab explorer: details of node %d failed", node_id)
            self.details = {"node": node_id, "error": str(error)}

    def _on_message(self, _widget: Any, content: Any, buffers: Sequence[bytes]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "restore":
            ids = content.get("nodes")
            if isinstance(ids, list):
                self.selected = [i for i in ids if isinstance(i, int)]
            try:
                self.restore_selected()
            except Exception:  # already reported through `message`
                logger.debug("restore from the explorer failed", exc_info=True)
        elif kind == "need-engine":
            engine = STATIC / "graphviz.js"
            data = engine.read_bytes() if engine.exists() else b""
            self.send({"type": "engine", "ok": bool(data)}, [data])
        elif kind == "svg" and isinstance(content.get("svg"), str):
            self.svg = content["svg"]
        elif kind in ("compare-values", "need-timeline", "pick"):
            self._run(content)

    def _run(self, content: dict[str, Any]) -> None:
        """A long command from the front end; failures are reported through ``message``."""
        try:
            if content["type"] == "compare-values":
                self.compare_values()
            elif content["type"] == "need-timeline":
                self.load_timeline()
            elif isinstance(content.get("a"), int) and isinstance(content.get("b"), int):
                self.pick(content["a"], content["b"])
        except Exception as error:
            logger.exception("ckptlab explorer: %s failed", content["type"])
            self.message = f"Failed: {error}"
            self.progress = ""

    def export_svg(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the SVG last exported from the front end (its "Export SVG" button) to ``path``."""
        if not self.svg:
            raise ValueError(
                "No SVG yet: press the explorer's 'Export SVG' button first (the layout runs in "
                "the browser), or use widget.to_dot() with Graphviz."
            )
        target = pathlib.Path(path)
        target.write_text(self.svg, encoding="utf-8")
        return target

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        static = view_mimebundle(self._view)
        if isinstance(bundle, tuple):
            data, metadata = bundle
            return {**data, **static}, metadata
        return {**(bundle or {}), **static}

    def __repr__(self) -> str:
        return printable(f"<ckptlab explorer {self._view.source}: {self._view.summary}>")


def _fallback(view: GraphView) -> dict[str, str]:
    return {"text/html": view_html(view), "text/plain": view_text(view)}


_FOLLOWING: weakref.WeakSet[ExplorerWidget] = weakref.WeakSet()
_HOOKED = False


def _after_cell(*_args: Any) -> None:
    for widget in list(_FOLLOWING):
        try:
            widget._after_cell()
        except Exception:  # a notebook keeps working whatever an explorer does
            logger.exception("ckptlab explorer: refreshing after a cell failed")


def _follow(widget: ExplorerWidget) -> None:
    """Re-check ``widget`` after every notebook cell (IPython's ``post_run_cell``)."""
    global _HOOKED
    _FOLLOWING.add(widget)
    if _HOOKED:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.events.register("post_run_cell", _after_cell)
        _HOOKED = True
