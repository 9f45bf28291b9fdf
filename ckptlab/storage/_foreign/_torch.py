"""``torch.save`` files, zip (PyTorch >= 1.6) and legacy, read without torch (internal).

The pickle runs through :mod:`._unpickle` (allow-listed stand-ins only).  Tensors become keys
(nested containers joined with ``/``, e.g. ``model/fc1.weight``); other values are kept in
``literals``.  Storage bytes are read on demand: zip members straight from the file (STORED) or
inflated with a hard cap (DEFLATED), legacy records by walking their length prefixes
(docs/foreign-formats.md §11).
"""

from __future__ import annotations

import io
import math
import posixpath
import struct
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckptlab.core import CheckpointDocument, ForeignLocation, StoredValue
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape
from ckptlab.storage._foreign._unpickle import StorageRef, StorageType, TensorRef, load_pickle
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype

MAX_PICKLE = 256 * 2**20
MAX_INFLATED = 2**30
"""A deflated storage member may inflate to at most this many bytes (and exactly its size)."""
MAX_CACHED = 256 * 2**20
"""Inflated storages kept for the next tensor that views them (least recently used dropped)."""
MAX_MEMBERS = 1 << 20
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class StoreFile(io.RawIOBase):
    """A read-only, seekable file over one object of a :class:`ByteStore`."""

    def __init__(self, store: ByteStore, key: str, size: int) -> None:
        self.store, self.key, self.length, self.position = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.position, self.length)[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: max(0, self.length - self.position)]
        count = self.store.read_into(self.key, view, self.position) if len(view) else 0
        self.position += count
        return count


