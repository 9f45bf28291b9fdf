"""Reading a checkpoint: the document, then values straight into their destination (internal).

Every object's size is checked against the document before anything is allocated, bytes are
read with scatter reads straight into the destination arrays (the padding and checksum trailer
of a chunk land in a small scratch buffer), every value is checked against its crc32c, and every
failure names the key and the stored object (FORMAT.md, "Reading").
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import crc32c
import numpy as np
import orjson

from ckptlab.core import (
    ITEMSIZE,
    CheckpointDocument,
    StoredValue,
    ValueSpec,
    ValueTable,
    gc_paused,
    parse_document,
    parse_listing,
)
from ckptlab.errors import CkptlabError, CorruptCheckpointError, NotFoundError
from ckptlab.storage._kv import ByteStore, LocalStore
from ckptlab.storage._layout import ROOT_DOCUMENT, chunk_grid, chunk_key, numpy_dtype
from ckptlab.storage._missing import not_found
from ckptlab.storage._progress import Progress
from ckptlab.storage._stream import raw_bytes
from ckptlab.storage._values import LOCAL_GAP, REMOTE_GAP, PackedValues, ValueReader

MAX_DOCUMENT_BYTES = 256 * 2**20
"""Root documents larger than this are refused (a 100,000-value checkpoint needs about 20 MB)."""
BATCH_BYTES = 64 * 2**20
"""Bytes requested from the store per batch (progress granularity)."""


@dataclass(slots=True)
class _Request:
    """One scatter read, and what to check once it is done."""

    name: str
    offset: int
    buffers: list[memoryview]
    checks: list[tuple[StoredValue, Any]] = field(default_factory=list)
    value: StoredValue | None = None
    """A value this read serves (named in errors)."""

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.buffers)


class StoredCheckpoint:
    """An open checkpoint: its document, and verified reads of its values.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> source = open_checkpoint(*ck.storage.resolve(path))
    >>> source.read_many(["w/.ATTRIBUTES/VARIABLE_VALUE"])["w/.ATTRIBUTES/VARIABLE_VALUE"]
    array([1., 2.])
    """

    def __init__(
        self,
        store: ByteStore,
        path: str,
        document: CheckpointDocument,
        *,
        progress: bool = True,
        checksum: int | None = None,
    ) -> None:
        self.store = store
        self.path = path
        self.document = document
        self.progress = progress
        """Show a progress bar for reads that take more than about a second."""
        self.checksum = checksum
        """The CRC-32C of the root ``zarr.json`` bytes :attr:`document` was parsed from (as
        :func:`document_checksum`), or ``None`` (a foreign checkpoint, a derived view)."""
        self._sizes: dict[str, int | None] = {}

    @property
    def display_path(self) -> str:
        """The path or URL as the user would write it."""
        return self.store.display(self.path)

    def specs(self) -> dict[str, ValueSpec]:
        """Shape and dtype of every stored value, by key (equal specs are one shared object)."""
        shared: dict[tuple[tuple[int, ...], str], ValueSpec] = {}
        out = {}
        values = self.document.values
        listing = (
            values.listing()
            if isinstance(values, ValueTable)
            else [(k, v.shape, v.dtype) for k, v in values.items()]
        )
        for key, shape, dtype in listing:
            spec = shared.get((shape, dtype))
            if spec is None:
                spec = shared[shape, dtype] = ValueSpec(shape=shape, dtype=dtype)
            out[key] = spec
        return out

    def listing(self) -> list[tuple[str, tuple[int, ...], str]]:
        """``(key, shape, dtype)`` of every stored value (readers of big files answer faster)."""
        return [(v.key, v.shape, v.dtype) for v in self.document.values.values()]

    def stored(self, key: str) -> StoredValue:
        """Metadata of one value; :class:`NotFoundError` if the key is absent."""
        value = self.document.values.get(key)
        if value is None:
            raise NotFoundError(
                f"Key {key!r} not found in checkpoint {self.display_path}. Keys name a value in "
                "full, e.g. 'model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE'; "
                "ck.list_variables(path) lists them."
            )
        return value

    def same_value(self, a: str, b: str) -> bool:
        """Whether keys ``a`` and ``b`` hold the same value: shape, dtype and bytes (verified).

        Readers that know two keys share their bytes (a torch file's tied tensors) answer
        without reading.
        """
        first, second = self.stored(a), self.stored(b)
        if (first.shape, first.dtype) != (second.shape, second.dtype):
            return False
        values = self.read_many([a, b])
        x, y = values[a], values[b]
        if x.dtype.kind == "O":  # strings
            return bool(x.tolist() == y.tolist())
        return bool(np.array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8)))

    def batches(self, keys: Iterable[str], nbytes: int) -> Iterator[list[str]]:
        """``keys`` in order, in lists of at most ``nbytes`` stored bytes (a larger value alone).

        For reading many values a batch at a time (:meth:`read_many` each), so that memory stays
        about one batch and each batch costs a few requests rather than one per value.
        """
        batch: list[str] = []
        size = 0
        for key in keys:
            value_bytes = self.stored(key).nbytes
            if batch and size + value_bytes > nbytes:
                yield batch
                batch, size = [], 0
            batch.append(key)
            size += value_bytes
        if batch:
            yield batch

    # -- reading values ---------------------------------------------------------------------

    def open_values(self) -> ValueReader:
        """A :class:`ValueReader`: verify values, read them, or copy them into your buffers.

        Use it as a context manager; it holds the stored files open until it is closed.
        """
        if isinstance(self.document.values, ValueTable):
            return PackedValues(self, self.document.values, self.document.crc_block)
        return ValueReader(self)

    def read(self, key: str, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """Read one value, verified, into ``out`` (allocated when ``None``)."""
        return self.read_many([key], None if out is None else {key: out})[key]

    def read_many(
        self, keys: Iterable[str], outs: Mapping[str, np.ndarray[Any, Any]] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Read several values, verified; ``outs`` arrays (by key) are filled instead of new ones.

        Every value is verified before any ``outs`` array is written, so a damaged checkpoint
        leaves them as they were.  ``outs`` arrays must be writable and C-contiguous with the
        stored shape and dtype.

        Raises
        ------
        NotFoundError
            A key is not in the checkpoint.
        CorruptCheckpointError
            A stored object is missing, has the wrong size, or fails its checksum.
        ValueError
            An ``outs`` array does not fit its value.
        """
        with self.open_values() as values:
            return values.read_many(keys, outs)

    def read_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Fresh arrays holding ``keys``, verified (versions 1-2 and foreign formats).

        Sizes are checked for every value before any array is allocated; a packed array's
        values are fetched with few requests (neighbours share one); a progress bar appears
        for long reads.
        """
        values = [self.stored(k) for k in dict.fromkeys(keys)]
        if any(v.foreign is not None for v in values):  # foreign readers override read()
            return {v.key: self.read(v.key) for v in values}
        own = [v for v in values if v.offset is None]
        packed: dict[str, list[StoredValue]] = defaultdict(list)
        for value in values:
            if value.offset is not None and value.size:
                packed[value.array].append(value)
        for value in own:
            self._check_sizes(value)
        for array, members in packed.items():
            self._check_pack_sizes(array, members)
        arrays = {v.key: np.empty(v.shape, dtype=numpy_dtype(v.dtype)) for v in values}
        requests: list[_Request] = []
        for value in own:
            if not value.size:
                continue
            assert value.chunks is not None
            if value.chunks[1:] == value.shape[1:]:
                requests += self._own_requests(value, raw_bytes(arrays[value.key]))
            else:
                self._read_own_general(value, arrays[value.key])
        checks: list[tuple[StoredValue, memoryview]] = []
        for array, members in packed.items():
            views = [(v, raw_bytes(arrays[v.key])) for v in members]
            requests += self._packed_requests(array, views)
            checks += views
        self._run(requests, sum(a.nbytes for a in arrays.values()))
        for value, raw in checks:
            if crc32c.crc32c(raw) != value.crc32c[0]:
                raise self._fail(value, f"checksum mismatch in {value.array}")
        return arrays

    def _run(self, requests: list[_Request], total: int) -> None:
        name = posixpath.basename(self.path)
        with Progress(total, f"reading {name}", enabled=self.progress) as bar:
            start = 0
            while start < len(requests):
                stop, size = start, 0
                while stop < len(requests) and (size < BATCH_BYTES or stop == start):
                    size += requests[stop].nbytes
                    stop += 1
                batch = requests[start:stop]
                try:
                    counts = self.store.read_ranges(
                        [(self._file(r.name), r.offset, r.buffers) for r in batch]
                    )
                except NotFoundError:
                    missing = next(r for r in batch if self.store.size(self._file(r.name)) is None)
                    raise self._fail(_named(missing), f"object {missing.name} is missing") from None
                for request, count in zip(batch, counts, strict=True):
                    if count != request.nbytes:
                        raise self._fail(
                            _named(request),
                            f"object {request.name} ended after {request.offset + count} bytes",
                        )
                    for value, check in request.checks:
                        check(value, request)
                bar.update(size)
                start = stop

    def _own_requests(self, value: StoredValue, raw: memoryview) -> list[_Request]:
        assert value.chunks is not None
        itemsize = value.nbytes // value.size
        chunk_bytes = math.prod(value.chunks) * itemsize
        row_bytes = value.nbytes // value.shape[0] if value.shape else value.nbytes
        step = (value.chunks[0] if value.shape else 1) * row_bytes
        requests = []
        for index in range(chunk_grid(value.shape, value.chunks)[0] if value.shape else 1):
            name = chunk_key(
                value.array, (index, *([0] * (len(value.shape) - 1))) if value.shape else ()
            )
            target = raw[index * step : (index + 1) * step]
            tail = memoryview(bytearray(chunk_bytes - len(target) + 4))
            request = _Request(name, 0, [target, tail])
            request.checks.append((value, self._check_own_chunk(index)))
            requests.append(request)
        return requests

    def _check_own_chunk(self, index: int) -> Any:
        def check(value: StoredValue, request: _Request) -> None:
            target, tail = request.buffers
            crc = crc32c.crc32c(tail[:-4], crc32c.crc32c(target))
            self._verify(value, request.name, crc, bytes(tail[-4:]), value.crc32c[index])

        return check

    def _packed_requests(
        self, array: str, members: list[tuple[StoredValue, memoryview]]
    ) -> list[_Request]:
        """Scatter reads covering ``members``; neighbours closer than the gap share one."""
        pack = self.document.packs[array]
        itemsize = ITEMSIZE[pack.dtype]
        chunk_bytes = pack.chunk * itemsize
        gap = LOCAL_GAP if isinstance(self.store, LocalStore) else REMOTE_GAP
        pieces: list[tuple[int, int, memoryview, StoredValue]] = []  # chunk, offset in it, ...
        for value, raw in members:
            assert value.offset is not None
            start = value.offset * itemsize
            index, within = divmod(start, chunk_bytes)
            if within + len(raw) <= chunk_bytes:
                pieces.append((index, within, raw, value))
                continue
            done = 0
            while done < len(raw):
                index, within = divmod(start + done, chunk_bytes)
                count = min(len(raw) - done, chunk_bytes - within)
                pieces.append((index, within, raw[done : done + count], value))
                done += count
        pieces.sort(key=lambda p: (p[0], p[1]))
        requests: list[_Request] = []
        current: _Request | None = None
        last_index, end = -1, 0
        for index, within, view, value in pieces:
            if current is None or index != last_index or within < end or within - end > gap:
                current = _Request(chunk_key(array, (index,)), within, [], value=value)
                requests.append(current)
                last_index = index
            elif within > end:
                current.buffers.append(memoryview(bytearray(within - end)))
            current.buffers.append(view)
            end = within + len(view)
        return requests

    def _read_own_general(self, value: StoredValue, out: np.ndarray[Any, Any]) -> None:
        """Chunks split along several axes (not written by ckptlab, but valid Zarr)."""
        assert value.chunks is not None
        dtype = numpy_dtype(value.dtype)
        grid = chunk_grid(value.shape, value.chunks)
        for number, index in enumerate(np.ndindex(*grid)):
            name = chunk_key(value.array, tuple(index))
            data = self._read_chunk(value, name)
            self._verify(value, name, crc32c.crc32c(data[:-4]), data[-4:], value.crc32c[number])
            chunk = np.frombuffer(data[:-4], dtype=dtype).reshape(value.chunks)
            region = tuple(
                slice(i * c, min((i + 1) * c, d))
                for i, c, d in zip(index, value.chunks, value.shape, strict=True)
            )
            out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]

    def _read_chunk(self, value: StoredValue, name: str) -> bytes:
        try:
            return self.store.read(self._file(name))
        except NotFoundError:
            raise self._fail(value, f"object {name} is missing") from None

    # -- checks -----------------------------------------------------------------------------

    def _fail(self, value: StoredValue, what: str) -> CkptlabError:
        return self.unreadable(value.key, what, value.array)

    def unreadable(self, key: str, what: str, where: str) -> CkptlabError:
        """The error for a value that failed its checks: damaged, or no longer this checkpoint.

        A restore that waits (values kept for objects not created yet, a lazy restore) reads
        from the checkpoint it opened; if that was deleted (a manager's ``max_to_keep``) or
        written again at the same path since, the value's bytes are gone or others, and
        the checkpoint is not damaged.  That is a :class:`NotFoundError` saying so.
        """
        change = ""
        try:
            now = read_document(self.store, self.path)
        except NotFoundError:
            change = "was deleted (by a CheckpointManager's max_to_keep, or by hand)"
        except CkptlabError:
            pass  # damaged, document and all
        else:
            if now.values.get(key) != self.document.values.get(key):
                change = "was written again (another save or write to the same path)"
        if change:
            return NotFoundError(
                f"Value {key!r} cannot be read from checkpoint {self.display_path}: the "
                f"checkpoint {change} after it was opened. A restore still waiting for objects "
                "to be created, or a lazy restore, reads the checkpoint it opened. Restore "
                "again from a checkpoint that exists (ck.latest_checkpoint(directory))."
            )
        return CorruptCheckpointError(
            f"Value {key!r} in checkpoint {self.display_path} is damaged: {what} "
            f"(stored in {where}). Restore from another checkpoint; "
            "ckptlab.storage.verify_checkpoint checks every value."
        )

    def _file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def _chunk_sizes(self, value: StoredValue) -> list[tuple[str, int]]:
        """``(object, expected size)`` of every chunk of an own array."""
        if value.size == 0:
            return []
        itemsize = value.nbytes // value.size
        assert value.chunks is not None
        chunk_bytes = math.prod(value.chunks) * itemsize + 4
        return [
            (chunk_key(value.array, tuple(i)), chunk_bytes)
            for i in np.ndindex(*chunk_grid(value.shape, value.chunks))
        ]

    def _check_pack_sizes(self, array: str, members: list[StoredValue]) -> None:
        """Check every chunk of ``array`` that ``members`` touch, once each."""
        pack = self.document.packs[array]
        expected = pack.chunk * ITEMSIZE[pack.dtype] + 4
        first: dict[int, StoredValue] = {}
        for value in members:
            assert value.offset is not None
            low = value.offset // pack.chunk
            high = (value.offset + value.size - 1) // pack.chunk
            for index in range(low, high + 1):
                first.setdefault(index, value)
        for index in sorted(first):
            self._expect_size(first[index], chunk_key(array, (index,)), expected)

    def _expect_size(self, value: StoredValue, name: str, expected: int) -> None:
        if name not in self._sizes:
            self._sizes[name] = self.store.size(self._file(name))
        found = self._sizes[name]
        if found is None:
            raise self._fail(value, f"object {name} is missing")
        if found != expected:
            raise self._fail(value, f"object {name} holds {found} bytes, expected {expected}")

    def _check_sizes(self, value: StoredValue) -> None:
        """Check the objects hold what the document says, before allocating anything."""
        for name, expected in self._chunk_sizes(value):
            self._expect_size(value, name, expected)

    def _verify(
        self, value: StoredValue, name: str, crc: int, trailer: bytes, expected: int
    ) -> None:
        if crc != int.from_bytes(trailer, "little") or crc != expected:
            raise self._fail(value, f"checksum mismatch in {name}")


def _named(request: _Request) -> StoredValue:
    return request.value if request.value is not None else request.checks[0][0]


def read_document(store: ByteStore, path: str, raw: bytes | None = None) -> CheckpointDocument:
    """Read and validate the checkpoint document at ``path`` (one object read).

    ``raw``: the root ``zarr.json``'s bytes, read already (then nothing is read).
    """
    with gc_paused():
        return parse_document(_read_root(store, path, raw), store.display(path))


def read_listing(store: ByteStore, path: str) -> list[tuple[str, tuple[int, ...], str]]:
    """``(key, shape, dtype)`` of every value at ``path``, validating only what a listing needs.

    The object graph is not parsed, so listing a 100,000-value checkpoint stays fast.
    Foreign checkpoints (no ``zarr.json``) are opened and listed in full.
    """
    if store.size(posixpath.join(path, ROOT_DOCUMENT)) is None:
        return open_checkpoint(store, path, progress=False).listing()
    with gc_paused():
        return parse_listing(_read_root(store, path), store.display(path))


def document_checksum(store: ByteStore, path: str) -> int | None:
    """The CRC-32C of the root ``zarr.json`` at ``path``: what identifies that checkpoint.

    The document holds every value's checksums (FORMAT.md section 2.1), so a checkpoint
    written again at ``path`` with other values has another one.  One size check and one
    read, nothing parsed.

    Returns
    -------
    int or None
        ``None`` when there is no root document (nothing there, a foreign checkpoint, one
        deleted meanwhile) or one too large to be a checkpoint's.
    """
    try:
        raw = _root_bytes(store, path)
    except (FileNotFoundError, CorruptCheckpointError):
        return None
    return None if raw is None else int(crc32c.crc32c(raw))


def _root_bytes(store: ByteStore, path: str) -> bytes | None:
    """The root ``zarr.json`` at ``path`` (``None``: there is none); too large ones unread."""
    root = posixpath.join(path, ROOT_DOCUMENT)
    size = store.size(root)
    if size is None:
        return None
    if size > MAX_DOCUMENT_BYTES:
        raise CorruptCheckpointError(
            f"{store.display(root)} is {size} bytes; ckptlab refuses documents over "
            f"{MAX_DOCUMENT_BYTES} bytes. The file is damaged or not a ckptlab checkpoint."
        )
    return store.read(root)


def _read_root(store: ByteStore, path: str, raw: bytes | None = None) -> Any:
    """The untrusted ``ckptlab`` attribute of the root ``zarr.json`` (``raw``: its bytes)."""
    raw = _root_bytes(store, path) if raw is None else raw
    if raw is None:
        raise not_found(store, path)
    root = posixpath.join(path, ROOT_DOCUMENT)
    try:
        metadata = orjson.loads(raw)
    except ValueError as error:  # orjson's JSONDecodeError (UTF-8 and depth errors included)
        raise CorruptCheckpointError(
            f"{store.display(root)} is not valid JSON ({str(error)[:200]}). The checkpoint is "
            "damaged; restore from another checkpoint."
        ) from None
    if (
        not isinstance(metadata, dict)
        or metadata.get("node_type") != "group"
        or metadata.get("zarr_format") != 3
    ):
        raise CorruptCheckpointError(
            f"{store.display(root)} is not a Zarr v3 group document; expected "
            '{"zarr_format": 3, "node_type": "group", ...}.'
        )
    attributes = metadata.get("attributes")
    if not isinstance(attributes, dict) or "ckptlab" not in attributes:
        raise NotFoundError(
            f"{store.display(path)} is a Zarr group but not a ckptlab checkpoint (its zarr.json "
            "has no 'ckptlab' attribute). Pass the path that save() or write() returned."
        )
    return attributes["ckptlab"]


def open_checkpoint(store: ByteStore, path: str, *, progress: bool = True) -> StoredCheckpoint:
    """Open the checkpoint at ``path``; errors say what is there instead and what to do.

    Raises
    ------
    NotFoundError
        Nothing committed at ``path`` (the message suggests what was meant).
    CorruptCheckpointError
        The document does not parse or validate.
    UnsupportedFormatError
        A ``format_version`` this ckptlab cannot read.
    """
    found = find_checkpoint(store, path, progress=progress)
    if found is None:
        raise not_found(store, path)
    return found


def find_checkpoint(
    store: ByteStore, path: str, *, progress: bool = True
) -> StoredCheckpoint | None:
    """The checkpoint at ``path``, or ``None`` where nothing there is recognised as one.

    ``None`` where :func:`open_checkpoint` raises that nothing is there: no ckptlab document
    (``zarr.json``), and no file or directory a foreign reader recognises.  Anything recognised
    opens or raises its own error (a missing shard, a link out of the directory, damage), so a
    caller can tell "not a checkpoint" from "a checkpoint that cannot be opened".

    Raises
    ------
    NotACheckpointError
        ``path`` is a file of no format ckptlab reads, or a directory of several checkpoints
        with nothing joining them (several weights files and no index).
    CkptlabError
        As :func:`open_checkpoint`, for a checkpoint recognised but unreadable.
    """
    raw = _root_bytes(store, path)
    if raw is None:
        from ckptlab.storage._foreign import open_foreign  # TF, PyTorch, safetensors

        return open_foreign(store, path)
    document = read_document(store, path, raw)
    checksum = int(crc32c.crc32c(raw))  # of the bytes parsed: a replacement has another one
    return StoredCheckpoint(store, path, document, progress=progress, checksum=checksum)
