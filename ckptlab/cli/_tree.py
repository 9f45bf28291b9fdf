"""The checkpoint as a tree of named objects and values, for ``ckptlab ls`` and ``export``.

Built from the stored document only (no values are read).  Each object appears once, under the
first breadth-first path (the path its keys use); a shared object reached again is a leaf that
points at that path.  Optimizer slot variables are listed under their optimizer, grouped by slot
name.  A name-based checkpoint (no object graph) becomes a tree split on ``/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ckptlab.core import (
    CheckpointDocument,
    ObjectGraph,
    StoredValue,
    pretty_path,
)

VARIABLE_VALUE = "VARIABLE_VALUE"


@dataclass(slots=True)
class TreeNode:
    """One line of the tree: an object, a value, a slot group or a reference to a shared object."""

    name: str
    kind: str
    """``object``, ``value``, ``slots`` (a group of slot variables) or ``alias``."""
    type_name: str = ""
    value: StoredValue | None = None
    alias_of: str | None = None
    """For ``alias``: the display path where the shared object is listed."""
    children: list[TreeNode] = field(default_factory=list)

    def values(self) -> Iterator[StoredValue]:
        """Every stored value in this subtree (aliases excluded)."""
        if self.value is not None:
            yield self.value
        for child in self.children:
            yield from child.values()

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.type_name:
            out["type"] = self.type_name
        if self.value is not None:
            out.update(value_json(self.value))
        if self.alias_of is not None:
            out["alias_of"] = self.alias_of
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out


def value_json(value: StoredValue) -> dict[str, Any]:
    """Key, shape, dtype and size of a stored value as plain data."""
    return {
        "key": value.key,
        "shape": list(value.shape),
        "dtype": value.dtype,
        "nbytes": value.nbytes,
    }


def build_tree(document: CheckpointDocument) -> TreeNode:
    """Build the tree of a checkpoint document (object graph, or keys split on ``/``)."""
    if document.graph is None:
        return _tree_from_keys(document)
    return _ObjectTree(document, document.graph).build()


class _ObjectTree:
    def __init__(self, document: CheckpointDocument, graph: ObjectGraph) -> None:
        self.document = document
        self.graph = graph
        self.paths = graph.paths()

    def build(self) -> TreeNode:
        return self._node(0, "(root)", ())

    def _node(self, node_id: int, name: str, path: tuple[str, ...]) -> TreeNode:
        node = self.graph.nodes[node_id]
        values = {a.name: self.document.values.get(a.key) for a in node.attributes}
        if set(values) == {VARIABLE_VALUE} and not node.children and not node.slot_variables:
            return TreeNode(name, "value", node.type_name, value=values[VARIABLE_VALUE])
        out = TreeNode(name, "object", node.type_name)
        for attribute, value in values.items():
            out.children.append(TreeNode(f"[{attribute}]", "value", value=value))
        for local, child in node.children.items():
            out.children.append(self._child(child, local, (*path, local)))
        out.children.extend(self._slot_groups(node_id))
        return out

    def _child(self, child: int, name: str, path: tuple[str, ...]) -> TreeNode:
        first = self.paths[child]
        if first is not None and first.slot is None and first.path == path:
            return self._node(child, name, path)
        shown = first.pretty if first is not None else "an unreachable object"
        return TreeNode(name, "alias", alias_of=shown)

    def _slot_groups(self, node_id: int) -> list[TreeNode]:
        groups: dict[str, TreeNode] = {}
        for ref in self.graph.nodes[node_id].slot_variables:
            group = groups.setdefault(ref.slot, TreeNode(ref.slot, "slots"))
            variable = self.paths[ref.original]
            label = pretty_path(variable.path) if variable is not None else f"node {ref.original}"
            slot_node = self.graph.nodes[ref.node]
            key = slot_node.value_key
            value = self.document.values.get(key) if key is not None else None
            group.children.append(TreeNode(label, "value", slot_node.type_name, value=value))
        return list(groups.values())


def _tree_from_keys(document: CheckpointDocument) -> TreeNode:
    root = TreeNode("(root)", "object")
    for key in sorted(document.values):
        parts = key.split("/")
        here = root
        for part in parts[:-1]:
            found = next((c for c in here.children if c.name == part and c.kind == "object"), None)
            if found is None:
                found = TreeNode(part, "object")
                here.children.append(found)
            here = found
        here.children.append(TreeNode(parts[-1], "value", value=document.values[key]))
    return root
