"""``ck.explore`` and ``ck.diff``: explorer sources over statuses, checkpoints and programs.

The pure view model is in :mod:`ckptlab.inspect`, the widget in :mod:`ckptlab.widgets`; this
module connects them to the facade: it turns reports, documents and live programs into view
values, reads one value for the details pane, and restores a selection.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ckptlab._checkpoint import Checkpoint
from ckptlab._reader import open_path
from ckptlab.core import (
    MatchReport,
    NodePath,
    ReportEntry,
    ValueSpec,
    gc_paused,
    unescape_local_name,
)
from ckptlab.core._keys import OPTIMIZER_SLOT
from ckptlab.engine import CheckpointLoadStatus, InitializationOnlyStatus, NameBasedSaverStatus
from ckptlab.errors import CkptlabError
from ckptlab.inspect import GraphView, ViewValue, build_view
from ckptlab.inspect._diff import CheckpointDiff, DiffEntry, DiffState, diff_view
from ckptlab.storage import StoredCheckpoint

if TYPE_CHECKING:  # the widget needs the widgets extra; it is imported when one is made
    from ckptlab.widgets import ExplorerWidget

__all__ = ["diff", "explore", "value_stats"]

HISTOGRAM_BINS = 20
SLOTS_GROUP = "slots"


def _unescape(segment: str) -> str:
    if "." not in segment:  # the common case, and the fast one
        return segment
    try:
        return unescape_local_name(segment)
    except CkptlabError:
        return segment


def object_value(
    prefix: str,
    *,
    state: str,
    key: str = "",
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    optimizer: bool = False,
    reason: str = "",
) -> ViewValue:
    """A value at escaped object path ``prefix``; optimizer slots are placed under their optimizer.

    Examples
    --------
    >>> object_value("m/w/.OPTIMIZER_SLOT/opt/m", state="stored").path
    ('opt', 'slots', 'm', 'm/w')
    """
    segments = prefix.split("/") if prefix else []
    if OPTIMIZER_SLOT in segments:
        at = segments.index(OPTIMIZER_SLOT)
        variable = tuple(_unescape(s) for s in segments[:at])
        owner = tuple(_unescape(s) for s in segments[at + 1 : -1])
        slot = _unescape(segments[-1]) if len(segments) > at + 1 else "?"
        return ViewValue(
            path=(*owner, SLOTS_GROUP, slot, "/".join(variable)),
            state=state,
            key=key,
            restore_path=prefix,
            stored=stored,
            program=program,
            optimizer=True,
            slot=True,
            synthetic_depth=len(owner),
            link=variable,
            reason=reason,
        )
    return ViewValue(
        path=tuple(_unescape(s) for s in segments),
        state=state,
        key=key,
        restore_path=prefix,
        stored=stored,
        program=program,
        optimizer=optimizer,
        reason=reason,
    )


def path_value(
    path: NodePath,
    *,
    state: str,
    key: str,
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    optimizer: bool = False,
) -> ViewValue:
    """Like :func:`object_value` from a graph path (no escaping round trip: fast for 100k)."""
    if path.slot is not None:
        return object_value(path.prefix, state=state, key=key, stored=stored, program=program)
    return ViewValue(
        path=path.path,
        state=state,
        key=key,
        restore_path=None,
        stored=stored,
        program=program,
        optimizer=optimizer,
    )


def name_value(
    key: str,
    *,
    state: str,
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    reason: str = "",
) -> ViewValue:
    """A value of a name-based checkpoint: its name split on ``/`` and ``.`` into a tree.

    Examples
    --------
    >>> name_value("model.layers.0.weight", state="stored").path
    ('model', 'layers', '0', 'weight')
    """
    parts = tuple(p for p in re.split(r"[/.]", key) if p) or (key,)
    return ViewValue(
        path=parts,
        state=state,
        key=key,
        restore_path=key,
        stored=stored,
        program=program,
        reason=reason,
    )


def value_stats(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """min/max/mean/std of the finite elements, NaN/Inf counts and a small histogram.

    Complex values are summarised by magnitude, booleans as 0/1.

    Examples
    --------
    >>> s = value_stats(np.array([1.0, 2.0, np.nan, np.inf]))
    >>> s["min"], s["max"], s["nan"], s["inf"]
    (1.0, 2.0, 1, 1)
    """
    data = np.asarray(array)
    if data.dtype.kind == "c":
        data = np.abs(data)
    if data.dtype.kind == "b":
        data = data.astype(np.int8)
    if data.dtype.kind not in "iuf":  # bfloat16 and other extension dtypes
        data = data.astype(np.float64)
    flat = data.reshape(-1)
    out: dict[str, Any] = {"size": int(flat.size), "nan": 0, "inf": 0}
    if flat.dtype.kind == "f":
        out["nan"] = int(np.count_nonzero(np.isnan(flat)))
        out["inf"] = int(np.count_nonzero(np.isinf(flat)))
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return out
    values = flat.astype(np.float64)
    out.update(
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        std=float(values.std()),
        zeros=int(np.count_nonzero(values == 0)),
    )
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    out["histogram"] = {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}
    return out


def _spec_json(spec: ValueSpec | None, itemsize: int | None = None) -> dict[str, Any] | None:
    if spec is None:
        return None
    out: dict[str, Any] = {"shape": list(spec.shape), "dtype": spec.dtype}
    if itemsize is not None and all(d is not None for d in spec.shape):
        out["nbytes"] = math.prod(d for d in spec.shape if d is not None) * itemsize
    return out


def _node_details(view: GraphView, node_id: int) -> dict[str, Any]:
    node = view.nodes[node_id]
    out: dict[str, Any] = {"node": node_id, "path": "/".join(view.path_of(node_id))}
    value = node.value
    if value is not None:
        out.update(
            key=value.key, state=node.state, reason=value.reason, restore_path=value.restore_path
        )
    out["suggestions"] = [
        {"program": s.program, "checkpoint": s.checkpoint, "why": s.why}
        for s in view.suggestions
        if node_id in (s.program, s.checkpoint)
    ]
    return out


def _stats_of(read: Callable[[], np.ndarray[Any, Any]]) -> dict[str, Any]:
    try:
        array = read()
    except CkptlabError as error:  # a damaged value is shown, not raised
        return {"error": str(error)}
    return {**value_stats(array), "nbytes": int(array.nbytes)}


def covering_paths(chosen: Iterable[str], known: Iterable[str]) -> list[str]:
    """The fewest object paths whose subtrees hold exactly the ``chosen`` values among ``known``.

    An optimizer slot (``model/w/.OPTIMIZER_SLOT/opt/m``) belongs to its optimizer, as for
    ``run_restore_ops(only=...)``: only the optimizer's path (or the slot's own) covers it.

    Examples
    --------
    >>> covering_paths(["m/a/w", "m/a/b"], ["m/a/w", "m/a/b", "m/c/w"])
    ['m/a']
    >>> covering_paths(["opt/iter", "m/w/.OPTIMIZER_SLOT/opt/m"], ["m/w", "opt/iter"])
    ['opt']
    """
    placed: dict[str, str] = {}

    def place(path: str) -> str:
        """A slot sits below its optimizer, as one opaque name (mapped back at the end)."""
        segments = path.split("/")
        if OPTIMIZER_SLOT not in segments:
            return path
        owner = "/".join(segments[segments.index(OPTIMIZER_SLOT) + 1 : -1])
        opaque = "\x01" + path.replace("/", "\x02")
        below = f"{owner}/{opaque}" if owner else opaque
        placed[below] = path
        return below

    picked = sorted({place(p) for p in chosen})
    universe = sorted({place(p) for p in known} | set(picked))
    picked_set, universe_set = set(picked), set(universe)

    def count(items: list[str], members: set[str], prefix: str) -> int:
        below = bisect.bisect_left(items, prefix + "0") - bisect.bisect_left(items, prefix + "/")
        return below + (prefix in members)

    result: set[str] = set()
    for path in picked:
        segments = path.split("/")
        for end in range(1, len(segments) + 1):
            if segments[end - 1].startswith("."):
                result.add(path)
                break
            prefix = "/".join(segments[:end])
            if prefix in result:
                break
            if count(universe, universe_set, prefix) == count(picked, picked_set, prefix):
                result.add(prefix)
                break
        else:
            result.add(path)
    return sorted(
        placed.get(p, p)
        for p in result
        if not any(p.startswith(q + "/") for q in _ancestors(p) & result)
    )


def _ancestors(path: str) -> set[str]:
    segments = path.split("/")
    return {"/".join(segments[:i]) for i in range(1, len(segments))}


class StatusSource:
    """An explorer over a restore status: match states, and restoring a selection."""

    def __init__(self, status: Any) -> None:
        self.status = status
        self.name_based = isinstance(status, NameBasedSaverStatus)
        self.stored: StoredCheckpoint | None = None
        if isinstance(status, CheckpointLoadStatus):
            self.stored = status._coordinator.source
        elif self.name_based:
            self.stored = status._restore.source

    def _value(self, entry: ReportEntry) -> ViewValue:
        kwargs: dict[str, Any] = {
            "state": entry.state,
            "stored": entry.stored,
            "program": entry.program,
            "reason": entry.reason,
        }
        if self.name_based and entry.state == "checkpoint_only":
            return name_value(entry.key, **kwargs)
        value = object_value(entry.path, key=entry.key, optimizer=entry.optimizer, **kwargs)
        if self.name_based:  # name-based restores take variable names in only=[...]
            return ViewValue(**{**_fields(value), "restore_path": entry.key})
        return value

    def view(self) -> GraphView:
        """Match states of the status's report, now."""
        report: MatchReport = self.status.report()
        restorable = not isinstance(self.status, InitializationOnlyStatus) and report.lazy
        return build_view(
            (self._value(e) for e in report.entries),
            title=type(self.status).__name__,
            source=report.checkpoint,
            kind="match",
            summary=report.summary(),
            can_restore=restorable,
        )

    def details(self, view: GraphView, node_id: int) -> dict[str, Any]:
        """Node details; for a stored value, statistics read from that value only."""
        out = _node_details(view, node_id)
        value = view.nodes[node_id].value
        stored = self.stored
        if value is not None and stored is not None and value.key in stored.document.values:
            out["stats"] = _stats_of(lambda: stored.read(value.key))
            out["checksum"] = "verified (crc32c)" if "error" not in out["stats"] else "FAILED"
        return out

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """``run_restore_ops(only=...)`` for the values under the selected nodes."""
        chosen = {
            v.restore_path
            for n in node_ids
            for i in view.subtree(n)
            if (v := view.nodes[i].value) is not None
            and v.restore_path is not None
            and v.stored is not None  # program-only values have nothing to restore
        }
        if not chosen:
            return "Nothing selected to restore."
        if self.name_based:
            paths = sorted(chosen)
        else:
            known = (v.restore_path for v in (n.value for n in view.nodes) if v and v.restore_path)
            paths = covering_paths(chosen, known)
        self.status.run_restore_ops(only=paths)
        shown = ", ".join(repr(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        return f"run_restore_ops(only=[{shown}])"


def _fields(value: ViewValue) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


class CheckpointSource:
    """An explorer over a stored checkpoint alone (nothing to compare)."""

    def __init__(self, stored: StoredCheckpoint) -> None:
        self.stored = stored

    def view(self) -> GraphView:
        """Every stored value, by object path (or split name for name-based checkpoints)."""
        document = self.stored.document
        specs = self.stored.specs()
        values: list[ViewValue] = []
        if document.graph is None:
            values = [name_value(k, state="stored", stored=s) for k, s in specs.items()]
        else:
            graph = document.graph
            optimizer = graph.optimizer_nodes()
            for node_id, path in enumerate(graph.paths()):
                key = graph.nodes[node_id].value_key
                if key is not None and path is not None and key in specs:
                    values.append(
                        path_value(
                            path,
                            state="stored",
                            key=key,
                            stored=specs[key],
                            optimizer=node_id in optimizer,
                        )
                    )
        total = sum(s.nbytes for s in document.values.values())
        return build_view(
            values,
            title="Checkpoint",
            source=self.stored.display_path,
            kind="checkpoint",
            summary=f"{len(values)} values, {_human(total)}",
        )

    def details(self, view: GraphView, node_id: int) -> dict[str, Any]:
        """Node details with statistics of the stored value."""
        out = _node_details(view, node_id)
        value = view.nodes[node_id].value
        if value is not None and value.key in self.stored.document.values:
            out["stats"] = _stats_of(lambda: self.stored.read(value.key))
            out["checksum"] = "verified (crc32c)" if "error" not in out["stats"] else "FAILED"
        return out

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """Nothing to restore into: there is no program."""
        raise ValueError(
            "This explorer shows a checkpoint alone; explore a lazy status to restore."
        )


class ProgramSource:
    """An explorer over a live program (what ``save()`` would write)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._objects: dict[str, Any] = {}

    def view(self) -> GraphView:
        """Every value the program holds, with its shape and dtype."""
        program = self.checkpoint._ck_view().walk()
        optimizer = program.graph.optimizer_nodes()
        values, self._objects = [], {}
        for node_id, (path, spec) in enumerate(
            zip(program.graph.paths(), program.specs, strict=True)
        ):
            if path is None or spec is None:
                continue
            self._objects[path.prefix] = program.objects[node_id]
            values.append(
                object_value(
                    path.prefix,
                    state="program",
                    program=spec,
                    key=program.graph.nodes[node_id].value_key or "",
                    optimizer=node_id in optimizer,
                )
            )
        return build_view(
            values,
            title="Program",
            source=repr(self.checkpoint),
            kind="program",
            summary=f"{len(values)} values (not saved yet)",
        )

    def details(self, view: GraphView, node_id: int) -> dict[str, Any]:
        """Node details with statistics of the live value."""
        out = _node_details(view, node_id)
        value = view.nodes[node_id].value
        obj = self._objects.get(value.restore_path or "") if value is not None else None
        if obj is not None:
            out["stats"] = _stats_of(lambda: np.asarray(obj._ck_value()))
        return out

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """Nothing to restore from: there is no checkpoint."""
        raise ValueError("This explorer shows a program alone; explore a lazy status to restore.")


class DiffSource:
    """An explorer over the differences between two checkpoints."""

    def __init__(self, result: CheckpointDiff, a: StoredCheckpoint, b: StoredCheckpoint) -> None:
        self.result, self.a, self.b = result, a, b

    def view(self) -> GraphView:
        """Added, removed, changed and unchanged values."""
        return diff_view(self.result)

    def details(self, view: GraphView, node_id: int) -> dict[str, Any]:
        """Node details with statistics of the value in ``b`` (else ``a``)."""
        out = _node_details(view, node_id)
        value = view.nodes[node_id].value
        if value is not None:
            side = self.b if value.key in self.b.document.values else self.a
            out["stats"] = _stats_of(lambda: side.read(value.key))
            entry = next((e for e in self.result.entries if e.key == value.key), None)
            if entry is not None and entry.max_abs_diff is not None:
                out["max_abs_diff"] = entry.max_abs_diff
        return out

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """A diff restores nothing."""
        raise ValueError("A diff has nothing to restore.")


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"  # pragma: no cover


def source_for(target: Any, program: Any = None) -> Any:
    """The explorer source for ``target`` (see :func:`explore`)."""
    if isinstance(target, CheckpointLoadStatus | NameBasedSaverStatus | InitializationOnlyStatus):
        return StatusSource(target)
    if isinstance(target, Checkpoint):
        return ProgramSource(target)
    if isinstance(target, str | os.PathLike):
        if program is not None:
            checkpoint = program if isinstance(program, Checkpoint) else Checkpoint(root=program)
            status = checkpoint.read(open_path(target).display_path, lazy=True)
            status.expect_partial()
            return StatusSource(status)
        return CheckpointSource(open_path(target))
    raise TypeError(
        f"ck.explore() takes a checkpoint path or directory, a ck.Checkpoint, or a restore status; "
        f"got {type(target).__name__}. For a restore you can debug, use "
        "ck.explore(ck.Checkpoint(model=model).restore(path, lazy=True))."
    )


def explore(target: Any, *, program: Any = None) -> ExplorerWidget:
    """An interactive explorer widget of a checkpoint, a program, or how they matched.

    Parameters
    ----------
    target
        A checkpoint path or directory (its latest checkpoint), a :class:`ck.Checkpoint` (its
        program: what ``save()`` would write), or a status from ``restore``/``read``; with
        ``restore(path, lazy=True)`` the explorer's "Restore selected" writes chosen subgraphs.
    program
        With a path: a ``Checkpoint`` (or any trackable) to compare against, through
        ``program.read(path, lazy=True)``: nothing is written until "Restore selected".

    Returns
    -------
    ckptlab.widgets.ExplorerWidget
        Displays as the interactive graph; outside widget front ends as an HTML table.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> ck.explore(path).summary
    '1 values, 8 B'
    """
    try:
        from ckptlab.widgets import ExplorerWidget
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            f"ck.explore needs the widget extras ({error}); pip install 'ckptlab[widgets]'. "
            "Without them, status.report() and ck.diff(a, b) give the same information as data."
        ) from error
    with gc_paused():  # opening and laying out 100,000 values builds millions of small objects
        return ExplorerWidget(source_for(target, program))


class Diff(CheckpointDiff):
    """:class:`CheckpointDiff` that also displays as an explorer widget in notebooks."""

    __slots__ = ()

    def widget(self) -> ExplorerWidget:
        """The explorer widget of this diff.

        Returns
        -------
        ExplorerWidget
            The two checkpoints' union, values coloured added, removed, changed or unchanged.

        Examples
        --------
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> a = ck.Checkpoint(w=ck.Variable([1.0])).write(d + "/a")
        >>> b = ck.Checkpoint(w=ck.Variable([2.0])).write(d + "/b")
        >>> ck.diff(a, b).widget().summary
        '1 changed'
        """
        from ckptlab.widgets import ExplorerWidget

        with gc_paused():
            return ExplorerWidget(DiffSource(self, open_path(self.a), open_path(self.b)))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        try:
            return self.widget()._repr_mimebundle_(**kwargs)
        except ImportError:
            from ckptlab.inspect import view_mimebundle

            return view_mimebundle(diff_view(self))


def _max_abs_diff(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[bool, float | None]:
    """(equal, max |y - x|), NaNs at the same places equal, bit-exact otherwise."""
    if x.dtype.kind in "fc" or x.dtype.kind not in "iub":
        xf, yf = (
            x.astype(np.complex128 if x.dtype.kind == "c" else np.float64),
            y.astype(np.complex128 if y.dtype.kind == "c" else np.float64),
        )
        both_nan = np.isnan(xf) & np.isnan(yf)
        equal = bool(np.all((xf == yf) | both_nan))
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.abs(np.where(both_nan, 0, yf - xf))
        return equal, float(np.nanmax(delta)) if delta.size else 0.0
    equal = bool(np.array_equal(x, y))
    delta = np.abs(y.astype(np.float64) - x.astype(np.float64))
    return equal, float(delta.max()) if delta.size else 0.0


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Diff:
    """Compare two checkpoints (paths or directories): added, removed and changed values.

    Values present in both with the same shape and dtype are read and compared; "changed"
    entries carry the largest absolute difference.  Displays as an explorer widget.

    Parameters
    ----------
    a, b
        Two checkpoints (paths, URLs, or directories: their latest checkpoints), in any format
        ckptlab reads.

    Returns
    -------
    Diff
        Every key of either checkpoint as ``added``, ``removed``, ``changed`` or
        ``unchanged``, as data; ``.widget()`` shows it.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> a = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(d, "a"))
    >>> b = ck.Checkpoint(w=ck.Variable([1.0, 2.5]), v=ck.Variable(0)).write(os.path.join(d, "b"))
    >>> result = ck.diff(a, b)
    >>> result.summary(), result.changed[0].max_abs_diff
    ('1 changed, 1 added', 0.5)
    """
    left, right = open_path(a), open_path(b)
    specs_a, specs_b = left.specs(), right.specs()
    paths = {**_display_paths(left), **_display_paths(right)}
    entries = []
    for key in [*specs_a, *(k for k in specs_b if k not in specs_a)]:
        sa, sb = specs_a.get(key), specs_b.get(key)
        path = paths.get(key, (key,))
        if sa is None or sb is None:
            side: DiffState = "added" if sa is None else "removed"
            entries.append(DiffEntry(key=key, path=path, state=side, a=sa, b=sb))
        elif sa != sb:
            why = "shape changed" if sa.shape != sb.shape else "dtype changed"
            entries.append(
                DiffEntry(
                    key=key,
                    path=path,
                    state="changed",
                    a=sa,
                    b=sb,
                    reason=f"{why}: {sa.describe()} -> {sb.describe()}",
                )
            )
        else:
            equal, delta = _max_abs_diff(left.read(key), right.read(key))
            entries.append(
                DiffEntry(
                    key=key,
                    path=path,
                    state="unchanged" if equal else "changed",
                    a=sa,
                    b=sb,
                    max_abs_diff=None if equal else delta,
                    reason="" if equal else f"max |b - a| = {delta:.6g}",
                )
            )
    return Diff(a=left.display_path, b=right.display_path, entries=tuple(entries))


def _display_paths(stored: StoredCheckpoint) -> dict[str, tuple[str, ...]]:
    graph = stored.document.graph
    if graph is None:
        return {k: name_value(k, state="stored").path for k in stored.document.values}
    out = {}
    for node, path in zip(graph.nodes, graph.paths(), strict=True):
        if node.value_key is not None and path is not None:
            out[node.value_key] = object_value(path.prefix, state="stored").path
    return out
