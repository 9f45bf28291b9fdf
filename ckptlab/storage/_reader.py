"""Reading a checkpoint: the document, then values straight into their destination (internal).

Every size is checked against the files before anything is allocated, every value is checked
against its crc32c, and every failure names the key and the file (FORMAT.md, "Reading").
"""

from __future__ import annotations

import json
import math
import posixpath
from typing import Any

import crc32c
import numpy as np

from ckptlab.core import CheckpointDocument, StoredValue, ValueSpec, parse_document
from ckptlab.errors import CorruptCheckpointError, NotFoundError
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import ROOT_DOCUMENT, chunk_grid, chunk_key, numpy_dtype

MAX_DOCUMENT_BYTES = 1 << 30


class StoredCheckpoint:
    """An open checkpoint: its document, and reads of single values."""

    def __init__(self, store: ByteStore, path: str, document: CheckpointDocument) -> None:
        self.store = store
        self.path = path
        self.document = document

    @property
    def display_path(self) -> str:
        """The path or URL as the user would write it."""
        return self.store.display(self.path)

    def specs(self) -> dict[str, ValueSpec]:
        """Shape and dtype of every stored value, by key."""
        return {k: ValueSpec(shape=v.shape, dtype=v.dtype) for k, v in self.document.values.items()}

    def stored(self, key: str) -> StoredValue:
        """Metadata of one value; :class:`NotFoundError` if the key is absent."""
        value = self.document.values.get(key)
        if value is None:
            raise NotFoundError(
                f"Key {key!r} not found in checkpoint {self.display_path}. Keys name a value in "
                "full, e.g. 'model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE'; "
                "ck.list_variables(path) lists them."
            )
        return value

    def read(self, key: str, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """Read one value, verified, into ``out`` (allocated when ``None``)."""
        value = self.stored(key)
        dtype = numpy_dtype(value.dtype)
        self._check_sizes(value)
        if out is None:
            out = np.empty(value.shape, dtype=dtype)
        elif out.shape != value.shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {value.shape} {value.dtype} array")
        if value.size == 0:
            return out
        raw = memoryview(out.reshape(-1).view(np.uint8))
        if value.offset is None:
            self._read_own(value, raw)
        else:
            self._read_packed(value, raw)
        return out

    def _fail(self, value: StoredValue, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"Value {value.key!r} in checkpoint {self.display_path} is damaged: {what} "
            f"(stored in {value.array}). Restore from another checkpoint; "
            "`ckptlab verify PATH` checks every value."
        )

    def _file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def _check_sizes(self, value: StoredValue) -> None:
        """Check the files hold what the document says, before allocating anything."""
        if value.size == 0:
            return
        itemsize = value.nbytes // value.size
        if value.offset is not None:
            pack = self.document.packs[value.array]
            first = value.offset // pack.chunk
            last = (value.offset + value.size - 1) // pack.chunk
            for index in range(first, last + 1):
                self._expect_size(value, chunk_key(value.array, (index,)), pack.chunk * itemsize + 4)
            return
        assert value.chunks is not None
        chunk_bytes = math.prod(value.chunks) * itemsize
        for index in np.ndindex(*chunk_grid(value.shape, value.chunks)):
            self._expect_size(value, chunk_key(value.array, tuple(index)), chunk_bytes + 4)

    def _expect_size(self, value: StoredValue, name: str, expected: int) -> None:
        found = self.store.size(self._file(name))
        if found is None:
            raise self._fail(value, f"chunk {name} is missing")
        if found != expected:
            raise self._fail(value, f"chunk {name} holds {found} bytes, expected {expected}")

    def _read_own(self, value: StoredValue, raw: memoryview) -> None:
        assert value.chunks is not None
        grid = chunk_grid(value.shape, value.chunks)
        itemsize = value.nbytes // value.size
        chunk_bytes = math.prod(value.chunks) * itemsize
        axis0_only = value.chunks[1:] == value.shape[1:]
        if not axis0_only:
            self._read_own_general(value, raw, grid, itemsize)
            return
        row_bytes = value.nbytes // value.shape[0] if value.shape else value.nbytes
        rows = value.chunks[0] if value.shape else 1
        for index in range(grid[0] if value.shape else 1):
            name = chunk_key(value.array, (index, *([0] * (len(value.shape) - 1))) if value.shape else ())
            target = raw[index * rows * row_bytes : (index + 1) * rows * row_bytes]
            tail = bytearray(chunk_bytes - len(target) + 4)
            path = self._file(name)
            self.store.read_into(path, target, 0)
            self.store.read_into(path, memoryview(tail), len(target))
            crc = crc32c.crc32c(tail[:-4], crc32c.crc32c(target))
            self._verify(value, name, crc, bytes(tail[-4:]), value.crc32c[index])

    def _read_own_general(
        self, value: StoredValue, raw: memoryview, grid: tuple[int, ...], itemsize: int
    ) -> None:
        assert value.chunks is not None
        dtype = numpy_dtype(value.dtype)
        out = np.frombuffer(raw, dtype=dtype).reshape(value.shape)
        for number, index in enumerate(np.ndindex(*grid)):
            name = chunk_key(value.array, tuple(index))
            data = self.store.read(self._file(name))
            crc = crc32c.crc32c(data[:-4])
            self._verify(value, name, crc, data[-4:], value.crc32c[number])
            chunk = np.frombuffer(data[:-4], dtype=dtype).reshape(value.chunks)
            region = tuple(
                slice(i * c, min((i + 1) * c, d)) for i, c, d in zip(index, value.chunks, value.shape, strict=True)
            )
            out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]

    def _verify(self, value: StoredValue, name: str, crc: int, trailer: bytes, expected: int) -> None:
        if crc != int.from_bytes(trailer, "little") or crc != expected:
            raise self._fail(value, f"checksum mismatch in chunk {name}")

    def _read_packed(self, value: StoredValue, raw: memoryview) -> None:
        assert value.offset is not None
        pack = self.document.packs[value.array]
        itemsize = value.nbytes // value.size
        start = value.offset * itemsize
        done = 0
        chunk_bytes = pack.chunk * itemsize
        while done < len(raw):
            position = start + done
            index, within = divmod(position, chunk_bytes)
            count = min(len(raw) - done, chunk_bytes - within)
            self.store.read_into(self._file(chunk_key(value.array, (index,))), raw[done : done + count], within)
            done += count
        if crc32c.crc32c(raw) != value.crc32c[0]:
            raise self._fail(value, "checksum mismatch")


