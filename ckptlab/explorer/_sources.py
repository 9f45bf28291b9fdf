"""Explorer sources: what a widget draws for a status, a checkpoint, a program or a diff.

Each source turns facade objects into a pure :class:`~ckptlab.inspect.GraphView` (placement rules
in :mod:`ckptlab.inspect`), reads one value for the details pane, and, for lazy statuses,
restores a selection.  Calls into the restore engine go through :mod:`._engine` only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Sequence
from typing import Any

import numpy as np

from ckptlab.core import MatchReport, ReportEntry, is_floating, total_nbytes
from ckptlab.errors import CkptlabError
from ckptlab.explorer import _engine
from ckptlab.explorer._values import change, difference, squares, value_stats
from ckptlab.inspect import (
    CheckpointDiff,
    GraphView,
    NodeDetails,
    Stats,
    ViewValue,
    build_view,
    covering_paths,
    diff_view,
    name_value,
    object_value,
    path_value,
)
from ckptlab.storage import StoredCheckpoint

#: Programs up to this many values are re-checked after every notebook cell (attached objects).
RECHECK_LIMIT = 20_000
MATCHED = frozenset({"restored", "bound"})
CONFLICTS = frozenset({"shape_conflict", "dtype_conflict"})
HELD_BACK = "held back"
"""A restorable slot of a parameter one of whose slots conflicts: a parameter's optimizer state
is one unit (a torch Adam given ``step`` without ``exp_avg`` fails on its next step)."""


def _slot_unit(restore_path: str) -> str:
    """A slot's variable and optimizer: ``model/w/.OPTIMIZER_SLOT/optimizer`` (name dropped)."""
    return restore_path.rsplit("/", 1)[0]


def _conflicting_slot_units(view: GraphView) -> set[str]:
    """The slot units (:func:`_slot_unit`) holding a slot that conflicts."""
    return {
        _slot_unit(node.value.restore_path)
        for node in view.nodes
        if node.value is not None
        and node.value.slot
        and node.value.restore_path is not None
        and node.state in CONFLICTS
    }


SKIPPED = {
    "shape_conflict": "conflicting",
    "dtype_conflict": "conflicting",
    "inconsistent": "inconsistent",
    "pending": "pending",
}
"""Values "Restore selected" leaves out, and how its message counts them; it restores the
values that are bound and not yet written (program-only and unused ones have nothing to write)."""

SKIP_REASONS = {
    "conflicting": "shape or dtype differs",
    "inconsistent": "one saved object, two program objects",
    "pending": "its object does not exist yet",
    HELD_BACK: "optimizer state of a parameter with a conflicting slot",
}
"""Why each kind of skipped value cannot be written (the message when nothing is restored)."""

NOT_STORED = "not in the checkpoint: no stored value"
BUILT = "built from several stored values (the reason names them): no statistics of its own"
"""The details' ``no_stats`` of a value only the program has."""


def node_details(view: GraphView, node_id: int) -> NodeDetails:
    """What the view itself knows of a node: path, key, state, reason, suggestions."""
    node = view.nodes[node_id]
    out: NodeDetails = {"node": node_id, "path": "/".join(view.path_of(node_id))}
    value = node.value
    if value is not None:
        out["key"] = value.key
        out["state"] = node.state or ""
        out["reason"] = value.reason
        out["restore_path"] = value.restore_path
    out["suggestions"] = [
        {"program": s.program, "checkpoint": s.checkpoint, "why": s.why}
        for s in view.suggestions
        if node_id in (s.program, s.checkpoint)
    ]
    return out


def stats_of(read: Callable[[], np.ndarray[Any, Any]]) -> Stats:
    """Statistics of the value ``read`` returns; a damaged value is shown, not raised."""
    try:
        array = read()
    except CkptlabError as error:
        return {"error": str(error)}
    return {**value_stats(array), "nbytes": int(array.nbytes)}


