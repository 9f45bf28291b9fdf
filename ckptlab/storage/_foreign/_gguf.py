"""GGUF files (llama.cpp, Ollama): header, metadata, tensor infos, aligned data (internal).

The header is parsed here (``gguf.GGUFReader`` builds numpy views of every field and takes
seconds on 100,000 tensors); the ``gguf`` package (extra ``ckptlab[gguf]``) supplies the type
tables and ``gguf.quants.dequantize``, so quantized tensors read exactly as llama.cpp's Python
tools dequantize them.  Every count, length and offset is checked against the file's size
before anything is allocated.  The format has no checksums.
"""

from __future__ import annotations

import math
import posixpath
import struct
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ckptlab.core import ForeignLocation, StoredValue, shape_extent
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import (
    MAX_ELEMENTS,
    ForeignCheckpoint,
    LazyValues,
    check_shape,
    name_document,
    require,
)
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._stream import raw_bytes

MAGIC = b"GGUF"
MAX_NAME = 65536
"""Longest tensor name or metadata key accepted (llama.cpp's own limit is 64 bytes)."""
MAX_DIMS = 4
"""GGML tensors have at most four dimensions."""
READ_AHEAD = 1 << 20
UNQUANTIZED = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
}
"""GGML types read as they are stored; every other type is dequantized to float32."""
_PLAIN_DTYPES = set(UNQUANTIZED.values())
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_INFOS = [struct.Struct(f"<{n}QIQ").unpack_from for n in range(MAX_DIMS + 1)]
"""Per rank: the dimensions, GGML type and offset that follow a tensor info's rank."""


def looks_like_gguf(head: bytes) -> bool:
    """Whether a file starts with the GGUF magic."""
    return head[:4] == MAGIC


class _Cursor:
    """Sequential reads of the header, fetched from the store a megabyte at a time."""

    def __init__(self, reader: GGUFFile, size: int) -> None:
        self.reader, self.size = reader, size
        self.buffer = b""
        self.start = 0
        """File offset of ``buffer[0]``."""
        self.pos = 0
        """Offset in ``buffer`` of the next byte to parse."""

    @property
    def offset(self) -> int:
        return self.start + self.pos

    def need(self, count: int, what: str) -> None:
        """Make ``count`` bytes from the current position available (or raise: truncated)."""
        if self.pos + count <= len(self.buffer):
            return
        if self.offset + count > self.size:
            raise self.reader.bad_file(
                f"{what} at byte {self.offset} needs {count} bytes; the file has {self.size}"
            )
        keep = self.buffer[self.pos :]
        more = min(max(count - len(keep), READ_AHEAD), self.size - self.offset - len(keep))
        piece = bytearray(more)
        self.reader.read_bytes(
            posixpath.basename(self.reader.path),
            self.offset + len(keep),
            memoryview(piece),
            "(header)",
        )
        self.start, self.buffer, self.pos = self.offset, keep + piece, 0

    def fill(self, count: int) -> None:
        """Like :meth:`need`, but short of the end of the file is fine (fewer bytes then)."""
        self.need(min(count, self.size - self.offset), "the header")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U32(self.buffer, self.pos)
        self.pos += 4
        return int(value)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (value,) = _U64(self.buffer, self.pos)
        self.pos += 8
        return int(value)

    def string(self, what: str, limit: int) -> bytes:
        length = self.u64(what)
        if length > limit:
            raise self.reader.bad_file(f"{what} at byte {self.offset - 8} is {length} bytes long")
        self.need(length, what)
        data = self.buffer[self.pos : self.pos + length]
        self.pos += length
        return data

    def value(self, kind: int, what: str, depth: int = 0) -> Any:
        """One metadata value of GGUF value type ``kind`` (arrays become lists)."""
        if kind in _SCALARS:
            fmt = struct.Struct(_SCALARS[kind])
            self.need(fmt.size, what)
            (value,) = fmt.unpack_from(self.buffer, self.pos)
            self.pos += fmt.size
            return value
        if kind == _STRING:
            return self.string(what, self.size).decode("utf-8", "replace")
        if kind == _ARRAY and depth == 0:
            item = self.u32(what)
            count = self.u64(what)
            if item in _SCALARS:
                fmt = struct.Struct(_SCALARS[item])
                self.need(count * fmt.size, what)  # bounded by the file's size first
                dtype = np.dtype(fmt.format)
                items = np.frombuffer(self.buffer, dtype, count, self.pos).tolist()
                self.pos += count * fmt.size
                return items
            if count * 8 > self.size - self.offset:  # every element needs at least 8 bytes
                raise self.reader.bad_file(f"{what} declares {count} elements")
            return [self.value(item, what, depth + 1) for _ in range(count)]
        raise self.reader.bad_file(f"{what} has value type {kind}")


