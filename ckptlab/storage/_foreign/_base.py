"""What every foreign reader shares: the ``StoredCheckpoint`` surface over foreign bytes (internal).

A foreign reader builds a :class:`~ckptlab.core.CheckpointDocument` (kind ``object`` with an
object graph for TF2 checkpoints, kind ``name`` for flat name spaces) whose values carry a
:class:`~ckptlab.core.ForeignLocation`, and implements ``_load``.  Restore, the readers and the
explorer then work unchanged.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import crc32c
import numpy as np

from ckptlab.core import CheckpointDocument, StoredValue, is_text, shape_extent
from ckptlab.errors import CorruptCheckpointError, NotFoundError, UnsupportedFormatError
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype
from ckptlab.storage._reader import StoredCheckpoint

OVERLAP_PIECE = 16 * 2**20
"""Reads larger than this overlap checksumming with reading, piece by piece."""
MAX_RANK = 64
MAX_ELEMENTS = 2**48
Checksum = Callable[[Any, int], int]
"""``crc32c.crc32c`` or ``zlib.crc32``: ``update(data, value) -> value``."""


def check_shape(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Refuse negative dims, absurd ranks and absurd element counts before allocating.

    The product of the non-zero dims is bounded too: numpy cannot make even an empty array of
    shape ``[0, 2**47, 2**47]``.
    """
    if len(shape) > MAX_RANK or any(d < 0 for d in shape) or shape_extent(shape) >= MAX_ELEMENTS:
        raise CorruptCheckpointError(
            f"{where} declares shape {list(shape)[: MAX_RANK + 1]}; expected at most {MAX_RANK} "
            "non-negative dims whose non-zero ones multiply to less than 2**48. The file is "
            "damaged or hostile."
        )
    return shape


class ForeignCheckpoint(StoredCheckpoint):
    """A checkpoint written by another framework, opened read-only.

    Subclasses set ``format_name`` and implement :meth:`_load`.
    """

    format_name = "foreign checkpoint"
    checksums = False
    """Whether reading checks stored checksums (``ckptlab verify`` says so when it cannot)."""

    def __init__(self, store: ByteStore, path: str, document: CheckpointDocument) -> None:
        for key in document.values:
            if not key.isprintable() and not is_text(key):
                raise UnsupportedFormatError(
                    f"{store.display(path)} names a value {key!r}, which is not valid Unicode "
                    "text (a lone surrogate); ckptlab's keys must be encodable as UTF-8. The "
                    "file is damaged or was not written by the framework it claims."
                )
        super().__init__(store, path, document)

    def read(self, key: str, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """Read one value (verified where the format has checksums) into ``out`` or a new array."""
        value = self.stored(key)
        dtype = numpy_dtype(value.dtype)
        if out is not None and (
            out.shape != value.shape
            or out.dtype != dtype
            or not out.flags.c_contiguous
            or dtype.kind == "O"
        ):
            raise ValueError(f"out must be a C-contiguous {value.shape} {value.dtype} array")
        return self._load(value, out)

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def file(self, name: str) -> str:
        """Return the store key of a file next to the checkpoint (``name`` is a basename)."""
        return posixpath.join(posixpath.dirname(self.path), name)

    def read_bytes(self, name: str, offset: int, out: memoryview, key: str) -> None:
        """Fill ``out`` from file ``name`` at ``offset``; a short read names the key."""
        if not len(out):
            return
        try:
            count = self.store.read_into(self.file(name), out, offset)
        except NotFoundError:
            raise NotFoundError(
                f"{self.store.display(self.file(name))} is missing; it holds {key!r} of "
                f"{self.display_path}. Copy every file of the checkpoint."
            ) from None
        if count != len(out):
            raise self.damaged(key, f"{name} ends before byte {offset + len(out)}")

    def read_crc32c(self, name: str, offset: int, out: memoryview, key: str) -> int:
        """Fill ``out`` like :meth:`read_bytes` and return the crc32c of the bytes read."""
        return self.read_checked(name, offset, out, key, crc32c.crc32c)

    def read_checked(
        self, name: str, offset: int, out: memoryview, key: str, update: Checksum
    ) -> int:
        """Fill ``out`` like :meth:`read_bytes` and return ``update``'s checksum of the bytes.

        ``update(data, value)`` is ``crc32c.crc32c`` or ``zlib.crc32``.  Large reads are split
        in pieces; a helper thread checksums each piece while the next one is read (both
        release the GIL), so verification adds little to the read time.
        """
        if len(out) <= OVERLAP_PIECE:
            self.read_bytes(name, offset, out, key)
            return int(update(out, 0))
        crc = 0

        def piece_done(piece: memoryview) -> None:
            nonlocal crc
            crc = update(piece, crc)

        with ThreadPoolExecutor(1) as checksums:
            for start in range(0, len(out), OVERLAP_PIECE):
                piece = out[start : start + OVERLAP_PIECE]
                self.read_bytes(name, offset + start, piece, key)
                checksums.submit(piece_done, piece)
        return crc

    def damaged(self, key: str, what: str) -> CorruptCheckpointError:
        """Build the error for a value whose bytes are missing or wrong."""
        return CorruptCheckpointError(
            f"Value {key!r} in {self.format_name} {self.display_path} is damaged: {what}. "
            "Copy the checkpoint again from its source."
        )
