"""Walking live objects into an object graph, through a view the facade supplies (internal).

The core never touches user objects directly: a :class:`ProgramView` answers "what are this
object's children", "does it own a value" and "which slots does this optimizer hold".  The walk
is breadth-first, visits every object once (shared objects and cycles are fine) and numbers
nodes in discovery order, then slot variables (docs/semantics.md S14, S17, S57, S62).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ckptlab.core._graph import GraphColumns, ObjectGraph, ValueSpec
from ckptlab.core._keys import VARIABLE_VALUE, escape_local_name, slot_prefix, value_key

_VALUE_SUFFIX = value_key("")
"""What a value's key adds to its object's prefix (``/.ATTRIBUTES/VARIABLE_VALUE``)."""

T = TypeVar("T")
NodeInfo = tuple[ValueSpec | None, str, str, bool]
"""What the walk records of every object: value spec, type name, full name, is_optimizer."""
Visit = tuple[Sequence[tuple[str, T]], Sequence[tuple[T, str, T]], NodeInfo]
"""``(children, slots, node_info)``: everything the walk asks of one object."""


class ProgramView(Protocol[T]):
    """What the core needs to know about live objects (implemented by the facade)."""

    def children(self, obj: T) -> Sequence[tuple[str, T]]:
        """Named dependencies, in insertion order."""
        ...

    def value_spec(self, obj: T) -> ValueSpec | None:
        """Shape and dtype of the value the object owns, or ``None`` for containers."""
        ...

    def slots(self, obj: T) -> Sequence[tuple[T, str, T]]:
        """For an optimizer: ``(variable, slot name, slot variable)`` triples."""
        ...

    def slot_spec(
        self,
        optimizer: T,
        variable: T,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """The spec ``optimizer``'s slot ``slot`` of ``variable`` must have, before it exists.

        ``stored`` is what the checkpoint holds: optimizers whose slots are not shaped like
        their variable (a scalar step count) accept it.  ``saved_variable`` is what the
        checkpoint holds for the variable, when it holds a value: a slot saved in another
        shape than its variable's has a shape of its own.  ``None``: the optimizer cannot create
        such a slot (its state has a fixed structure, as optax's does), so the stored slot
        stays unused.
        """
        ...

    def can_defer(self, obj: T) -> bool:
        """Whether the object can receive dependencies later (restore-on-attach)."""
        ...

    def is_optimizer(self, obj: T) -> bool:
        """Whether the object is an optimizer."""
        ...

    def describe(self, obj: T) -> tuple[str, str]:
        """``(type name, full name)`` for display and name-based matching."""
        ...

    def node_info(self, obj: T) -> NodeInfo:
        """``(value_spec, type name, full name, is_optimizer)`` in one call (the walk's)."""
        ...

    def visit(self, obj: T) -> Visit[T]:
        """``(children, slots, node_info)``: everything the walk asks of one object."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class ProgramGraph(Generic[T]):
    """A snapshot of the live program: the graph plus the object behind every node."""

    graph: ObjectGraph
    objects: tuple[T, ...]
    specs: tuple[ValueSpec | None, ...]
    index: dict[int, int]
    """``id(object)`` -> node id."""
    unsaved_slots: tuple[tuple[int, str], ...] = ()
    """``(optimizer node, slot name)`` of slots whose variable is not in the graph: not
    saved (as TensorFlow), reported by the saver."""

    def node_of(self, obj: T) -> int | None:
        """The node id of ``obj`` (by identity), or ``None``."""
        return self.index.get(id(obj))

    def value_nodes(self) -> list[int]:
        """Node ids of objects that own a value."""
        return [i for i, spec in enumerate(self.specs) if spec is not None]


def build_graph(root: T, view: ProgramView[T]) -> ProgramGraph[T]:
    """Walk ``root`` breadth-first and number every reachable object.

    Parameters
    ----------
    root
        The object the graph is walked from (node 0).
    view
        Answers questions about objects; see :class:`ProgramView`.

    Returns
    -------
    ProgramGraph
        The graph (with value keys) and the object behind each node.
    """
    objects: list[T] = [root]
    ids: dict[int, int] = {id(root): 0}
    prefixes: list[str | None] = [""]
    """Escaped key prefix of each node's first breadth-first path (as ObjectGraph.paths())."""
    specs: list[ValueSpec | None] = []
    graph = GraphColumns.empty()
    parents, names, children = graph.parents, graph.names, graph.children
    owners: list[tuple[int, Sequence[tuple[T, str, T]]]] = []
    visit, describe = view.visit, _Describe(graph, specs)
    node_id = 0
    while node_id < len(objects):  # nodes are numbered as found: their order is the queue's
        found, slots_of, info = visit(objects[node_id])
        if slots_of:
            owners.append((node_id, slots_of))
        base = prefixes[node_id]
        for name, child in found:
            child_id = ids.get(id(child))
            if child_id is None:
                child_id = ids[id(child)] = len(objects)
                objects.append(child)
                local = name if "." not in name and "/" not in name else escape_local_name(name)
                prefixes.append(f"{base}/{local}" if base else local)
            parents.append(node_id)
            names.append(name)
            children.append(child_id)
        describe(node_id, info, base)
        node_id += 1
    walked = len(objects)
    unsaved: list[tuple[int, str]] = []
    for node_id, slots_of in owners:
        for variable, slot_name, slot_variable in slots_of:
            original = ids.get(id(variable))
            if original is None or original >= walked:
                unsaved.append((node_id, slot_name))
                continue  # the variable is not saved, so neither is its slot (as TF)
            slot_id = ids.get(id(slot_variable))
            if slot_id is None:
                slot_id = ids[id(slot_variable)] = len(objects)
                objects.append(slot_variable)
                owner, variable_prefix = prefixes[node_id], prefixes[original]
                prefix = (
                    None
                    if owner is None or variable_prefix is None
                    else slot_prefix(variable_prefix, owner, slot_name)
                )
                prefixes.append(prefix)
                describe(slot_id, view.node_info(slot_variable), prefix)
            graph.slot_owners.append(node_id)
            graph.originals.append(original)
            graph.slot_names.append(slot_name)
            graph.slot_nodes.append(slot_id)
    return ProgramGraph(
        graph=ObjectGraph(columns=graph),
        objects=tuple(objects),
        specs=tuple(specs),
        index=ids,
        unsaved_slots=tuple(unsaved),
    )


class _Describe:
    """Records one walked object's type, optimizer flag and value in the graph's columns."""

    def __init__(self, graph: GraphColumns, specs: list[ValueSpec | None]) -> None:
        self.graph, self.specs = graph, specs

    def __call__(self, node_id: int, info: NodeInfo, prefix: str | None) -> None:
        spec, type_name, full_name, is_optimizer = info
        graph = self.graph
        graph.type_names.append(type_name)
        self.specs.append(spec)
        if is_optimizer:
            graph.optimizers.append(node_id)
        if spec is not None and prefix is not None:
            graph.owners.append(node_id)
            graph.attribute_names.append(VARIABLE_VALUE)
            graph.keys.append(f"{prefix}{_VALUE_SUFFIX}")
            graph.full_names.append(full_name)
