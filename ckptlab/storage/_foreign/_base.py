"""What every foreign reader shares: the ``StoredCheckpoint`` surface over foreign bytes (internal).

A foreign reader builds a :class:`~ckptlab.core.CheckpointDocument` (kind ``object`` with an
object graph for TF2 checkpoints, kind ``name`` for flat name spaces) whose values carry a
:class:`~ckptlab.core.ForeignLocation`, and implements ``_load``.  Restore, the readers and the
explorer then work unchanged.
"""

from __future__ import annotations

import functools
import importlib
import posixpath
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import crc32c
import numpy as np

from ckptlab.core import (
    UNREADABLE_DTYPES,
    CheckpointDocument,
    StoredValue,
    is_text,
    shape_extent,
)
from ckptlab.errors import (
    CorruptCheckpointError,
    MissingDependencyError,
    NotFoundError,
    UnsupportedFormatError,
)
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype
from ckptlab.storage._reader import StoredCheckpoint
from ckptlab.storage._stream import Checksums, raw_bytes

GAP = 64 * 2**10
"""Values this close in a file are read with one request (the gap is read and dropped)."""
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


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional dependency; without it, name the extra that installs it.

    Examples
    --------
    >>> require("json", "none", "JSON").__name__
    'json'
    >>> require("not_a_module_ckptlab", "keras", "Keras files")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ckptlab.errors.MissingDependencyError: Reading Keras files needs ... 'ckptlab[keras]'...
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"Reading {what} needs the {module.split('.')[0]!r} package, which is not "
            f"importable ({error}). Install it with: pip install 'ckptlab[{extra}]'"
        ) from None


class LazyValues(Mapping[str, StoredValue]):
    """Values kept as columns and built as :class:`StoredValue` on first access.

    Opening a file of 100,000 tensors then costs one parse; listings read the columns
    (:meth:`ForeignCheckpoint.listing`) and only values that are asked for become objects.
    """

    def __init__(self, keys: list[str], build: Callable[[int], StoredValue]) -> None:
        self._keys = keys
        self._positions: dict[str, int] | None = None
        self._build = build
        self._built: dict[str, StoredValue] = {}

    def __getitem__(self, key: str) -> StoredValue:
        found = self._built.get(key)
        if found is None:
            found = self._built[key] = self._build(self.index(key))
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._lookup()

    def index(self, key: str) -> int:
        """The position of ``key`` in the columns (``KeyError`` when absent)."""
        return self._lookup()[key]

    def _lookup(self) -> dict[str, int]:
        """Key -> position, built on first use (a listing never needs it)."""
        if self._positions is None:
            self._positions = dict(zip(self._keys, range(len(self._keys)), strict=True))
        return self._positions

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def name_document(
    format_name: str, values: Mapping[str, StoredValue], **writer: Any
) -> CheckpointDocument:
    """The document of a flat, name-based foreign checkpoint (``writer`` adds to its record)."""
    return CheckpointDocument(
        format_version=0,
        kind="name",
        graph=None,
        values=values,
        writer={"format": format_name, **writer},
    )


