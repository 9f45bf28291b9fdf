"""Full verification of a stored checkpoint (internal; ``ckptlab verify`` calls it).

Unlike a restore, which checks what it reads, verification reads every stored object whole:
version 3 shards (size, index and every value's checksums) and older versions' chunks (padding
included, each chunk's crc32c trailer, each packed value's checksum), and checks that every
array's ``zarr.json`` says what the document says, so that plain Zarr readers see the same
values.  Problems are returned as data, all at once.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from typing import Any

import crc32c

from ckptlab.core import ITEMSIZE, ArrayInfo, CheckpointDocument, StoredValue, ValueTable
from ckptlab.errors import CkptlabError, NotFoundError
from ckptlab.storage._fsspec import resolve
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import (
    ROOT_DOCUMENT,
    chunk_grid,
    chunk_key,
    data_metadata,
    fill_value,
    shard_count,
    shard_index,
    shard_key,
    shard_size,
    zarr_data_type,
)
from ckptlab.storage._reader import StoredCheckpoint, read_document
from ckptlab.storage._values import PackedValues

NAMED = 20
"""Damaged values named one by one per data array; the rest are counted."""


def verify_checkpoint(
    store: ByteStore | str | os.PathLike[str], path: str | None = None
) -> list[str]:
    """Every problem found in the checkpoint at ``path`` (an empty list: it is intact).

    ``store`` may also be a path or URL, with ``path`` omitted.  Reads every stored byte once,
    one chunk at a time (memory stays bounded by the largest chunk).

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> verify_checkpoint(path)
    []
    >>> with open(os.path.join(path, "data", "float64", "0"), "r+b") as f:  # the shard
    ...     _ = f.write(b"x")
    >>> verify_checkpoint(path)[0][:60]
    "data/float64/0: checksum mismatch (value 'w/.ATTRIBUTES/VARI"
    """
    if path is None:
        if not isinstance(store, (str, os.PathLike)):
            raise TypeError("verify_checkpoint(store, path) needs a path when given a store")
        store, path = resolve(store)
    elif isinstance(store, (str, os.PathLike)):
        raise TypeError("verify_checkpoint(path) or verify_checkpoint(store, path)")
    try:
        document = read_document(store, path)
    except (CkptlabError, OSError) as error:
        return [f"{ROOT_DOCUMENT}: {error}"]
    if isinstance(document.values, ValueTable):
        return _verify_columns(StoredCheckpoint(store, path, document, progress=False))
    problems: list[str] = []
    arrays: dict[str, list[StoredValue]] = {}
    for value in document.values.values():
        arrays.setdefault(value.array, []).append(value)
    for array, members in sorted(arrays.items()):
        if array in document.packs:
            problems += _verify_pack(store, path, document, array, members)
        else:
            problems += [f"{array}: also claimed by {members[1].key!r}"] if len(members) > 1 else []
            problems += _verify_own(store, path, members[0])
    for name in sorted(set(document.packs) - set(arrays)):
        problems += _check_metadata(store, path, name, _pack_metadata(document, name))
    return problems


def _verify_columns(checkpoint: StoredCheckpoint) -> list[str]:
    """Version 3: every data array (metadata, shards, values) and every own array."""
    table = checkpoint.document.values
    assert isinstance(table, ValueTable)
    store, path = checkpoint.store, checkpoint.path
    problems: list[str] = []
    rows: dict[int, list[int]] = {}
    for row, array_id in enumerate(table.array_ids):
        rows.setdefault(array_id, []).append(row)
    with checkpoint.open_values() as values:
        assert isinstance(values, PackedValues)
        for number, info in enumerate(table.arrays):
            members = rows.get(number, [])
            if not info.packed:
                problems += _verify_own(store, path, table.row(members[0]))
                continue
            problems += _check_data_metadata(store, path, info)
            damaged = _check_shards(store, path, info)
            problems += damaged
            if not damaged:
                problems += _check_values(values, [table.keys_[r] for r in members])
    return problems


def _check_data_metadata(store: ByteStore, path: str, info: ArrayInfo) -> list[str]:
    """A data array's ``zarr.json`` must be exactly what the document implies."""
    name = posixpath.join(info.path, ROOT_DOCUMENT)
    try:
        found = json.loads(store.read(posixpath.join(path, name)))
    except NotFoundError:
        return [f"{name}: missing (plain Zarr readers cannot open {info.path})"]
    except (ValueError, RecursionError):
        return [f"{name}: not valid JSON"]
    if found != json.loads(data_metadata(info)):
        return [f"{name}: does not describe the array the document describes ({info.path})"]
    return []


