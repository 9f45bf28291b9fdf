"""A variable sharded along axis 0: each worker holds only its rows (public, re-exported)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ckptlab.core import ValueSpec
from ckptlab.distributed._plan import check_partition
from ckptlab.engine import Trackable
from ckptlab.errors import AssignmentError, InvalidArgumentError, NotSaveableError
from ckptlab.storage import dtype_name, open_path, read_rows


def row_partition(rows: int, workers: int, *, multiple: int = 1) -> tuple[int, ...]:
    """Row boundaries splitting ``rows`` rows evenly over ``workers``, on multiples of ``multiple``.

    The result has ``workers + 1`` entries from 0 to ``rows``; worker ``r`` holds rows
    ``[bounds[r], bounds[r + 1])``.  Chunks of a sharded value divide every boundary, so a
    ``multiple`` of a few MiB worth of rows keeps its chunks large.

    Examples
    --------
    >>> row_partition(10, 3)
    (0, 4, 7, 10)
    >>> row_partition(1000, 2, multiple=128)
    (0, 512, 1000)
    """
    if workers < 1 or multiple < 1 or rows < 0:
        raise ValueError(
            "row_partition needs rows >= 0, workers >= 1, multiple >= 1; "
            f"got {rows}, {workers}, {multiple}"
        )
    blocks = -(-rows // multiple)
    bounds = [
        min(rows, (blocks * r // workers + (1 if r and blocks * r % workers else 0)) * multiple)
        for r in range(workers)
    ]
    return (*bounds, rows)


def stored_key(values: Mapping[str, Any], key: str) -> str:
    """The stored value key for a key or an object path (``model/w`` -> its VARIABLE_VALUE)."""
    if key in values:
        return key
    full = f"{key}/.ATTRIBUTES/VARIABLE_VALUE"
    return full if full in values else key


class ShardedVariable(Trackable):
    """One worker's rows of a variable whose full value is split along axis 0 across workers.

    In the object graph it is one value of the full ``shape``; a multi-worker save
    (:func:`ckptlab.distributed.save`) has each worker write only its own rows.  A plain
    single-process ``Checkpoint.save`` refuses it (it holds only some rows).  Restoring a
    checkpoint into it copies its rows of the stored value; :func:`ckptlab.distributed.read_region`
    reads just those rows.

    Parameters
    ----------
    local
        The rows this worker holds: shape ``(partition[rank + 1] - partition[rank], *shape[1:])``.
    shape
        Shape of the full value.
    partition
        Row boundaries of every worker's region (``row_partition`` makes even ones).
    rank
        This worker's number.
    dtype, name
        As for :class:`ckptlab.Variable`.

    Examples
    --------
    >>> from ckptlab.distributed import ShardedVariable, row_partition
    >>> bounds = row_partition(6, 2)
    >>> part = ShardedVariable(np.ones((3, 2)), shape=(6, 2), partition=bounds, rank=1)
    >>> part.rows, part.shape, part.local.shape
    ((3, 6), (6, 2), (3, 2))
    """

    _ck_accepts_dependencies = False

    def __init__(
        self,
        local: ArrayLike,
        *,
        shape: Sequence[int],
        partition: Sequence[int],
        rank: int,
        dtype: DTypeLike | None = None,
        name: str | None = None,
    ) -> None:
        self._shape = tuple(int(d) for d in shape)
        self._partition = tuple(int(b) for b in partition)
        self._rank = int(rank)
        self._name = "Variable" if name is None else str(name)
        array = np.ascontiguousarray(np.asarray(local, dtype=dtype))
        dtype_name(array.dtype, f"ShardedVariable {self._name!r}")
        _check_region(f"ShardedVariable {self._name!r}", self._shape, self._partition, self._rank)
        expected = (self.rows[1] - self.rows[0], *self._shape[1:])
        if array.shape != expected:
            raise AssignmentError(
                f"ShardedVariable {self._name!r}: worker {self._rank} holds rows {self.rows} of "
                f"{self._shape}, so its local value must have shape {expected}, not {array.shape}."
            )
        self._local = array

    @classmethod
    def from_checkpoint(
        cls,
        path_or_dir: str | os.PathLike[str],
        key: str,
        *,
        partition: Sequence[int],
        rank: int,
        name: str | None = None,
    ) -> ShardedVariable:
        """Worker ``rank``'s rows of a stored value, reading only the chunks that hold them.

        This loads a value saved by N workers into M workers (``partition`` has M regions).
        ``key`` is a value key or an object path such as ``"model/embedding"``.

        Examples
        --------
        >>> import ckptlab as ck, tempfile
        >>> ckpt = ck.Checkpoint(w=ck.Variable(np.arange(12.0).reshape(6, 2)))
        >>> path = ckpt.write(tempfile.mkdtemp() + "/c")
        >>> part = ShardedVariable.from_checkpoint(path, "w", partition=(0, 2, 4, 6), rank=2)
        >>> part.local
        array([[ 8.,  9.],
               [10., 11.]])
        """
        checkpoint = open_path(path_or_dir)
        full = stored_key(checkpoint.document.values, key)
        bounds = tuple(int(b) for b in partition)
        shape = checkpoint.stored(full).shape
        _check_region(f"Value {full!r} of {checkpoint.display_path}", shape, bounds, rank)
        local = read_rows(checkpoint, full, bounds[rank], bounds[rank + 1])
        return cls(local, shape=shape, partition=bounds, rank=rank, name=name)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the full value."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype."""
        return self._local.dtype

    @property
    def name(self) -> str:
        """The variable's name."""
        return self._name

    @property
    def partition(self) -> tuple[int, ...]:
        """Row boundaries of every worker's region."""
        return self._partition

    @property
    def rank(self) -> int:
        """The worker whose rows this object holds."""
        return self._rank

    @property
    def rows(self) -> tuple[int, int]:
        """``(start, stop)`` of the rows held here."""
        return self._partition[self._rank], self._partition[self._rank + 1]

    @property
    def local(self) -> np.ndarray[Any, Any]:
        """The rows held here (the live array: write into it to update them)."""
        return self._local

    def numpy(self) -> np.ndarray[Any, Any]:
        """A copy of the rows held here."""
        return self._local.copy()

    def __repr__(self) -> str:
        rows = f"rows={self.rows} of shape={self._shape}"
        return f"<ShardedVariable {self._name!r} {rows} dtype={self.dtype.name}>"

    def _ck_value_spec(self) -> ValueSpec:
        return ValueSpec(shape=self._shape, dtype=self.dtype.name)

    def _ck_check_saveable(self) -> None:
        raise NotSaveableError(
            f"ShardedVariable {self._name!r} holds only rows {self.rows} of {self._shape}; a "
            "single-process save would lose the other rows. Save it with "
            "ckptlab.distributed.save(...) from every worker."
        )

    def _ck_restore_value(self, array: np.ndarray[Any, Any]) -> None:
        start, stop = self.rows
        self._local[...] = array[start:stop]


