"""TensorFlow 1 ``Saver`` V1 checkpoints: one table file of ``SavedTensorSlices`` (internal).

Key ``""`` lists every tensor and its slices; every other key is an encoded slice key whose
value holds a ``TensorProto`` (FORMATS.md section 7.2).  The table blocks carry the checksums.
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

import numpy as np

from ckptlab.core import CheckpointDocument, ForeignLocation, StoredValue
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape
from ckptlab.storage._foreign._slicekey import decode_slice_key
from ckptlab.storage._foreign._table import Table
from ckptlab.storage._foreign._tfproto import (
    DTYPES,
    Extent,
    SliceMeta,
    TensorProto,
    parse_v1_meta,
    parse_v1_slice,
)
from ckptlab.storage._foreign._wire import WireError
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype

MAX_V1_BYTES = 1 << 31


def looks_like_v1(table: Table) -> bool:
    """Whether a table's first entry is V1 metadata (a message, not a bundle header)."""
    for key, value in table:
        return key == b"" and value[:1] == b"\x0a"
    return False


class SavedTensorSlicesFile(ForeignCheckpoint):
    """An open V1 checkpoint (kind ``name``)."""

    format_name = "TensorFlow 1 Saver V1 checkpoint"

    def __init__(self, store: ByteStore, path: str, table: Table) -> None:
        self.store = store
        self.path = path
        self._metas: dict[str, SliceMeta] = {}
        self._data: dict[tuple[str, tuple[Extent, ...]], bytes] = {}
        try:
            for key, value in table:
                if key == b"":
                    self._metas = {m.name: m for m in parse_v1_meta(value)}
                else:
                    self._data[decode_slice_key(key)] = value
        except WireError as error:
            raise table.fail(f"an entry does not parse ({error})") from None
        values = {name: self._describe(meta) for name, meta in self._metas.items()}
        document = CheckpointDocument(
            format_version=0,
            kind="name",
            graph=None,
            values=values,
            writer={"format": self.format_name},
        )
        super().__init__(store, path, document)

    def _describe(self, meta: SliceMeta) -> StoredValue:
        where = f"Tensor {meta.name!r} of {self.store.display(self.path)}"
        dtype = DTYPES.get(meta.dtype)
        if dtype is None:
            raise UnsupportedFormatError(
                f"{where} has TensorFlow dtype {meta.dtype}, which ckptlab cannot represent."
            )
        missing = [s for s in meta.slices if (meta.name, s) not in self._data]
        if missing or not meta.slices:
            raise CorruptCheckpointError(
                f"{where} lists slices {list(missing)} that are not stored."
            )
        length = sum(len(self._data[(meta.name, s)]) for s in meta.slices)
        return StoredValue(
            key=meta.name,
            shape=check_shape(meta.shape, where),
            dtype=dtype,
            foreign=ForeignLocation(
                format="tf-v1",
                file=posixpath.basename(self.path),
                offset=0,
                length=length,
                detail=f"TensorProto in {len(meta.slices)} slice(s) inside the table",
            ),
        )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        meta = self._metas[value.key]
        dtype = numpy_dtype(value.dtype)
        target = out if out is not None else np.empty(value.shape, dtype)
        for extents in meta.slices:
            region = tuple(
                slice(0, d) if n == -1 else slice(s, s + n)
                for (s, n), d in zip(extents, value.shape, strict=True)
            )
            shape = tuple(r.stop - r.start for r in region)
            try:
                _, _, tensor = parse_v1_slice(self._data[(value.key, extents)])
                target[region] = _tensor_array(tensor, dtype, shape)
            except (WireError, ValueError) as error:
                raise self.damaged(
                    value.key, f"slice {list(extents)} does not decode ({error})"
                ) from None
        return target


def _tensor_array(
    tensor: TensorProto, dtype: np.dtype[Any], shape: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    if tensor.content:
        if len(tensor.content) != count * dtype.itemsize:
            raise ValueError(f"{len(tensor.content)} content bytes for {count} elements")
        return np.frombuffer(tensor.content, dtype=dtype).reshape(shape)
    if dtype.kind == "c":  # real and imaginary parts interleaved
        array = np.array(tensor.values, dtype=f"<f{dtype.itemsize // 2}").view(dtype)
    elif dtype.itemsize == 2 and dtype.kind not in "iub":  # half_val holds the 16 bits
        array = np.array(tensor.values, dtype=np.uint16).view(dtype)
    else:
        array = np.array(tensor.values, dtype=dtype)
    if array.size == 1 and count != 1:
        return np.full(shape, array.reshape(-1)[0], dtype=dtype)
    if array.size != count:
        raise ValueError(f"{array.size} values for {count} elements")
    return array.reshape(shape)