def _check_shards(store: ByteStore, path: str, info: ArrayInfo) -> list[str]:
    """Every shard of a data array has its exact size and index (what plain Zarr reads)."""
    count = shard_count(info)
    present = set(store.list_dir(posixpath.join(path, info.path)))
    missing = [s for s in range(count) if str(s) not in present]
    problems = []
    if missing:  # one line, however many: a hostile length must not make a million
        first = shard_key(info.path, missing[0])
        problems.append(f"{info.path}: {len(missing)} of {count} shards missing ({first}, ...)")
    for shard in sorted(int(n) for n in present if n.isdigit() and int(n) < count):
        name = shard_key(info.path, shard)
        full = posixpath.join(path, name)
        size, expected = store.size(full), shard_size(info, shard)
        if size != expected:
            found = "is not a file" if size is None else f"holds {size} bytes"
            problems.append(f"{name}: {found}, expected {expected} bytes")
        else:
            index = shard_index(info, shard)
            stored = bytearray(len(index))
            store.read_into(full, memoryview(stored), size - len(index))
            if stored != index:
                problems.append(f"{name}: its shard index is damaged (plain Zarr readers fail)")
        if len(problems) >= NAMED:
            problems.append(f"{info.path}: more shards not checked")
            break
    return problems


def _check_values(values: PackedValues, keys: list[str]) -> list[str]:
    """Every value's checksums, in one pass over the shards."""
    damaged = values.damaged(keys)
    problems = [f"{where}: checksum mismatch (value {key!r})" for key, where in damaged[:NAMED]]
    if len(damaged) > NAMED:
        problems.append(f"... and {len(damaged) - NAMED} more damaged values")
    return problems


def _pack_metadata(
    document: CheckpointDocument, name: str
) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    pack = document.packs[name]
    return (pack.length,), (pack.chunk,), pack.dtype


def _verify_own(store: ByteStore, path: str, value: StoredValue) -> list[str]:
    assert value.chunks is not None
    problems = _check_metadata(
        store, path, value.array, (value.shape, value.chunks, value.dtype), value.key
    )
    if value.size == 0:
        return problems
    expected = math.prod(value.chunks) * ITEMSIZE[value.dtype] + 4
    for number, index in enumerate(_grid(value.shape, value.chunks)):
        name = chunk_key(value.array, index)
        data, problem = _chunk(store, path, name, expected)
        if problem:
            problems.append(f"{name}: {problem} (value {value.key!r})")
        elif crc32c.crc32c(data[:-4]) != value.crc32c[number]:
            problems.append(f"{name}: checksum mismatch (value {value.key!r})")
    return problems


def _grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    import numpy as np

    return [tuple(int(i) for i in index) for index in np.ndindex(*chunk_grid(shape, chunks))]


