"""Match reports: every checkpoint value and every program value, with its state (internal, pure).

States (docs/semantics.md, "Match states"): ``restored``; ``bound`` (lazy: bound but not yet
written); ``pending`` (its parent exists, the object does not yet: it is restored when created);
``checkpoint_only`` (unused); ``program_only`` (missing from the checkpoint); ``shape_conflict``;
``dtype_conflict``; ``inconsistent`` (a shared saved object whose references resolved to different
program objects, on both sides; or a saved value not written because its program object, shared,
already took another saved value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ckptlab.core._graph import NodePath, ObjectGraph, ValueSpec
from ckptlab.core._keys import object_prefix
from ckptlab.core._text import printable

MatchState = Literal[
    "restored",
    "bound",
    "pending",
    "checkpoint_only",
    "program_only",
    "shape_conflict",
    "dtype_conflict",
    "inconsistent",
]
UNUSED_ATTRIBUTE = "the program object here holds no value"
PENDING_SLOT = "restored when the optimizer's variable is bound"
DISCARDED = "not written:"
"""Start of the reason of an ``inconsistent`` checkpoint value that went nowhere."""
SLOT_KEPT = (
    "not in the checkpoint, which holds its variable without it: a restore writes the saved slots "
    "and deletes none, so this one keeps its value"
)
"""Reason of a program slot the checkpoint lacks although it holds the slot's variable (made
after the checkpoint was written): a program-side extra, which only the assertions catch
(docs/semantics.md S53)."""
STATES: tuple[MatchState, ...] = (
    "restored",
    "bound",
    "pending",
    "checkpoint_only",
    "program_only",
    "shape_conflict",
    "dtype_conflict",
    "inconsistent",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEntry:
    """One value (checkpoint side, program side, or both) and its match state.

    Parameters
    ----------
    path
        Object path as in the keys, without ``/.ATTRIBUTES/...`` (``model/dense/kernel``).
    pretty
        TensorFlow-style path (``(root).model.dense.kernel``).
    key
        The value's key (``model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE``).
    state
        One of :data:`STATES` (docs/semantics.md, "Match states").
    stored, program
        Shape and dtype on each side (``None`` where that side has no value).
    node
        Checkpoint node id (``None`` for program-only values).
    optimizer
        Whether the value belongs to an optimizer (slots, iterations).
    type_name
        The program object's type, where it matters to the reason.
    reason
        Why the value is in this state, in words.
    names
        A name-based restore's program value: every stored name that would fill it, its path
        names and its framework's spellings in files (``encoder/kernel/value`` in an Orbax
        file, ``encoder/vars/0`` in a Keras one); empty otherwise.

    Examples
    --------
    >>> entry = ReportEntry(path="w", pretty="(root).w", key="w/.ATTRIBUTES/VARIABLE_VALUE",
    ...                     state="program_only", reason="not in the checkpoint")
    >>> entry.to_dict()["state"]
    'program_only'
    """

    path: str
    pretty: str
    key: str
    state: MatchState
    stored: ValueSpec | None = None
    program: ValueSpec | None = None
    node: int | None = None
    optimizer: bool = False
    type_name: str = ""
    reason: str = ""
    names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data.

        Returns
        -------
        dict
            The fields, specs as ``{"shape": [...], "dtype": ...}``, ``type_name`` as ``type``.

        Examples
        --------
        >>> spec = ValueSpec(shape=(2,), dtype="float32")
        >>> entry = ReportEntry(path="w", pretty="(root).w", key="w", state="restored",
        ...                     stored=spec, program=spec, node=1)
        >>> entry.to_dict()["stored"]
        {'shape': [2], 'dtype': 'float32'}
        """
        return {
            "path": self.path,
            "pretty": self.pretty,
            "key": self.key,
            "state": self.state,
            "stored": _spec_dict(self.stored),
            "program": _spec_dict(self.program),
            "node": self.node,
            "optimizer": self.optimizer,
            "type": self.type_name,
            "reason": self.reason,
            "names": list(self.names),
        }


