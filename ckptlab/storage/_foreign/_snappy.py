"""Raw snappy blocks of old compressed TensorFlow tables, decoded by ``cramjam`` (internal).

Modern TensorFlow never compresses index blocks; files from the TF 1.1 era may
(docs/foreign-formats.md §2.4).
The announced length is checked before anything is decoded: at most :data:`MAX_BLOCK` bytes,
and at most :data:`MAX_RATIO` times the compressed size (snappy cannot expand further than
about 21 times: a 3-byte copy tag yields at most 64 bytes).
"""

from __future__ import annotations

import cramjam

from ckptlab.storage._foreign._wire import WireError, read_varint

MAX_BLOCK = 1 << 30
MAX_RATIO = 32


def decompress(data: bytes) -> bytes:
    r"""Decode one raw snappy block (varint length, then literal and copy tags).

    Examples
    --------
    >>> decompress(b"\x06\x08abc\x0a\x03\x00")  # literal "abc", then copy 3 bytes from 3 back
    b'abcabc'
    """
    length, _ = read_varint(data, 0)
    if length > min(MAX_BLOCK, MAX_RATIO * len(data)):
        raise WireError(f"snappy block of {len(data)} bytes claims {length} bytes")
    try:
        out = bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as error:
        raise WireError(f"snappy block does not decode ({error})") from None
    if len(out) != length:
        raise WireError(f"snappy block is {len(out)} bytes, announced {length}")
    return out
