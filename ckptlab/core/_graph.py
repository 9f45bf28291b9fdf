"""The object graph as data: nodes, children, attributes and slot references (internal).

Node 0 is the root; ids follow breadth-first discovery order over children in insertion order,
then slot variables in the order the optimizers list them.  Each object appears once, under the
first path found (TensorFlow's rule, docs/semantics.md S14 and S57).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from types import MappingProxyType

from ckptlab.core._keys import (
    VARIABLE_VALUE,
    escape_local_name,
    object_prefix,
    pretty_path,
    pretty_slot,
    slot_prefix,
)
from ckptlab.errors import CorruptCheckpointError

Shape = tuple[int | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueSpec:
    """Shape and dtype of a value; ``None`` dims (program side only) accept any size."""

    shape: Shape
    dtype: str
    also: tuple[str, ...] = ()
    """Further dtypes the value takes (program side only): an abstract JAX scalar of weak type
    stands for a Python number as much as for an array of its own dtype (docs/jax.md)."""

    def accepts(self, stored: ValueSpec) -> bool:
        """Whether a stored value of spec ``stored`` can be restored into this one.

        Examples
        --------
        >>> wanted = ValueSpec(shape=(None, 3), dtype="float32")
        >>> wanted.accepts(ValueSpec(shape=(7, 3), dtype="float32"))
        True
        """
        return self.takes_dtype(stored.dtype) and self.shape_accepts(stored.shape)

    def takes_dtype(self, dtype: str) -> bool:
        """Whether a stored value of ``dtype`` can be restored into this one (never cast).

        Examples
        --------
        >>> ValueSpec(shape=(), dtype="float32", also=("float64",)).takes_dtype("float64")
        True
        """
        return dtype == self.dtype or dtype in self.also

    def describe_dtype(self) -> str:
        """The dtype, or the dtypes it takes: ``float32 or float64``."""
        return " or ".join((self.dtype, *self.also))

    def shape_accepts(self, shape: Shape) -> bool:
        """Whether ``shape`` fits this spec's shape (``None`` dims match anything)."""
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def describe(self) -> str:
        """Short text such as ``(3, 4) float32``."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        trailing = "," if len(self.shape) == 1 else ""
        return f"({dims}{trailing}) {self.describe_dtype()}"


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
            if attribute.name == VARIABLE_VALUE:
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


@dataclass(slots=True, kw_only=True, eq=False)
class GraphColumns:
    """The object graph as parallel columns: one entry per node, edge, attribute or slot.

    What the walk of a live program builds and what a version-3 document stores (FORMAT.md
    section 2.3): a graph of 10,000 variables costs a few list appends per object instead of a
    :class:`GraphNode` and an :class:`Attribute` each.  Edges are listed parent by parent in
    each parent's insertion order.
    """

    type_names: list[str]
    """Per node: the Python type name (``""``: none recorded)."""
    optimizers: list[int]
    """Nodes that are optimizers."""
    parents: list[int]
    names: list[str]
    children: list[int]
    owners: list[int]
    """Per attribute: the node that has it."""
    attribute_names: list[str]
    keys: list[str]
    full_names: list[str]
    slot_owners: list[int]
    """Per slot reference: the optimizer node."""
    originals: list[int]
    slot_names: list[str]
    slot_nodes: list[int]

    @classmethod
    def empty(cls) -> GraphColumns:
        """Columns with nothing in them yet (to append to)."""
        return cls(**{column.name: [] for column in fields(cls)})

    @classmethod
    def of(cls, nodes: Sequence[GraphNode]) -> GraphColumns:
        """The columns of a graph given as nodes."""
        columns = cls.empty()
        for node_id, node in enumerate(nodes):
            columns.type_names.append(node.type_name)
            if node.is_optimizer:
                columns.optimizers.append(node_id)
            for name, child in node.children.items():
                columns.parents.append(node_id)
                columns.names.append(name)
                columns.children.append(child)
            for attribute in node.attributes:
                columns.owners.append(node_id)
                columns.attribute_names.append(attribute.name)
                columns.keys.append(attribute.key)
                columns.full_names.append(attribute.full_name)
            for ref in node.slot_variables:
                columns.slot_owners.append(node_id)
                columns.originals.append(ref.original)
                columns.slot_names.append(ref.slot)
                columns.slot_nodes.append(ref.node)
        return columns

    def same_as(self, other: GraphColumns) -> bool:
        """Whether ``other`` holds the same graph, column for column.

        Examples
        --------
        >>> GraphColumns.empty().same_as(GraphColumns.empty())
        True
        """
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))


PATH_DEPTH = 64
"""Names per object, on average, that the paths of a graph read from a file may take."""


class ObjectGraph:
    """The saved object graph: ``nodes[0]`` is the root (derived views are cached).

    Made from nodes, or from :class:`GraphColumns` (a program's walk, a version-3 document),
    whose nodes are built only when something asks for them: a save or a listing never does.
    """

    def __init__(
        self,
        nodes: tuple[GraphNode, ...] | None = None,
        *,
        columns: GraphColumns | None = None,
        source: str | None = None,
    ) -> None:
        if (nodes is None) == (columns is None):
            raise TypeError("ObjectGraph takes nodes or columns")
        if nodes is not None:
            self.__dict__["nodes"] = nodes
        else:
            self.__dict__["columns"] = columns
        self.source = source
        """Where a graph read from a file came from, for its errors (``None``: a program's)."""

    @cached_property
    def nodes(self) -> tuple[GraphNode, ...]:
        """Every node; node id = position."""
        columns = self.columns
        held: list[tuple[Attribute, ...]] = [()] * len(columns.type_names)
        for owner, name, key, full_name in zip(
            columns.owners, columns.attribute_names, columns.keys, columns.full_names, strict=True
        ):
            held[owner] += (Attribute(name=name, key=key, full_name=full_name),)
        slots, optimizers = self.slot_table(), set(columns.optimizers)
        return tuple(
            GraphNode(
                children=children,
                attributes=attributes,
                slot_variables=slots.get(node_id, ()),
                type_name=type_name,
                is_optimizer=node_id in optimizers,
            )
            for node_id, (children, attributes, type_name) in enumerate(
                zip(self.child_table(), held, columns.type_names, strict=True)
            )
        )

    # Matching reads these three tables rather than the nodes: made from the columns (of a
    # graph made from nodes too), they cost a fraction of a node object each (restoring
    # 10,000 values never builds a node).

    def child_table(self) -> Sequence[Mapping[str, int]]:
        """Per node: local name -> child node, in insertion order."""
        return self._child_table

    @cached_property
    def _child_table(self) -> Sequence[Mapping[str, int]]:
        columns = self.columns
        below: list[dict[str, int]] = [{} for _ in columns.type_names]
        for parent, name, child in zip(
            columns.parents, columns.names, columns.children, strict=True
        ):
            below[parent][name] = child
        return below

    def value_keys(self) -> Sequence[str | None]:
        """Per node: the key of its ``VARIABLE_VALUE`` (as :attr:`GraphNode.value_key`)."""
        return self._value_keys

    @cached_property
    def _value_keys(self) -> Sequence[str | None]:
        columns = self.columns
        keys: list[str | None] = [None] * len(columns.type_names)
        for owner, name, key in zip(
            reversed(columns.owners),
            reversed(columns.attribute_names),
            reversed(columns.keys),
            strict=True,
        ):  # backwards, so that a node's first VARIABLE_VALUE is the one kept
            if name == VARIABLE_VALUE:
                keys[owner] = key
        return keys

    def slot_table(self) -> Mapping[int, tuple[SlotRef, ...]]:
        """Optimizer node -> its slot references (nodes without slots are absent)."""
        return self._slot_table

    @cached_property
    def _slot_table(self) -> Mapping[int, tuple[SlotRef, ...]]:
        columns = self.columns
        refs: dict[int, list[SlotRef]] = {}
        for owner, original, slot, node in zip(
            columns.slot_owners,
            columns.originals,
            columns.slot_names,
            columns.slot_nodes,
            strict=True,
        ):
            refs.setdefault(owner, []).append(SlotRef(original=original, slot=slot, node=node))
        return {owner: tuple(found) for owner, found in refs.items()}

    @cached_property
    def columns(self) -> GraphColumns:
        """The graph as columns (what a version-3 document stores)."""
        return GraphColumns.of(self.nodes)

    def paths(self) -> tuple[NodePath | None, ...]:
        """First breadth-first path of every node (``None`` if unreachable)."""
        return self._paths

    @cached_property
    def _paths(self) -> tuple[NodePath | None, ...]:
        children = self.child_table()
        found: list[NodePath | None] = [None] * len(children)
        # Every path is kept whole, so their total length is the memory they take: a chain of
        # 20,000 nodes (a 440 KB document) would take gigabytes. A graph from a file may
        # average PATH_DEPTH names per node; a program's graph is what the program is.
        budget = PATH_DEPTH * len(children) + 2**20 if self.source is not None else None
        if children:
            found[0] = NodePath(path=(), escaped="")
            queue = deque([0])
            while queue:
                node_id = queue.popleft()
                here = found[node_id]
                assert here is not None
                base = f"{here.escaped}/" if here.path else ""
                if budget is not None:
                    budget -= (len(here.path) + 1) * len(children[node_id])
                    if budget < 0:
                        raise self._too_deep(len(here.path) + 1)
                for name, child in children[node_id].items():
                    if found[child] is None:
                        escaped = base + escape_local_name(name)
                        found[child] = NodePath(path=(*here.path, name), escaped=escaped)
                        queue.append(child)
            for node_id, refs in sorted(self.slot_table().items()):
                owner = found[node_id]
                for ref in refs:
                    variable = found[ref.original]
                    if found[ref.node] is None and owner is not None and variable is not None:
                        found[ref.node] = NodePath(path=variable.path, slot=(owner.path, ref.slot))
        return tuple(found)

    def _too_deep(self, depth: int) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"The object graph of {self.source} nests too deep to name its objects: paths reach "
            f"{depth} names, on average more than {PATH_DEPTH} per object (programs nest a few "
            "levels). The checkpoint is damaged or hostile; restore from another one."
        )

    def has_values_below(self) -> tuple[bool, ...]:
        """For every node, whether it or anything reachable from it holds a value."""
        return self._has_values

    @cached_property
    def _has_values(self) -> tuple[bool, ...]:
        columns = self.columns
        has = [False] * len(columns.type_names)
        for owner in columns.owners:
            has[owner] = True
        above: dict[int, list[int]] = {}
        for parent, child in zip(columns.parents, columns.children, strict=True):
            above.setdefault(child, []).append(parent)
        queue = [node_id for node_id, holds in enumerate(has) if holds]
        while queue:  # up the edges from every value's owner, each node once: cycles are fine
            for parent in above.get(queue.pop(), ()):
                if not has[parent]:
                    has[parent] = True
                    queue.append(parent)
        return tuple(has)

    def optimizer_nodes(self) -> frozenset[int]:
        """Optimizers, everything below them, and slot variables."""
        return self._optimizer_nodes

    @cached_property
    def _optimizer_nodes(self) -> frozenset[int]:
        columns, children = self.columns, self.child_table()
        marked = {*columns.optimizers, *columns.slot_owners}
        queue = deque(marked)
        while queue:
            for child in children[queue.popleft()].values():
                if child not in marked:
                    marked.add(child)
                    queue.append(child)
        marked.update(columns.slot_nodes)
        return frozenset(marked)
