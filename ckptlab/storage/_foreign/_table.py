"""LevelDB-style sorted tables, as TensorFlow writes ``.index`` files and V1 checkpoints (internal).

Layout (docs/foreign-formats.md §2): data blocks, a metaindex block and an index block, each
followed by a 5-byte trailer (compression type, masked crc32c of contents + type), then a 48-byte
footer.
Every block's checksum is verified; keys are raw bytes; index keys are separators, never shown.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import crc32c

from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._wire import WireError, read_varint

MAGIC = bytes.fromhex("57fb808b247547db")
FOOTER = 48
MASK_DELTA = 0xA282EAD8
MAX_TABLE_BYTES = 1 << 32
KEY_BYTES_PER_BYTE = 16
"""The keys of a table may spell at most this many bytes per byte of the file (plus 1 MiB);
TensorFlow's indexes need a few."""


def mask(crc: int) -> int:
    """TensorFlow's masked crc32c (rotate right by 15, add a constant).

    Examples
    --------
    >>> hex(mask(0))
    '0xa282ead8'
    """
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def has_table_magic(tail: bytes) -> bool:
    """Whether the last 8 bytes of a file are the table magic number."""
    return tail[-8:] == MAGIC


class Table:
    """An SSTable held in memory: iterate ``(key, value)`` in key order over every data block."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.where = where
        if len(data) < FOOTER or data[-8:] != MAGIC:
            raise self.fail("the file does not end with the table magic 57fb808b247547db")
        footer = data[-FOOTER:]
        try:
            meta_offset, pos = read_varint(footer, 0)
            meta_size, pos = read_varint(footer, pos)
            index_offset, pos = read_varint(footer, pos)
            index_size, pos = read_varint(footer, pos)
        except WireError as error:
            raise self.fail(f"the footer is malformed ({error})") from None
        self.block(meta_offset, meta_size)
        self.index = self.block(index_offset, index_size)

    def fail(self, what: str) -> CorruptCheckpointError:
        """Build an error naming the file."""
        return CorruptCheckpointError(
            f"{self.where} is not a readable TensorFlow table: {what}. The file is damaged or "
            "truncated; copy it again from its source."
        )

    def block(self, offset: int, size: int) -> bytes:
        """Return one block's contents, its trailer checked (snappy blocks are decompressed)."""
        end = offset + size
        if end + 5 > len(self.data) - FOOTER:
            raise self.fail(f"a block handle ({offset}, {size}) points outside the file")
        contents = self.data[offset:end]
        kind = self.data[end]
        (stored,) = struct.unpack_from("<I", self.data, end + 1)
        if mask(crc32c.crc32c(self.data[end : end + 1], crc32c.crc32c(contents))) != stored:
            raise self.fail(f"the block at byte {offset} fails its crc32c check")
        if kind == 0:
            return contents
        if kind == 1:
            from ckptlab.storage._foreign._snappy import decompress

            try:
                return decompress(contents)
            except WireError as error:
                raise self.fail(f"snappy block at byte {offset}: {error}") from None
        raise UnsupportedFormatError(
            f"{self.where}: block at byte {offset} uses compression type {kind}; ckptlab reads "
            "uncompressed (0) and snappy (1) tables."
        )

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)``; the keys may total :data:`KEY_BYTES_PER_BYTE` per file byte.

        Keys are prefix-compressed, so 200,000 keys that each repeat the previous one plus a
        byte fit in a 1.2 MB file and spell 20 GB: the total is bounded by the file's size.
        """
        budget = [KEY_BYTES_PER_BYTE * len(self.data) + 2**20]
        for _separator, handle in self._entries(self.index, budget):
            try:
                offset, pos = read_varint(handle, 0)
                size, _ = read_varint(handle, pos)
            except WireError as error:
                raise self.fail(f"an index entry is malformed ({error})") from None
            yield from self._entries(self.block(offset, size), budget)

    def _entries(self, block: bytes, budget: list[int]) -> Iterator[tuple[bytes, bytes]]:
        """A block's entries; ``budget[0]`` (key bytes left to spell) is decreased."""
        if len(block) < 4:
            raise self.fail("a block is shorter than its restart count")
        (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        limit = len(block) - 4 - 4 * restarts
        if limit < 0:
            raise self.fail(f"a block claims {restarts} restart points")
        key = b""
        pos = 0
        try:
            while pos < limit:
                shared, pos = read_varint(block, pos)
                unshared, pos = read_varint(block, pos)
                length, pos = read_varint(block, pos)
                if shared > len(key) or pos + unshared + length > limit:
                    raise self.fail(f"an entry at block offset {pos} overruns the block")
                budget[0] -= shared + unshared
                if budget[0] < 0:
                    raise self.fail(
                        f"its keys spell more than {KEY_BYTES_PER_BYTE} bytes per byte of the "
                        "file (prefix-compressed keys that keep growing)"
                    )
                key = key[:shared] + block[pos : pos + unshared]
                pos += unshared
                yield key, block[pos : pos + length]
                pos += length
        except WireError as error:
            raise self.fail(f"an entry is malformed ({error})") from None
