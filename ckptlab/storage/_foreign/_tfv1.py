"""TensorFlow 1 ``Saver`` V1 checkpoints: one table file of ``SavedTensorSlices`` (internal).

Key ``""`` lists every tensor and its slices; every other key is an encoded slice key whose
value holds a ``TensorProto`` (docs/foreign-formats.md §7.2).  The table blocks carry the checksums.
When the file is opened, every tensor's slices must tile its shape exactly and every slice must
store as many values as it has elements, or one value meaning "all equal" (TensorFlow's writer
never does this; such slices may expand to :data:`MAX_BROADCAST_BYTES` per file in all).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np

from ckptlab.core import ForeignLocation, StoredValue
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document
from ckptlab.storage._foreign._slicekey import decode_slice_key
from ckptlab.storage._foreign._slices import (
    Region,
    check_coverage,
    region_slices,
    resolve_region,
    show_region,
)
from ckptlab.storage._foreign._table import Table
from ckptlab.storage._foreign._tfproto import (
    DTYPES,
    Extent,
    SliceMeta,
    TensorProto,
    parse_v1_meta,
    parse_v1_slice,
)
from ckptlab.storage._foreign._wire import I32, I64, LEN, VARINT, WireError
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype

MAX_V1_BYTES = 1 << 31
MAX_BROADCAST_BYTES = 256 * 2**20
"""All slices of one V1 file that store a single value for many elements may expand to this."""
_FIELDS = {
    "float32": (5, "<f4"),
    "float64": (6, "<f8"),
    "complex64": (9, "<f4"),
    "complex128": (12, "<f8"),
    "string": (8, "bytes"),
    "int64": (10, "varint"),
    "bool": (11, "varint"),
    "float16": (13, "varint"),
    "bfloat16": (13, "varint"),
    "uint32": (16, "varint"),
    "uint64": (17, "varint"),
    **dict.fromkeys(("int8", "int16", "int32", "uint8", "uint16"), (7, "varint")),
}
"""ckptlab dtype -> the ``TensorProto`` repeated field TensorFlow stores it in, and its encoding."""
_WIRES = {"<f4": (I32, LEN), "<f8": (I64, LEN), "varint": (VARINT, LEN), "bytes": (LEN,)}
_HIGH_BYTES = bytes(range(0x80, 0x100))


def looks_like_v1(table: Table) -> bool:
    """Whether a table's first entry is V1 metadata (a message, not a bundle header)."""
    for key, value in table:
        return key == b"" and value[:1] == b"\x0a"
    return False


class SavedTensorSlicesFile(ForeignCheckpoint):
    """An open V1 checkpoint (kind ``name``)."""

    format_name = "TensorFlow 1 Saver V1 checkpoint"
    checksums = True

    def __init__(self, store: ByteStore, path: str, table: Table) -> None:
        self.store = store
        self.path = path
        self._metas: dict[str, SliceMeta] = {}
        self._data: dict[tuple[str, tuple[Extent, ...]], bytes] = {}
        self._broadcast = 0
        """Bytes the single-value slices seen so far expand to."""
        try:
            for key, value in table:
                if key == b"":
                    self._metas = {m.name: m for m in parse_v1_meta(value)}
                else:
                    self._data[decode_slice_key(key)] = value
        except WireError as error:
            raise table.fail(f"an entry does not parse ({error})") from None
        values = {name: self._describe(meta) for name, meta in self._metas.items()}
        super().__init__(store, path, name_document(self.format_name, values))

    def _describe(self, meta: SliceMeta) -> StoredValue:
        where = f"Tensor {meta.name!r} of {self.store.display(self.path)}"
        dtype = DTYPES.get(meta.dtype)
        if dtype is None:
            raise UnsupportedFormatError(
                f"{where} has TensorFlow dtype {meta.dtype}, which ckptlab cannot represent."
            )
        shape = check_shape(meta.shape, where)
        missing = [s for s in meta.slices if (meta.name, s) not in self._data]
        if missing or not meta.slices:
            raise CorruptCheckpointError(
                f"{where} lists slices {list(missing)} that are not stored; expected an entry "
                "for every slice. The file is damaged or truncated."
            )
        regions = [resolve_region(e, shape, where) for e in meta.slices]
        check_coverage(regions, shape, where)
        for extents, region in zip(meta.slices, regions, strict=True):
            self._check_slice(meta.name, extents, region, dtype, where)
        return StoredValue(
            key=meta.name,
            shape=shape,
            dtype=dtype,
            foreign=ForeignLocation(
                format="tf-v1",
                file=posixpath.basename(self.path),
                offset=0,
                length=sum(len(self._data[(meta.name, s)]) for s in meta.slices),
                detail=f"TensorProto in {len(meta.slices)} slice(s) inside the table",
            ),
        )

    def _check_slice(
        self, name: str, extents: tuple[Extent, ...], region: Region, dtype: str, where: str
    ) -> None:
        """Count a slice's stored values (nothing decoded or allocated) against its elements."""
        count = math.prod(n for _, n in region)
        try:
            _, _, tensor = parse_v1_slice(self._data[(name, extents)])
            found = _count(tensor, dtype)
        except (WireError, ValueError) as error:
            raise CorruptCheckpointError(
                f"{where}: slice {show_region(region)} does not decode ({error}). The file is "
                "damaged."
            ) from None
        if found == count:
            return
        if found == 1 and count and not tensor.content:
            self._broadcast += count * numpy_dtype(dtype).itemsize
            if self._broadcast <= MAX_BROADCAST_BYTES:
                return
            raise CorruptCheckpointError(
                f"{where}: slice {show_region(region)} stores one value for {count} elements; "
                f"such slices of this file would expand to {self._broadcast} bytes, more than "
                f"ckptlab's limit of {MAX_BROADCAST_BYTES}. TensorFlow never writes these: the "
                "file is damaged or hostile."
            )
        raise CorruptCheckpointError(
            f"{where}: slice {show_region(region)} stores {found} values; its {count} elements "
            "need as many (or one for all). The file is damaged."
        )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        meta = self._metas[value.key]
        # Every element is covered exactly once (checked when the file was opened).
        target = out if out is not None else self.allocate(value)
        for extents in meta.slices:
            region = resolve_region(extents, value.shape, value.key)
            try:
                _, _, tensor = parse_v1_slice(self._data[(value.key, extents)])
                values = _decode(tensor, value.dtype)
            except (WireError, ValueError) as error:
                raise self.damaged(
                    value.key, f"slice {show_region(region)} does not decode ({error})"
                ) from None
            shape = tuple(n for _, n in region)
            target[region_slices(region)] = values[0] if values.size == 1 else values.reshape(shape)
        return target


