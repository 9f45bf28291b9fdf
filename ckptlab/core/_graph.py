"""The object graph as data: nodes, children, attributes and slot references (internal).

Node 0 is the root; ids follow breadth-first discovery order over children in insertion order,
then slot variables in the order the optimizers list them.  Each object appears once, under the
first path found (TensorFlow's rule, docs/semantics.md S14 and S57).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from ckptlab.core._keys import (
    escape_local_name,
    object_prefix,
    pretty_path,
    pretty_slot,
    slot_prefix,
)

Shape = tuple[int | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueSpec:
    """Shape and dtype of a value; ``None`` dims (program side only) accept any size."""

    shape: Shape
    dtype: str

    def accepts(self, stored: ValueSpec) -> bool:
        """Whether a stored value of spec ``stored`` can be restored into this one.

        Examples
        --------
        >>> wanted = ValueSpec(shape=(None, 3), dtype="float32")
        >>> wanted.accepts(ValueSpec(shape=(7, 3), dtype="float32"))
        True
        """
        return self.dtype == stored.dtype and self.shape_accepts(stored.shape)

    def shape_accepts(self, shape: Shape) -> bool:
        """Whether ``shape`` fits this spec's shape (``None`` dims match anything)."""
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def describe(self) -> str:
        """Short text such as ``(3, 4) float32``."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        trailing = "," if len(self.shape) == 1 else ""
        return f"({dims}{trailing}) {self.dtype}"


# Not frozen (nor the other records built once per value): a frozen dataclass pays a
# setattr call per field, which a 10,000-value restore notices. Nothing changes one once built.
@dataclass(slots=True, kw_only=True)
class Attribute:
    """One saved attribute of a node (a variable has ``VARIABLE_VALUE``)."""

    name: str
    key: str
    full_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotRef:
    """An optimizer slot: (original variable node, slot name, slot variable node)."""

    original: int
    slot: str
    node: int


def _frozen_mapping(items: Mapping[str, int] | None = None) -> Mapping[str, int]:
    return MappingProxyType(dict(items or {}))


@dataclass(slots=True, kw_only=True, eq=False)
class GraphNode:
    """One object in the saved graph."""

    children: Mapping[str, int] = field(default_factory=_frozen_mapping)
    """Local name -> node id, in insertion order."""
    attributes: tuple[Attribute, ...] = ()
    slot_variables: tuple[SlotRef, ...] = ()
    type_name: str = ""
    """The Python type the object had when saved (display only, never used for matching)."""
    is_optimizer: bool = False
    """Whether the object was an optimizer (display and grouping only)."""

    @property
    def value_key(self) -> str | None:
        """The key of this node's ``VARIABLE_VALUE``, if it has one."""
        for attribute in self.attributes:
            if attribute.name == "VARIABLE_VALUE":
                return attribute.key
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePath:
    """Where a node sits: its first breadth-first path, or for a slot, its owners."""

    path: tuple[str, ...]
    """Local names from the root (for a slot: the variable's path)."""
    slot: tuple[tuple[str, ...], str] | None = None
    """For a slot variable: (optimizer path, slot name)."""
    escaped: str | None = None
    """The escaped prefix when already known (graphs build it incrementally)."""

    @property
    def prefix(self) -> str:
        """Escaped object prefix, as in the keys (``model/dense/kernel``)."""
        if self.escaped is not None:
            return self.escaped
        if self.slot is None:
            return object_prefix(self.path)
        return slot_prefix(object_prefix(self.path), object_prefix(self.slot[0]), self.slot[1])

    @property
    def pretty(self) -> str:
        """TensorFlow-style display path (``(root).model.dense.kernel``)."""
        if self.slot is None:
            return pretty_path(self.path)
        return pretty_slot(self.path, self.slot[0], self.slot[1])


@dataclass(frozen=True, eq=False)
class ObjectGraph:
    """The saved object graph: ``nodes[0]`` is the root (derived views are cached)."""

    nodes: tuple[GraphNode, ...]

    def paths(self) -> tuple[NodePath | None, ...]:
        """First breadth-first path of every node (``None`` if unreachable)."""
        return self._paths

    @cached_property
    def _paths(self) -> tuple[NodePath | None, ...]:
        found: list[NodePath | None] = [None] * len(self.nodes)
        if self.nodes:
            found[0] = NodePath(path=(), escaped="")
            queue = deque([0])
            while queue:
                node_id = queue.popleft()
                here = found[node_id]
                assert here is not None
                base = f"{here.escaped}/" if here.path else ""
                for name, child in self.nodes[node_id].children.items():
                    if found[child] is None:
                        escaped = base + escape_local_name(name)
                        found[child] = NodePath(path=(*here.path, name), escaped=escaped)
                        queue.append(child)
            for node_id, node in enumerate(self.nodes):
                owner = found[node_id]
                for ref in node.slot_variables:
                    variable = found[ref.original]
                    if found[ref.node] is None and owner is not None and variable is not None:
                        found[ref.node] = NodePath(path=variable.path, slot=(owner.path, ref.slot))
        return tuple(found)

    def has_values_below(self) -> tuple[bool, ...]:
        """For every node, whether it or anything reachable from it holds a value."""
        return self._has_values

    @cached_property
    def _has_values(self) -> tuple[bool, ...]:
        has = [bool(node.attributes) for node in self.nodes]
        changed = True
        while changed:  # fixed point: cycles are fine
            changed = False
            for node_id, node in enumerate(self.nodes):
                if not has[node_id] and any(has[c] for c in node.children.values()):
                    has[node_id] = True
                    changed = True
        return tuple(has)

    def optimizer_nodes(self) -> frozenset[int]:
        """Optimizers, everything below them, and slot variables."""
        return self._optimizer_nodes

    @cached_property
    def _optimizer_nodes(self) -> frozenset[int]:
        marked = {i for i, n in enumerate(self.nodes) if n.is_optimizer or n.slot_variables}
        queue = deque(marked)
        while queue:
            for child in self.nodes[queue.popleft()].children.values():
                if child not in marked:
                    marked.add(child)
                    queue.append(child)
        for node in self.nodes:
            marked.update(ref.node for ref in node.slot_variables)
        return frozenset(marked)
