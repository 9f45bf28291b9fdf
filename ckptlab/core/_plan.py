"""Matching a checkpoint graph against live objects, as a plan (internal, pure).

``plan_restore`` walks the checkpoint graph breadth-first from one or more (node, object) starts and
pairs each checkpoint child with the program dependency of the same local name (docs/semantics.md
S36).  It returns what should happen (bindings, assignments, deferred restorations, optimizer slot
restorations) and every problem it found (shape/dtype conflicts, inconsistent shared references,
attributes the program cannot take).  It never raises on a mismatch and never mutates anything: the
executor turns a plan into effects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from ckptlab.core._graph import ObjectGraph, ValueSpec
from ckptlab.core._walk import ProgramView

T = TypeVar("T")
ConflictKind = Literal["shape", "dtype"]


def conflict_kind(expected: ValueSpec, stored: ValueSpec) -> ConflictKind | None:
    """Classify a stored value against a program value: shape beats dtype.

    Examples
    --------
    >>> program = ValueSpec(shape=(3,), dtype="float32")
    >>> conflict_kind(program, ValueSpec(shape=(2,), dtype="float32"))
    'shape'
    """
    if expected.shape != stored.shape and not expected.shape_accepts(stored.shape):
        return "shape"
    if expected.dtype != stored.dtype and stored.dtype not in expected.also:  # (per value: inline)
        return "dtype"
    return None


# Not frozen (nor the other records built once per value): a frozen dataclass pays a
# setattr call per field, which a 10,000-value restore notices. Nothing changes one once built.
@dataclass(slots=True, kw_only=True, eq=False)
class _Write:
    """The stored value of ``key`` (checkpoint node ``node``), checked against ``expected``."""

    node: int
    key: str
    expected: ValueSpec
    stored: ValueSpec

    @property
    def conflict(self) -> ConflictKind | None:
        """``"shape"`` or ``"dtype"`` when the value cannot be written."""
        return conflict_kind(self.expected, self.stored)


@dataclass(slots=True, kw_only=True, eq=False)
class Assignment(_Write, Generic[T]):
    """Write the stored value of ``key`` (checkpoint node ``node``) into ``target``."""

    target: T


@dataclass(slots=True, kw_only=True, eq=False)
class SlotRestore(_Write, Generic[T]):
    """Create (or fill) ``optimizer``'s slot ``slot`` for ``variable`` from node ``node``."""

    optimizer: T
    variable: T
    slot: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Deferral(Generic[T]):
    """``parent`` has no dependency ``name`` yet: restore node ``node`` when it appears."""

    parent: T
    name: str
    node: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PendingSlot(Generic[T]):
    """A slot value waiting for its variable (node ``variable_node``) to be bound."""

    variable_node: int
    optimizer: T
    slot: str
    node: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Inconsistency(Generic[T]):
    """Node ``node`` is already bound to ``bound`` but a second path leads to ``other``."""

    node: int
    bound: T
    other: T


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Merge:
    """Node ``node`` holds a value, but its program object already took node ``first``'s.

    The checkpoint saved two objects where the program has one (docs/semantics.md S61): the first
    value found wins, this one is not written.
    """

    node: int
    first: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Blocked(Generic[T]):
    """Node ``node`` (with values below) waits under ``parent``, which cannot take children."""

    node: int
    parent: T


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RestorePlan(Generic[T]):
    """Everything one restore step should do, and every problem it found."""

    bindings: tuple[tuple[int, T], ...] = ()
    assignments: tuple[Assignment[T], ...] = ()
    slot_restores: tuple[SlotRestore[T], ...] = ()
    deferrals: tuple[Deferral[T], ...] = ()
    pending_slots: tuple[PendingSlot[T], ...] = ()
    inconsistencies: tuple[Inconsistency[T], ...] = ()
    merges: tuple[Merge, ...] = ()
    blocked: tuple[Blocked[T], ...] = ()
    unused_attributes: tuple[int, ...] = ()
    """Bound nodes holding a value whose object cannot take one."""
    unused_slots: tuple[int, ...] = ()
    """Slot nodes whose optimizer cannot hold such a slot for their variable (``slot_spec`` is
    ``None``: a torch optimizer that does not optimize the variable, optax state of a fixed
    structure); their values stay unused and no longer wait."""

    def conflicts(self) -> list[Assignment[T] | SlotRestore[T]]:
        """Assignments and slot restorations that cannot be written."""
        writes: list[Assignment[T] | SlotRestore[T]] = [*self.assignments, *self.slot_restores]
        return [w for w in writes if w.conflict is not None]


