"""Walking live objects into an object graph, through a view the facade supplies (internal).

The core never touches user objects directly: a :class:`ProgramView` answers "what are this
object's children", "does it own a value" and "which slots does this optimizer hold".  The walk
is breadth-first, visits every object once (shared objects and cycles are fine) and numbers
nodes in discovery order, then slot variables (docs/semantics.md S14, S17, S57, S62).
"""

from __future__ import annotations

from collections import deque
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
from ckptlab.core._keys import VARIABLE_VALUE, value_key

T = TypeVar("T")


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
    children: list[dict[str, int]] = []
    queue = deque([0])
    while queue:
        node_id = queue.popleft()
        mapping: dict[str, int] = {}
        for name, child in view.children(objects[node_id]):
            child_id = ids.get(id(child))
            if child_id is None:
                child_id = ids[id(child)] = len(objects)
                objects.append(child)
                queue.append(child_id)
            mapping[name] = child_id
        children.append(mapping)
    slot_refs: list[list[SlotRef]] = [[] for _ in objects]
    for node_id in range(len(children)):
        for variable, slot_name, slot_variable in view.slots(objects[node_id]):
            original = ids.get(id(variable))
            if original is None or original >= len(children):
                continue  # the variable is not saved, so neither is its slot (as TF)
            slot_id = ids.get(id(slot_variable))
            if slot_id is None:
                slot_id = ids[id(slot_variable)] = len(objects)
                objects.append(slot_variable)
                slot_refs.append([])
                children.append({})
            slot_refs[node_id].append(SlotRef(original=original, slot=slot_name, node=slot_id))
    bare = ObjectGraph(
        nodes=tuple(
            GraphNode(children=c, slot_variables=tuple(s))
            for c, s in zip(children, slot_refs, strict=True)
        )
    )
    return _with_attributes(bare, objects, ids, view)


def _with_attributes(
    bare: ObjectGraph, objects: list[T], ids: dict[int, int], view: ProgramView[T]
) -> ProgramGraph[T]:
    paths = bare.paths()
    nodes: list[GraphNode] = []
    specs: list[ValueSpec | None] = []
    for node, obj, path in zip(bare.nodes, objects, paths, strict=True):
        spec = view.value_spec(obj)
        type_name, full_name = view.describe(obj)
        attributes: tuple[Attribute, ...] = ()
        if spec is not None and path is not None:
            key = value_key(path.prefix)
            attributes = (Attribute(name=VARIABLE_VALUE, key=key, full_name=full_name),)
        nodes.append(
            GraphNode(
                children=node.children,
                attributes=attributes,
                slot_variables=node.slot_variables,
                type_name=type_name,
                is_optimizer=view.is_optimizer(obj),
            )
        )
        specs.append(spec)
    return ProgramGraph(
        graph=ObjectGraph(nodes=tuple(nodes)), objects=tuple(objects), specs=tuple(specs), index=ids
    )