def stored_details(view: GraphView, node_id: int, stored: StoredCheckpoint | None) -> NodeDetails:
    """Node details with statistics of the stored value (verified while read)."""
    out = node_details(view, node_id)
    value = view.nodes[node_id].value
    if value is not None and stored is not None and value.key in stored.document.values:
        out["stats"] = stats_of(lambda: stored.read(value.key))
        out["checksum"] = "verified (crc32c)" if "error" not in out["stats"] else "FAILED"
    return out


def conflict_reason(entry: ReportEntry) -> str:
    """Why a conflict is one: which of shape and dtype differ, expected vs found.

    Examples
    --------
    >>> from ckptlab.core import ValueSpec
    >>> entry = ReportEntry(path="w", pretty="w", key="w", state="shape_conflict",
    ...                     stored=ValueSpec(shape=(2,), dtype="float32"),
    ...                     program=ValueSpec(shape=(3,), dtype="float32"))
    >>> conflict_reason(entry)
    'shape differs: program (3,) float32, checkpoint (2,) float32'
    """
    if entry.state not in CONFLICTS or entry.stored is None or entry.program is None:
        return ""
    what = "shape" if entry.state == "shape_conflict" else "dtype"
    return (
        f"{what} differs: program {entry.program.describe()}, checkpoint {entry.stored.describe()}"
    )


def _fields(value: ViewValue) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