def _spec_dict(spec: ValueSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"shape": list(spec.shape), "dtype": spec.dtype}


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchReport:
    """A frozen snapshot of how a checkpoint matched the program.

    Every status's ``report()`` returns one; the assertions, the warning at collection and the
    explorer are all computed from it.

    Parameters
    ----------
    checkpoint
        The checkpoint's path (``"(none)"`` for ``restore(None)``).
    entries
        Every checkpoint value and every program value, with its state.
    bound_nodes
        Checkpoint node ids bound to program objects.
    lazy
        Whether the restore was lazy (``bound`` values wait for ``run_restore_ops``).

    Examples
    --------
    >>> MatchReport(checkpoint="ckpt-1", entries=()).summary()
    'nothing to compare'
    """

    checkpoint: str
    entries: tuple[ReportEntry, ...]
    bound_nodes: frozenset[int] = frozenset()
    lazy: bool = False

    def by_state(self, *states: MatchState) -> tuple[ReportEntry, ...]:
        """Entries in any of ``states``.

        Parameters
        ----------
        *states
            Match states (:data:`STATES`).

        Returns
        -------
        tuple of ReportEntry
            In report order.

        Examples
        --------
        >>> entry = ReportEntry(path="w", pretty="(root).w", key="w", state="pending")
        >>> MatchReport(checkpoint="c", entries=(entry,)).by_state("pending", "bound")[0].path
        'w'
        """
        return tuple(e for e in self.entries if e.state in states)

    @property
    def matched(self) -> tuple[ReportEntry, ...]:
        """Values paired on both sides (restored, or bound and waiting in lazy mode)."""
        return self.by_state("restored", "bound")

    @property
    def restored(self) -> tuple[ReportEntry, ...]:
        """Values written into the program."""
        return self.by_state("restored")

    @property
    def bound_not_written(self) -> tuple[ReportEntry, ...]:
        """Lazy mode: values bound but not yet written (``run_restore_ops`` writes them)."""
        return self.by_state("bound")

    @property
    def pending(self) -> tuple[ReportEntry, ...]:
        """Values waiting for their object to be created (deferred restoration)."""
        return self.by_state("pending")

    @property
    def unused(self) -> tuple[ReportEntry, ...]:
        """Checkpoint values nothing in the program took."""
        return self.by_state("checkpoint_only")

    @property
    def missing(self) -> tuple[ReportEntry, ...]:
        """Program values the checkpoint does not have."""
        return self.by_state("program_only")

    @property
    def conflicts(self) -> tuple[ReportEntry, ...]:
        """Shape and dtype conflicts."""
        return self.by_state("shape_conflict", "dtype_conflict")

    @property
    def inconsistent(self) -> tuple[ReportEntry, ...]:
        """Shared objects whose references resolved to different objects."""
        return self.by_state("inconsistent")

    def counts(self) -> dict[str, int]:
        """Number of entries per state.

        Returns
        -------
        dict of str to int
            Every state of :data:`STATES`, in that order, zero included.

        Examples
        --------
        >>> entry = ReportEntry(path="w", pretty="(root).w", key="w", state="pending")
        >>> MatchReport(checkpoint="c", entries=(entry,)).counts()["pending"]
        1
        """
        counted = Counter(e.state for e in self.entries)
        return {state: counted.get(state, 0) for state in STATES}

    def summary(self) -> str:
        """One line such as ``412 matched, 3 missing in checkpoint, 1 shape conflict``.

        Returns
        -------
        str
            Counts by state, in words; ``"nothing to compare"`` for an empty report.

        Examples
        --------
        >>> entry = ReportEntry(path="w", pretty="(root).w", key="w", state="program_only")
        >>> MatchReport(checkpoint="c", entries=(entry,)).summary()
        '1 missing in checkpoint'
        """
        n = self.counts()
        unused_opt = sum(1 for e in self.unused if e.optimizer)
        # Bound values are matched values not yet written: counted once, named by what they are.
        parts = [
            (n["restored"], "matched" if not n["bound"] else "restored"),
            (n["bound"], "matched but not yet written"),
            (n["pending"], "pending"),
            (n["program_only"], "missing in checkpoint"),
            (len(self.unused) - unused_opt, "unused checkpoint value"),
            (unused_opt, "unused optimizer value"),
            (n["shape_conflict"], "shape conflict"),
            (n["dtype_conflict"], "dtype conflict"),
            (n["inconsistent"], "inconsistent reference"),
        ]
        text = [_plural(count, label) for count, label in parts if count]
        return ", ".join(text) if text else "nothing to compare"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data.

        Returns
        -------
        dict
            ``checkpoint``, ``lazy``, ``summary``, ``counts`` and ``entries`` (each entry's
            :meth:`ReportEntry.to_dict`).

        Examples
        --------
        >>> import json
        >>> json.dumps(MatchReport(checkpoint="c", entries=()).to_dict())[:40]
        '{"checkpoint": "c", "lazy": false, "summ'
        """
        return {
            "checkpoint": self.checkpoint,
            "lazy": self.lazy,
            "summary": self.summary(),
            "counts": self.counts(),
            "entries": [e.to_dict() for e in self.entries],
        }

    def __str__(self) -> str:
        lines = [f"MatchReport for {printable(self.checkpoint)}: {self.summary()}"]
        for state in STATES:
            group = self.by_state(state)
            if group and state not in ("restored", "bound"):
                lines.append(f"  {state} ({len(group)}):")
                lines.extend(f"    {e.pretty}  {_describe(e)}" for e in group[:50])
                if len(group) > 50:
                    lines.append(f"    ... and {len(group) - 50} more")
        return "\n".join(lines)


def value_unused(entry: ReportEntry) -> bool:
    """Whether a checkpoint value went into nothing in the program (the warning lists these)."""
    if entry.state in ("checkpoint_only", "pending"):
        return True
    return entry.state == "inconsistent" and entry.reason.startswith(DISCARDED)


def _plural(count: int, label: str) -> str:
    if count == 1 or label.endswith("written") or label in ("pending", "matched", "restored"):
        return f"{count} {label}"
    if label.endswith("missing in checkpoint"):
        return f"{count} {label}"
    return f"{count} {label}s"


def _describe(entry: ReportEntry) -> str:
    if entry.state in ("shape_conflict", "dtype_conflict") and entry.stored and entry.program:
        return f"program {entry.program.describe()} vs checkpoint {entry.stored.describe()}"
    spec = entry.stored or entry.program
    text = spec.describe() if spec else ""
    return f"{text}  {entry.reason}".rstrip()


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreState:
    """What one restore has done so far, as plain data (node ids only)."""

    bound: frozenset[int]
    written: frozenset[int]
    queued: frozenset[int]
    conflicts: Mapping[int, tuple[str, ValueSpec]]
    """Node -> (conflict kind, program spec) for values that could not be written."""
    pending_slots: frozenset[int]
    deferred: frozenset[int]
    """Nodes whose bound parent can take them later: restored when created or attached."""
    blocked: Mapping[int, str]
    """Nodes whose bound parent cannot take children -> that parent's type name."""
    inconsistent: Mapping[int, tuple[int, frozenset[int]]]
    """Bound node -> ``id()`` of its program object and of the other program objects a second
    reference to it resolved to."""
    merged: Mapping[int, int]
    """Node -> the node whose value its program object took instead (two saved, one live)."""
    unused_attributes: Mapping[int, str]
    """Bound nodes holding a value whose program object holds none -> that object's type name."""
    bound_program_ids: frozenset[int]
    """``id()`` of every program object bound by this restore."""
    given_up: Mapping[int, str] = field(default_factory=dict)
    """Nodes the restore stopped waiting for -> why (phrased to follow "unused: ")."""