class Placeholder(Trackable):
    """A value this worker does not hold: only its shape and dtype (model parallelism).

    Every worker builds the same object graph; where a value lives on another worker, put a
    ``Placeholder`` in its place and assign the value to its worker
    (``save(..., assign={"model/b": 1})``).  A plan that asks this worker to write it fails
    with an error naming the value.

    Examples
    --------
    >>> from ckptlab.distributed import Placeholder
    >>> Placeholder((1024, 1024), "float32")
    <Placeholder 'Variable' shape=(1024, 1024) dtype=float32>
    """

    _ck_accepts_dependencies = False

    def __init__(self, shape: Sequence[int], dtype: DTypeLike, *, name: str | None = None) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.name = "Variable" if name is None else str(name)
        dtype_name(self.dtype, f"Placeholder {self.name!r}")

    def __repr__(self) -> str:
        return f"<Placeholder {self.name!r} shape={self.shape} dtype={self.dtype.name}>"

    def _ck_value_spec(self) -> ValueSpec:
        return ValueSpec(shape=self.shape, dtype=self.dtype.name)

    def _ck_check_saveable(self) -> None:
        raise NotSaveableError(
            f"Placeholder {self.name!r} holds no data; only a multi-worker save "
            "(ckptlab.distributed.save) can save a program with placeholders."
        )

    def _ck_restore_value(self, array: np.ndarray[Any, Any]) -> None:
        raise AssignmentError(
            f"Placeholder {self.name!r} holds no data and cannot be restored; restore this value "
            "on the worker that holds it (or build a ck.Variable here)."
        )


def _check_region(where: str, shape: tuple[int, ...], bounds: tuple[int, ...], rank: int) -> None:
    """Refuse a partition that does not cut ``shape``'s rows, or a rank it has no region for."""
    check_partition(where, shape, bounds)
    if not 0 <= rank < len(bounds) - 1:
        raise InvalidArgumentError(
            f"{where}: partition {list(bounds)} has regions for ranks 0 to {len(bounds) - 2}; "
            f"got rank {rank}."
        )
