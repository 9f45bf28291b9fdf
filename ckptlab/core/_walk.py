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

from ckptlab.core._graph import (
    Attribute,
    GraphNode,
    ObjectGraph,
    SlotRef,
    ValueSpec,
)
from ckptlab.core._keys import VARIABLE_VALUE, escape_local_name, slot_prefix, value_key

_VALUE_SUFFIX = value_key("")
"""What a value's key adds to its object's prefix (``/.ATTRIBUTES/VARIABLE_VALUE``)."""

T = TypeVar("T")
NodeInfo = tuple[ValueSpec | None, str, str, bool]
"""What the walk records of every object: value spec, type name, full name, is_optimizer."""


class ProgramView(Protocol[T]):
    """What the core needs to know about live objects (implemented by the facade)."""

    def children(self, obj: T) -> Sequence[tuple[str, T]]:
        """Named dependencies, in insertion order."""
        ...

    def child(self, obj: T, name: str) -> T | None:
        """The dependency called ``name``, or ``None``."""
        ...

    def value_spec(self, obj: T) -> ValueSpec | None:
        """Shape and dtype of the value the object owns, or ``None`` for containers."""
        ...

    def slots(self, obj: T) -> Sequence[tuple[T, str, T]]:
        """For an optimizer: ``(variable, slot name, slot variable)`` triples."""
        ...

    def slot_spec(
        self, optimizer: T, variable: T, slot: str, stored: ValueSpec
    ) -> ValueSpec | None:
        """The spec ``optimizer``'s slot ``slot`` of ``variable`` must have, before it exists.

        ``stored`` is what the checkpoint holds: optimizers whose slots are not shaped like
        their variable (a scalar step count) accept it.  ``None``: the optimizer cannot create
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

    def visit(self, obj: T) -> tuple[Sequence[tuple[str, T]], Sequence[tuple[T, str, T]], NodeInfo]:
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
    children: list[dict[str, int]] = []
    infos: list[NodeInfo] = []
    owned: list[Sequence[tuple[T, str, T]]] = []
    node_id = 0
    while node_id < len(objects):  # nodes are numbered as found: their order is the queue's
        found, slots_of, info = view.visit(objects[node_id])
        owned.append(slots_of)
        infos.append(info)
        mapping: dict[str, int] = {}
        base = prefixes[node_id]
        for name, child in found:
            child_id = ids.get(id(child))
            if child_id is None:
                child_id = ids[id(child)] = len(objects)
                objects.append(child)
                local = name if "." not in name and "/" not in name else escape_local_name(name)
                prefixes.append(f"{base}/{local}" if base else local)
            mapping[name] = child_id
        children.append(mapping)
        node_id += 1
    slot_refs: list[list[SlotRef]] = [[] for _ in objects]
    for node_id, slots_of in enumerate(owned):
        for variable, slot_name, slot_variable in slots_of:
            original = ids.get(id(variable))
            if original is None or original >= len(children):
                continue  # the variable is not saved, so neither is its slot (as TF)
            slot_id = ids.get(id(slot_variable))
            if slot_id is None:
                slot_id = ids[id(slot_variable)] = len(objects)
                objects.append(slot_variable)
                slot_refs.append([])
                children.append({})
                infos.append(view.node_info(slot_variable))
                owner, variable_prefix = prefixes[node_id], prefixes[original]
                prefixes.append(
                    None
                    if owner is None or variable_prefix is None
                    else slot_prefix(variable_prefix, owner, slot_name)
                )
            slot_refs[node_id].append(SlotRef(original=original, slot=slot_name, node=slot_id))
    nodes: list[GraphNode] = []
    specs: list[ValueSpec | None] = []
    for mapping, slots, prefix, info in zip(children, slot_refs, prefixes, infos, strict=True):
        spec, type_name, full_name, is_optimizer = info
        attributes: tuple[Attribute, ...] = ()
        if spec is not None and prefix is not None:
            key = f"{prefix}{_VALUE_SUFFIX}"
            attributes = (Attribute(name=VARIABLE_VALUE, key=key, full_name=full_name),)
        nodes.append(
            GraphNode(
                children=mapping,
                attributes=attributes,
                slot_variables=tuple(slots),
                type_name=type_name,
                is_optimizer=is_optimizer,
            )
        )
        specs.append(spec)
    return ProgramGraph(
        graph=ObjectGraph(nodes=tuple(nodes)), objects=tuple(objects), specs=tuple(specs), index=ids
    )