def build_report(
    *,
    checkpoint: str,
    graph: ObjectGraph,
    stored: Mapping[str, ValueSpec],
    state: RestoreState,
    program_graph: ObjectGraph,
    program_specs: Iterable[ValueSpec | None],
    program_ids: Iterable[int],
    lazy: bool,
    skip_slots: bool = False,
) -> MatchReport:
    """Classify every checkpoint value and every program value (see the module docstring).

    With ``skip_slots``, optimizer slot variables on both sides are left out (docs/semantics.md
    S71).
    A shared saved object whose references resolved to different program objects is
    ``inconsistent`` on both sides while the other object is in the program and unbound.
    """
    ids = list(program_ids)
    paths = program_graph.paths()
    others = _live_others(state, ids, paths)
    entries = _checkpoint_entries(graph, stored, state, others, skip_slots=skip_slots)
    below = {p.path: node for node, (_, found) in others.items() for p in found}
    checkpoint_paths = graph.paths()
    at_path = _value_nodes(graph) if state.given_up or state.bound else {}
    for node_id, (spec, obj_id) in enumerate(zip(program_specs, ids, strict=True)):
        path = paths[node_id]
        if spec is None or path is None or obj_id in state.bound_program_ids:
            continue
        if skip_slots and path.slot is not None:
            continue
        node = program_graph.nodes[node_id]
        shared = _under(path, below)
        state_name: MatchState = "program_only"
        reason = _program_only_reason(state, path, at_path)
        if shared is not None:
            where = checkpoint_paths[shared[0]]
            shown = where.pretty if where else "a shared object"
            state_name = "inconsistent"
            reason = (
                f"the checkpoint saves this {'as' if shared[1] else 'below'} {shown}, a shared "
                "object restored into a different program object (inconsistent references: the "
                "program has two objects where the checkpoint has one)"
            )
        entries.append(
            ReportEntry(
                path=path.prefix,
                pretty=path.pretty,
                key=node.value_key or "",
                state=state_name,
                program=spec,
                optimizer=path.slot is not None or node_id in program_graph.optimizer_nodes(),
                type_name=node.type_name,
                reason=reason,
            )
        )
    return MatchReport(
        checkpoint=checkpoint, entries=tuple(entries), bound_nodes=state.bound, lazy=lazy
    )