def plan_restore(
    graph: ObjectGraph,
    stored: Mapping[str, ValueSpec],
    view: ProgramView[T],
    starts: Sequence[tuple[int, T]],
    bound: Mapping[int, T],
    pending_slots: Mapping[int, Sequence[PendingSlot[T]]],
    *,
    skip_slots: bool = False,
    taken: Mapping[int, int] | None = None,
) -> RestorePlan[T]:
    """Match the checkpoint graph against live objects, starting from ``starts``.

    Parameters
    ----------
    graph, stored
        The checkpoint's object graph and the spec of every stored value by key.
    view
        Answers questions about live objects.
    starts
        ``(checkpoint node, object)`` pairs to walk from (the root, or an object attached later).
    bound
        Bindings made earlier by the same restore; they are kept, never re-done.
    pending_slots
        Slot restorations waiting for a variable, by the variable's node id.
    skip_slots
        Ignore optimizer slot variables entirely (docs/semantics.md S71).
    taken
        ``id(object)`` -> node, for objects earlier steps of the same restore gave a value.
    """
    child_table, value_keys = graph.child_table(), graph.value_keys()
    earlier: Mapping[int, int] = taken or {}
    new: dict[int, T] = {}
    assigned: dict[int, int] = {}
    assignments: list[Assignment[T]] = []
    deferrals: list[Deferral[T]] = []
    inconsistencies: list[Inconsistency[T]] = []
    merges: list[Merge] = []
    blocked: list[Blocked[T]] = []
    unused: list[int] = []
    queue = deque(starts)
    while queue:
        node_id, obj = queue.popleft()
        prior = new.get(node_id, bound.get(node_id))
        if prior is not None:
            if prior is not obj:
                inconsistencies.append(Inconsistency(node=node_id, bound=prior, other=obj))
            continue
        new[node_id] = obj
        key = value_keys[node_id]
        if key is not None:
            spec = view.value_spec(obj)
            first = assigned.get(id(obj), earlier.get(id(obj)))
            if spec is None:
                unused.append(node_id)
            elif first is not None:  # an object shared by two saved values: first wins
                merges.append(Merge(node=node_id, first=first))
            else:
                assigned[id(obj)] = node_id
                assignments.append(
                    Assignment(node=node_id, key=key, target=obj, expected=spec, stored=stored[key])
                )
        stored_children = child_table[node_id]
        if not stored_children:
            continue
        live = dict(view.children(obj))  # one call per object, however wide (not one per name)
        for name, child_id in stored_children.items():
            child = live.get(name)
            if child is not None:
                queue.append((child_id, child))
            elif not graph.has_values_below()[child_id]:  # (computed on the first miss)
                continue
            elif view.can_defer(obj):
                deferrals.append(Deferral(parent=obj, name=name, node=child_id))
            else:
                blocked.append(Blocked(node=child_id, parent=obj))
    slots, pending, unplaced = (
        ([], [], [])
        if skip_slots or not (graph.slot_table() or pending_slots)
        else _plan_slots(graph, stored, view, new, bound, pending_slots)
    )
    slot_bindings = [(s.node, s.target) for s in slots if isinstance(s, Assignment)]
    return RestorePlan(
        bindings=(*new.items(), *slot_bindings),
        assignments=(*assignments, *(s for s in slots if isinstance(s, Assignment))),
        slot_restores=tuple(s for s in slots if isinstance(s, SlotRestore)),
        deferrals=tuple(deferrals),
        pending_slots=tuple(pending),
        inconsistencies=tuple(inconsistencies),
        merges=tuple(merges),
        blocked=tuple(blocked),
        unused_attributes=tuple(unused),
        unused_slots=tuple(unplaced),
    )


def _plan_slots(
    graph: ObjectGraph,
    stored: Mapping[str, ValueSpec],
    view: ProgramView[T],
    new: Mapping[int, T],
    bound: Mapping[int, T],
    pending_slots: Mapping[int, Sequence[PendingSlot[T]]],
) -> tuple[list[Assignment[T] | SlotRestore[T]], list[PendingSlot[T]], list[int]]:
    """Slot restorations become possible once both the variable and the optimizer are bound.

    Returns the restorations, the slots still waiting for their variable, and the slots the
    optimizer cannot hold (see :attr:`RestorePlan.unused_slots`).
    """
    everything = {**bound, **new}
    ready: dict[int, tuple[T, T, str, int]] = {}
    pending: list[PendingSlot[T]] = []
    slot_table, value_keys = graph.slot_table(), graph.value_keys()
    for node_id, obj in new.items():
        for ref in slot_table.get(node_id, ()):
            variable = everything.get(ref.original)
            if ref.node in everything:
                continue
            if variable is None:
                pending.append(
                    PendingSlot(
                        variable_node=ref.original, optimizer=obj, slot=ref.slot, node=ref.node
                    )
                )
            else:
                ready[ref.node] = (obj, variable, ref.slot, ref.original)
        for waiting in pending_slots.get(node_id, ()):
            if waiting.node not in everything:
                ready[waiting.node] = (waiting.optimizer, obj, waiting.slot, node_id)
    out: list[Assignment[T] | SlotRestore[T]] = []
    unplaced: list[int] = []
    existing_slots: dict[int, dict[tuple[int, str], T]] = {}  # one slots() call per optimizer
    for slot_node, (optimizer, variable, slot, variable_node) in ready.items():
        key = value_keys[slot_node]
        if key is None or view.value_spec(variable) is None:
            continue
        variable_key = value_keys[variable_node]
        saved_variable = None if variable_key is None else stored.get(variable_key)
        if id(optimizer) not in existing_slots:
            existing_slots[id(optimizer)] = {
                (id(v), name): s for v, name, s in view.slots(optimizer)
            }
        existing = existing_slots[id(optimizer)].get((id(variable), slot))
        if existing is not None:
            spec = view.value_spec(existing) or view.slot_spec(
                optimizer, variable, slot, stored[key], saved_variable
            )
            if spec is None:
                continue
            out.append(
                Assignment(
                    node=slot_node, key=key, target=existing, expected=spec, stored=stored[key]
                )
            )
            continue
        expected = view.slot_spec(optimizer, variable, slot, stored[key], saved_variable)
        if expected is None:  # this optimizer cannot hold such a slot: the value stays unused
            unplaced.append(slot_node)
            continue
        out.append(
            SlotRestore(
                node=slot_node,
                key=key,
                optimizer=optimizer,
                variable=variable,
                slot=slot,
                expected=expected,
                stored=stored[key],
            )
        )
    return out, pending, unplaced
