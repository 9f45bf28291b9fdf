"""Keras 3 weights: ``.weights.h5``, the ``model.weights.h5`` inside ``.keras``, sharded weights.

HDF5 through ``h5py`` (extra ``ckptlab[keras]``).  Keras stores each layer's variables as
datasets ``<layer path>/vars/<i>`` (``layers/dense/vars/0``: positional within the layer), the
optimizer's under ``optimizer/vars/<i>``; those dataset paths are the keys, so the explorer
shows the layer tree.  bfloat16 variables are 2-byte opaque datasets tagged
``attrs["dtype"] == "bfloat16"``.  A ``.keras`` file is a zip of ``config.json``,
``metadata.json`` and ``model.weights.h5``: the HDF5 member is read in place (a stored member)
or inflated with a size cap.  Opening walks the HDF5 tree (metadata only); a value's bytes are
read when asked for.  HDF5 checks a dataset's Fletcher-32 checksum when it has one; Keras
writes none.
"""

from __future__ import annotations

import io
import json
import posixpath
import struct
import threading
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from ckptlab.core import ForeignLocation, StoredValue
from ckptlab.errors import (
    CkptlabError,
    CorruptCheckpointError,
    NotFoundError,
    UnsupportedFormatError,
)
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document, require
from ckptlab.storage._foreign._crc32 import crc32
from ckptlab.storage._foreign._members import check_inside, safe_member
from ckptlab.storage._foreign._torch import ZIP_ERRORS, StoreFile, open_zip
from ckptlab.storage._foreign._window import ByteRange
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import dtype_name, numpy_dtype

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
WEIGHTS_MEMBER = "model.weights.h5"
MAX_INFLATED = 2**30
"""A deflated ``model.weights.h5`` member is inflated into memory up to this size."""
MAX_SMALL_MEMBER = 64 * 2**20
"""``config.json`` and ``metadata.json`` members larger than this are not read."""
TAGGED = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}
"""Dtypes Keras stores as opaque bytes with an ``attrs["dtype"]`` tag (ml_dtypes names)."""
CRC_PIECE = 4 * 2**20
"""A stored weights member is checked against its CRC-32 this many bytes at a time: each piece
is checksummed right after it is read, while it is still in the CPU's cache."""
SIZE_KEEPING_FILTERS = {2, 3}
"""HDF5 filters that do not shrink data (shuffle, Fletcher-32): a dataset with only these must
store at least its size."""
KERAS_MEMBERS = (WEIGHTS_MEMBER, "config.json", "metadata.json")


def is_keras_zip(names: list[str]) -> bool:
    """Whether zip member names are a ``.keras`` archive (not a ``torch.save`` one)."""
    return any(m in names for m in KERAS_MEMBERS) and not any(n.endswith("data.pkl") for n in names)


def is_sharded_weights_map(data: Any) -> bool:
    """Whether JSON is a Keras ``.weights.json``: ``/<group>/vars`` -> shard file(s).

    Keras writes a file name or a list of them per group (a group may span shards); group
    paths end in ``vars``, which tells it apart from a Hugging Face index of tensor names.
    """
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    return (
        isinstance(weight_map, dict)
        and bool(weight_map)
        and all(isinstance(k, str) and k.endswith("vars") for k in weight_map)
    )


def shard_files(data: Any) -> list[str]:
    """The shard files a Keras ``.weights.json`` names, in order, each once."""
    names: list[Any] = []
    for files in data["weight_map"].values():
        names += files if isinstance(files, list) else [files]
    odd = next((n for n in names if not isinstance(n, str)), None)
    if odd is not None:
        raise CorruptCheckpointError(f"A Keras .weights.json names the shard {odd!r:.80}.")
    return list(dict.fromkeys(names))


class _Source:
    """One HDF5 file: where its bytes are, and the open ``h5py.File`` (opened once)."""

    def __init__(self, name: str, opener: Any) -> None:
        self.name, self._opener, self._file, self._lock = name, opener, None, threading.Lock()

    def file(self) -> Any:
        with self._lock:
            if self._file is None:
                self._file = self._opener()
            return self._file