class StatusSource:
    """An explorer over a restore status: match states, value changes, restoring a selection."""

    def __init__(self, status: Any) -> None:
        self.status = status
        self.name_based = _engine.is_name_based(status)
        self.stored = _engine.stored_of(status)
        self._program_paths: dict[str, str] = {}
        """Restore path -> the program object's path prefix (values with a program side)."""
        self._compared: dict[str, tuple[float, float, float]] | None = None

    def _value(self, entry: ReportEntry) -> ViewValue:
        kwargs: dict[str, Any] = {
            "state": entry.state,
            "stored": entry.stored,
            "program": entry.program,
            "reason": entry.reason or conflict_reason(entry),
        }
        if self.name_based and entry.state == "checkpoint_only":
            return name_value(entry.key, **kwargs)
        value = object_value(entry.path, key=entry.key, optimizer=entry.optimizer, **kwargs)
        restore_path = entry.key if self.name_based else value.restore_path
        if entry.state != "checkpoint_only" and restore_path is not None:
            self._program_paths[restore_path] = entry.path
        compared = self._compared.get(entry.key) if self._compared is not None else None
        if self.name_based or compared is not None:
            fields = {
                **_fields(value),
                "restore_path": restore_path,
                "change": compared,
                "names": entry.names,
            }
            value = ViewValue(**fields)
        return value

    def view(self) -> GraphView:
        """Match states of the status's report, now."""
        report: MatchReport = self.status.report()
        program_optimizer = any(
            e.optimizer and e.state != "checkpoint_only" for e in report.entries
        )
        return build_view(
            (self._value(e) for e in report.entries),
            title=type(self.status).__name__,
            source=report.checkpoint,
            kind="match",
            summary=report.summary(),
            can_restore=_engine.can_restore(self.status),
            options={"hide_optimizer": not program_optimizer},
        )

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (held weakly) whenever the status's restore changes something."""
        _engine.listen(self.status, callback)

    def recheck(self, view: GraphView) -> bool:
        """Whether to rebuild the view after a notebook cell (objects may have been attached)."""
        return len(view.nodes) <= RECHECK_LIMIT

    def _program_value(self, restore_path: str | None) -> np.ndarray[Any, Any] | None:
        prefix = self._program_paths.get(restore_path or "")
        program = _engine.program_of(self.status)
        if prefix is None or program is None:
            return None
        found = _engine.program_values(_engine.walk_view(program)).get(prefix)
        return None if found is None else _engine.value_of(found[0])

    def details(self, view: GraphView, node_id: int) -> NodeDetails:
        """Node details; for a stored value its statistics, and how the program's value differs.

        Reads that one stored value, once.
        """
        out = node_details(view, node_id)
        value = view.nodes[node_id].value
        stored = self.stored
        if value is None:
            return out
        if stored is None or value.key not in stored.document.values:
            if stored is not None and view.nodes[node_id].state in MATCHED:
                out["no_stats"] = BUILT  # its reason names the stored values it is built from
                return out
            # A program-only value's key is the one it would have: the checkpoint holds none.
            out["expected_key"] = out.pop("key")
            out["no_stats"] = NOT_STORED
            return out
        read: list[np.ndarray[Any, Any]] = []

        def once() -> np.ndarray[Any, Any]:
            read.append(stored.read(value.key))
            return read[0]

        out["stats"] = stats_of(once)
        out["checksum"] = "verified (crc32c)" if read else "FAILED"
        current = (
            self._program_value(value.restore_path)
            if read and view.nodes[node_id].state in MATCHED
            else None
        )
        if current is not None:
            out["change"] = change(read[0], current)
        return out

    def compare_values(self) -> GraphView:
        """A view whose matched values carry how the program's value differs from the stored one.

        Reads every matched stored value once (batched) and the program's current values.
        """
        stored = self.stored
        program = _engine.program_of(self.status)
        if stored is None or program is None:
            return self.view()
        report: MatchReport = self.status.report()
        live = _engine.program_values(_engine.walk_view(program))
        pairs = [
            (e.key, live[e.path][0])
            for e in report.entries
            if e.state in MATCHED and e.path in live and e.key in stored.document.values
        ]  # not a value built from several stored ones (a name-based restore's fused experts)
        arrays = stored.read_many(key for key, _ in pairs)
        compared: dict[str, tuple[float, float, float]] = {}
        for key, obj in pairs:
            a, b = arrays[key], _engine.value_of(obj)
            if is_floating(a.dtype.name):  # weights; counters and Python state are not measured
                _, largest, delta = difference(a, b)
                compared[key] = (largest, delta, squares(a))
        self._compared = compared
        return self.view()

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """``run_restore_ops(only=...)`` for the not-yet-written values under the selected nodes."""
        chosen: set[str] = set()
        skipped_by: dict[str, int] = {}
        selected = {i for n in node_ids for i in view.subtree(n)}
        broken = _conflicting_slot_units(view)
        for i in selected:
            v, state = view.nodes[i].value, view.nodes[i].state
            if v is None or v.restore_path is None or state == "restored":
                continue
            if state == "bound" and v.slot and _slot_unit(v.restore_path) in broken:
                skipped_by[HELD_BACK] = skipped_by.get(HELD_BACK, 0) + 1
            elif state == "bound":
                chosen.add(v.restore_path)
            elif state in SKIPPED:  # restoring a conflict would write nothing at all
                skipped_by[SKIPPED[state]] = skipped_by.get(SKIPPED[state], 0) + 1

        def counted(explained: Container[str]) -> str:  # "6 conflicting, 2 held back (why)"
            return ", ".join(
                f"{skipped_by[why]} {why}" + (f" ({SKIP_REASONS[why]})" if why in explained else "")
                for why in SKIP_REASONS
                if why in skipped_by
            )

        if not chosen:
            # Something was selected (the button needs a selection): say why none of it counts.
            return "Nothing restored: no selected value is waiting to be written" + (
                f"; skipped {counted(SKIP_REASONS)}." if skipped_by else "."
            )
        skipped = f" (skipped {counted({HELD_BACK})})" if skipped_by else ""
        if self.name_based:
            paths = sorted(chosen)
        else:
            known = (v.restore_path for v in (n.value for n in view.nodes) if v and v.restore_path)
            paths = covering_paths(chosen, known)
        self.status.run_restore_ops(only=paths)
        shown = ", ".join(repr(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        return f"run_restore_ops(only=[{shown}]){skipped}"


class _Static:
    """A source whose view never changes by itself and that restores nothing."""

    refusal = "This explorer restores nothing."

    def watch(self, callback: Callable[[], None]) -> None:
        """Nothing to follow."""

    def recheck(self, view: GraphView) -> bool:
        """Nothing changes between cells."""
        return False

    def restore(self, view: GraphView, node_ids: Sequence[int]) -> str:
        """Refused: there is nothing to restore into or from."""
        raise ValueError(self.refusal)


def checkpoint_values(stored: StoredCheckpoint) -> list[ViewValue]:
    """Every stored value, by object path (or split name for name-based checkpoints)."""
    document = stored.document
    specs = stored.specs()
    if document.graph is None:
        return [name_value(k, state="stored", stored=s) for k, s in specs.items()]
    graph = document.graph
    optimizer = graph.optimizer_nodes()
    values: list[ViewValue] = []
    append = values.append  # a loop over every value of a 100,000-value checkpoint
    for node, path, node_id in zip(graph.nodes, graph.paths(), itertools.count(), strict=False):
        key = node.value_key
        spec = specs.get(key) if key is not None and path is not None else None
        if spec is None or path is None or key is None:
            continue
        if path.slot is None:
            value = ViewValue(
                path=path.path, state="stored", key=key, stored=spec, optimizer=node_id in optimizer
            )
        else:
            value = path_value(path, state="stored", key=key, stored=spec)
        append(value)
    return values


class CheckpointSource(_Static):
    """An explorer over a stored checkpoint alone (nothing to compare)."""

    refusal = "This explorer shows a checkpoint alone; explore a lazy status to restore."

    def __init__(self, stored: StoredCheckpoint) -> None:
        self.stored = stored

    def view(self) -> GraphView:
        """Every stored value."""
        values = checkpoint_values(self.stored)
        total = total_nbytes(self.stored.document.values)
        return build_view(
            values,
            title="Checkpoint",
            source=self.stored.display_path,
            kind="checkpoint",
            summary=f"{len(values)} values, {human_bytes(total)}",
        )

    def details(self, view: GraphView, node_id: int) -> NodeDetails:
        """Node details with statistics of the stored value."""
        return stored_details(view, node_id, self.stored)


class ProgramSource(_Static):
    """An explorer over a live program (what ``save()`` would write)."""

    refusal = "This explorer shows a program alone; explore a lazy status to restore."

    def __init__(self, checkpoint: Any) -> None:
        self.checkpoint = checkpoint
        self._objects: dict[str, Any] = {}

    def view(self) -> GraphView:
        """Every value the program holds, with its shape and dtype."""
        program = _engine.walk(self.checkpoint)
        optimizer = program.graph.optimizer_nodes()
        values, self._objects = [], {}
        for node_id, path, spec in _engine.program_paths(program):
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

    def details(self, view: GraphView, node_id: int) -> NodeDetails:
        """Node details with statistics of the live value."""
        out = node_details(view, node_id)
        value = view.nodes[node_id].value
        obj = self._objects.get(value.restore_path or "") if value is not None else None
        if obj is not None:
            out["stats"] = stats_of(lambda: _engine.value_of(obj))
        return out


class DiffSource(_Static):
    """An explorer over the differences between two checkpoints."""

    refusal = "A diff has nothing to restore."

    def __init__(self, result: CheckpointDiff, a: StoredCheckpoint, b: StoredCheckpoint) -> None:
        self.result, self.a, self.b = result, a, b
        self._entries = {e.key: e for e in result.entries}

    def view(self) -> GraphView:
        """Added, removed, changed and unchanged values, with their changes."""
        return diff_view(self.result)

    def details(self, view: GraphView, node_id: int) -> NodeDetails:
        """Statistics of the value in ``b`` (else ``a``) and, in both, how it changed."""
        out = node_details(view, node_id)
        value = view.nodes[node_id].value
        if value is None:
            return out
        in_a, in_b = value.key in self.a.document.values, value.key in self.b.document.values
        side = self.b if in_b else self.a
        out["stats"] = stats_of(lambda: side.read(value.key))
        entry = self._entries.get(value.key)
        if in_a and in_b and entry is not None and entry.delta_squares is not None:
            out["change"] = change(self.a.read(value.key), self.b.read(value.key))
        return out


def human_bytes(nbytes: float) -> str:
    """``1.5 KB`` style sizes.

    Examples
    --------
    >>> human_bytes(1536)
    '1.5 KB'
    """
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"  # pragma: no cover
