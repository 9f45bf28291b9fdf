r"""TensorFlow's encoded slice keys (``EncodeTensorNameSlice``, built on OrderedCode) (internal).

``\x00`` · escaped name · ``\x00\x01`` · rank · (start, length) per dimension, numbers in
OrderedCode's increasing encodings (docs/foreign-formats.md §5.3).
"""

from __future__ import annotations

from ckptlab.storage._foreign._tfproto import Extent
from ckptlab.storage._foreign._wire import WireError


def decode_slice_key(key: bytes) -> tuple[str, tuple[Extent, ...]]:
    r"""Decode the tensor name and (start, length) extents of an encoded slice key.

    Examples
    --------
    >>> decode_slice_key(b"\x00embedding\x00\x01\x01\x02\x83\x83\x80\x84")
    ('embedding', ((3, 3), (0, 4)))
    """
    zero, pos = _num_increasing(key, 0)
    if zero != 0:
        raise WireError("slice key does not start with 0")
    name, pos = _string(key, pos)
    rank, pos = _num_increasing(key, pos)
    extents = []
    for _ in range(rank):
        start, pos = _signed(key, pos)
        length, pos = _signed(key, pos)
        extents.append((start, length))
    if pos != len(key):
        raise WireError("slice key has trailing bytes")
    return name, tuple(extents)


def _num_increasing(key: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(key):
        raise WireError("slice key ends inside a number")
    size = key[pos]
    if size > 8 or pos + 1 + size > len(key):
        raise WireError("slice key has a malformed number")
    return int.from_bytes(key[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def _string(key: bytes, pos: int) -> tuple[str, int]:
    out = bytearray()
    while pos + 1 < len(key):
        byte, following = key[pos], key[pos + 1]
        if byte == 0x00 and following == 0x01:
            return out.decode("utf-8", errors="replace"), pos + 2
        if byte == 0x00 and following == 0xFF:
            out.append(0x00)
            pos += 2
        elif byte == 0xFF and following == 0x00:
            out.append(0xFF)
            pos += 2
        else:
            out.append(byte)
            pos += 1
    raise WireError("slice key name is not terminated")


def _signed(key: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(key):
        raise WireError("slice key ends inside a number")
    positive = bool(key[pos] & 0x80)
    pad = b"\x00" if positive else b"\xff"
    bits = int.from_bytes(key[pos : pos + 2].ljust(2, pad), "big")
    if not positive:
        bits ^= 0xFFFF
    length = 0
    while length < 16 and bits & (0x8000 >> length):
        length += 1
    if not 1 <= length <= 10 or pos + length > len(key):
        raise WireError("slice key has a malformed signed number")
    width = 8 * length
    value = int.from_bytes(key[pos : pos + length], "big") ^ (
        ((1 << length) - 1) << (width - length)
    )
    if value >= 1 << (width - 1):
        value -= 1 << width
    return value, pos + length
