"""``torch.save`` files, zip (PyTorch >= 1.6) and legacy, read without torch (internal).

The pickle runs through :mod:`._unpickle` (allow-listed stand-ins only).  Tensors become keys
(nested containers joined with ``/``, e.g. ``model/fc1.weight``); other values are kept in
``literals``; each container flattened is recorded in ``containers`` (its type and keys, to
rebuild nested values: :class:`~ckptlab.core.NestedValues`).  Storage bytes are read on
demand: zip members straight from the file (STORED) or inflated with a hard cap (DEFLATED),
legacy records by walking their length prefixes (docs/foreign-formats.md §11).
"""

from __future__ import annotations

import io
import math
import posixpath
import struct
import threading
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ckptlab.core import Container, ForeignLocation, StoredValue
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document
from ckptlab.storage._foreign._unpickle import (
    StorageRef,
    StorageType,
    TensorRef,
    brief,
    load_pickle,
)
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype

MAX_PICKLE = 64 * 2**20
"""Largest ``data.pkl`` (or legacy file before its storages) ckptlab unpickles."""
MAX_DEPTH = 100
"""Containers nested deeper than this in a torch file are refused."""
ENTRIES_PER_BYTE = 4
KEY_CHARS_PER_BYTE = 16
"""Listing a torch file visits at most this many container entries (key characters) per byte
of its pickle, plus a small allowance; normal files need less than one (a few) per byte."""
MAX_INFLATED = 2**30
"""A deflated storage member may inflate to at most this many bytes (and exactly its size)."""
MAX_CACHED = 256 * 2**20
"""Inflated storages kept for the next tensor that views them (least recently used dropped)."""
MAX_MEMBERS = 1 << 20
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
UNREADABLE_FLAGS = 0x1 | 0x20 | 0x40
"""Zip flag bits: encrypted, compressed patched data, strong encryption."""
ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
)
"""What ``zipfile`` raises for a damaged or unreadable archive or member (``NotImplementedError``:
a "version needed to extract" or compression method it does not know; ``RuntimeError``:
encryption)."""
MAX_EXPANDED_BYTES = 64 * 2**20
"""A tensor that views its storage with repeats (stride 0, ``expand``) is materialised on read
only up to this many bytes; larger ones are refused (a 1.5 KB file can describe 2**40 elements)."""


