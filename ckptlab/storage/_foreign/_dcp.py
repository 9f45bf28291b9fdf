"""PyTorch Distributed Checkpoint directories: ``.metadata`` + ``__R_N.distcp`` (internal).

``.metadata`` (read through :mod:`._dcp_metadata`) lists every value by its flattened name
(``model.layers.0.weight``): tensors with their dtype, full size and the chunks each rank saved,
and where each chunk is: a file, a byte offset and a length.  Each chunk is a ``torch.save``
archive at that offset: located by :mod:`._dcp_chunk` from the archive's two ends and read
straight into place (its zip CRC-32 checked), or, for any archive in another layout, read by
ckptlab's torch reader through a :class:`ByteRange`.  A tensor is reassembled from its chunks
into one array, and :meth:`DCPCheckpoint.read_region` reads only the chunks a region touches.
Non-tensor values (``BytesStorageMetadata``) are ``torch.save`` blobs too, read into
:attr:`DCPCheckpoint.literals` when first asked for.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import posixpath
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from ckptlab.core import Container, ForeignLocation, StoredValue
from ckptlab.errors import CorruptCheckpointError, NotFoundError, UnsupportedFormatError
from ckptlab.storage import _stream
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document
from ckptlab.storage._foreign._crc32 import crc32
from ckptlab.storage._foreign._dcp_chunk import locate
from ckptlab.storage._foreign._dcp_metadata import (
    MAX_METADATA,
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageInfo,
    TensorStorageMetadata,
    dtype_of,
    read_metadata,
)
from ckptlab.storage._foreign._members import check_inside, safe_member
from ckptlab.storage._foreign._slices import Region, check_coverage, region_slices
from ckptlab.storage._foreign._torch import TorchFile
from ckptlab.storage._foreign._window import ByteRange
from ckptlab.storage._kv import ByteStore, LocalStore
from ckptlab.storage._layout import numpy_dtype

METADATA_FILE = ".metadata"
SPLIT_BYTES = 4 * 2**20
"""Local reads of at least this many bytes, in two chunks or more, run on two threads (each
reads and checks whole chunks): 1 GiB of 8 MiB values, each in 8 chunks, read in 0.053 s where
one thread took 0.083 (the checksum after every read is what one thread cannot hide)."""
Piece = tuple[str, "Chunk", np.ndarray[Any, Any]]
"""A chunk to read: the value's key, the chunk, and the part of the value's array it fills."""
PREFETCH = (1 << 12, 1 << 12)
"""Bytes read at the start and the end of a chunk's archive before parsing it: torch writes its
pickle and small records first (under 1 KiB) and its zip directory last (under 1 KiB)."""


class Chunk:
    """One saved chunk: its region of the full tensor and where its archive is."""

    __slots__ = ("file", "length", "offset", "region")

    def __init__(self, region: Region, file: str, offset: int, length: int) -> None:
        self.region, self.file, self.offset, self.length = region, file, offset, length


class DCPCheckpoint(ForeignCheckpoint):
    """An open Distributed Checkpoint directory (kind ``name``, keys = flattened names).

    ``literals`` holds the non-tensor values (``step``, learning rates, ...), read on first use;
    ``dcp_metadata`` is the unpickled ``Metadata`` stand-in (``planner_data``, ``storage_meta``).
    """

    format_name = "PyTorch Distributed Checkpoint"
    checksums = True

    def __init__(self, store: ByteStore, directory: str) -> None:
        self.store = store
        self.path = directory
        key = posixpath.join(directory, METADATA_FILE)
        where = store.display(key)
        check_inside(store, directory, key)
        size = store.size(key)
        if size is None:
            raise NotFoundError(f"{where} is missing; a DCP directory starts with it.")
        if size > MAX_METADATA:
            raise self._bad(f"{METADATA_FILE} is {size} bytes (ckptlab reads at most 256 MiB)")
        self.dcp_metadata: Metadata = read_metadata(store.read(key), where)
        self._file_sizes: dict[str, int] = {}
        self._keys: dict[str, str] = {}
        """Checked file names (``__0_0.distcp``) -> store keys."""
        self._data_start: int | None = None
        """Where the tensor's bytes began in the last chunk archive read (a guess for the next;
        a wrong guess costs a second read, never a wrong value)."""
        storage = self._storage_index(self.dcp_metadata.get("storage_data"))
        entries = self.dcp_metadata.get("state_dict_metadata")
        if not isinstance(entries, dict):
            raise self._bad("state_dict_metadata is not a dict")
        self._chunks: dict[str, list[Chunk]] = {}
        self._objects: dict[str, Chunk] = {}
        values: dict[str, StoredValue] = {}
        for fqn, entry in entries.items():
            if not isinstance(fqn, str):
                raise self._bad(f"a value is named {fqn!r:.80}")
            if isinstance(entry, BytesStorageMetadata):
                self._objects[fqn] = self._chunk(storage, fqn, None, (), 0)
            elif isinstance(entry, TensorStorageMetadata):
                values[fqn] = self._tensor(storage, fqn, entry)
            else:
                raise self._bad(f"{fqn!r} is described by {type(entry).__name__}")
        super().__init__(
            store,
            directory,
            name_document(self.format_name, values, version=self.dcp_metadata.get("version")),
        )

    def _bad(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable Distributed Checkpoint: {what}. "
            "The checkpoint is damaged or was not completely written."
        )

    def _storage_index(self, data: Any) -> dict[tuple[str, tuple[int, ...] | None], StorageInfo]:
        if not isinstance(data, dict):
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}: the metadata's storage_data is "
                f"{type(data).__name__}; ckptlab reads checkpoints written by DCP's "
                "FileSystemWriter (torch.distributed.checkpoint.save to a directory)."
            )
        index: dict[tuple[str, tuple[int, ...] | None], StorageInfo] = {}
        for where, info in data.items():
            if not isinstance(where, MetadataIndex) or not isinstance(info, StorageInfo):
                raise self._bad(f"storage_data maps {where!r:.60} to {info!r:.60}")
            offset = where.get("offset")
            index[(where.get("fqn"), None if offset is None else tuple(offset))] = info
        return index

    def _tensor(
        self,
        storage: dict[tuple[str, tuple[int, ...] | None], StorageInfo],
        fqn: str,
        entry: TensorStorageMetadata,
    ) -> StoredValue:
        where = f"Tensor {fqn!r} of {self.store.display(self.path)}"
        dtype = dtype_of(entry.get("properties"), where)
        size = entry.get("size")
        if not isinstance(size, tuple) or not all(type(d) is int for d in size):
            raise self._bad(f"{fqn!r} has size {size!r:.80}")
        shape = check_shape(size, where)
        records = entry.get("chunks")
        if not isinstance(records, list):
            raise self._bad(f"{fqn!r} has chunks {records!r:.80}")
        itemsize = numpy_dtype(dtype).itemsize
        chunks = []
        for record in records:
            region = self._region(record, shape, where)
            nbytes = math.prod(n for _, n in region) * itemsize
            chunks.append(self._chunk(storage, fqn, tuple(s for s, _ in region), region, nbytes))
        check_coverage([c.region for c in chunks], shape, where)
        self._chunks[fqn] = chunks
        files = sorted({c.file for c in chunks})
        first = chunks[0] if chunks else Chunk((), "", 0, 0)
        return StoredValue(
            key=fqn,
            shape=shape,
            dtype=dtype,
            foreign=ForeignLocation(
                format="torch-dcp",
                file=first.file,
                offset=first.offset,
                length=math.prod(shape) * itemsize,
                detail=f"{len(chunks)} chunk(s) in {', '.join(files[:4])}"
                + (", ..." if len(files) > 4 else "")
                + "; each a torch.save archive (zip CRC-32 checked)",
            ),
        )

    def _region(self, record: Any, shape: tuple[int, ...], where: str) -> Region:
        chunk = type(record) is ChunkStorageMetadata
        offsets = getattr(record, "offsets", None) if chunk else None
        sizes = getattr(record, "sizes", None) if chunk else None
        if (
            type(offsets) is not tuple
            or type(sizes) is not tuple
            or not len(offsets) == len(sizes) == len(shape)
            or not all(
                type(o) is int and type(n) is int and o >= 0 and n >= 0 and o + n <= d
                for o, n, d in zip(offsets, sizes, shape, strict=True)
            )
        ):
            raise CorruptCheckpointError(
                f"{where}: a chunk at offsets {offsets!r:.60} of sizes {sizes!r:.60} does not "
                f"fit its shape {list(shape)}. The checkpoint is damaged."
            )
        return tuple(zip(offsets, sizes, strict=True))

    def _chunk(
        self,
        storage: dict[tuple[str, tuple[int, ...] | None], StorageInfo],
        fqn: str,
        offsets: tuple[int, ...] | None,
        region: Region,
        nbytes: int,
    ) -> Chunk:
        info = storage.get((fqn, offsets))
        if info is None:
            raise self._bad(f"no file is recorded for {fqn!r} at offsets {offsets}")
        file = info.get("relative_path")
        key = self._keys.get(file) if isinstance(file, str) else None
        if key is None:
            where = f"{self.store.display(self.path)}/{METADATA_FILE} (for {fqn!r})"
            key = self._keys[file] = safe_member(self.store, self.path, file, where)
        offset, length = info.get("offset"), info.get("length")
        if info.get("transform_descriptors"):
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}/{METADATA_FILE}: {fqn!r} is stored through "
                f"{info.get('transform_descriptors')!r} (a DCP storage extension such as zstd "
                "compression), which ckptlab does not read. Save without extensions, or load it "
                "with torch and save it again."
            )
        if type(offset) is not int or type(length) is not int or offset < 0 or length < nbytes:
            raise self._bad(f"{fqn!r} is at offset {offset!r:.40}, length {length!r:.40}")
        size = self._file_sizes.get(key)
        if size is None:
            found = self.store.size(key)
            if found is None:
                raise NotFoundError(
                    f"{self.store.display(key)} is missing; it holds {fqn!r} of the Distributed "
                    f"Checkpoint {self.store.display(self.path)}. Copy every .distcp file."
                )
            size = self._file_sizes[key] = found
        if offset + length > size:
            raise self._bad(
                f"{fqn!r} is at bytes [{offset}, {offset + length}) of {file}, which has {size}"
            )
        return Chunk(region, file, offset, length)

    def file(self, name: str) -> str:
        """The store key of a file inside the directory."""
        return posixpath.join(self.path, name)

    # -- values --------------------------------------------------------------------------------

    def _window(self, chunk: Chunk) -> ByteRange:
        window = ByteRange(self.store, self.file(chunk.file), chunk.offset, chunk.length)
        window.prefetch(*PREFETCH)  # the pickle and the zip directory
        return window

    def _read_piece(self, key: str, chunk: Chunk, out: np.ndarray[Any, Any]) -> None:
        """Read one chunk's tensor into ``out`` (shaped like the chunk) and check its CRC-32.

        Archives in torch's plain layout (all of them, as DCP writes) are read straight into
        ``out`` and checksummed at once, while the bytes are still in the CPU's cache (a helper
        thread overlapping checksums with reads was slower on a busy 2-core machine: each
        hand-off cost milliseconds); anything else goes through the general torch reader.

        The tensor's bytes are fetched with the rest of the archive in one request (the bytes
        before and after them land in small buffers), at the offset where the previous chunk's
        bytes began (torch lays out every archive of one kind alike), and read again only when
        this archive's layout says otherwise.
        """
        target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
        raw = _stream.raw_bytes(target)
        guess = self._data_start
        window = ByteRange(self.store, self.file(chunk.file), chunk.offset, chunk.length)
        also = (guess, raw) if guess is not None and 0 < len(raw) <= chunk.length - guess else None
        ends = None
        if also is not None and chunk.length - also[0] - len(raw) <= PREFETCH[1]:
            ends = window.around(also[0], raw)  # the whole archive in one request
        head, tail, got = (*ends, len(raw)) if ends else window.prefetch(*PREFETCH, also)
        plain = locate(head, tail, chunk.length)
        if plain is None:
            self._read_archive(key, chunk, TorchFile(window.as_store(), chunk.file), out)
            return
        if plain.shape != out.shape or numpy_dtype(plain.dtype) != out.dtype:
            raise self._mismatch(key, chunk, plain.shape, plain.dtype, out)
        if also is None or plain.start != guess or got != len(raw):
            self.read_bytes(chunk.file, chunk.offset + plain.start, raw, key)
        self._data_start = plain.start
        if crc32(raw) != plain.crc32:
            raise self.damaged(
                key,
                f"the chunk at {chunk.file}[{chunk.offset}] fails its zip CRC-32 (its bytes "
                "changed after they were written)",
            )
        if target is not out:
            out[...] = target

    def _mismatch(
        self, key: str, chunk: Chunk, shape: tuple[int, ...], dtype: str, out: np.ndarray[Any, Any]
    ) -> CorruptCheckpointError:
        return self.damaged(
            key,
            f"the archive at {chunk.file}[{chunk.offset}] holds a {list(shape)} {dtype} tensor; "
            f"the metadata says {list(out.shape)} {out.dtype}",
        )

    def _read_archive(
        self, key: str, chunk: Chunk, archive: TorchFile, out: np.ndarray[Any, Any]
    ) -> None:
        """The general path: any ``torch.save`` archive, through the torch reader."""
        stored = archive.document.values.get("value")
        if stored is None or len(archive.document.values) != 1:
            raise self.damaged(key, f"the archive at {chunk.file}[{chunk.offset}] is not a tensor")
        if stored.shape != out.shape or numpy_dtype(stored.dtype) != out.dtype:
            raise self._mismatch(key, chunk, stored.shape, stored.dtype, out)
        if out.flags.c_contiguous:
            archive.read("value", out)
        else:
            out[...] = archive.read("value")

    def read_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Fresh arrays of ``keys``, each chunk checked against its CRC-32 (see :meth:`_fill`)."""
        values = [self.stored(key) for key in dict.fromkeys(keys)]
        arrays = {value.key: self.allocate(value) for value in values}
        self._fill([piece for value in values for piece in self._pieces(value, arrays[value.key])])
        return arrays

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        target = out if out is not None else self.allocate(value)
        self._fill(self._pieces(value, target))
        return target

    def _pieces(self, value: StoredValue, target: np.ndarray[Any, Any]) -> list[Piece]:
        """Each chunk of ``value`` with the part of ``target`` it fills."""
        pieces: list[Piece] = []
        for chunk in self._chunks[value.key]:
            # the trailing ... keeps a 0-d target a view (target[()] would be a scalar)
            index: tuple[Any, ...] = (*region_slices(chunk.region), Ellipsis)
            pieces.append((value.key, chunk, target[index]))
        return pieces

    def _fill(self, pieces: list[Piece]) -> None:
        """Read and check ``pieces``; local ones of :data:`SPLIT_BYTES` and more on two threads.

        Each thread reads and checks whole chunks, half of the bytes each: the copy and the
        checksum are both memory-bound, and on one thread the checksum cannot hide behind the
        read.  The second half goes to the process's waiting helper thread.
        """
        ends = list(itertools.accumulate(out.nbytes for _, _, out in pieces))
        if not (
            len(pieces) > 1
            and isinstance(self.store, LocalStore)
            and _stream.two_threads(ends[-1], SPLIT_BYTES)
        ):
            self._read_pieces(pieces)
            return
        half = min(bisect.bisect_left(ends, ends[-1] / 2) + 1, len(pieces) - 1)
        _stream.in_two_halves(
            functools.partial(self._read_pieces, pieces[:half]),
            functools.partial(self._read_pieces, pieces[half:]),
        )

    def _read_pieces(self, pieces: list[Piece]) -> None:
        for key, chunk, out in pieces:
            self._read_piece(key, chunk, out)

    def read_region(
        self, key: str, region: Sequence[slice | tuple[int, int]]
    ) -> np.ndarray[Any, Any]:
        """Part of a tensor, reading only the chunks it overlaps.

        ``region`` gives, per dimension, a ``slice`` (step 1) or a ``(start, stop)`` pair.

        Examples
        --------
        ``reader.read_region("model.embed.weight", (slice(0, 1024), slice(None)))`` reads the
        first 1,024 rows from the ranks that saved them.
        """
        value = self.stored(key)
        bounds = _bounds(region, value.shape, key)
        out = np.empty([stop - start for start, stop in bounds], numpy_dtype(value.dtype))
        if not out.size:
            return out
        for chunk in self._chunks[key]:
            overlap = [
                (max(start, c_start), min(stop, c_start + c_size))
                for (start, stop), (c_start, c_size) in zip(bounds, chunk.region, strict=True)
            ]
            if any(low >= high for low, high in overlap):
                continue
            shape = tuple(n for _, n in chunk.region)
            data = np.empty(shape, numpy_dtype(value.dtype))
            self._read_piece(key, chunk, data)
            inside = tuple(
                slice(low - c_start, high - c_start)
                for (low, high), (c_start, _) in zip(overlap, chunk.region, strict=True)
            )
            at = tuple(
                slice(low - start, high - start)
                for (low, high), (start, _) in zip(overlap, bounds, strict=True)
            )
            out[at] = data[inside]
        return out

    @cached_property
    def nested_names(self) -> dict[str, str]:
        """Flattened name -> the ``/``-joined path of the dict it was saved from.

        DCP flattens ``{"model": m.state_dict(), "optimizer": o.state_dict()}`` into
        ``model.0.weight`` and ``optimizer.state.0.exp_avg`` and records each original path in
        ``planner_data``; the path ``model/0.weight``, ``optimizer/state/0/exp_avg`` is the name
        the ``torch.save`` reader gives the same dict, so name-based restores treat both alike.
        """
        return {key: "/".join(map(str, path)) for key, path in self._paths.items()}

    @cached_property
    def _paths(self) -> dict[str, tuple[str | int, ...]]:
        """Flattened name -> its path in ``planner_data`` (the default planner's), if valid."""
        planner = self.dcp_metadata.get("planner_data")
        if not isinstance(planner, dict):
            return {}
        return {
            key: path
            for key, path in planner.items()
            if isinstance(key, str)
            and isinstance(path, tuple)
            and path
            and all(type(p) in (str, int) for p in path)
        }

    @cached_property
    def nested_containers(self) -> dict[str, Container]:
        """The dicts and lists DCP flattened, by the names of :attr:`nested_names`.

        ``planner_data`` gives each value's path: a list's positions as integers, a dict's
        keys as their ``str()`` (``Container.text_keys``: which were integers is not
        recorded).  A container whose entries are neither all positions ``0..n-1`` nor all
        text is left out (rebuilt as a dict of the names below it, as without the paths).
        """
        below: dict[str, dict[str | int, None]] = {}
        for path in self._paths.values():
            for depth, part in enumerate(path):
                below.setdefault("/".join(map(str, path[:depth])), {})[part] = None
        found = {}
        for name, parts in below.items():
            entries = tuple((p, str(p)) for p in parts)
            if all(type(p) is str for p in parts):
                found[name] = Container(kind="dict", entries=entries, text_keys=True)
            elif parts.keys() == set(range(len(parts))):
                found[name] = Container(kind="list", entries=tuple(sorted(entries)))
        return found

    @cached_property
    def literals(self) -> dict[str, Any]:
        """The non-tensor values (numbers, strings, ...) by flattened name, read on first use."""
        found = {}
        for fqn, chunk in self._objects.items():
            archive = TorchFile(self._window(chunk).as_store(), chunk.file)
            found[fqn] = archive.literals.get("value", archive.literals or None)
        return found


def _bounds(
    region: Sequence[slice | tuple[int, int]], shape: tuple[int, ...], key: str
) -> list[tuple[int, int]]:
    if len(region) != len(shape):
        raise ValueError(f"{key!r} has {len(shape)} dimensions; the region gives {len(region)}")
    bounds = []
    for item, dim in zip(region, shape, strict=True):
        if isinstance(item, slice):
            start, stop, step = item.indices(dim)
            if step != 1:
                raise ValueError(f"regions are contiguous: step {step} in {item}")
        else:
            start, stop = (int(v) for v in item)
        if not 0 <= start <= stop <= dim:
            raise ValueError(f"[{start}, {stop}) is outside a dimension of {dim} in {key!r}")
        bounds.append((start, stop))
    return bounds