def _parts(tensor: TensorProto, dtype: str) -> Iterator[tuple[str, int | bytes]]:
    """The occurrences of the repeated field that holds ``dtype``: (encoding, value)."""
    number, encoding = _FIELDS.get(dtype, (0, ""))
    if not number:
        raise ValueError(f"no TensorProto field holds {dtype} values other than tensor_content")
    for wire, value in tensor.repeated.get(number, []):
        if wire not in _WIRES[encoding]:
            raise ValueError(f"field {number} has wire type {wire}")
        yield encoding, value


def _count(tensor: TensorProto, dtype: str) -> int:
    """How many elements a ``TensorProto`` stores, without decoding them."""
    if tensor.content:
        itemsize = numpy_dtype(dtype).itemsize
        if dtype == "string" or len(tensor.content) % itemsize:
            raise ValueError(f"{len(tensor.content)} content bytes for {dtype} values")
        return len(tensor.content) // itemsize
    count = 0
    for encoding, value in _parts(tensor, dtype):
        if isinstance(value, int) or encoding == "bytes":
            count += 1
        elif encoding == "varint":
            if value and value[-1] & 0x80:
                raise ValueError("a packed varint runs past the end of its field")
            count += len(value.translate(None, _HIGH_BYTES))
        else:
            size = int(encoding[-1])
            if len(value) % size:
                raise ValueError(f"packed field of {len(value)} bytes for {size}-byte values")
            count += len(value) // size
    if numpy_dtype(dtype).kind == "c":
        if count % 2:
            raise ValueError(f"{count} parts for complex values")
        count //= 2
    return count


def _decode(tensor: TensorProto, dtype: str) -> np.ndarray[Any, Any]:
    """The values a ``TensorProto`` stores, flat, as ``dtype``."""
    target = numpy_dtype(dtype)
    if tensor.content:
        _count(tensor, dtype)
        return np.frombuffer(tensor.content, dtype=target)
    pieces: list[np.ndarray[Any, Any]] = []
    encoding = _FIELDS.get(dtype, (0, ""))[1]
    for _, value in _parts(tensor, dtype):
        if encoding == "bytes":
            pieces.append(np.array([value], dtype=object))
        elif encoding == "varint":
            pieces.append(
                _varints(value) if isinstance(value, bytes) else np.array([value], np.uint64)
            )
        elif isinstance(value, int):
            bits = np.array([value], dtype=f"<u{encoding[-1]}")
            pieces.append(bits.view(encoding))
        else:
            pieces.append(np.frombuffer(value, dtype=encoding))
    if encoding == "bytes":
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=object)
    if encoding != "varint":
        parts = np.concatenate(pieces) if pieces else np.empty(0, dtype=encoding)
        return parts.view(target) if target.kind == "c" else parts.astype(target)
    raw = np.concatenate(pieces).astype(np.uint64) if pieces else np.empty(0, np.uint64)
    if dtype == "bool":
        flags: np.ndarray[Any, Any] = raw != 0
        return flags
    if target.itemsize == 2 and target.kind not in "iu":  # half_val holds the 16 bits
        return raw.astype(np.uint16).view(target)
    return raw.view(np.int64).astype(target)  # int32 values are sign-extended to 64 bits


def _varints(raw: bytes) -> np.ndarray[Any, Any]:
    """Decode a packed field of varints with numpy (no Python int per value)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if not data.size:
        return np.empty(0, np.uint64)
    if data[-1] & 0x80:
        raise ValueError("a packed varint runs past the end of its field")
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise ValueError("a varint longer than 10 bytes")
    position = np.arange(data.size) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    values: np.ndarray[Any, Any] = np.add.reduceat(parts, starts)
    return values