def open_checkpoint(store: ByteStore, path: str) -> StoredCheckpoint:
    """Open the checkpoint at ``path``; errors say what is there instead and what to do."""
    root = posixpath.join(path, ROOT_DOCUMENT)
    size = store.size(root)
    if size is None:
        raise _not_found(store, path)
    if size > MAX_DOCUMENT_BYTES:
        raise CorruptCheckpointError(
            f"{store.display(root)} is {size} bytes; ckptlab refuses documents over "
            f"{MAX_DOCUMENT_BYTES} bytes. The file is damaged or not a ckptlab checkpoint."
        )
    raw = store.read(root)
    try:
        metadata = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise CorruptCheckpointError(
            f"{store.display(root)} is not valid JSON ({error}). The checkpoint is damaged; "
            "restore from another checkpoint."
        ) from None
    if not isinstance(metadata, dict) or metadata.get("node_type") != "group":
        raise CorruptCheckpointError(
            f"{store.display(root)} is not a Zarr v3 group document; expected "
            '{"zarr_format": 3, "node_type": "group", ...}.'
        )
    attributes = metadata.get("attributes")
    if not isinstance(attributes, dict) or "ckptlab" not in attributes:
        raise NotFoundError(
            f"{store.display(path)} is a Zarr group but not a ckptlab checkpoint (its zarr.json "
            "has no 'ckptlab' attribute). Pass the path that save() or write() returned."
        )
    document = parse_document(attributes["ckptlab"], store.display(path))
    return StoredCheckpoint(store, path, document)


def _not_found(store: ByteStore, path: str) -> NotFoundError:
    shown = store.display(path)
    if store.exists(posixpath.join(path, "checkpoint")):
        return NotFoundError(
            f"{shown} is a checkpoint directory, not a checkpoint. Pass one checkpoint, e.g. "
            f"ck.latest_checkpoint({shown!r})."
        )
    if store.is_dir(path):
        return NotFoundError(
            f"{shown} is a directory but not a ckptlab checkpoint (no zarr.json with a "
            "checkpoint document). Pass the path that save() or write() returned."
        )
    parent, name = posixpath.split(path)
    siblings = sorted(n for n in store.list_dir(parent) if n.startswith(f"{name}-"))
    hint = (
        "You may be missing the checkpoint suffix (e.g. the '-1' in 'ckpt-1'); "
        f"ck.latest_checkpoint({parent or '.'!r}) names the newest one"
    )
    if siblings:
        hint += f"; found {', '.join(siblings[:5])} next to it"
    return NotFoundError(f"Failed to find any matching files for {shown}. {hint}.")