def open_zip(
    file: io.RawIOBase | io.BufferedReader, bad: Callable[[str], Exception]
) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """An archive and its members (its central directory only); damage raises ``bad(what)``.

    The one way ``torch.save`` files, ``.keras`` files and format detection open a zip, so that
    every error ``zipfile`` raises for a damaged archive becomes the caller's typed error.
    """
    try:
        archive = zipfile.ZipFile(file)
        return archive, archive.infolist()
    except ZIP_ERRORS as error:
        raise bad(f"the zip archive is damaged ({error})") from None


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
        self._crc32: dict[str, int] = {}
        """Storage key -> the crc32 its STORED zip member must have (checked on first read)."""
        self._verified: set[str] = set()
        """Storages whose member was read whole and matched its crc32."""
        self._big_endian = False
        """Whether the storages hold big-endian elements (a zip whose byteorder is ``big``)."""
        raw = self._open_file()
        head = raw.read(4)
        raw.seek(0)
        if head == b"PK\x03\x04":
            self.format_name, self.kind = "PyTorch checkpoint (torch.save, zip)", "torch-zip"
            self.checksums = True
            obj = self._load_zip(raw)
        else:
            self.format_name, self.kind = "PyTorch checkpoint (torch.save, legacy)", "torch-legacy"
            obj = self._load_legacy(raw)
        found = _flatten(obj, self._pickle_bytes, self.store.display(self.path))
        self.tensors = found.tensors
        self.literals = found.literals
        """Non-tensor values (numbers, strings, dtypes, ...) by path."""
        self.metadata = found.metadata
        """The ``_metadata`` of every state_dict, by its path (``""`` for the top level)."""
        self.containers = found.containers
        """Every container flattened into the paths, by its path (``""``: the top level), so
        that the value under a path can be rebuilt as ``torch.load`` gives it."""
        values = {k: self._describe(k, t) for k, t in self.tensors.items()}
        super().__init__(store, path, name_document(self.format_name, values))

    def _open_file(self) -> io.BufferedReader:
        return io.BufferedReader(StoreFile(self.store, self.path, self._size), 1 << 16)

    def _bad_file(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable torch.save file: {what}."
        )

    # -- zip -----------------------------------------------------------------------------------

    def _load_zip(self, raw: io.BufferedReader) -> Any:
        archive, members = open_zip(raw, self._bad_file)
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
        byteorder = b"little" if order is None else self._member(archive, order, 16).strip()
        if byteorder not in (b"little", b"big"):
            raise self._bad_file(f"its byteorder member says {brief(byteorder)}")
        # Storages hold the writer's byte order; each tensor is swapped by its own dtype as it
        # is read (torch.load swaps typed storages only: docs/foreign-formats.md §11.1).
        self._big_endian = byteorder == b"big"
        self._zip = archive
        self._root = root
        data = self._member(archive, names[pickles[0]], MAX_PICKLE)
        self._pickle_bytes = len(data)
        return load_pickle(io.BytesIO(data), self.store.display(self.path), self._zip_storage)

    def _check_member(self, info: zipfile.ZipInfo) -> None:
        """Refuse members ckptlab cannot read as plain bytes (compression, encryption)."""
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}: member {info.filename!r} uses zip compression "
                f"{info.compress_type}; ckptlab reads stored and deflated members."
            )
        if info.flag_bits & UNREADABLE_FLAGS:
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}: member {info.filename!r} is encrypted or "
                f"patched (zip flags {info.flag_bits:#06x}); torch.save never writes such "
                "members. Re-save the checkpoint with torch."
            )

    def _member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Read a whole member: exactly its declared size, which may not exceed ``limit``."""
        if info.file_size > limit:
            raise self._bad_file(
                f"member {info.filename!r} declares {info.file_size} bytes (limit {limit})"
            )
        self._check_member(info)
        try:
            with archive.open(info) as handle:
                # zipfile inflates no further than the declared size, then checks the crc32
                data = handle.read(info.file_size)
        except ZIP_ERRORS as error:
            raise self._bad_file(f"member {info.filename!r} is damaged ({error})") from None
        if len(data) != info.file_size:
            raise self._bad_file(
                f"member {info.filename} holds {len(data)} bytes; its header declares "
                f"{info.file_size}"
            )
        return data

    def _zip_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        _, kind, key, _location, count = pid[:5]
        key = self._storage_key(key, pid)
        if not isinstance(kind, StorageType) or type(count) is not int or count < 0:
            raise self._bad_file(f"storage id {brief(pid)}")
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

    def _storage_key(self, key: Any, pid: tuple[Any, ...]) -> str:
        if type(key) is int and 0 <= key < 2**64:
            return str(key)
        if type(key) is not str or not 0 < len(key) <= 64:
            raise self._bad_file(f"storage id {brief(pid)}")
        return key

    def _zip_span(
        self, info: zipfile.ZipInfo, nbytes: int
    ) -> tuple[int, int, zipfile.ZipInfo | None]:
        self._check_member(info)
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
            raise self._bad_file(f"member {info.filename!r} runs past the end of the file")
        self._crc32[posixpath.basename(info.filename)] = info.CRC
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
            raise UnsupportedFormatError(
                f"{where} is a legacy (pre-1.6) torch.save file written on a big-endian machine; "
                "ckptlab reads legacy files written little-endian. Load it with torch and save "
                "it again (torch.save writes the zip format, which ckptlab reads in either byte "
                "order)."
            )
        obj = load_pickle(raw, where, self._legacy_storage)
        keys = load_pickle(raw, where, self._no_storage)
        if not isinstance(keys, list):
            raise self._bad_file("the storage key list is missing")
        self._pickle_bytes = raw.tell()
        self._legacy_spans([self._storage_key(k, (k,)) for k in keys], raw.tell())
        return obj

    def _no_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        raise self._bad_file("a storage reference outside the object pickle")

    def _legacy_storage(self, pid: tuple[Any, ...]) -> StorageRef:
        _, kind, key, _location, count = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if (
            not isinstance(kind, StorageType)
            or kind.dtype is None
            or type(count) is not int
            or count < 0
        ):
            raise self._bad_file(f"storage id {brief(pid)}")
        key = self._storage_key(key, pid)
        root = self._storages.setdefault(key, StorageRef(key, kind.dtype, count))
        if view is None:
            return root
        if type(view) is not tuple or len(view) != 3:
            raise self._bad_file(f"storage id {brief(pid)}")
        view_key, base, view_count = view
        if not (type(base) is int and type(view_count) is int and 0 <= base <= root.count):
            raise self._bad_file(f"storage id {brief(pid)}")
        self._storages.setdefault(self._storage_key(view_key, pid), root)
        return StorageRef(root.key, root.dtype, view_count, base=base)

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

    def same_value(self, a: str, b: str) -> bool:
        """Tensors that view one storage alike (tied weights) are the same without a read."""
        first = self.tensors.get(a)
        if first is not None and first == self.tensors.get(b):
            return True
        return super().same_value(a, b)

    def _describe(self, key: str, tensor: TensorRef) -> StoredValue:
        where = f"Tensor {key!r} of {self.store.display(self.path)}"
        shape = check_shape(tensor.shape, where)
        itemsize = numpy_dtype(tensor.dtype).itemsize
        start, length, member = self._spans[tensor.storage.key]
        first, end = _byte_span(tensor, itemsize)
        if math.prod(shape) and (
            tensor.offset < 0 or min(tensor.stride, default=0) < 0 or end > length
        ):
            raise self._bad_file(
                f"{key!r} (offset {tensor.offset}, stride {list(tensor.stride)}) reaches past "
                f"its storage of {length} bytes"
            )
        if member is not None or tensor.storage.key in self._crc32:
            check = "crc32 of its zip member"
        else:
            check = "no checksum"
        return StoredValue(
            key=key,
            shape=shape,
            dtype=tensor.dtype,
            foreign=ForeignLocation(
                format=self.kind,
                file=f"{posixpath.basename(self.path)}: storage {tensor.storage.key}",
                offset=start + first,
                length=math.prod(shape) * itemsize,
                detail=f"stride {list(tensor.stride)}, storage offset {tensor.offset}; {check}",
            ),
        )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        tensor = self.tensors[value.key]
        dtype = numpy_dtype(value.dtype)
        first, end = _byte_span(tensor, dtype.itemsize)
        if value.nbytes > max(end - first, MAX_EXPANDED_BYTES):
            raise UnsupportedFormatError(
                f"Tensor {value.key!r} of {self.store.display(self.path)} repeats {end - first} "
                f"bytes of its storage as {value.nbytes} bytes (a view with stride 0, e.g. made "
                f"by expand()); ckptlab materialises such views up to {MAX_EXPANDED_BYTES} "
                "bytes. Load the file with torch and save the tensor before expanding it."
            )
        target = out if out is not None else self.allocate(value)
        if not target.size:
            return target
        span = self._storage_bytes(tensor.storage.key, first, end, value.key)
        # Strided over opaque items of the dtype's width, then viewed as the dtype: as_strided
        # rebuilds its array from a type string, and ml_dtypes' float8_e5m2 ('<f1') has none
        # numpy understands.
        flat = np.frombuffer(span, dtype=np.dtype((np.void, dtype.itemsize)))
        strides = tuple(s * dtype.itemsize for s in tensor.stride)
        strided = np.lib.stride_tricks.as_strided(flat, shape=tensor.shape, strides=strides)
        target[...] = strided.view(dtype)
        if self._big_endian:
            _swap_bytes(target)
        return target

    def _storage_bytes(self, storage: str, first: int, end: int, key: str) -> memoryview:
        """Bytes ``[first, end)`` of a storage; its zip member's crc32 is checked on first use."""
        start, length, member = self._spans[storage]
        if member is not None:  # inflated whole, crc32 checked by zipfile
            return memoryview(self._inflate(storage, member))[first:end]
        name = posixpath.basename(self.path)
        expected = self._crc32.get(storage)
        if expected is None or storage in self._verified:
            span = memoryview(bytearray(end - first))
            self.read_bytes(name, start + first, span, key)
            return span
        whole = memoryview(bytearray(length))
        crc = self.read_checked(name, start, whole, key, zlib.crc32)
        if crc != expected:
            raise self.damaged(
                key,
                f"storage data/{storage} fails its zip crc32 check (stored {expected:#010x}, "
                f"computed {crc:#010x})",
            )
        self._verified.add(storage)
        return whole[first:end]

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


