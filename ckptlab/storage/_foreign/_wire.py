"""Protocol-buffer wire format by hand: just enough to decode TensorFlow's few messages (internal).

A message is a sequence of ``(field number, wire type, value)``.  Every length is bounded by the
remaining buffer, groups are refused, unknown fields are skipped (docs/foreign-formats.md §8).
"""

from __future__ import annotations

from collections.abc import Iterator

from ckptlab.errors import CorruptCheckpointError

VARINT, I64, LEN, I32 = 0, 1, 2, 5
Field = tuple[int, int, "int | bytes"]


class WireError(CorruptCheckpointError):
    """Bytes that are not a valid protocol-buffer message (the caller adds where)."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    r"""Decode one LEB128 varint at ``pos``; return ``(value, next position)``.

    Examples
    --------
    >>> read_varint(b"\xac\x02", 0)
    (300, 2)
    """
    end = len(data)
    if pos < end and data[pos] < 0x80:  # fast path: most varints are one byte
        return data[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("varint runs past the end of the buffer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def signed(value: int) -> int:
    """Two's-complement 64-bit reading of a varint (proto ``int32``/``int64``)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(data: bytes | memoryview) -> Iterator[Field]:
    """Iterate ``(field number, wire type, value)``; LEN values are ``bytes``."""
    pos = 0
    end = len(data)
    while pos < end:
        tag, pos = read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(data, pos)
            yield number, wire, value
        elif wire == LEN:
            length, pos = read_varint(data, pos)
            if length > end - pos:
                raise WireError(f"field {number} claims {length} bytes, {end - pos} remain")
            yield number, wire, bytes(data[pos : pos + length])
            pos += length
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if size > end - pos:
                raise WireError(f"field {number} runs past the end of the buffer")
            yield number, wire, int.from_bytes(data[pos : pos + size], "little")
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")


def packed_varints(value: int | bytes) -> list[int]:
    """Return a repeated varint field's values, packed (``bytes``) or not (one ``int``)."""
    if isinstance(value, int):
        return [value]
    out = []
    pos = 0
    while pos < len(value):
        item, pos = read_varint(value, pos)
        out.append(item)
    return out


def text(value: int | bytes) -> str:
    """Decode a ``string`` field (UTF-8, invalid bytes replaced so a damaged name stays visible)."""
    if isinstance(value, int):
        raise WireError("expected a length-delimited string, found a number")
    return value.decode("utf-8", errors="replace")


def message(value: int | bytes) -> bytes:
    """Return a nested message field's bytes."""
    if isinstance(value, int):
        raise WireError("expected a nested message, found a number")
    return value
