"""The graph view: the explorer's view model, as plain data (internal, pure).

A view is a tree of named nodes (objects and values) plus cross edges (optimizer slot -> its
variable, suggested matches).  Every value carries a view state: one of the eight match states
(docs/semantics.md, "Match states"), or a state of a view without a comparison (``stored``,
``program``), or a diff state (``added``, ``removed``, ``changed``, ``unchanged``).

:meth:`GraphView.to_json` gives the versioned JSON (``graph.schema.json`` next to this module)
that the browser draws; it is columnar and deduplicated so 100,000 values stay small.  Node ids
are positions in ``nodes``; a parent always comes before its children.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import json
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from ckptlab.core import ValueSpec
from ckptlab.inspect._wire import (
    DTYPE_ITEMSIZE,
    NO_STATE,
    OPTIMIZER,
    SLOT,
    SYNTHETIC,
    VIEW_STATES,
)

SCHEMA_NAME = "ckptlab.graph"
SCHEMA_VERSION = 1
MIME_TYPE = "application/vnd.ckptlab.graph+json"
ViewKind = Literal["match", "checkpoint", "program", "diff"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewValue:
    """One value to place in a view: where it sits in the tree and how it matched."""

    path: tuple[str, ...]
    """Display names from the root (unescaped, untrusted)."""
    state: str
    key: str = ""
    restore_path: str | None = None
    """What ``run_restore_ops(only=...)`` takes for this value (``None``: not restorable)."""
    stored: ValueSpec | None = None
    program: ValueSpec | None = None
    optimizer: bool = False
    slot: bool = False
    synthetic_depth: int | None = None
    """Path segments from this index on (except the leaf) are synthetic groups."""
    link: tuple[str, ...] | None = None
    """Path of a related node (a slot's variable) drawn as a cross edge."""
    reason: str = ""
    change: tuple[float, float, float] | None = None
    """How the value changed: (max |b - a|, ||b - a||², ||a||²); summed per module by the view."""
    names: tuple[str, ...] = ()
    """A name-based restore's program value: the stored names that would fill it (the report's
    ``names``); rename suggestions compare subtrees by them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Suggestion:
    """A likely match between a program-only value (or object) and a checkpoint-only one."""

    program: int
    """View node id on the program side."""
    checkpoint: int
    """View node id on the checkpoint side."""
    why: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ViewNode:
    """One node of the view tree."""

    id: int
    parent: int
    name: str
    state: str | None = None
    """The value's state; ``None`` for a node without a value."""
    value: ViewValue | None = None
    flags: int = 0


class ViewNodes(Sequence[ViewNode]):
    """A view's nodes, held as columns; the :class:`ViewNode` of an id is made when asked for.

    100,000 values make 100,000 nodes: drawing needs only the columns (names, parents, values,
    flags), so node objects are built for the few nodes Python code looks at.
    """

    __slots__ = ("_made", "flags", "names", "parents", "values")

    def __init__(
        self,
        parents: list[int],
        names: list[str],
        values: list[ViewValue | None],
        flags: list[int],
    ) -> None:
        self.parents, self.names, self.values, self.flags = parents, names, values, flags
        self._made: list[ViewNode | None] = [None] * len(parents)

    def __len__(self) -> int:
        return len(self.parents)

    @overload
    def __getitem__(self, index: int) -> ViewNode: ...

    @overload
    def __getitem__(self, index: slice) -> list[ViewNode]: ...

    def __getitem__(self, index: int | slice) -> ViewNode | list[ViewNode]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        node = self._made[index]
        if node is None:
            i = range(len(self.parents))[index]  # negative ids count from the end
            value = self.values[i]
            node = ViewNode(
                id=i,
                parent=self.parents[i],
                name=self.names[i],
                state=None if value is None else value.state,
                value=value,
                flags=self.flags[i],
            )
            self._made[i] = node
        return node

    def __iter__(self) -> Iterator[ViewNode]:
        return (self[i] for i in range(len(self.parents)))

    def __reversed__(self) -> Iterator[ViewNode]:
        return (self[i] for i in range(len(self.parents) - 1, -1, -1))

    def states(self) -> list[str | None]:
        """Each node's state (``None`` for nodes without a value)."""
        return [None if v is None else v.state for v in self.values]


@dataclass(frozen=True, eq=False)
class GraphView:
    """A tree of objects and values, with states, cross edges and suggestions."""

    nodes: ViewNodes
    children: tuple[tuple[int, ...], ...]
    edges: tuple[tuple[int, int, str], ...]
    """Cross edges ``(from, to, kind)``: ``slot`` (slot -> variable) or ``suggest``."""
    suggestions: tuple[Suggestion, ...]
    title: str
    source: str
    kind: ViewKind
    summary: str
    can_restore: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of values per view state (states with no value are left out)."""
        return dict(self._counts)

    @functools.cached_property
    def _counts(self) -> dict[str, int]:
        counted = collections.Counter(v.state for v in self.nodes.values if v is not None)
        return {s: counted[s] for s in VIEW_STATES if s in counted}

    def values(self, states: Container[str] | None = None) -> Iterable[ViewNode]:
        """Every node that holds a value (in one of ``states``, when given)."""
        nodes = self.nodes
        if states is None:
            return (nodes[i] for i, v in enumerate(nodes.values) if v is not None)
        return (nodes[i] for i, v in enumerate(nodes.values) if v is not None and v.state in states)

    def path_of(self, node_id: int) -> tuple[str, ...]:
        """Display names from the root (excluded) to ``node_id``."""
        names, parents = self.nodes.names, self.nodes.parents
        out: list[str] = []
        while node_id > 0:
            out.append(names[node_id])
            node_id = parents[node_id]
        return tuple(reversed(out))

    def find(self, path: Sequence[str]) -> int | None:
        """The node at display path ``path``, or ``None``."""
        node_id: int | None = 0
        for name in path:
            node_id = self._child_named.get((node_id, name))
            if node_id is None:
                return None
        return node_id

    @functools.cached_property
    def _child_named(self) -> dict[tuple[int | None, str], int]:
        """``(parent, name)`` -> the first child of that name.

        One dict, not a scan per :meth:`find`: every slot finds its variable this way, and a
        parent of 20,000 values took seconds.
        """
        names = self.nodes.names
        found: dict[tuple[int | None, str], int] = {}
        for parent, children in enumerate(self.children):
            for child in children:
                found.setdefault((parent, names[child]), child)
        return found

    def subtree(self, node_id: int) -> list[int]:
        """``node_id`` and every node below it."""
        out, stack = [], [node_id]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(self.children[current])
        return out

    def same_shape(self, other: GraphView) -> bool:
        """Whether both views have the same tree (so only states differ)."""
        return self.nodes.parents == other.nodes.parents and self.nodes.names == other.nodes.names

    def state_codes(self) -> bytes:
        """One byte per node: index into :data:`VIEW_STATES`, 255 for nodes without a value."""
        index = {s: i for i, s in enumerate(VIEW_STATES)}
        return bytes(NO_STATE if v is None else index[v.state] for v in self.nodes.values)

    def to_json(self) -> dict[str, Any]:
        """The versioned, columnar JSON the browser draws (see ``graph.schema.json``)."""
        strings: dict[str, int] = {}
        specs: dict[tuple[str, tuple[int | None, ...]], int] = {}

        def string(text: str) -> int:
            return strings.setdefault(text, len(strings)) if text else -1

        def spec(value: ValueSpec | None) -> int:
            if value is None:
                return -1
            return specs.setdefault((value.dtype, value.shape), len(specs))

        state_index: dict[str | None, int] = {s: i for i, s in enumerate(VIEW_STATES)}
        nodes = self.nodes
        values = nodes.values
        columns: dict[str, list[Any]] = {
            "parent": nodes.parents,
            "name": nodes.names,
            "state": [-1 if v is None else state_index.get(v.state, -1) for v in values],
            "flags": nodes.flags,
            "stored": [-1 if v is None else spec(v.stored) for v in values],
            "program": [-1 if v is None else spec(v.program) for v in values],
            "reason": [-1 if v is None else string(v.reason) for v in values],
        }
        if any(v is not None and v.change is not None for v in values):
            columns["change"] = [
                None if v is None or v.change is None else [_finite(x) for x in v.change]
                for v in values
            ]
        return {
            "format": SCHEMA_NAME,
            "version": SCHEMA_VERSION,
            "title": self.title,
            "source": self.source,
            "kind": self.kind,
            "summary": self.summary,
            "can_restore": self.can_restore,
            "states": list(VIEW_STATES),
            "counts": self.counts(),
            "nodes": columns,
            "specs": [[dtype, list(shape), DTYPE_ITEMSIZE.get(dtype, 0)] for dtype, shape in specs],
            "strings": list(strings),
            "edges": [list(e) for e in self.edges],
            "suggestions": [[s.program, s.checkpoint, s.why] for s in self.suggestions],
            "options": dict(self.options),
        }

    @functools.cached_property
    def json_text(self) -> str:
        """:meth:`to_json` serialised compactly (computed once per view)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @functools.cached_property
    def _compressed(self) -> bytes:
        return gzip.compress(self.json_text.encode("utf-8"), compresslevel=6, mtime=0)

    def to_bytes(self) -> bytes:
        """The JSON, gzip-compressed (what the widget sends once)."""
        return self._compressed


def build_view(
    values: Iterable[ViewValue],
    *,
    title: str,
    source: str,
    kind: ViewKind,
    summary: str,
    root_name: str = "(root)",
    can_restore: bool = False,
    suggest: bool = True,
    options: Mapping[str, Any] | None = None,
) -> GraphView:
    """Place ``values`` in a tree (creating the objects above them) and link them.

    Examples
    --------
    >>> v = ViewValue(path=("model", "kernel"), state="restored")
    >>> view = build_view([v], title="t", source="s", kind="match", summary="1 matched")
    >>> [n.name for n in view.nodes], view.counts()
    (['(root)', 'model', 'kernel'], {'restored': 1})
    """
    builder = _TreeBuilder(root_name)
    links: list[tuple[int, tuple[str, ...]]] = []
    for value in values:
        node_id = builder.place(value)
        if value.link is not None:
            links.append((node_id, value.link))
    view = GraphView(
        nodes=builder.finish(),
        children=tuple(tuple(c) for c in builder.children),
        edges=(),
        suggestions=(),
        title=title,
        source=source,
        kind=kind,
        summary=summary,
        can_restore=can_restore,
        options=dict(options or {}),
    )
    edges = [(a, b, "slot") for a, link in links if (b := view.find(link)) is not None]
    found: tuple[Suggestion, ...] = ()
    if suggest:
        from ckptlab.inspect._suggest import suggest_matches

        found = suggest_matches(view)
        edges.extend((s.program, s.checkpoint, "suggest") for s in found)
    return dataclasses.replace(view, edges=tuple(edges), suggestions=found)


class _TreeBuilder:
    def __init__(self, root_name: str) -> None:
        self.names: list[str] = [root_name]
        self.parents: list[int] = [-1]
        self.children: list[list[int]] = [[]]
        self.lookup: dict[tuple[int, str], int] = {}
        self.values: dict[int, ViewValue] = {}
        self.synthetic: set[int] = set()
        self.groups: dict[tuple[str, ...], int] = {(): 0}
        """Display path -> node id of every parent seen (values come grouped by parent)."""

    def child(self, parent: int, name: str, *, synthetic: bool) -> int:
        found = self.lookup.get((parent, name))
        if found is not None:
            return found
        node_id = len(self.names)
        self.names.append(name)
        self.parents.append(parent)
        self.children.append([])
        self.children[parent].append(node_id)
        self.lookup[(parent, name)] = node_id
        if synthetic:
            self.synthetic.add(node_id)
        return node_id

    def place(self, value: ViewValue) -> int:
        path = value.path
        if not path:
            node = 0
        else:
            parent = self.groups.get(path[:-1])
            if parent is None:  # first value under this parent: create the groups on the way
                parent, cut = 0, value.synthetic_depth
                for depth, name in enumerate(path[:-1]):
                    parent = self.child(parent, name, synthetic=cut is not None and cut <= depth)
                self.groups[path[:-1]] = parent
            node = self.child(parent, path[-1], synthetic=False)
        if node in self.values:
            # Two values on one path (a name-based key "a.b" next to "a/b"): keep both, the
            # second one named by its full key.
            parent = max(self.parents[node], 0)
            node = self.child(parent, f"{value.key} #{len(self.names)}", synthetic=False)
        self.values[node] = value
        return node

    def finish(self) -> ViewNodes:
        count, parents = len(self.names), self.parents
        values: list[ViewValue | None] = [None] * count
        for node_id, placed in self.values.items():
            values[node_id] = placed
        optimizer_only = [True] * count
        has_value = [False] * count
        for node_id in range(count - 1, -1, -1):
            value = values[node_id]
            if value is not None:
                has_value[node_id] = True
                optimizer_only[node_id] = optimizer_only[node_id] and value.optimizer
            parent = parents[node_id]
            if parent >= 0 and has_value[node_id]:
                has_value[parent] = True
                optimizer_only[parent] = optimizer_only[parent] and optimizer_only[node_id]
        flags = [OPTIMIZER if optimizer_only[i] and has_value[i] and i else 0 for i in range(count)]
        for node_id, placed in self.values.items():
            if placed.slot:
                flags[node_id] |= SLOT
        for node_id in self.synthetic:
            flags[node_id] |= SYNTHETIC
        return ViewNodes(parents, self.names, values, flags)


def _finite(x: float) -> float | str:
    """JSON has no infinity: ``inf`` travels as the string ``"inf"`` (``nan`` as ``"nan"``)."""
    return x if x == x and abs(x) != float("inf") else str(x)
