"""A raw-block snappy decoder for old compressed TensorFlow tables (internal, pure Python).

Modern TensorFlow never compresses index blocks; files from the TF 1.1 era may
(docs/foreign-formats.md §2.4).
"""

from __future__ import annotations

from ckptlab.storage._foreign._wire import WireError, read_varint

MAX_BLOCK = 1 << 30


def decompress(data: bytes) -> bytes:
    r"""Decode one raw snappy block (varint length, then literal and copy tags).

    Examples
    --------
    >>> decompress(b"\x06\x08abc\x0a\x03\x00")  # literal "abc", then copy 3 bytes from 3 back
    b'abcabc'
    """
    length, pos = read_varint(data, 0)
    if length > MAX_BLOCK:
        raise WireError(f"snappy block claims {length} bytes")
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            if pos + size > end:
                raise WireError("snappy literal runs past the end")
            out += data[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            size = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        if offset == 0 or offset > len(out):
            raise WireError("snappy copy points before the start")
        for _ in range(size):
            out.append(out[-offset])
        if len(out) > length:
            raise WireError("snappy block longer than announced")
    if len(out) != length:
        raise WireError(f"snappy block is {len(out)} bytes, announced {length}")
    return bytes(out)
