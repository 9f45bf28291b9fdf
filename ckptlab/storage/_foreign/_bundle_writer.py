"""A minimal TensorBundle writer, for tests and benchmarks (internal; not a public feature).

Writes what TensorFlow 2.21 writes for unsliced numeric and string tensors: uncompressed table
blocks cut at about 256 KiB with a restart point every 16 keys, masked crc32c everywhere, one
data shard.  ``encode_entry`` and ``write_table`` let tests build damaged or hostile files.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import crc32c
import numpy as np

from ckptlab.storage._foreign._table import MAGIC, mask
from ckptlab.storage._foreign._tfproto import DTYPES
from ckptlab.storage._stream import raw_bytes

BLOCK_BYTES = 256 * 1024
RESTART_INTERVAL = 16
ENUMS = {name: number for number, name in sorted(DTYPES.items(), reverse=True)}


def varint(value: int) -> bytes:
    """LEB128 encoding (negative numbers as 10-byte two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    """One varint (``int``) or length-delimited (``bytes``) field."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def encode_slice_key(name: str, extents: Sequence[tuple[int, int]]) -> bytes:
    """TensorFlow's ``EncodeTensorNameSlice`` (OrderedCode), the inverse of ``decode_slice_key``.

    Examples
    --------
    >>> encode_slice_key("embedding", [(3, 3), (0, 4)]).hex(" ")
    '00 65 6d 62 65 64 64 69 6e 67 00 01 01 02 83 83 80 84'
    """
    escaped = name.encode().replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff")
    numbers = b"".join(_signed_increasing(v) for extent in extents for v in extent)
    return b"\x00" + escaped + b"\x00\x01" + _num_increasing(len(extents)) + numbers


def _num_increasing(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([len(raw)]) + raw


def _signed_increasing(value: int) -> bytes:
    magnitude = value if value >= 0 else ~value
    length = max(1, -(-(magnitude.bit_length() + 1) // 7))
    width = 8 * length
    header = ((1 << length) - 1) << (width - length)
    return ((value & ((1 << width) - 1)) ^ header).to_bytes(length, "big")


def encode_entry(
    dtype: int, shape: Sequence[int], offset: int, size: int, crc: int, shard: int = 0
) -> bytes:
    """A ``BundleEntryProto`` (proto3: zero fields omitted, as TensorFlow writes them)."""
    dims = b"".join(field(2, field(1, d) if d else b"") for d in shape)
    out = field(1, dtype) + field(2, dims)
    for number, value in ((3, shard), (4, offset), (5, size)):
        if value:
            out += field(number, value)
    return out + varint(6 << 3 | 5) + struct.pack("<I", crc)


def string_bytes(values: Iterable[bytes]) -> tuple[bytes, int]:
    """A string tensor's stored bytes and its masked entry checksum."""
    items = list(values)
    lengths = b"".join(varint(len(v)) for v in items)
    crc = 0
    for item in items:
        crc = crc32c.crc32c(len(item).to_bytes(4, "little"), crc)
    stored = struct.pack("<I", mask(crc))
    body = b"".join(items)
    return lengths + stored + body, mask(crc32c.crc32c(body, crc32c.crc32c(stored, crc)))


class _Block:
    """LevelDB's block builder: prefix-compressed entries and a restart array."""

    def __init__(self, interval: int = RESTART_INTERVAL) -> None:
        self.interval = interval
        self.data = bytearray()
        self.restarts = [0]
        self.count = 0
        self.last = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count % self.interval == 0:
            if self.count:
                self.restarts.append(len(self.data))
        else:
            limit = min(len(key), len(self.last))
            while shared < limit and key[shared] == self.last[shared]:
                shared += 1
        self.data += varint(shared) + varint(len(key) - shared) + varint(len(value))
        self.data += key[shared:] + value
        self.last = key
        self.count += 1

    def size(self) -> int:
        return len(self.data) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        restarts = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.data) + restarts + struct.pack("<I", len(self.restarts))


def _separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's ``FindShortestSeparator``: a short key in ``[start, limit)``."""
    common = 0
    while common < min(len(start), len(limit)) and start[common] == limit[common]:
        common += 1
    if common < min(len(start), len(limit)):
        byte = start[common]
        if byte < 0xFF and byte + 1 < limit[common]:
            return start[:common] + bytes([byte + 1])
    return start


def _successor(key: bytes) -> bytes:
    """LevelDB's ``FindShortSuccessor``: a short key ``>= key``."""
    for index, byte in enumerate(key):
        if byte != 0xFF:
            return key[:index] + bytes([byte + 1])
    return key


def write_table(path: str, items: Iterable[tuple[bytes, bytes]]) -> None:
    """Write sorted ``(key, value)`` pairs as a table file (``.index`` or a V1 file)."""
    with open(path, "wb") as handle:
        index, block = _Block(interval=1), _Block()
        pending: tuple[int, int] | None = None
        block_last = b""
        for key, value in items:
            if pending is not None:
                index.add(_separator(block_last, key), varint(pending[0]) + varint(pending[1]))
                pending = None
            block.add(key, value)
            if block.size() >= BLOCK_BYTES:
                block_last, pending = block.last, _write_block(handle, block.finish())
                block = _Block()
        if block.count:
            block_last, pending = block.last, _write_block(handle, block.finish())
        if pending is not None:
            index.add(_successor(block_last), varint(pending[0]) + varint(pending[1]))
        metaindex = _write_block(handle, _Block().finish())
        index_handle = _write_block(handle, index.finish())
        footer = b"".join(varint(v) for v in (*metaindex, *index_handle))
        handle.write(footer.ljust(40, b"\0") + MAGIC)


def _write_block(handle: Any, contents: bytes) -> tuple[int, int]:
    offset = handle.tell()
    trailer = b"\0" + struct.pack("<I", mask(crc32c.crc32c(b"\0", crc32c.crc32c(contents))))
    handle.write(contents + trailer)
    return offset, len(contents)


def write_bundle(prefix: str, tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    """Write ``tensors`` as a one-shard TF1-style (name-based) bundle at ``prefix``."""
    entries = {b"": field(1, 1) + field(3, field(1, 1))}
    offset = 0
    with open(f"{prefix}.data-00000-of-00001", "wb") as data:
        for key, array in tensors.items():
            raw: bytes | memoryview
            if array.dtype.kind == "O":
                raw, crc = string_bytes(bytes(v) for v in array.reshape(-1))
                dtype = ENUMS["string"]
            else:
                raw = raw_bytes(array)
                crc, dtype = mask(crc32c.crc32c(raw)), ENUMS[array.dtype.name]
            data.write(raw)
            entries[key.encode()] = encode_entry(dtype, array.shape, offset, len(raw), crc)
            offset += len(raw)
    write_table(f"{prefix}.index", sorted(entries.items()))
