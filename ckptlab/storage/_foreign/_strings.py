"""TensorFlow string tensors in a bundle: varint lengths, a masked crc, then bytes (internal).

The entry's checksum covers the lengths as fixed-width integers, the stored length checksum
and the bytes, not the stored byte range (docs/foreign-formats.md §5.2).
"""

from __future__ import annotations

from typing import Any

import crc32c
import numpy as np

from ckptlab.storage._foreign._wire import WireError, read_varint


def read_string_tensor(raw: bytes, count: int) -> tuple[np.ndarray[Any, Any], int]:
    r"""Decode ``count`` strings; return (1-D object array of bytes, unmasked entry crc).

    Examples
    --------
    >>> array, _ = read_string_tensor(b"\x01\x02" + bytes(4) + b"abc", 2)
    >>> array.tolist()
    [b'a', b'bc']
    """
    lengths = []
    pos = 0
    for _ in range(count):
        length, pos = read_varint(raw, pos)
        lengths.append(length)
    crc = 0
    for length in lengths:
        crc = crc32c.crc32c(length.to_bytes(8 if length > 0xFFFFFFFF else 4, "little"), crc)
    if count or pos < len(raw):  # TensorFlow writes the length checksum even for 0 strings
        if pos + 4 > len(raw):
            raise WireError("the length checksum is missing")
        crc = crc32c.crc32c(raw[pos : pos + 4], crc)
        pos += 4
    if pos + sum(lengths) != len(raw):
        raise WireError(f"lengths add up to {sum(lengths)} bytes, {len(raw) - pos} are stored")
    out = np.empty(count, dtype=object)
    for index, length in enumerate(lengths):
        out[index] = raw[pos : pos + length]
        pos += length
    return out, crc32c.crc32c(raw[pos - sum(lengths) : pos], crc)
