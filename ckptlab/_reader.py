"""Reading checkpoints without program objects: ``list_variables``, ``load_checkpoint``.

A directory argument resolves to its latest checkpoint (docs/semantics.md S91).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from operator import itemgetter
from typing import Any

import numpy as np

from ckptlab.core import GraphNode, ObjectGraph, gc_paused
from ckptlab.storage import StoredCheckpoint, numpy_dtype, read_listing, resolve_path
from ckptlab.storage import open_path as open_path  # the facade's modules import it from here

__all__ = ["CheckpointReader", "list_variables", "load_checkpoint"]


class ObjectGraphView:
    """The saved object graph: ``nodes[i].children``, ``.attributes``, ``.slot_variables``.

    Node 0 is the root; ids follow breadth-first discovery order.
    """

    def __init__(self, graph: ObjectGraph) -> None:
        self._graph = graph
        self.nodes: tuple[NodeView, ...] = tuple(NodeView(n) for n in graph.nodes)

    def children(self, node_id: int) -> Mapping[str, int]:
        """Local name -> node id of ``node_id``'s children."""
        return self.nodes[node_id].children

    def descendants(self) -> list[int]:
        """Every node id reachable from the root, breadth-first."""
        return [i for i, path in enumerate(self._graph.paths()) if path is not None]

    def __len__(self) -> int:
        return len(self.nodes)


class NodeView:
    """One node of an :class:`ObjectGraphView`."""

    def __init__(self, node: GraphNode) -> None:
        self.children: Mapping[str, int] = dict(node.children)
        self.attributes: Mapping[str, str] = {a.name: a.key for a in node.attributes}
        self.slot_variables: tuple[tuple[int, str, int], ...] = tuple(
            (s.original, s.slot, s.node) for s in node.slot_variables
        )
        self.type_name = node.type_name

    def __repr__(self) -> str:
        kind = self.type_name or "object"
        return f"<node {kind} children={dict(self.children)} attributes={dict(self.attributes)}>"


class CheckpointReader:
    """Reads a checkpoint's values by key; no program objects needed.

    Made by :func:`ck.load_checkpoint`.  Keys use TensorFlow's grammar
    (``model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE``); ``object_graph`` is the saved graph
    (``None`` for a checkpoint without one, e.g. a name-based or PyTorch checkpoint).

    Parameters
    ----------
    source
        The opened checkpoint (:func:`ckptlab.storage.open_path`), or a path or directory,
        opened as :func:`ck.load_checkpoint` opens it (TensorFlow's ``CheckpointReader`` takes
        a path too).

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> reader = ck.load_checkpoint(path)
    >>> reader.get_variable_to_shape_map()
    {'w/.ATTRIBUTES/VARIABLE_VALUE': [2]}
    >>> reader.get_tensor('w/.ATTRIBUTES/VARIABLE_VALUE')
    array([1., 2.])
    """

    def __init__(self, source: StoredCheckpoint | str | os.PathLike[str]) -> None:
        self._source = source if isinstance(source, StoredCheckpoint) else open_path(source)

    @cached_property
    def object_graph(self) -> ObjectGraphView | None:
        """The saved object graph (built when first asked for: reading values never needs it)."""
        graph = self._source.document.graph
        return ObjectGraphView(graph) if graph is not None else None

    @property
    def path(self) -> str:
        """The checkpoint's path or URL."""
        return self._source.display_path

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """Key -> shape of every stored value.

        Returns
        -------
        dict of str to list of int
            One entry per stored value; no value is read.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable(np.zeros((2, 3)))).write(tempfile.mkdtemp())
        >>> ck.load_checkpoint(path).get_variable_to_shape_map()
        {'w/.ATTRIBUTES/VARIABLE_VALUE': [2, 3]}
        """
        return {k: list(v.shape) for k, v in self._source.document.values.items()}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype[Any]]:
        """Key -> numpy dtype of every stored value.

        Returns
        -------
        dict of str to numpy.dtype
            One entry per stored value; no value is read.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable(np.zeros(2, "float32"))).write(tempfile.mkdtemp())
        >>> ck.load_checkpoint(path).get_variable_to_dtype_map()
        {'w/.ATTRIBUTES/VARIABLE_VALUE': dtype('<f4')}
        """
        return {k: numpy_dtype(v.dtype) for k, v in self._source.document.values.items()}

    def has_tensor(self, key: str) -> bool:
        """Whether ``key`` (a full key) is stored.

        Parameters
        ----------
        key
            A full key, with its ``/.ATTRIBUTES/...`` suffix.

        Returns
        -------
        bool

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable(1.0)).write(tempfile.mkdtemp())
        >>> reader = ck.load_checkpoint(path)
        >>> reader.has_tensor("w/.ATTRIBUTES/VARIABLE_VALUE"), reader.has_tensor("w")
        (True, False)
        """
        return key in self._source.document.values

    def get_tensor(self, key: str) -> np.ndarray[Any, Any]:
        """Read one value (only that value's bytes), verified against its checksum.

        Parameters
        ----------
        key
            A full key, with its ``/.ATTRIBUTES/...`` suffix.

        Returns
        -------
        numpy.ndarray
            A new array holding the stored value.

        Raises
        ------
        NotFoundError
            The checkpoint has no such key (a partial key such as ``model/kernel`` is not one).
        CorruptCheckpointError
            The stored bytes fail their checksum.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(w=ck.Variable([1, 2])).write(tempfile.mkdtemp())
        >>> reader = ck.load_checkpoint(path)
        >>> reader.get_tensor("w/.ATTRIBUTES/VARIABLE_VALUE")
        array([1, 2])
        """
        return self._source.read(key)

    def __repr__(self) -> str:
        return f"<ck.CheckpointReader {self.path}: {len(self._source.document.values)} values>"


def list_variables(path_or_dir: str | os.PathLike[str]) -> list[tuple[str, list[int]]]:
    """Sorted ``(key, shape)`` of every stored value.

    Only the checkpoint's document is read (and of it only the values' part).

    Parameters
    ----------
    path_or_dir
        A checkpoint (path or URL, any format ckptlab reads), or a directory: its latest
        checkpoint (docs/semantics.md S91).

    Returns
    -------
    list of (str, list of int)
        Keys in TensorFlow's grammar, sorted; the object graph is not listed (it is a
        document, not a value).

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable(1.0)).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> ck.list_variables(path)
    [('w/.ATTRIBUTES/VARIABLE_VALUE', [])]
    """
    with gc_paused():  # 100,000 values are 200,000 new containers: nothing for the collector
        listing = read_listing(*resolve_path(path_or_dir))  # the values only: no graph parsing
        listing.sort(key=itemgetter(0))
        return [(key, list(shape)) for key, shape, _ in listing]


def load_checkpoint(path_or_dir: str | os.PathLike[str]) -> CheckpointReader:
    """A :class:`CheckpointReader` for a checkpoint (or a directory's latest checkpoint).

    Parameters
    ----------
    path_or_dir
        A checkpoint (path or URL, any format ckptlab reads), or a directory: its latest
        checkpoint.

    Returns
    -------
    CheckpointReader
        Values are read on demand, one key at a time.

    Raises
    ------
    NotFoundError
        Nothing is there, or the directory holds no complete checkpoint.

    Examples
    --------
    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> _ = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).save(directory + "/ckpt")
    >>> reader = ck.load_checkpoint(directory)
    >>> reader.path.endswith("ckpt-1"), reader.object_graph.nodes[0].children
    (True, {'w': 1, 'save_counter': 2})
    """
    return CheckpointReader(open_path(path_or_dir))
