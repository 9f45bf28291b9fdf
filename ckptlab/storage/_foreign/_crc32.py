"""CRC-32 (the zip checksum), from ISA-L when installed: ~25 GiB/s against zlib's ~6 (internal).

DCP chunks (``torch.save`` archives) carry the zip CRC-32 of their bytes; checking it at zlib's
speed would make reading slower than the disk's page cache delivers the bytes.  ``isal`` (a
dependency of ckptlab) computes the same checksum with ISA-L's folding implementation; without
it, ``zlib.crc32`` gives the same results, slower.
"""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    from zlib import crc32

__all__ = ["crc32"]