class GGUFFile(ForeignCheckpoint):
    """An open GGUF file (kind ``name``, keys = GGUF tensor names such as ``blk.0.attn_q.weight``).

    ``metadata`` holds the key/value section; ``tensor_types`` the GGML type of every tensor.
    Unquantized tensors read bit for bit; quantized ones are dequantized to float32 exactly as
    ``gguf.quants.dequantize`` does, and :meth:`read_raw` returns their stored blocks.
    """

    format_name = "GGUF file"

    def __init__(self, store: ByteStore, path: str) -> None:
        self.store = store
        self.path = path
        self._gguf = require("gguf", "gguf", "GGUF files")
        size = store.size(path) or 0
        cursor = _Cursor(self, size)
        cursor.need(24, "the header")
        magic = cursor.buffer[:4]
        version = _U32(cursor.buffer, 4)[0]
        if magic != MAGIC:
            raise self.bad_file(f"it starts with {magic!r}, not b'GGUF'")
        if version not in (2, 3):
            raise UnsupportedFormatError(
                f"{store.display(path)} is GGUF version {version} "
                f"({'big-endian' if version >= 1 << 16 else 'unsupported'}); ckptlab reads "
                "little-endian GGUF versions 2 and 3, as llama.cpp writes them."
            )
        cursor.pos = 8
        tensors, fields = cursor.u64("the tensor count"), cursor.u64("the metadata count")
        if tensors * 24 > size or fields * 13 > size:
            raise self.bad_file(
                f"it declares {tensors} tensors and {fields} metadata entries in {size} bytes"
            )
        self.metadata: dict[str, Any] = {}
        """The key/value section (``general.architecture``, tokenizer arrays as lists, ...)."""
        for _ in range(fields):
            key = cursor.string("a metadata key", MAX_NAME).decode("utf-8", "replace")
            self.metadata[key] = cursor.value(cursor.u32(key), f"metadata {key!r}")
        self._read_infos(cursor, tensors)
        alignment = self.metadata.get("general.alignment", 32)
        if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
            raise self.bad_file(f"general.alignment is {alignment!r}, not a power of two")
        self._data = -(-cursor.offset // alignment) * alignment
        self._check_bounds(size)
        values = LazyValues(self._names, self._value)
        super().__init__(
            store, path, name_document(self.format_name, values, metadata=self.metadata)
        )

    def _read_infos(self, cursor: _Cursor, count: int) -> None:
        """Tensor infos as columns: name, numpy-order shape, GGML type, offset.

        One tight loop (100,000 infos in about 0.1 s): the buffer always holds one record's
        worst case ahead, so fields are unpacked without per-field checks; a record that runs
        past the end of the file makes ``struct`` raise, reported as truncation.
        """
        names: list[str] = []
        shapes: list[tuple[int, ...]] = []
        types: list[int] = []
        offsets: list[int] = []
        u64, u32, infos = _U64, _U32, _INFOS
        slack = MAX_NAME + 8 * MAX_DIMS + 24
        buffer, pos = cursor.buffer, cursor.pos
        for _ in range(count):
            if pos + slack > len(buffer):
                cursor.pos = pos
                cursor.fill(slack)
                buffer, pos = cursor.buffer, cursor.pos
            try:
                (length,) = u64(buffer, pos)
                if length > MAX_NAME:
                    at = cursor.start + pos
                    raise self.bad_file(f"a tensor name at byte {at} is {length} bytes")
                end = pos + 8 + length
                name = buffer[pos + 8 : end]
                (rank,) = u32(buffer, end)
                if rank > MAX_DIMS:
                    raise self.bad_file(f"tensor {name!r} has {rank} dimensions (at most 4)")
                info = infos[rank](buffer, end + 4)  # dims..., type, offset
            except struct.error:
                raise self.bad_file(
                    f"the tensor infos run past the end of the file (tensor {len(names)} of "
                    f"{count})"
                ) from None
            pos = end + 16 + 8 * rank
            try:
                names.append(name.decode())
            except UnicodeDecodeError:
                raise self.bad_file(f"tensor name {name!r} is not UTF-8") from None
            shapes.append(info[:rank][::-1])
            types.append(info[rank])
            offsets.append(info[rank + 1])
        cursor.pos = pos
        if len(set(names)) != len(names):
            twice = next(n for n, c in Counter(names).items() if c > 1)
            raise self.bad_file(f"tensor {twice!r} is listed twice")
        sizes = self._gguf.GGML_QUANT_SIZES
        known = {int(t): t for t in sizes}
        unknown = set(types) - set(known)
        if unknown:
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)} holds tensors of GGML type(s) "
                f"{sorted(unknown)}, which the installed gguf package does not know; "
                "upgrade it (pip install -U gguf)."
            )
        self._names, self._shapes, self._types, self._offsets = names, shapes, types, offsets
        self._type_info = {t: (known[t].name, *sizes[known[t]]) for t in set(types)}

    def _check_bounds(self, size: int) -> None:
        """Every tensor's bytes must lie inside the file (checked before any read, vectorised)."""
        if not self._names:
            return
        elements = list(map(math.prod, self._shapes))
        if max(map(shape_extent, self._shapes)) >= MAX_ELEMENTS or max(self._offsets) > size:
            for name, shape, offset in zip(self._names, self._shapes, self._offsets, strict=True):
                check_shape(shape, f"Tensor {name!r} of {self.display_path}")
                if offset > size:
                    raise self.bad_file(f"tensor {name!r} starts at offset {offset}")
        table = {t: info[1:] for t, info in self._type_info.items()}
        block = np.array([table[t][0] for t in self._types], np.int64)
        type_size = np.array([table[t][1] for t in self._types], np.int64)
        rows = np.array([s[-1] if s else 1 for s in self._shapes], np.int64)
        ends = self._data + np.array(self._offsets, np.int64)
        ends += np.array(elements, np.int64) // block * type_size
        bad = np.flatnonzero((rows % block != 0) | (ends > size))
        if bad.size:
            index = int(bad[0])
            name, shape = self._names[index], self._shapes[index]
            type_name = self._type_info[self._types[index]][0]
            raise self.bad_file(
                f"tensor {name!r} (#{index}, {type_name} {list(shape)}) at offset "
                f"{self._offsets[index]} ends at byte {int(ends[index])} (the file has {size}), "
                f"or its rows are not a multiple of the {type_name} block size"
            )

    @property
    def tensor_types(self) -> dict[str, str]:
        """GGML type name (``F16``, ``Q4_K``, ...) of every tensor, by name."""
        return {n: self._type_info[t][0] for n, t in zip(self._names, self._types, strict=True)}

    def listing(self) -> list[tuple[str, tuple[int, ...], str]]:
        """``(name, shape, dtype)`` of every tensor, straight from the parsed columns."""
        dtypes = {t: UNQUANTIZED.get(info[0], "float32") for t, info in self._type_info.items()}
        return [
            (name, shape, dtypes[kind])
            for name, shape, kind in zip(self._names, self._shapes, self._types, strict=True)
        ]

    def _value(self, index: int) -> StoredValue:
        type_name, block, type_size = self._type_info[self._types[index]]
        shape = self._shapes[index]
        quantized = type_name not in UNQUANTIZED
        detail = f"GGML {type_name}" + ("; dequantized to float32 on read" if quantized else "")
        return StoredValue(
            key=self._names[index],
            shape=shape,
            dtype=UNQUANTIZED.get(type_name, "float32"),
            foreign=ForeignLocation(
                format="gguf",
                file=posixpath.basename(self.path),
                offset=self._data + self._offsets[index],
                length=math.prod(shape) // block * type_size,
                detail=f"{detail}; no checksum in this format",
            ),
        )

    def bad_file(self, what: str) -> CorruptCheckpointError:
        """The error for a damaged or hostile header."""
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable GGUF file: {what}. The file is "
            "damaged or truncated; download it again."
        )

    def read_raw(self, key: str) -> np.ndarray[Any, Any]:
        """The stored bytes of one tensor as ``uint8`` rows of blocks (shape as gguf gives it).

        For an unquantized tensor that is its little-endian bytes, last axis in bytes.
        """
        value = self.stored(key)
        assert value.foreign is not None
        _, block, type_size = self._type_info[self._types[self._index(key)]]
        rows = value.shape[:-1] if value.shape else ()
        per_row = (value.shape[-1] if value.shape else 1) // block * type_size
        raw = np.empty((*rows, per_row), np.uint8)
        self.read_bytes(value.foreign.file, value.foreign.offset, raw.reshape(-1).data, key)
        return raw

    def read_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Fresh arrays of ``keys``: unquantized ones with one scatter read, others one by one."""
        values = [self.stored(key) for key in dict.fromkeys(keys)]
        plain = [v for v in values if v.dtype in _PLAIN_DTYPES and self._is_plain(v.key)]
        found = self.read_spans(plain)
        for value in values:
            if value.key not in found:
                found[value.key] = self.read(value.key)
        return {value.key: found[value.key] for value in values}

    def _is_plain(self, key: str) -> bool:
        return self._type_info[self._types[self._index(key)]][0] in UNQUANTIZED

    def _index(self, key: str) -> int:
        values = self.document.values
        assert isinstance(values, LazyValues)
        return values.index(key)

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        assert value.foreign is not None
        kind = self._types[self._index(value.key)]
        type_name = self._type_info[kind][0]
        target = out if out is not None else self.allocate(value)
        if type_name in UNQUANTIZED:
            raw = raw_bytes(target)
            self.read_bytes(value.foreign.file, value.foreign.offset, raw, value.key)
            return target
        blocks = self.read_raw(value.key)
        quants = self._gguf.quants
        try:
            values = quants.dequantize(blocks, self._gguf.GGMLQuantizationType(kind))
        except NotImplementedError:
            raise UnsupportedFormatError(
                f"Tensor {value.key!r} of {self.display_path} is {type_name}, which the "
                "installed gguf package cannot dequantize; read_raw() returns its blocks."
            ) from None
        target[...] = values.reshape(value.shape)
        return target