def _value_nodes(graph: ObjectGraph) -> dict[str, int]:
    """Checkpoint value nodes by object path (a slot's: variable, optimizer and slot name)."""
    return {
        path.prefix: node
        for node, (path, key) in enumerate(zip(graph.paths(), graph.value_keys(), strict=True))
        if key is not None and path is not None
    }


def _program_only_reason(state: RestoreState, path: NodePath, at_path: Mapping[str, int]) -> str:
    """Why a program value at a path took nothing (the checkpoint may hold that path)."""
    node = at_path.get(path.prefix)
    if node is None:
        variable = at_path.get(object_prefix(path.path)) if path.slot is not None else None
        return SLOT_KEPT if variable in state.bound else "not in the checkpoint"
    if node in state.given_up:
        return f"the checkpoint's value here was not restored: {state.given_up[node]}"
    if node in state.bound:
        return (
            "replaced after the restore matched this path: the checkpoint's value went to the "
            "object this one replaced"
        )
    return "not in the checkpoint"


def all_matched(
    graph: ObjectGraph,
    state: RestoreState,
    program_specs: Iterable[ValueSpec | None],
    program_ids: Iterable[int],
    *,
    checkpoint_side: bool,
) -> bool:
    """Whether a report would hold only ``restored`` and ``bound`` entries (the fast check).

    True when nothing conflicts, no reference is inconsistent or merged, no object took a
    value it cannot hold, every program value's object is bound, and (``checkpoint_side``)
    every checkpoint value is bound: :func:`build_report` would then list nothing else, so a
    passing assertion needs no report (building one costs ~10 us a value: 0.1 s for 10,000).
    False says nothing: build the report to find out (and to word the failure).
    """
    if state.conflicts or state.inconsistent or state.merged or state.unused_attributes:
        return False
    bound_ids = state.bound_program_ids
    if not all(
        obj_id in bound_ids
        for spec, obj_id in zip(program_specs, program_ids, strict=True)
        if spec is not None
    ):
        return False
    bound = state.bound
    return not checkpoint_side or all(
        node in bound for node, key in enumerate(graph.value_keys()) if key is not None
    )