class KerasWeights(ForeignCheckpoint):
    """Keras 3 weights (kind ``name``; keys = HDF5 dataset paths such as ``layers/dense/vars/0``).

    ``layer_names`` maps each ``.../vars`` group to the layer name Keras recorded on it;
    ``config`` and ``metadata`` hold a ``.keras`` file's ``config.json`` and ``metadata.json``.
    """

    def __init__(
        self, store: ByteStore, path: str, *, zipped: bool = False, shards: list[str] | None = None
    ) -> None:
        self.store = store
        self.path = path
        self._h5py = require("h5py", "keras", "Keras weights (HDF5)")
        self.config: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.layer_names: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        """Datasets that are not arrays of numbers (strings, compound types), with the reason."""
        if shards is not None:
            check_inside(store, posixpath.dirname(path), path)
            sources = [self._local(name) for name in shards]
            self.format_name = "Keras 3 sharded weights (.weights.json)"
        elif zipped:
            sources = [self._zip_member()]
            self.format_name = "Keras 3 model (.keras)"
        else:
            sources = [self._local(posixpath.basename(path))]
            self.format_name = "Keras 3 weights (.weights.h5)"
        self._datasets: dict[str, tuple[_Source, str]] = {}
        values: dict[str, StoredValue] = {}
        fletcher = True
        for source in sources:
            for key, value, checked in self._walk(source):
                if key in values:
                    raise self._bad(f"the dataset {key!r} is in two shards")
                values[key] = value
                fletcher = fletcher and checked
        self.checksums = bool(values) and fletcher
        ordered = dict(sorted(values.items(), key=lambda item: _natural(item[0])))
        super().__init__(
            store, path, name_document(self.format_name, ordered, metadata=self.metadata)
        )

    # -- opening -------------------------------------------------------------------------------

    def _bad(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable Keras weights file: {what}. "
            "The file is damaged or truncated; save or download it again."
        )

    def _open_h5(self, name: str, handle: Any) -> Any:
        try:
            return self._h5py.File(handle, "r")
        except (OSError, ValueError) as error:
            raise self._bad(f"{name} does not open as HDF5 ({error})") from None

    def _local(self, name: str) -> _Source:
        key = self.file(name)
        size = self.store.size(key)
        if size is None:
            raise NotFoundError(
                f"{self.store.display(key)} is missing; it holds weights of "
                f"{self.store.display(self.path)}. Copy every file of the checkpoint."
            )

        def opener() -> Any:
            return self._open_h5(name, io.BufferedReader(StoreFile(self.store, key, size), 1 << 20))

        return _Source(name, opener)

    def _zip_member(self) -> _Source:
        size = self.store.size(self.path) or 0
        archive, infos = open_zip(StoreFile(self.store, self.path, size), self._bad)
        members = {info.filename: info for info in infos}
        for name, attribute in (("config.json", "config"), ("metadata.json", "metadata")):
            info = members.get(name)
            if info is not None and info.file_size <= MAX_SMALL_MEMBER:
                try:
                    setattr(self, attribute, json.loads(archive.read(info)))
                except ZIP_ERRORS:  # RecursionError (JSON nested too deeply) is a RuntimeError
                    raise self._bad(f"{name} is damaged") from None
        info = members.get(WEIGHTS_MEMBER)
        if info is None:
            raise self._bad(
                f"it has no {WEIGHTS_MEMBER} member (found {sorted(members)[:5]}); a .keras file "
                f"is a zip of config.json, metadata.json and {WEIGHTS_MEMBER}, as model.save "
                "writes it"
            )
        if info.compress_type == zipfile.ZIP_STORED:
            start = self._member_start(info)
            self._check_crc(start, info)
            window = ByteRange(self.store, self.path, start, info.file_size)

            def opener() -> Any:
                raw = StoreFile(window.as_store(), WEIGHTS_MEMBER, info.file_size)
                return self._open_h5(WEIGHTS_MEMBER, io.BufferedReader(raw, 1 << 20))

            return _Source(WEIGHTS_MEMBER, opener)
        if info.file_size > MAX_INFLATED or info.compress_type != zipfile.ZIP_DEFLATED:
            raise UnsupportedFormatError(
                f"{self.store.display(self.path)}: {WEIGHTS_MEMBER} is compressed with method "
                f"{info.compress_type} and declares {info.file_size} bytes; ckptlab reads stored "
                f"members and deflated ones up to {MAX_INFLATED} bytes."
            )
        try:  # zipfile checks the CRC-32 once the member is read to its end
            data = archive.open(info).read(info.file_size)
        except ZIP_ERRORS as error:
            raise self._bad(f"{WEIGHTS_MEMBER} is damaged ({error})") from None
        return _Source(WEIGHTS_MEMBER, lambda: self._open_h5(WEIGHTS_MEMBER, io.BytesIO(data)))

    def _member_start(self, info: zipfile.ZipInfo) -> int:
        """Byte offset of a stored member's data: after its local header (name, extra field)."""
        header = bytearray(30)
        self.read_bytes(posixpath.basename(self.path), info.header_offset, memoryview(header), "")
        if header[:4] != b"PK\x03\x04":
            raise self._bad(f"member {info.filename} has no local header")
        name_length, extra_length = struct.unpack_from("<HH", header, 26)
        start: int = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > (self.store.size(self.path) or 0):
            raise self._bad(f"member {info.filename} runs past the end of the file")
        return start

    def _check_crc(self, start: int, info: zipfile.ZipInfo) -> None:
        """Refuse a stored weights member whose bytes fail its zip CRC-32 (one pass).

        libhdf5 trusts the bytes it parses: one changed byte can make it loop forever or crash
        the process (docs/foreign-formats.md §12.3), so a ``.keras`` member is checked before
        h5py sees it.  Memory stays at one piece; ISA-L's CRC-32 keeps up with the page cache.
        """
        piece = memoryview(bytearray(min(info.file_size, CRC_PIECE)))
        name = posixpath.basename(self.path)
        crc = 0
        for offset in range(0, info.file_size, CRC_PIECE):
            part = piece[: min(CRC_PIECE, info.file_size - offset)]
            self.read_bytes(name, start + offset, part, WEIGHTS_MEMBER)
            crc = crc32(part, crc)
        if crc != info.CRC:
            raise self._bad(
                f"{WEIGHTS_MEMBER} fails its zip CRC-32 check (stored {info.CRC:#010x}, computed "
                f"{crc:#010x}): its bytes changed after the archive was written"
            )

    def _walk(self, source: _Source) -> list[tuple[str, StoredValue, bool]]:
        """Every numeric dataset of ``source``: (key, value, has a Fletcher-32 checksum)."""
        found: list[tuple[str, StoredValue, bool]] = []
        h5py = self._h5py

        def visit(name: str | bytes, item: Any) -> None:
            if not isinstance(name, str):  # h5py gives names that are not UTF-8 as bytes
                raise UnsupportedFormatError(
                    f"{self.store.display(self.path)}: {source.name} names an HDF5 object "
                    f"{name!r:.120}, which is not UTF-8 text; Keras writes UTF-8 names. The file "
                    "is damaged or was not written by Keras."
                )
            if isinstance(item, h5py.Group):
                layer = item.attrs.get("name") if posixpath.basename(name) == "vars" else None
                if isinstance(layer, str | bytes):
                    parent = posixpath.dirname(name)
                    self.layer_names[parent] = layer if isinstance(layer, str) else layer.decode()
                return
            if not isinstance(item, h5py.Dataset):
                return
            self._check_layout(source, name, item)
            if item.shape is None:
                self.skipped[name] = "HDF5 dataset with a null dataspace (it holds no value)"
                return
            dtype = self._dtype_of(name, item)
            if dtype is None:
                self.skipped[name] = f"HDF5 type {item.dtype} is not an array of numbers"
                return
            shape = check_shape(tuple(int(d) for d in item.shape), f"Dataset {name!r}")
            self._check_stored_size(source, name, item, shape)
            value = StoredValue(
                key=name,
                shape=shape,
                dtype=dtype,
                foreign=ForeignLocation(
                    format="keras-h5",
                    file=source.name,
                    offset=int(item.id.get_offset() or 0),
                    length=int(np.prod(shape)) * numpy_dtype(dtype).itemsize,
                    detail=f"HDF5 dataset /{name}"
                    + ("; Fletcher-32" if item.fletcher32 else "; no checksum in this format"),
                ),
            )
            self._datasets[name] = (source, name)
            found.append((name, value, bool(item.fletcher32)))

        try:  # visits objects through hard links only: soft and external links are not followed
            source.file().visititems(visit)
        except CkptlabError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise self._bad(f"the HDF5 tree of {source.name} is damaged ({error})") from None
        return found

    def _check_layout(self, source: _Source, name: str, item: Any) -> None:
        """Refuse datasets whose bytes live in other files (external storage, virtual).

        HDF5 would open and read whatever file such a dataset names (``/etc/passwd``);
        Keras never writes them, and ckptlab never reads outside the checkpoint.
        """
        plist = item.id.get_create_plist()
        if plist.get_layout() == self._h5py.h5d.VIRTUAL:
            what = "a virtual dataset, whose values HDF5 reads from other files"
        elif plist.get_external_count():
            outside = plist.get_external(0)[0]
            outside = outside.decode(errors="replace") if isinstance(outside, bytes) else outside
            what = f"stored in external files ({outside!r:.120}, ...), outside the HDF5 file"
        else:
            return
        raise CorruptCheckpointError(
            f"{self.store.display(self.path)}: dataset {name!r} of {source.name} is {what}; "
            "ckptlab reads only bytes inside the checkpoint, and Keras never writes such "
            "datasets. The file is hostile or was not written by Keras; save the weights again "
            "with Keras (model.save_weights)."
        )

    def _check_stored_size(
        self, source: _Source, name: str, item: Any, shape: tuple[int, ...]
    ) -> None:
        """Refuse an uncompressed dataset that stores fewer bytes than its shape needs.

        HDF5 fills chunks that were never written with the fill value, so a 4 KB file can
        declare a 4 GiB dataset.  Keras writes every dataset whole and without compression;
        with compression the stored size says nothing, and reading is bounded by
        :meth:`allocate` instead.
        """
        nbytes = int(np.prod(shape)) * item.dtype.itemsize
        plist = item.id.get_create_plist()
        filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        if not nbytes or not filters <= SIZE_KEEPING_FILTERS:
            return
        stored = int(item.id.get_storage_size())
        if stored < nbytes:
            raise self._bad(
                f"dataset {name!r} of {source.name} is a {list(shape)} {item.dtype} array of "
                f"{nbytes:,} bytes, but the file stores {stored:,} bytes of it (the rest was "
                "never written)"
            )

    def _dtype_of(self, name: str, item: Any) -> str | None:
        tag = item.attrs.get("dtype")
        tag = tag.decode(errors="replace") if isinstance(tag, bytes) else tag
        if (
            isinstance(tag, str)
            and tag in TAGGED
            and item.dtype.itemsize == np.dtype(getattr(ml_dtypes, tag)).itemsize
        ):
            return str(tag)
        try:
            return dtype_name(item.dtype.newbyteorder("="), name)
        except UnsupportedFormatError:
            return None

    def file(self, name: str) -> str:
        """The store key of a file next to the checkpoint (shards of a ``.weights.json``)."""
        directory = posixpath.dirname(self.path)
        return safe_member(self.store, directory, name, self.store.display(self.path))

    # -- values --------------------------------------------------------------------------------

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        source, name = self._datasets[value.key]
        target = out if out is not None else self.allocate(value)
        raw = target.view(f"V{target.dtype.itemsize}") if value.dtype in TAGGED else target
        try:
            dataset = source.file()[name]
            if target.size and target.ndim:
                dataset.read_direct(raw)
            elif target.ndim == 0:
                raw[...] = dataset[()]
        except (OSError, RuntimeError, ValueError, TypeError) as error:
            raise self.damaged(value.key, f"HDF5 could not read it ({error})") from None
        return target


def _natural(key: str) -> list[Any]:
    """Sort ``vars/10`` after ``vars/2``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("/")]