def _verify_pack(
    store: ByteStore,
    path: str,
    document: CheckpointDocument,
    array: str,
    members: list[StoredValue],
) -> list[str]:
    pack = document.packs[array]
    problems = _check_metadata(store, path, array, _pack_metadata(document, array))
    itemsize = ITEMSIZE[pack.dtype]
    step = pack.chunk * itemsize
    members = sorted(members, key=lambda v: v.offset or 0)
    position = 0
    count = -(-pack.length // pack.chunk)
    stored = set(store.list_dir(posixpath.join(path, array, "c")))
    missing = [i for i in range(count) if str(i) not in stored]
    if missing:  # one line, however many: a hostile length must not make a million
        problems.append(f"{array}: {len(missing)} of {count} chunks missing (c/{missing[0]}, ...)")
    for index in range(count):
        if str(index) not in stored:
            continue
        name = chunk_key(array, (index,))
        data, problem = _chunk(store, path, name, step + 4)
        if not problem and crc32c.crc32c(data[:-4]) != int.from_bytes(data[-4:], "little"):
            problem = "checksum mismatch (the bytes changed after they were written)"
        if problem:
            problems.append(f"{name}: {problem}")
            continue
        chunk_start, chunk_end = index * step, (index + 1) * step
        while position < len(members):
            value = members[position]
            start = (value.offset or 0) * itemsize
            end = start + value.nbytes
            if start >= chunk_end:
                break
            if end <= chunk_end:
                view = memoryview(data)[start - chunk_start : end - chunk_start]
                if crc32c.crc32c(view) != value.crc32c[0]:
                    problems.append(f"{array}: checksum mismatch in value {value.key!r}")
                position += 1
            else:
                position += _check_spanning(problems, value, store, path, array, step, start, end)
    return problems


def _check_spanning(
    problems: list[str],
    value: StoredValue,
    store: ByteStore,
    path: str,
    array: str,
    step: int,
    start: int,
    end: int,
) -> int:
    """Check a packed value that spans chunks (read piece by piece); return 1."""
    crc = 0
    position = start
    while position < end:
        index, within = divmod(position, step)
        count = min(end - position, step - within)
        buffer = bytearray(count)
        try:
            got = store.read_into(
                posixpath.join(path, chunk_key(array, (index,))), memoryview(buffer), within
            )
        except NotFoundError:
            got = -1
        if got != count:
            problems.append(f"{chunk_key(array, (index,))}: too short for value {value.key!r}")
            return 1
        crc = crc32c.crc32c(buffer, crc)
        position += count
    if crc != value.crc32c[0]:
        problems.append(f"{array}: checksum mismatch in value {value.key!r}")
    return 1


def _chunk(store: ByteStore, path: str, name: str, expected: int) -> tuple[bytes, str]:
    size = store.size(posixpath.join(path, name))
    if size is None:
        return b"", "missing"
    if size != expected:
        return b"", f"holds {size} bytes, expected {expected}"
    data = store.read(posixpath.join(path, name))
    if len(data) != expected:
        return b"", f"holds {len(data)} bytes, expected {expected}"
    if crc32c.crc32c(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return data, "checksum mismatch (the bytes changed after they were written)"
    return data, ""


def _check_metadata(
    store: ByteStore,
    path: str,
    array: str,
    expected: tuple[tuple[int, ...], tuple[int, ...], str],
    key: str | None = None,
) -> list[str]:
    """The array's ``zarr.json`` must describe what the document says (plain Zarr readers)."""
    name = posixpath.join(array, ROOT_DOCUMENT)
    try:
        raw = store.read(posixpath.join(path, name))
        metadata = json.loads(raw)
    except NotFoundError:
        return [f"{name}: missing (plain Zarr readers cannot open {array})"]
    except (ValueError, RecursionError):
        return [f"{name}: not valid JSON"]
    shape, chunks, dtype = expected
    found: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    grid = found.get("chunk_grid")
    codecs = found.get("codecs")
    attributes = found.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    stored, label = zarr_data_type(dtype)
    if found.get("data_type") == dtype:  # versions 1-2, older own arrays (FORMAT.md section 5)
        stored, label = dtype, {}
    checks = {
        "zarr_format": (found.get("zarr_format"), 3),
        "node_type": (found.get("node_type"), "array"),
        "shape": (found.get("shape"), list(shape)),
        "data_type": (found.get("data_type"), stored),
        "chunk_shape": (
            grid.get("configuration", {}).get("chunk_shape") if isinstance(grid, dict) else None,
            list(chunks),
        ),
        "codecs": (
            [c.get("name") for c in codecs if isinstance(c, dict)]
            if isinstance(codecs, list)
            else None,
            ["bytes", "crc32c"],
        ),
        "fill_value": (found.get("fill_value"), fill_value(stored)),
        **{f"attributes.{attr}": (attributes.get(attr), want) for attr, want in label.items()},
    }
    problems = [
        f"{name}: {field} is {got!r}, the document says {want!r}"
        for field, (got, want) in checks.items()
        if got != want
    ]
    if (
        isinstance(codecs, list)
        and codecs
        and isinstance(codecs[0], dict)
        and ITEMSIZE.get(dtype, 1) > 1
    ):
        endian = codecs[0].get("configuration", {}).get("endian")
        if endian != "little":
            problems.append(f"{name}: bytes codec endian is {endian!r}, expected 'little'")
    if key is not None and attributes.get("ckptlab_key") != key:
        problems.append(f"{name}: attributes.ckptlab_key does not name {key!r}")
    return problems
