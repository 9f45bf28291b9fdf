"""Writing a checkpoint: pack small values, chunk large ones, checksum, commit (internal).

Everything is decided before a byte is written (:class:`_Plan`), then the objects are written
(straight from the arrays' memory: no copy of a large value), then the checkpoint is published
in one atomic step (``_commit.py``).  FORMAT.md describes the result.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import crc32c
import numpy as np

from ckptlab.core import (
    FORMAT_VERSION,
    CheckpointDocument,
    ObjectGraph,
    PackInfo,
    StoredValue,
)
from ckptlab.errors import UnsupportedFormatError
from ckptlab.storage._commit import (
    clean_leftovers,
    prepare_in_place,
    publish,
    temporary_name,
)
from ckptlab.storage._kv import Buffer, ByteStore
from ckptlab.storage._layout import (
    PACK_THRESHOLD,
    ROOT_DOCUMENT,
    array_metadata,
    choose_chunks,
    chunk_grid,
    chunk_key,
    dtype_name,
    group_metadata,
    pack_chunk,
)
from ckptlab.storage._progress import Progress

BATCH_BYTES = 256 * 2**20
"""Objects are handed to the store in batches of about this many bytes (progress, memory)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    """How to write a checkpoint.

    Parameters
    ----------
    durable
        fsync files and directories before publishing.
    progress
        Show a progress bar when a save takes more than about a second.
    storage_options
        fsspec options for URLs (``endpoint_url``, ``key``, ``secret``...).
    pack_threshold
        Values of at most this many bytes are packed together (FORMAT.md).
    format_version
        The format version to write.

    Examples
    --------
    >>> WriteOptions(durable=False, progress=False).durable
    False
    """

    durable: bool = True
    """fsync files and directories before publishing (off: faster, but a power loss or kernel
    crash right after a save may lose it; a killed process never leaves a partial one)."""
    progress: bool = True
    """Show a progress bar when the save takes more than about a second."""
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    """fsspec options for URLs (``endpoint_url``, ``key``, ``secret``...); see
    :func:`ckptlab.storage.set_storage_options`."""
    pack_threshold: int = PACK_THRESHOLD
    """Values of at most this many bytes are packed (format version 2)."""
    format_version: int = FORMAT_VERSION
    """The format version to write (1: no packing; 2: the default)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadOptions:
    """How to read a checkpoint.

    Parameters
    ----------
    progress
        Show a progress bar when a restore takes more than about a second.
    storage_options
        fsspec options for URLs, as in :class:`WriteOptions`.

    Examples
    --------
    >>> ReadOptions(progress=False).progress
    False
    """

    progress: bool = True
    """Show a progress bar when the restore takes more than about a second."""
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    """fsspec options for URLs, as in :class:`WriteOptions`."""


def little_endian(array: np.ndarray[Any, Any], key: str) -> np.ndarray[Any, Any]:
    """A C-contiguous little-endian array with the same values (a copy only when needed).

    Examples
    --------
    >>> little_endian(np.arange(3, dtype=">i4"), "k").dtype.str
    '<i4'
    """
    dtype_name(array.dtype, f"Value {key!r}")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _raw(array: np.ndarray[Any, Any]) -> memoryview:
    return array.reshape(-1).view(np.uint8).data if array.size else memoryview(b"")


def _crc_bytes(crc: int) -> bytes:
    return crc.to_bytes(4, "little")


class _Plan:
    """Where every value goes, decided before anything is written."""

    def __init__(
        self, values: Sequence[tuple[str, np.ndarray[Any, Any]]], options: WriteOptions
    ) -> None:
        if options.format_version not in (1, 2):
            raise UnsupportedFormatError(
                f"WriteOptions(format_version={options.format_version}): ckptlab writes versions 1 "
                "and 2 (the default)."
            )
        self.own: list[tuple[str, np.ndarray[Any, Any], str]] = []
        self.packed: dict[str, list[tuple[str, np.ndarray[Any, Any]]]] = defaultdict(list)
        for key, array in values:
            if options.format_version >= 2 and array.nbytes <= options.pack_threshold:
                self.packed[dtype_name(array.dtype, key)].append((key, array))
            else:
                self.own.append((key, array, f"values/{len(self.own)}"))
        self.total = sum(a.nbytes for _, a in values)


Item = tuple[str, Sequence[Buffer]]


def write_checkpoint(
    store: ByteStore,
    path: str,
    values: Sequence[tuple[str, np.ndarray[Any, Any]]],
    *,
    kind: str,
    graph: ObjectGraph | None,
    writer: Mapping[str, Any],
    options: WriteOptions,
) -> CheckpointDocument:
    """Write ``values`` and the document at ``path``, atomically; return the document.

    Raises
    ------
    UnsupportedFormatError
        A value has a dtype ckptlab cannot store (object, structured, strings...).
    FileExistsError
        On an object store, another writer committed ``path`` while this one was writing.
    """
    arrays = [(key, little_endian(np.asarray(a), key)) for key, a in values]
    plan = _Plan(arrays, options)
    if store.supports_rename:
        clean_leftovers(store, path)
        staged = temporary_name(path)
    else:
        prepare_in_place(store, path, durable=options.durable)
        staged = path
    stored: dict[str, StoredValue] = {}
    packs: dict[str, PackInfo] = {}
    try:
        with Progress(
            plan.total, f"writing {posixpath.basename(path)}", enabled=options.progress
        ) as bar:
            batch: list[Item] = []
            batch_bytes = 0
            for item, count in _objects(staged, plan, stored, packs):
                batch.append(item)
                batch_bytes += count
                if batch_bytes >= BATCH_BYTES:
                    store.write_many(batch, durable=options.durable)
                    bar.update(batch_bytes)
                    batch, batch_bytes = [], 0
            groups = [
                name for name, present in (("values", plan.own), ("packed", plan.packed)) if present
            ]
            batch += [
                (posixpath.join(staged, g, ROOT_DOCUMENT), [group_metadata()]) for g in groups
            ]
            store.write_many(batch, durable=options.durable)
            bar.update(batch_bytes)
        document = CheckpointDocument(
            format_version=options.format_version,
            kind="object" if kind == "object" else "name",
            graph=graph,
            values={key: stored[key] for key, _ in arrays},
            packs=packs,
            writer=writer,
        )
        root = group_metadata({"ckptlab": document.to_json()})
        if store.supports_rename:
            store.write(posixpath.join(staged, ROOT_DOCUMENT), [root], durable=options.durable)
            publish(store, staged, path, durable=options.durable)
        elif not store.write_new(
            posixpath.join(path, ROOT_DOCUMENT), root, durable=options.durable
        ):
            raise FileExistsError(
                f"Another writer committed {store.display(path)} while this save was writing it; "
                "its checkpoint stands and this save was not published. Give concurrent writers "
                "different paths."
            )
    except BaseException:
        if store.supports_rename:
            store.delete_tree(staged)
        raise
    return document


def _objects(
    staged: str, plan: _Plan, stored: dict[str, StoredValue], packs: dict[str, PackInfo]
) -> Iterator[tuple[Item, int]]:
    """Every object to write with its payload size; fills ``stored`` and ``packs`` on the way."""
    for key, array, name in plan.own:
        yield from _own_objects(staged, key, array, name, stored)
    for dtype, members in plan.packed.items():
        yield from _pack_objects(staged, dtype, members, stored, packs)


def _own_objects(
    staged: str, key: str, array: np.ndarray[Any, Any], name: str, stored: dict[str, StoredValue]
) -> Iterator[tuple[Item, int]]:
    dtype = dtype_name(array.dtype, key)
    chunks = choose_chunks(array.shape, array.itemsize)  # reads CHUNK_BYTES at call time
    base = posixpath.join(staged, name)
    yield (
        (posixpath.join(base, ROOT_DOCUMENT), [array_metadata(array.shape, chunks, dtype, key)]),
        0,
    )
    crcs = []
    if array.size:
        raw = _raw(array)
        row_bytes = array.nbytes // array.shape[0] if array.ndim else array.nbytes
        step = (chunks[0] if array.ndim else 1) * row_bytes
        chunk_bytes = math.prod(chunks) * array.itemsize
        for index in range(chunk_grid(array.shape, chunks)[0] if array.ndim else 1):
            data = raw[index * step : (index + 1) * step]
            padding = bytes(chunk_bytes - len(data))
            crc = crc32c.crc32c(padding, crc32c.crc32c(data)) if padding else crc32c.crc32c(data)
            crcs.append(crc)
            grid_index = (index, *([0] * (array.ndim - 1))) if array.ndim else ()
            yield (chunk_key(base, grid_index), [data, padding, _crc_bytes(crc)]), len(data)
    stored[key] = StoredValue(
        key=key, shape=array.shape, dtype=dtype, crc32c=tuple(crcs), array=name, chunks=chunks
    )


def _pack_objects(
    staged: str,
    dtype: str,
    members: list[tuple[str, np.ndarray[Any, Any]]],
    stored: dict[str, StoredValue],
    packs: dict[str, PackInfo],
) -> Iterator[tuple[Item, int]]:
    """A packed array's objects, written straight from the members' memory (no pack buffer)."""
    itemsize = members[0][1].itemsize
    length = sum(a.size for _, a in members)
    chunk = pack_chunk(length, itemsize)
    count = -(-length // chunk) if length else 0
    path = f"packed/{dtype}"
    views: list[memoryview] = []
    offset = 0
    for key, array in members:
        raw = _raw(array)
        views.append(raw)
        stored[key] = StoredValue(
            key=key,
            shape=array.shape,
            dtype=dtype,
            crc32c=(crc32c.crc32c(raw),),
            array=path,
            offset=offset,
        )
        offset += array.size
    packs[path] = PackInfo(path=path, dtype=dtype, length=length, chunk=chunk)
    base = posixpath.join(staged, path)
    yield (
        (posixpath.join(base, ROOT_DOCUMENT), [array_metadata((length,), (chunk,), dtype, None)]),
        0,
    )
    step = chunk * itemsize
    pieces = iter(v for v in views if len(v))
    carry: memoryview | None = None
    for index in range(count):
        parts: list[Buffer] = []
        filled, crc = 0, 0
        while filled < step:
            piece = carry if carry is not None else next(pieces, None)
            carry = None
            if piece is None:  # the last chunk: pad to the full chunk size
                padding = bytes(step - filled)
                parts.append(padding)
                crc = crc32c.crc32c(padding, crc)
                break
            if len(piece) > step - filled:  # a value spanning two chunks
                piece, carry = piece[: step - filled], piece[step - filled :]
            parts.append(piece)
            crc = crc32c.crc32c(piece, crc)
            filled += len(piece)
        parts.append(_crc_bytes(crc))
        yield (chunk_key(base, (index,)), parts), min(step, length * itemsize - index * step)