Others = Mapping[int, tuple[NodePath | None, list[NodePath]]]
"""Bound node -> (program path of its object, program paths of the other objects)."""


def _live_others(state: RestoreState, ids: list[int], paths: tuple[NodePath | None, ...]) -> Others:
    """Inconsistent nodes whose other objects are still in the program and unbound."""
    if not state.inconsistent:
        return {}
    index = {obj_id: node for node, obj_id in enumerate(ids)}
    out: dict[int, tuple[NodePath | None, list[NodePath]]] = {}
    for node, (holder, other_ids) in state.inconsistent.items():
        found = [
            path
            for obj_id in other_ids
            if obj_id in index
            and obj_id not in state.bound_program_ids
            and (path := paths[index[obj_id]]) is not None
        ]
        if found:
            out[node] = (paths[index[holder]] if holder in index else None, found)
    return out


def _under(path: NodePath, below: Mapping[tuple[str, ...], int]) -> tuple[int, bool] | None:
    """Checkpoint node of the closest inconsistent object at or above ``path`` (and exactly)."""
    if not below or path.slot is not None:
        return None
    for end in range(len(path.path), -1, -1):
        node = below.get(path.path[:end])
        if node is not None:
            return node, end == len(path.path)
    return None


def _checkpoint_entries(
    graph: ObjectGraph,
    stored: Mapping[str, ValueSpec],
    state: RestoreState,
    others: Others,
    *,
    skip_slots: bool,
) -> list[ReportEntry]:
    paths = graph.paths()
    optimizer = graph.optimizer_nodes()
    entries = []
    for node_id, node in enumerate(graph.nodes):
        key = node.value_key
        path = paths[node_id]
        if key is None or (skip_slots and path is not None and path.slot is not None):
            continue
        state_name, reason, program = _classify(node_id, state, others, paths)
        path = path or NodePath(path=(f"<unreachable node {node_id}>",))
        entries.append(
            ReportEntry(
                path=path.prefix,
                pretty=path.pretty,
                key=key,
                state=state_name,
                stored=stored[key],
                program=program,
                node=node_id,
                optimizer=node_id in optimizer,
                type_name=state.unused_attributes.get(node_id, node.type_name),
                reason=reason,
            )
        )
    return entries


def _classify(
    node_id: int,
    state: RestoreState,
    others: Others,
    paths: tuple[NodePath | None, ...],
) -> tuple[MatchState, str, ValueSpec | None]:
    if node_id in state.conflicts:
        kind, program = state.conflicts[node_id]
        return ("shape_conflict" if kind == "shape" else "dtype_conflict"), "", program
    if node_id in state.unused_attributes:
        return "checkpoint_only", UNUSED_ATTRIBUTE, None
    if node_id in state.merged:
        first = paths[state.merged[node_id]]
        return (
            "inconsistent",
            f"{DISCARDED} its program object already took the value of "
            f"{first.pretty if first else 'another saved object'} (inconsistent references: "
            "the checkpoint has two objects where the program shares one)",
            None,
        )
    if node_id in others:
        holder, found = others[node_id]
        done = "bound to" if node_id in state.queued else "restored into"
        shown = ", ".join(p.pretty for p in found)
        return (
            "inconsistent",
            f"{done} {holder.pretty if holder else 'one program object'}, but {shown} refers to "
            "this same saved object and is a different program object, left unrestored "
            "(inconsistent references)",
            None,
        )
    if node_id in state.bound:
        if node_id in state.queued:
            return "bound", "run_restore_ops() writes it", None
        return "restored", "", None
    if node_id in state.pending_slots:
        return "pending", PENDING_SLOT, None
    if node_id in state.deferred:
        return "pending", "restored when the object is created or attached", None
    if node_id in state.given_up:
        return "checkpoint_only", state.given_up[node_id], None
    if node_id in state.blocked:
        return (
            "checkpoint_only",
            f"its parent in the program is a {state.blocked[node_id]}, which cannot take "
            "dependencies: nothing can restore it",
            None,
        )
    return "checkpoint_only", "nothing in the program at this path", None