def _swap_bytes(array: np.ndarray[Any, Any]) -> None:
    """Reverse the bytes of every element of a C-contiguous array in place.

    As ``torch.UntypedStorage.byteswap`` does: the real and imaginary parts of a complex
    number are swapped separately, one-byte dtypes are left alone.
    """
    width = array.dtype.itemsize // 2 if array.dtype.kind == "c" else array.dtype.itemsize
    if width > 1 and array.size:
        array.reshape(-1).view(f"<u{width}").byteswap(inplace=True)


def _byte_span(tensor: TensorRef, itemsize: int) -> tuple[int, int]:
    """The bytes of its storage a tensor reaches: ``[first, end)`` (empty tensors: nothing)."""
    if not math.prod(tensor.shape):
        return 0, 0
    last = tensor.offset + sum(
        (n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True)
    )
    return tensor.offset * itemsize, (last + 1) * itemsize


def _flatten(obj: Any, pickle_bytes: int, where: str) -> _Found:
    """Tensors, literal values and ``_metadata`` of nested containers, by ``/``-joined path.

    Iterative, and bounded by the pickle's size: a container shared by several parents is
    listed under each path, but the entries visited may not exceed :data:`ENTRIES_PER_BYTE`
    per pickle byte, nor the key characters :data:`KEY_CHARS_PER_BYTE` (a 700-byte pickle of
    dicts sharing their children 40 levels deep would otherwise name 2**40 keys); containers
    nested more than :data:`MAX_DEPTH` deep (a cycle among them) are refused.
    """
    found = _Found()
    kind: Literal["dict", "counter", "list", "tuple"]
    entries = ENTRIES_PER_BYTE * pickle_bytes + 10_000
    chars = KEY_CHARS_PER_BYTE * pickle_bytes + 2**20
    pending: list[tuple[str, Any, int]] = [("", obj, 0)]
    while pending:
        prefix, item, depth = pending.pop()
        if isinstance(item, dict):
            metadata = getattr(item, "_metadata", None)
            if isinstance(metadata, dict):
                found.metadata[prefix] = metadata
            children = [(_name(k, prefix, where), v) for k, v in dict.items(item)]
            names = (name for name, _ in children)
            kind = "counter" if isinstance(item, Counter) else "dict"  # MultiStepLR's milestones
            container = Container(kind=kind, entries=tuple(zip(item, names, strict=True)))
        elif isinstance(item, list | tuple) and any(
            isinstance(v, TensorRef | dict | list | tuple) for v in item
        ):
            children = [(str(i), v) for i, v in enumerate(item)]
            kind = "list" if isinstance(item, list) else "tuple"
            container = Container(kind=kind, entries=tuple(enumerate(n for n, _ in children)))
        else:
            found.add(prefix or "value", item, where)
            continue
        if depth >= MAX_DEPTH:
            raise CorruptCheckpointError(
                f"{where} nests containers more than {MAX_DEPTH} deep (at "
                f"{prefix[:200]!r}), or in a cycle; ckptlab refuses it. The file is "
                "damaged or hostile."
            )
        entries -= len(children)
        paths = [f"{prefix}/{name}" if prefix else name for name, _ in children]
        chars -= sum(map(len, paths))
        if entries < 0 or chars < 0:
            raise CorruptCheckpointError(
                f"{where} names more values than its {pickle_bytes}-byte pickle can hold "
                "(containers shared by many parents, e.g. a dict whose children are one shared "
                "dict, nested deeply); ckptlab refuses it. The file is damaged or hostile."
            )
        found.containers[prefix] = container
        pending.extend(
            (path, value, depth + 1)
            for path, (_, value) in zip(reversed(paths), reversed(children), strict=True)
        )
    return found


def _name(key: Any, prefix: str, where: str) -> str:
    """A dict key as a path component (str and numbers; tuples of them as their repr)."""
    if type(key) is str:
        return key
    parts = key if type(key) is tuple else (key,)
    if any(isinstance(p, int) and p.bit_length() > 64 for p in parts):
        raise UnsupportedFormatError(
            f"{where} has a dict key that is an integer of more than 64 bits (under "
            f"{prefix[:200]!r}); ckptlab names values by str or int keys."
        )
    return repr(key) if type(key) is tuple else str(key)


@dataclass(slots=True)
class _Found:
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    literals: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)

    def add(self, path: str, item: Any, where: str) -> None:
        if path in self.tensors or path in self.literals:
            raise UnsupportedFormatError(
                f"{where} holds two values both named {path[:200]!r} once nested "
                "containers are joined with '/' (e.g. a key 'a/b' next to a dict 'a' with a "
                "key 'b'); ckptlab cannot list both. Load it with torch and rename one."
            )
        if isinstance(item, TensorRef):
            self.tensors[path] = item
        else:
            self.literals[path] = item