class ForeignCheckpoint(StoredCheckpoint):
    """A checkpoint written by another framework, opened read-only.

    Subclasses set ``format_name`` (and ``checksums`` when their reads are checked) and
    implement :meth:`_load`.
    """

    format_name = "foreign checkpoint"
    checksums = False
    """Whether reading checks stored checksums (``ckptlab verify`` says so when it cannot)."""
    convert_first = (
        "Load it with torch and convert the tensor to a dtype numpy has before saving "
        "(t.to(torch.float32), or t.view(torch.uint8) for its raw bits)"
    )
    """How to make a value of an :data:`~ckptlab.core.UNREADABLE_DTYPES` dtype readable."""

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
        self._check_readable(value)
        dtype = numpy_dtype(value.dtype)
        if out is not None and (
            out.shape != value.shape
            or out.dtype != dtype
            or not out.flags.c_contiguous
            or dtype.kind == "O"
        ):
            raise ValueError(f"out must be a C-contiguous {value.shape} {value.dtype} array")
        return self._load(value, out)

    def allocate(self, value: StoredValue) -> np.ndarray[Any, Any]:
        """A new array for ``value``: where every foreign reader allocates a value's buffer.

        A few-KB file may declare a value of gigabytes that a format legitimately stores as
        unwritten chunks (Orbax fill values); memory the process cannot get is then a typed
        error naming the value, not a bare ``MemoryError``.  A value of a dtype numpy has no
        type for is refused here, so that no reader's path fills a buffer with it.
        """
        self._check_readable(value)
        dtype = numpy_dtype(value.dtype)
        try:
            return np.empty(value.shape, dtype)
        except MemoryError:
            raise CorruptCheckpointError(
                f"Value {value.key!r} of {self.format_name} {self.display_path} is a "
                f"{list(value.shape)} {value.dtype} array of {value.nbytes:,} bytes, more memory "
                "than this process can allocate. If the checkpoint is genuine, read it on a "
                "machine with more memory or restore fewer values at a time; if the file is "
                "much smaller than the value, it is damaged or hostile."
            ) from None

    def _check_readable(self, value: StoredValue) -> None:
        """Refuse a value of a dtype numpy has no type for (it is listed, never read)."""
        if value.dtype in UNREADABLE_DTYPES:
            raise UnsupportedFormatError(
                f"Value {value.key!r} of {self.format_name} {self.display_path} has dtype "
                f"{value.dtype}, which numpy (and so ckptlab) has no type for; ckptlab lists it "
                f"but cannot read it. {self.convert_first}."
            )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def read_spans(self, values: list[StoredValue]) -> dict[str, np.ndarray[Any, Any]]:
        """Read values stored as plain little-endian bytes at ``foreign.offset`` (no checksum).

        Values are read in file order, neighbours (closer than 64 KiB) with one scatter read
        whose gaps land in a scratch buffer, straight into fresh arrays: what ``read_arrays``
        of safetensors shards and unquantized GGUF tensors costs instead of one open and read
        per value.
        """
        arrays = {v.key: self.allocate(v) for v in values}
        spans = sorted(
            (value.foreign.file, value.foreign.offset, value)
            for value in values
            if value.foreign is not None and value.size
        )
        requests: list[tuple[str, int, list[memoryview]]] = []
        members: list[list[StoredValue]] = []
        end, last = -1, ""
        for file, offset, value in spans:
            raw = raw_bytes(arrays[value.key])
            if file != last or not 0 <= offset - end <= GAP or len(requests[-1][2]) >= 1000:
                requests.append((self.file(file), offset, []))
                members.append([])
            elif offset > end:
                requests[-1][2].append(memoryview(bytearray(offset - end)))
            requests[-1][2].append(raw)
            members[-1].append(value)
            end, last = offset + value.nbytes, file
        try:
            counts = self.store.read_ranges(requests)
        except NotFoundError:
            missing = next(key for key, _, _ in requests if self.store.size(key) is None)
            raise NotFoundError(
                f"{self.store.display(missing)} is missing; it holds values of "
                f"{self.display_path}. Copy every file of the checkpoint."
            ) from None
        for (key, offset, buffers), count, group in zip(requests, counts, members, strict=True):
            if count != sum(len(b) for b in buffers):
                short = next(
                    v for v in group if v.foreign and v.foreign.offset + v.nbytes > offset + count
                )
                raise self.damaged(short.key, f"{posixpath.basename(key)} ends too early")
        return arrays

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
        in pieces; the process's helper thread checksums each piece while the next one is read
        (both release the GIL), so verification adds little to the read time.
        """
        crc = 0

        def piece_done(piece: memoryview) -> None:
            nonlocal crc
            crc = update(piece, crc)

        checksums = Checksums(len(out), threshold=OVERLAP_PIECE + 1)  # more than one piece
        try:
            for start in range(0, len(out), OVERLAP_PIECE):
                piece = out[start : start + OVERLAP_PIECE]
                self.read_bytes(name, offset + start, piece, key)
                checksums.run(functools.partial(piece_done, piece))
        except BaseException:
            checksums.abandon()
            raise
        checksums.wait()
        return crc

    def damaged(self, key: str, what: str) -> CorruptCheckpointError:
        """Build the error for a value whose bytes are missing or wrong."""
        return CorruptCheckpointError(
            f"Value {key!r} in {self.format_name} {self.display_path} is damaged: {what}. "
            "Copy the checkpoint again from its source."
        )
