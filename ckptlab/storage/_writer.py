"""Writing a checkpoint (format 3): pack by dtype, checksum while writing, commit (internal).

Every value goes into one flat data array per dtype, at an offset decided before a byte is
written.  The arrays' bytes go to the store straight from the values' own memory (no staging
copy), and each value's crc32c is computed on the same buffers just before they are written
(``_stream.py``).  The document is built as columns, then the checkpoint is published in one
atomic step (``_commit.py``).  A save makes O(1) files and directories in the number of values:
the root and ``data`` groups, then per dtype a ``zarr.json`` and one shard (FORMAT.md).
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np

from ckptlab.core import (
    CRC_BLOCK,
    FORMAT_VERSION,
    CheckpointDocument,
    ObjectGraph,
    ValueTable,
    check_type,
)
from ckptlab.errors import StorageExistsError, UnsupportedFormatError
from ckptlab.storage import _layout, _stream
from ckptlab.storage._commit import (
    Staging,
    check_target,
    clean_leftovers,
    prepare_in_place,
    writing_into,
)
from ckptlab.storage._kv import Buffer, ByteStore
from ckptlab.storage._layout import (
    ROOT_DOCUMENT,
    data_array,
    data_metadata,
    dtype_name,
    group_metadata,
    shard_key,
)
from ckptlab.storage._progress import Progress
from ckptlab.storage._stream import stream_array

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
    format_version: int = FORMAT_VERSION
    """The format version to write; this ckptlab writes version 3 only (it reads 1-3)."""


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


Options = TypeVar("Options", WriteOptions, ReadOptions)


def checked_options(options: Options | None, kind: type[Options]) -> Options:
    """``options``, or the defaults for ``None``; refused when not a ``kind``.

    Public entry points call it first, so a dict or the other options class is an
    :class:`~ckptlab.InvalidArgumentError` naming ``options``, not an ``AttributeError`` later.

    Examples
    --------
    >>> checked_options(None, ReadOptions).progress
    True
    >>> checked_options(ReadOptions(), WriteOptions)
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: Expected a ck.WriteOptions or None for `options`, ...
    """
    name = f"ck.{kind.__name__}"
    check_type(
        options,
        (kind, type(None)),
        "options",
        f"a {name} or None",
        f"options={name}(progress=False)",
    )
    return kind() if options is None else options


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


@dataclass(slots=True)
class _Group:
    """The values of one dtype, bound for one data array."""

    rows: list[int]
    members: list[np.ndarray[Any, Any]]
    length: int
    """Elements in all (the data array's length)."""


class _Packing:
    """Where every value goes: its data array and offset, decided before anything is written.

    Built column by column (a pass of C-level list work per field rather than Python work per
    value): 10,000 values take a few milliseconds.
    """

    def __init__(self, values: Sequence[tuple[str, Any]], shard_bytes: int | None) -> None:
        self.keys: list[str] = [key for key, _ in values]
        arrays = [v if type(v) is np.ndarray else np.asarray(v) for _, v in values]
        dtypes = [a.dtype for a in arrays]
        numbers: dict[np.dtype[Any], int] = {}
        distinct = len(set(dtypes))
        for dtype, key in zip(dtypes, self.keys, strict=True):  # stops early: few dtypes
            if dtype not in numbers:
                dtype_name(dtype, f"Value {key!r}")  # refuses what cannot be stored
                numbers[dtype] = len(numbers)
                if len(numbers) == distinct:
                    break
        unusual = {d for d in numbers if d.byteorder == ">"}
        for index, array in enumerate(arrays):
            if array.dtype in unusual or not array.flags.c_contiguous:
                arrays[index] = little_endian(array, self.keys[index])
        if unusual:  # big-endian values join the little-endian group of their type
            dtypes = [a.dtype for a in arrays]
            numbers = {d: i for i, d in enumerate(dict.fromkeys(dtypes))}
        self.shapes: list[tuple[int, ...]] = [a.shape for a in arrays]
        self.array_ids: list[int] = list(map(numbers.__getitem__, dtypes))
        sizes = [a.size for a in arrays]
        self.offsets: list[int] = [0] * len(arrays)
        self.groups: list[_Group] = []
        for number in range(len(numbers)):
            rows = (
                list(range(len(arrays)))
                if len(numbers) == 1
                else [i for i, n in enumerate(self.array_ids) if n == number]
            )
            ends = list(itertools.accumulate(map(sizes.__getitem__, rows)))
            for row, start in zip(rows, [0, *ends[:-1]], strict=True):
                self.offsets[row] = start
            members = list(map(arrays.__getitem__, rows))
            self.groups.append(_Group(rows=rows, members=members, length=ends[-1] if ends else 0))
        names = [dtype_name(d, "") for d in numbers]
        self.arrays = tuple(
            data_array(f"data/{name}", name, group.length, shard_bytes)
            for name, group in zip(names, self.groups, strict=True)
        )
        self.crcs: list[list[int]] = [[] for _ in self.keys]
        self.total = sum(a.nbytes for a in arrays)

    def table(self) -> ValueTable:
        """The document's value columns (complete once every array was streamed)."""
        return ValueTable(
            keys=self.keys,
            shapes=self.shapes,
            array_ids=self.array_ids,
            offsets=self.offsets,
            crcs=self.crcs,
            arrays=self.arrays,
        )


def write_checkpoint(
    store: ByteStore,
    path: str,
    values: Sequence[tuple[str, Any]],
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
        A value has a dtype ckptlab cannot store (object, structured, strings...), or
        ``options.format_version`` is not 3.
    StorageExistsError
        Something that is not a checkpoint is at ``path``; or, on an object store, another
        writer committed ``path`` while this one was writing.
    StorageError
        The storage refused a write (no space, no permission...); the message names the path.
    """
    if options.format_version != FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"WriteOptions(format_version={options.format_version}): this ckptlab writes format "
            f"version {FORMAT_VERSION} (it reads 1 to {FORMAT_VERSION}). Write older versions "
            "with the ckptlab release that introduced them."
        )
    shard_bytes = (
        _layout.REMOTE_SHARD_BYTES if store.concurrent_writes else _layout.LOCAL_SHARD_BYTES
    )
    packing = _Packing(values, shard_bytes)
    staging: Staging | None = None
    if store.supports_rename:
        check_target(store, path)
        clean_leftovers(store, path)
        staging = Staging(store, path)
        staged = staging.path
    else:
        prepare_in_place(store, path, durable=options.durable)
        staged = path
    with writing_into(store, staged, path, staging):
        with Progress(
            packing.total, f"writing {posixpath.basename(path)}", enabled=options.progress
        ) as bar:
            _write_data(store, staged, packing, options.durable, bar)
        document = CheckpointDocument(
            format_version=FORMAT_VERSION,
            kind="object" if kind == "object" else "name",
            graph=graph,
            values=packing.table(),
            writer=writer,
            crc_block=CRC_BLOCK,
        )
        root = group_metadata({"ckptlab": document.to_json()})
        if staging is not None:
            store.write(posixpath.join(staged, ROOT_DOCUMENT), [root], durable=options.durable)
            staging.publish(path, durable=options.durable)  # checks that nothing removed it
            committed = True
        else:
            root_key = posixpath.join(path, ROOT_DOCUMENT)
            committed = store.write_new(root_key, root, durable=options.durable)
    if not committed:
        raise StorageExistsError(
            f"Another writer committed {store.display(path)} while this save was writing it; "
            "its checkpoint stands and this save was not published. Give concurrent writers "
            "different paths."
        )
    return document


def _write_data(
    store: ByteStore, staged: str, packing: _Packing, durable: bool, bar: Progress
) -> None:
    """Every data array: metadata, then its shards, checksumming the values on the way."""
    metadata: list[tuple[str, Sequence[Buffer]]] = [
        (posixpath.join(staged, "data", ROOT_DOCUMENT), [group_metadata()])
    ]
    metadata += [
        (posixpath.join(staged, info.path, ROOT_DOCUMENT), [data_metadata(info)])
        for info in packing.arrays
    ]
    store.write_many(metadata, durable=durable)
    checksums = _stream.Checksums(0 if store.concurrent_writes else packing.total)
    try:
        _stream_arrays(store, staged, packing, durable, bar, checksums)
    except BaseException:
        checksums.abandon()
        raise
    checksums.wait()  # every checksum is in the document before it is written


def _stream_arrays(
    store: ByteStore,
    staged: str,
    packing: _Packing,
    durable: bool,
    bar: Progress,
    checksums: _stream.Checksums,
) -> None:
    """Every data array's shards: streamed locally, uploaded in concurrent batches remotely."""
    pending: list[tuple[str, Sequence[Buffer]]] = []
    pending_bytes = 0
    for info, group in zip(packing.arrays, packing.groups, strict=True):
        crcs = [packing.crcs[row] for row in group.rows]  # the same lists, filled while writing
        assert CRC_BLOCK % _stream.STEP == 0, "pieces must end on every checksum block"
        batches = stream_array(info, group.members, crcs, CRC_BLOCK, checksums)
        for shard, items in itertools.groupby(batches, key=itemgetter(0)):
            key = posixpath.join(staged, shard_key(info.path, shard))
            if not store.concurrent_writes:  # one file at a time, batch after batch
                store.write_stream(key, _progressed(items, bar), durable=durable)
                continue
            parts: list[Buffer] = []
            for _, batch, size in items:
                parts += batch
                pending_bytes += size
            pending.append((key, parts))
            if pending_bytes >= BATCH_BYTES:
                store.write_many(pending, durable=durable)
                bar.update(pending_bytes)
                pending, pending_bytes = [], 0
    store.write_many(pending, durable=durable)
    bar.update(pending_bytes)


def _progressed(items: Any, bar: Progress) -> Any:
    """The buffers of each batch, advancing the progress bar after each."""
    for _, batch, size in items:
        yield batch
        bar.update(size)
