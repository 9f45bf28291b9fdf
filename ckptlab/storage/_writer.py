"""Writing a checkpoint: pack small values, chunk large ones, checksum, commit (internal)."""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from ckptlab.storage._commit import clean_leftovers, is_committed, publish, retract, temporary_name
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import (
    PACK_CHUNK_BYTES,
    PACK_THRESHOLD,
    ROOT_DOCUMENT,
    array_metadata,
    choose_chunks,
    chunk_grid,
    chunk_key,
    dtype_name,
    group_metadata,
)
from ckptlab.storage._progress import Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    """How to write: durability, packing, progress, and the format version to emit."""

    durable: bool = True
    """fsync files and directories before publishing (off: faster, not crash-safe)."""
    pack_threshold: int = PACK_THRESHOLD
    progress: bool = True
    format_version: int = FORMAT_VERSION


def little_endian(array: np.ndarray[Any, Any], key: str) -> np.ndarray[Any, Any]:
    """A C-contiguous little-endian array with the same values (a copy only when needed)."""
    dtype_name(array.dtype, f"Value {key!r}")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else array.copy(order="C")


def _raw(array: np.ndarray[Any, Any]) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")


def _crc_bytes(crc: int) -> bytes:
    return crc.to_bytes(4, "little")


class _Plan:
    """Where every value goes, decided before anything is written."""

    def __init__(self, values: Sequence[tuple[str, np.ndarray[Any, Any]]], options: WriteOptions) -> None:
        self.own: list[tuple[str, np.ndarray[Any, Any], str]] = []
        self.packed: dict[str, list[tuple[str, np.ndarray[Any, Any]]]] = defaultdict(list)
        for key, array in values:
            if options.format_version >= 2 and array.nbytes <= options.pack_threshold:
                self.packed[array.dtype.name].append((key, array))
            else:
                self.own.append((key, array, f"values/{len(self.own)}"))
        self.total = sum(a.nbytes for _, a in values)


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
    """Write ``values`` and the document at ``path``, atomically; return the document."""
    arrays = [(key, little_endian(np.asarray(a), key)) for key, a in values]
    plan = _Plan(arrays, options)
    clean_leftovers(store, path)
    staged = temporary_name(path) if store.supports_rename else path
    if not store.supports_rename and is_committed(store, path):
        retract(store, path, durable=options.durable)
    try:
        with Progress(plan.total, f"writing {posixpath.basename(path)}", enabled=options.progress) as bar:
            stored: dict[str, StoredValue] = {}
            for key, array, name in plan.own:
                stored[key] = _write_own(store, staged, key, array, name, options, bar)
            packs = {}
            for dtype, members in plan.packed.items():
                info, entries = _write_pack(store, staged, dtype, members, options, bar)
                packs[info.path] = info
                stored.update(entries)
        document = CheckpointDocument(
            format_version=options.format_version,
            kind="object" if kind == "object" else "name",
            graph=graph,
            values={key: stored[key] for key, _ in arrays},
            packs=packs,
            writer=writer,
        )
        for group in ("values", "packed"):
            store.write(posixpath.join(staged, group, ROOT_DOCUMENT), [group_metadata()], durable=options.durable)
        root = group_metadata({"ckptlab": document.to_json()})
        if store.supports_rename:
            store.write(posixpath.join(staged, ROOT_DOCUMENT), [root], durable=options.durable)
            publish(store, staged, path, durable=options.durable)
        elif not store.write_new(posixpath.join(path, ROOT_DOCUMENT), root, durable=options.durable):
            raise FileExistsError(f"Another writer committed {store.display(path)} first.")
    except BaseException:
        if store.supports_rename:
            store.delete_tree(staged)
        raise
    return document


def _write_own(
    store: ByteStore,
    staged: str,
    key: str,
    array: np.ndarray[Any, Any],
    name: str,
    options: WriteOptions,
    bar: Progress,
) -> StoredValue:
    dtype = array.dtype.name
    chunks = choose_chunks(array.shape, array.itemsize)
    base = posixpath.join(staged, name)
    store.write(posixpath.join(base, ROOT_DOCUMENT), [array_metadata(array.shape, chunks, dtype, key)], durable=options.durable)
    crcs = []
    if array.size:
        rows_per_chunk = chunks[0] if array.ndim else 1
        chunk_bytes = math.prod(chunks) * array.itemsize
        raw = _raw(array)
        row_bytes = array.nbytes // array.shape[0] if array.ndim else array.nbytes
        for index in range(chunk_grid(array.shape, chunks)[0] if array.ndim else 1):
            data = raw[index * rows_per_chunk * row_bytes : (index + 1) * rows_per_chunk * row_bytes]
            padding = bytes(chunk_bytes - len(data))
            crc = crc32c.crc32c(padding, crc32c.crc32c(data)) if padding else crc32c.crc32c(data)
            grid_index = (index, *([0] * (array.ndim - 1))) if array.ndim else ()
            store.write(chunk_key(base, grid_index), [data, padding, _crc_bytes(crc)], durable=options.durable)
            crcs.append(crc)
            bar.update(len(data))
    return StoredValue(key=key, shape=array.shape, dtype=dtype, crc32c=tuple(crcs), array=name, chunks=chunks)


def _write_pack(
    store: ByteStore,
    staged: str,
    dtype: str,
    members: list[tuple[str, np.ndarray[Any, Any]]],
    options: WriteOptions,
    bar: Progress,
) -> tuple[PackInfo, dict[str, StoredValue]]:
    itemsize = members[0][1].itemsize
    chunk = max(1, PACK_CHUNK_BYTES // itemsize)
    length = sum(a.size for _, a in members)
    count = max(1, -(-length // chunk))
    buffer = np.zeros(count * chunk * itemsize, dtype=np.uint8)
    entries = {}
    offset = 0
    for key, array in members:
        raw = _raw(array)
        start = offset * itemsize
        buffer[start : start + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        entries[key] = StoredValue(
            key=key,
            shape=array.shape,
            dtype=dtype,
            crc32c=(crc32c.crc32c(raw),),
            array=f"packed/{dtype}",
            offset=offset,
        )
        offset += array.size
    base = posixpath.join(staged, "packed", dtype)
    store.write(posixpath.join(base, ROOT_DOCUMENT), [array_metadata((length,), (chunk,), dtype, None)], durable=options.durable)
    view = memoryview(buffer)
    step = chunk * itemsize
    for index in range(count if length else 0):
        data = view[index * step : (index + 1) * step]
        store.write(chunk_key(base, (index,)), [data, _crc_bytes(crc32c.crc32c(data))], durable=options.durable)
        bar.update(min(step, length * itemsize - index * step))
    return PackInfo(path=f"packed/{dtype}", dtype=dtype, length=length, chunk=chunk), entries
