"""``ck.KeyMap``: rename rules and transposes for cross-framework restores (public, re-exported).

A key map rewrites what a checkpoint *looks like* before restore matches it; it never changes
the file.  ``Checkpoint.restore(path, key_map=...)``, ``Checkpoint.read`` and
``ck.convert(..., key_map=...)`` accept one.

* Name-based checkpoints (TF1, PyTorch, safetensors, ``ck.Saver``): each rule is a regular
  expression substitution applied, in order, to every stored name; the result is the
  ``Variable.name`` it restores into.
* Object-based checkpoints (TF2, ckptlab): each rule applies to every edge name (local name)
  of the saved object graph, so ``("^_kernel$", "kernel")`` lets a Keras 3 checkpoint meet a
  program that calls the attribute ``kernel``.
* ``transpose``: regular expressions searched in the renamed name (name-based) or the renamed
  object path such as ``model/dense/kernel`` (object-based); matching 2-D values are transposed
  on read (PyTorch ``Linear.weight`` is ``[out, in]``, a Keras/ckptlab kernel ``[in, out]``).
  ckptlab never transposes silently: a shape mismatch without a rule is a conflict.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ckptlab.core import GraphNode, NearMiss, ObjectGraph, StoredValue
from ckptlab.storage import StoredCheckpoint

__all__ = ["KeyMap"]


class KeyMap:
    r"""Rename rules (regex, replacement) and transposes applied to a checkpoint before matching.

    Parameters
    ----------
    rules
        ``{pattern: replacement}`` or ``(pattern, replacement)`` pairs for :func:`re.sub`,
        applied in order.
    transpose
        Patterns (:func:`re.search`) selecting the values to transpose, by renamed name or path.

    Examples
    --------
    >>> import ckptlab as ck
    >>> to_dense = ck.KeyMap({r"\.weight$": "/kernel", r"\.bias$": "/bias"}, transpose=["kernel$"])
    >>> to_dense.rename("fc1.weight"), to_dense.transposes("fc1/kernel")
    ('fc1/kernel', True)
    """

    def __init__(
        self,
        rules: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        transpose: Iterable[str] = (),
    ) -> None:
        pairs = rules.items() if isinstance(rules, Mapping) else rules
        self.rules = tuple((re.compile(p), r) for p, r in pairs)
        self.transpose = tuple(re.compile(p) for p in transpose)

    @classmethod
    def from_near_misses(cls, misses: Iterable[NearMiss]) -> KeyMap:
        """A key map applying exactly the given :func:`ckptlab.near_misses` suggestions."""
        misses = list(misses)
        return cls(
            [(f"^{re.escape(m.stored)}$", m.wanted.replace("\\", "\\\\")) for m in misses],
            transpose=[f"^{re.escape(m.wanted)}$" for m in misses if m.transpose],
        )

    def rename(self, name: str) -> str:
        """Apply every rule, in order, to one name."""
        for pattern, replacement in self.rules:
            name = pattern.sub(replacement, name)
        return name

    def transposes(self, name: str) -> bool:
        """Whether the value at (renamed) ``name`` is transposed on read."""
        return any(p.search(name) for p in self.transpose)

    def apply(self, source: StoredCheckpoint) -> StoredCheckpoint:
        """A read-only view of ``source`` as this key map rewrites it."""
        return MappedCheckpoint(source, self)

    def __repr__(self) -> str:
        rules = ", ".join(f"{p.pattern!r}: {r!r}" for p, r in self.rules)
        return f"ck.KeyMap({{{rules}}}, transpose={[p.pattern for p in self.transpose]})"


class MappedCheckpoint(StoredCheckpoint):
    """A checkpoint seen through a :class:`KeyMap`: renamed keys or edges, transposed values."""

    def __init__(self, source: StoredCheckpoint, key_map: KeyMap) -> None:
        self.source = source
        self.origin: dict[str, str] = {}
        """Mapped key -> the key in ``source``."""
        self.flipped: set[str] = set()
        document = source.document
        if document.kind == "name":
            values = self._rename_values(document.values, key_map)
            graph = None
        else:
            assert document.graph is not None
            graph = _rename_graph(document.graph, key_map, source.display_path)
            values = self._transpose_values(document.values, graph, key_map)
        super().__init__(
            source.store, source.path, dataclasses.replace(document, values=values, graph=graph)
        )

    def _rename_values(
        self, values: Mapping[str, StoredValue], key_map: KeyMap
    ) -> dict[str, StoredValue]:
        renamed: dict[str, StoredValue] = {}
        for key, value in values.items():
            new = key_map.rename(key)
            if new in self.origin:
                raise ValueError(
                    f"KeyMap renames both {self.origin[new]!r} and {key!r} to {new!r}; make "
                    "the rules more specific."
                )
            self.origin[new] = key
            renamed[new] = self._flip(dataclasses.replace(value, key=new), key_map.transposes(new))
        return renamed

    def _transpose_values(
        self, values: Mapping[str, StoredValue], graph: ObjectGraph, key_map: KeyMap
    ) -> dict[str, StoredValue]:
        flip = {
            node.value_key
            for node, path in zip(graph.nodes, graph.paths(), strict=True)
            if path is not None and node.value_key and key_map.transposes(path.prefix)
        }
        self.origin = {key: key for key in values}
        return {key: self._flip(value, key in flip) for key, value in values.items()}

    def _flip(self, value: StoredValue, transpose: bool) -> StoredValue:
        if not transpose or len(value.shape) < 2:
            return value
        self.flipped.add(value.key)
        return dataclasses.replace(value, shape=value.shape[::-1])

    def read(self, key: str, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """Read one value from the underlying checkpoint, transposed if a rule says so."""
        value = self.stored(key)
        array = self.source.read(self.origin[key])
        if key in self.flipped:
            array = np.ascontiguousarray(array.T)
        if out is None:
            return array
        if out.shape != value.shape or out.dtype != array.dtype:
            raise ValueError(f"out must be a {value.shape} {value.dtype} array")
        out[...] = array
        return out

    def read_many(
        self, keys: Iterable[str], outs: Mapping[str, np.ndarray[Any, Any]] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Read several values (one at a time, through :meth:`read`)."""
        return {k: self.read(k, (outs or {}).get(k)) for k in dict.fromkeys(keys)}


def _rename_graph(graph: ObjectGraph, key_map: KeyMap, where: str) -> ObjectGraph:
    nodes: list[GraphNode] = []
    for node_id, node in enumerate(graph.nodes):
        children: dict[str, int] = {}
        for name, child in node.children.items():
            new = key_map.rename(name)
            if new in children and children[new] != child:
                raise ValueError(
                    f"KeyMap renames two children of node {node_id} of {where} to {new!r}; "
                    "make the rules more specific."
                )
            children[new] = child
        nodes.append(
            dataclasses.replace(node, children=children)
            if children != dict(node.children)
            else node
        )
    return ObjectGraph(nodes=tuple(nodes))