class TorchFile(ForeignCheckpoint):
    """An open ``torch.save`` file (kind ``name``); ``literals`` holds the non-tensor values."""

    def __init__(self, store: ByteStore, path: str) -> None:
        self.store = store
        self.path = path
        self._size = store.size(path) or 0
        self._storages: dict[str, StorageRef] = {}
        self._spans: dict[str, tuple[int, int, zipfile.ZipInfo | None]] = {}
        """Storage key -> (byte offset in the file, byte length, member when inflated)."""
        self._zip: zipfile.ZipFile | None = None
        self._inflated: OrderedDict[str, bytes] = OrderedDict()
        self._inflated_lock = threading.Lock()
        raw = self._open_file()
        head = raw.read(4)
        raw.seek(0)
        if head == b"PK\x03\x04":
            self.format_name, self.kind = "PyTorch checkpoint (torch.save, zip)", "torch-zip"
            obj = self._load_zip(raw)
        else:
            self.format_name, self.kind = "PyTorch checkpoint (torch.save, legacy)", "torch-legacy"
            obj = self._load_legacy(raw)
        found = _Found()
        _flatten(obj, "", found)
        self.tensors = found.tensors
        self.literals = found.literals
        """Non-tensor values (numbers, strings, dtypes, ...) by path."""
        self.metadata = found.metadata
        """The ``_metadata`` of every state_dict, by its path (``""`` for the top level)."""
        values = {k: self._describe(k, t) for k, t in self.tensors.items()}
        document = CheckpointDocument(
            format_version=0,
            kind="name",
            graph=None,
            values=values,
            writer={"format": self.format_name},
        )
        super().__init__(store, path, document)

    def _open_file(self) -> io.BufferedReader:
        return io.BufferedReader(StoreFile(self.store, self.path, self._size), 1 << 16)

    def _bad_file(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable torch.save file: {what}."
        )

    # -- zip -----------------------------------------------------------------------------------

    def _load_zip(self, raw: io.BufferedReader) -> Any:
        try:
            archive = zipfile.ZipFile(raw)
            members = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            raise self._bad_file(f"the zip archive is damaged ({error})") from None
        if len(members) > MAX_MEMBERS:
            raise self._bad_file(f"{len(members)} zip members")
        names = {m.filename: m for m in members}
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pickles) != 1:
            raise self._bad_file(f"expected one '<name>/data.pkl' member, found {pickles[:5]}")
        root = pickles[0][: -len("data.pkl")]
        if any(n.startswith((f"{root}code/", f"{root}constants.pkl")) for n in names):
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)} is a TorchScript archive (torch.jit.save); "
                "ckptlab reads torch.save files. Save the module's state_dict instead."
            )
        order = names.get(f"{root}byteorder")
        if order is not None and self._member(archive, order, 16).strip() != b"little":
            raise UnsupportedFormatError(f"{self.store.display(self.path)} was written big-endian.")
        self._zip = archive
        self._root = root
        data = self._member(archive, names[pickles[0]], MAX_PICKLE)
        return load_pickle(io.BytesIO(data), self.store.display(self.path), self._zip_storage)

    def _member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Read a whole member: exactly its declared size, which may not exceed ``limit``."""
        if info.file_size > limit:
            raise self._bad_file(
                f"member {info.filename} declares {info.file_size} bytes (limit {limit})"
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}: member {info.filename} uses zip compression "
                f"{info.compress_type}; ckptlab reads stored and deflated members."
            )
        try:
            with archive.open(info) as handle:
                # zipfile inflates no further than the declared size, then checks the crc32
                data = handle.read(info.file_size)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise self._bad_file(f"member {info.filename} is damaged ({error})") from None
        if len(data) != info.file_size:
            raise self._bad_file(
                f"member {info.filename} holds {len(data)} bytes; its header declares "
                f"{info.file_size}"
            )
        return data

    def _zip_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        _, kind, key, _location, count = pid[:5]
        key = str(key)
        if not isinstance(kind, StorageType) or type(count) is not int or count < 0:
            raise self._bad_file(f"storage id {pid!r:.80}")
        # The pickle says how big the storage is: elements of its dtype, or bytes if untyped.
        nbytes = count * (numpy_dtype(kind.dtype).itemsize if kind.dtype else 1)
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = StorageRef(key, kind.dtype, count)
            assert self._zip is not None
            info = self._zip.NameToInfo.get(f"{self._root}data/{key}")
            if info is None:
                raise self._bad_file(f"storage data/{key} is missing")
            self._spans[key] = self._zip_span(info, nbytes)
        elif self._spans[key][1] != nbytes:
            raise self._bad_file(
                f"the pickle describes storage data/{key} once as {self._spans[key][1]} bytes "
                f"and once as {nbytes}"
            )
        return ref

    def _zip_span(
        self, info: zipfile.ZipInfo, nbytes: int
    ) -> tuple[int, int, zipfile.ZipInfo | None]:
        if info.file_size != nbytes:
            raise self._bad_file(
                f"member {info.filename} declares {info.file_size} bytes; the pickle's storage "
                f"holds {nbytes}"
            )
        if info.compress_type != zipfile.ZIP_STORED:
            if nbytes > MAX_INFLATED:
                raise self._bad_file(
                    f"compressed member {info.filename} declares {nbytes} bytes (ckptlab "
                    f"inflates at most {MAX_INFLATED})"
                )
            return 0, nbytes, info
        header = bytearray(30)
        self.read_bytes(
            posixpath.basename(self.path), info.header_offset, memoryview(header), info.filename
        )
        if header[:4] != b"PK\x03\x04":
            raise self._bad_file(f"member {info.filename} has no local header")
        name_length, extra_length = struct.unpack_from("<HH", header, 26)
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > self._size:
            raise self._bad_file(f"member {info.filename} runs past the end of the file")
        return start, info.file_size, None

    # -- legacy --------------------------------------------------------------------------------

    def _load_legacy(self, raw: io.BufferedReader) -> Any:
        where = self.store.display(self.path)
        try:
            magic = load_pickle(raw, where, self._no_storage)
            protocol = load_pickle(raw, where, self._no_storage)
            info = load_pickle(raw, where, self._no_storage)
        except CorruptCheckpointError:
            magic = None
        if magic != LEGACY_MAGIC or protocol != 1001 or not isinstance(info, dict):
            raise UnsupportedFormatError(
                f"{where} is neither a zip nor a legacy torch.save file (no magic number); very "
                "old tar-based files are not supported."
            )
        if not info.get("little_endian", True):
            raise UnsupportedFormatError(f"{where} was written big-endian.")
        obj = load_pickle(raw, where, self._legacy_storage)
        keys = load_pickle(raw, where, self._no_storage)
        if not isinstance(keys, list):
            raise self._bad_file("the storage key list is missing")
        self._legacy_spans([str(k) for k in keys], raw.tell())
        return obj

    def _no_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        raise self._bad_file("a storage reference outside the object pickle")

    def _legacy_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        _, kind, key, _location, count = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(kind, StorageType) or kind.dtype is None or type(count) is not int:
            raise self._bad_file(f"storage id {pid!r:.80}")
        root = self._storages.setdefault(str(key), StorageRef(str(key), kind.dtype, count))
        if view is None:
            return root
        view_key, base, view_count = view
        self._storages.setdefault(str(view_key), root)
        return StorageRef(root.key, root.dtype, view_count, base=int(base))

    def _legacy_spans(self, keys: list[str], position: int) -> None:
        for key in keys:
            ref = self._storages.get(key)
            if ref is None or ref.dtype is None:
                raise self._bad_file(f"storage {key} is listed but never used")
            count_bytes = bytearray(8)
            self.read_bytes(posixpath.basename(self.path), position, memoryview(count_bytes), key)
            count = int.from_bytes(count_bytes, "little")
            length = count * numpy_dtype(ref.dtype).itemsize
            if count != ref.count or position + 8 + length > self._size:
                raise self._bad_file(f"storage {key} holds {count} elements at byte {position}")
            self._spans[key] = (position + 8, length, None)
            position += 8 + length

    # -- values --------------------------------------------------------------------------------

    def _describe(self, key: str, tensor: TensorRef) -> StoredValue:
        where = f"Tensor {key!r} of {self.store.display(self.path)}"
        shape = check_shape(tensor.shape, where)
        itemsize = numpy_dtype(tensor.dtype).itemsize
        start, length, _ = self._spans[tensor.storage.key]
        last = tensor.offset + sum((n - 1) * s for n, s in zip(shape, tensor.stride, strict=True))
        if math.prod(shape) and (
            tensor.offset < 0 or min(tensor.stride, default=0) < 0 or (last + 1) * itemsize > length
        ):
            raise self._bad_file(
                f"{key!r} (offset {tensor.offset}, stride {list(tensor.stride)}) reaches past "
                f"its storage of {length} bytes"
            )
        return StoredValue(
            key=key,
            shape=shape,
            dtype=tensor.dtype,
            foreign=ForeignLocation(
                format=self.kind,
                file=f"{posixpath.basename(self.path)}: storage {tensor.storage.key}",
                offset=start + tensor.offset * itemsize,
                length=math.prod(shape) * itemsize,
                detail=f"stride {list(tensor.stride)}, storage offset {tensor.offset}; no checksum",
            ),
        )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        tensor = self.tensors[value.key]
        dtype = numpy_dtype(value.dtype)
        target = out if out is not None else np.empty(value.shape, dtype)
        if not target.size:
            return target
        start, _, member = self._spans[tensor.storage.key]
        last = tensor.offset + sum(
            (n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True)
        )
        first, end = tensor.offset * dtype.itemsize, (last + 1) * dtype.itemsize
        if member is not None:
            span: bytes | bytearray | memoryview = memoryview(
                self._inflate(tensor.storage.key, member)
            )[first:end]
        else:
            span = bytearray(end - first)
            self.read_bytes(
                posixpath.basename(self.path), start + first, memoryview(span), value.key
            )
        flat = np.frombuffer(span, dtype=dtype)
        strides = tuple(s * dtype.itemsize for s in tensor.stride)
        target[...] = np.lib.stride_tricks.as_strided(flat, shape=tensor.shape, strides=strides)
        return target

    def _inflate(self, key: str, member: zipfile.ZipInfo) -> bytes:
        """A deflated storage's bytes (exactly its size), inflated once while it stays cached."""
        with self._inflated_lock:
            data = self._inflated.get(key)
            if data is not None:
                self._inflated.move_to_end(key)
                return data
        assert self._zip is not None
        data = self._member(self._zip, member, MAX_INFLATED)
        if len(data) <= MAX_CACHED:
            with self._inflated_lock:
                self._inflated[key] = data
                while sum(len(d) for d in self._inflated.values()) > MAX_CACHED:
                    self._inflated.popitem(last=False)
        return data


def _flatten(obj: Any, prefix: str, found: _Found) -> None:
    """Tensors, literal values and ``_metadata`` of nested containers, by ``/``-joined path."""
    if isinstance(obj, TensorRef):
        found.tensors[prefix or "value"] = obj
    elif isinstance(obj, dict):
        metadata = getattr(obj, "_metadata", None)
        if isinstance(metadata, dict):
            found.metadata[prefix] = metadata
        for name, value in obj.items():
            _flatten(value, f"{prefix}/{name}" if prefix else str(name), found)
    elif isinstance(obj, list | tuple) and any(
        isinstance(v, TensorRef | dict | list | tuple) for v in obj
    ):
        for index, value in enumerate(obj):
            _flatten(value, f"{prefix}/{index}" if prefix else str(index), found)
    else:
        found.literals[prefix or "value"] = obj


@dataclass(slots=True)
class _Found:
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    literals: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
