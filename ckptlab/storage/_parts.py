"""Checkpoints written in parts by several workers, and reads of row regions (internal).

A multi-worker save stages one checkpoint location (``begin_staging``); each worker writes its
own data arrays (``data/<dtype>_w<rank>``, the values it was given, packed as a single-process
save packs them) and whole chunks of the own arrays of values split between workers
(``values/<n>``), through a :class:`PartWriter`; one coordinator writes the group documents and
the root document and publishes once (``publish_staged``).  Every stored object has exactly one
writer, and re-writing a part writes the same bytes under the same names, so re-running a
worker is harmless.  ``read_rows`` reads rows ``[start, stop)`` of a value, touching only the
chunks (or checksum blocks) that overlap them.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np

from ckptlab.core import CRC_BLOCK, ArrayInfo, ValueTable
from ckptlab.errors import CorruptCheckpointError, InvalidArgumentError, StorageExistsError
from ckptlab.storage._commit import (
    ABORTED,
    Staging,
    clean_leftovers,
    is_committed,
    prepare_in_place,
)
from ckptlab.storage._faults import told_as_writing
from ckptlab.storage._kv import Buffer, ByteStore
from ckptlab.storage._layout import (
    ROOT_DOCUMENT,
    array_metadata,
    chunk_key,
    data_array,
    data_metadata,
    group_metadata,
    numpy_dtype,
    shard_key,
)
from ckptlab.storage._reader import StoredCheckpoint
from ckptlab.storage._stream import raw_bytes, stream_array
from ckptlab.storage._values import PackedValues
from ckptlab.storage._writer import BATCH_BYTES


@dataclass(frozen=True, slots=True, kw_only=True)
class ArraySpec:
    """An own array of a checkpoint: where it is, which value it holds, how it is chunked."""

    path: str
    """``values/<n>`` inside the checkpoint."""
    key: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    """Chunked along axis 0 only: ``chunks[1:]`` covers the other axes whole."""


_HELD: dict[str, Staging] = {}
"""The local staging directories of this process's multi-worker saves, by path: the
coordinator holds each from :func:`begin_staging` to :func:`publish_staged` or
:func:`discard_staged`.  The job naming it travels to the workers; the open directory cannot."""


def begin_staging(store: ByteStore, path: str, *, durable: bool) -> str:
    """Prepare to write the checkpoint ``path`` in parts; return where the parts go.

    Locally that is a fresh hidden sibling, created and held open here (:class:`Staging`) and
    published later by rename; on object stores it is ``path`` itself, after retracting any
    checkpoint already committed there.
    """
    clean_leftovers(store, path)
    if store.supports_rename:
        staging = Staging(store, path)
        _HELD[staging.path] = staging
        return staging.path
    prepare_in_place(store, path, durable=durable)
    return path


def _let_go(staged: str) -> None:
    """Close the staging directory ``staged`` if this process holds it."""
    staging = _HELD.pop(staged, None)
    if staging is not None:
        staging.close()


class PartWriter:
    """Writes one worker's part: array metadata, whole chunks of own arrays, its own packs.

    Writes are queued and handed to the store's ``write_many`` in batches of about
    ``BATCH_BYTES`` (concurrent uploads on object stores), as the single-process writer does;
    :meth:`close` writes the rest.  Directories are made durable by the coordinator's publish.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from ckptlab.storage import LocalStore
    >>> spec = ArraySpec(path="values/0", key="k", shape=(4, 2), dtype="int64", chunks=(2, 2))
    >>> writer = PartWriter(LocalStore(), tempfile.mkdtemp(), durable=False)
    >>> writer.rows(spec, np.arange(4, dtype="<i8").reshape(2, 2), start=2).keys()
    dict_keys([1])
    >>> writer.close()
    """

    def __init__(self, store: ByteStore, staged: str, *, durable: bool) -> None:
        self.store = store
        self.staged = staged
        self.durable = durable
        self.remote = store.concurrent_writes
        self._queue: list[tuple[str, list[Buffer]]] = []
        self._queued = 0

    def _put(self, key: str, parts: list[Buffer], size: int = 0) -> None:
        self._queue.append((posixpath.join(self.staged, key), parts))
        self._queued += size
        if self._queued >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        queue, self._queue, self._queued = self._queue, [], 0
        self.store.write_many(queue, durable=self.durable)

    def array_metadata(self, spec: ArraySpec) -> None:
        """Queue the ``zarr.json`` of an own array (exactly one worker writes it)."""
        document = array_metadata(spec.shape, spec.chunks, spec.dtype, spec.key)
        self._put(posixpath.join(spec.path, ROOT_DOCUMENT), [document])

    def rows(self, spec: ArraySpec, rows: np.ndarray[Any, Any], start: int) -> dict[int, int]:
        """Queue the whole chunks holding rows ``[start, start + len(rows))``; return their crc32c.

        ``rows`` is C-contiguous and little-endian and must stay unchanged until :meth:`close`.
        The region must begin and end on chunk boundaries (or at the end of the array), so
        that no chunk has two writers.
        """
        per_chunk = spec.chunks[0] if spec.shape else 1
        count = rows.shape[0] if spec.shape else 1
        stop, end = start + count, (spec.shape[0] if spec.shape else 1)
        if start % per_chunk or (stop % per_chunk and stop != end) or stop > end:
            raise ValueError(
                f"Rows [{start}, {stop}) of {spec.key!r} are not aligned to its {per_chunk}-row "
                "chunks; a worker must write whole chunks."
            )
        if rows.size == 0:
            return {}
        row_bytes = rows.nbytes // count
        chunk_bytes = math.prod(spec.chunks) * rows.itemsize
        raw = raw_bytes(rows)
        crcs = {}
        for first in range(0, count, per_chunk):
            data = raw[first * row_bytes : (first + per_chunk) * row_bytes]
            padding = bytes(chunk_bytes - len(data))
            crc = crc32c.crc32c(padding, crc32c.crc32c(data)) if padding else crc32c.crc32c(data)
            index = (start + first) // per_chunk
            grid = (index, *([0] * (len(spec.shape) - 1))) if spec.shape else ()
            parts: list[Buffer] = [data, padding, crc.to_bytes(4, "little")]
            self._put(chunk_key(spec.path, grid), parts, len(data))
            crcs[index] = crc
        return crcs

    def pack(
        self, path: str, members: Sequence[tuple[str, np.ndarray[Any, Any]]]
    ) -> tuple[ArrayInfo, dict[str, tuple[int, tuple[int, ...]]]]:
        """Queue values of one dtype packed into the data array ``path`` (``data/<name>``).

        The values must stay unchanged until :meth:`close`.  Returns the array's description
        and ``key -> (element offset, checksums)``.
        """
        dtype = members[0][1].dtype
        name = dtype.name
        info = data_array(
            path, name, sum(a.size for _, a in members), None if not self.remote else 64 * 2**20
        )
        crcs: list[list[int]] = [[] for _ in members]
        self._put(posixpath.join(path, ROOT_DOCUMENT), [data_metadata(info)])
        for shard, parts, size in _whole_shards(info, [a for _, a in members], crcs):
            self._put(shard_key(path, shard), parts, size)
        entries = {}
        offset = 0
        for (key, array), crc in zip(members, crcs, strict=True):
            entries[key] = (offset, tuple(crc))
            offset += array.size
        return info, entries

    def close(self) -> None:
        """Write everything still queued."""
        self._flush()


def publish_staged(
    store: ByteStore, staged: str, path: str, document: Mapping[str, Any], *, durable: bool
) -> None:
    """Write the group documents and the root document (last), then publish ``path`` once.

    Locally the rename happens only if ``staged`` is still the directory :func:`begin_staging`
    made (:meth:`Staging.check`: nothing removed it while the workers wrote); otherwise
    :class:`~ckptlab.NotFoundError`.  Faults name ``path``, not the staging copy.  On failure
    the caller discards the parts (:func:`discard_staged`).
    """
    with told_as_writing(store.display(path)):
        for group in ("data", "values"):
            store.write(
                posixpath.join(staged, group, ROOT_DOCUMENT), [group_metadata()], durable=durable
            )
        root = group_metadata({"ckptlab": dict(document)})
        if store.supports_rename:
            store.write(posixpath.join(staged, ROOT_DOCUMENT), [root], durable=durable)
            _HELD[staged].publish(path, durable=durable)
            _let_go(staged)
        elif not store.write_new(posixpath.join(path, ROOT_DOCUMENT), root, durable=durable):
            raise StorageExistsError(
                f"Another writer committed {store.display(path)} first; its checkpoint stands "
                "and this save was not published. Give concurrent saves different paths."
            )


def discard_staged(store: ByteStore, staged: str, path: str) -> None:
    """Remove the parts of a save that will not be committed (a committed checkpoint stays).

    Locally the parts were in a hidden sibling of their own.  On object stores they were written
    in place, and a worker that timed out may still be writing (a Dask task cannot be stopped),
    so an ``aborted`` marker keeps the prefix: numbered saves never reuse it.
    """
    if store.supports_rename:
        staging = _HELD.get(staged)
        try:
            if staging is not None:  # and the parent directories it created
                staging.discard()
            else:
                store.delete_tree(staged)
        finally:
            _let_go(staged)
    elif not is_committed(store, path):
        store.delete_tree(path)
        note = b"A multi-worker save was aborted here; nothing was committed.\n"
        store.write(posixpath.join(path, ABORTED), [note], durable=False)


def read_rows(
    checkpoint: StoredCheckpoint, key: str, start: int, stop: int
) -> np.ndarray[Any, Any]:
    """Rows ``[start, stop)`` of a stored value; only the chunks they touch are read and checked."""
    value = checkpoint.stored(key)
    rows = value.shape[0] if value.shape else 0
    if not value.shape or not 0 <= start <= stop <= rows:
        raise InvalidArgumentError(
            f"Rows [{start}, {stop}) are outside {key!r}, which has shape {value.shape}; "
            "regions are row ranges along axis 0."
        )
    chunks = value.chunks
    table = checkpoint.document.values
    if value.offset is not None and isinstance(table, ValueTable) and value.size:
        with checkpoint.open_values() as values:
            assert isinstance(values, PackedValues)
            return values.read_rows(key, start, stop)
    if (
        value.offset is not None
        or chunks is None
        or chunks[1:] != value.shape[1:]
        or value.size == 0
    ):
        return checkpoint.read(key)[start:stop].copy()
    dtype = numpy_dtype(value.dtype)
    out = np.empty((stop - start, *value.shape[1:]), dtype=dtype)
    per_chunk = chunks[0]
    for index in range(start // per_chunk, -(-stop // per_chunk)):
        name = chunk_key(value.array, (index, *([0] * (len(value.shape) - 1))))
        data = checkpoint.store.read(posixpath.join(checkpoint.path, name))
        if (
            len(data) != math.prod(chunks) * dtype.itemsize + 4
            or crc32c.crc32c(data[:-4]) != value.crc32c[index]
        ):
            raise CorruptCheckpointError(
                f"Value {key!r} in checkpoint {checkpoint.display_path} is damaged: chunk {name} "
                "fails its size or checksum check. Restore from another checkpoint."
            )
        chunk = np.frombuffer(data, dtype=dtype, count=math.prod(chunks)).reshape(chunks)
        first = index * per_chunk
        low, high = max(start, first), min(stop, first + per_chunk)
        out[low - start : high - start] = chunk[low - first : high - first]
    return out


def _whole_shards(
    info: ArrayInfo, arrays: list[np.ndarray[Any, Any]], crcs: list[list[int]]
) -> list[tuple[int, list[Buffer], int]]:
    """Every shard of a data array as ``(shard, parts, value bytes)``; fills ``crcs``."""
    parts: dict[int, list[Buffer]] = defaultdict(list)
    sizes: dict[int, int] = defaultdict(int)
    for shard, batch, size in stream_array(info, arrays, crcs, CRC_BLOCK):
        parts[shard] += batch
        sizes[shard] += size
    return [(shard, parts[shard], sizes[shard]) for shard in sorted(parts)]
