"""safetensors files: ``u64`` header length, a JSON header, then raw little-endian bytes (internal).

No checksums exist in the format; every offset is checked against the file and every size
against its shape before anything is read (docs/foreign-formats.md §10).
"""

from __future__ import annotations

import json
import math
import posixpath
from typing import Any

import numpy as np

from ckptlab.core import ForeignLocation, StoredValue, is_text
from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._layout import numpy_dtype
from ckptlab.storage._stream import raw_bytes

MAX_HEADER = 100 * 2**20
DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
}
"""safetensors dtype code -> ckptlab dtype (the codes the safetensors library reads)."""
METADATA = "__metadata__"
"""The header entry safetensors reserves for string metadata (never a tensor name)."""
PACKED_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
"""Dtypes of fewer bits than a byte, packed (numpy has no type for them): listed under these
names, refused on read (``ckptlab.core.UNREADABLE_DTYPES``)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    for key in out:
        if not is_text(key):
            raise ValueError(f"key {key!r} holds a lone surrogate")
    return out


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file starts like safetensors (a plausible header length, then ``{``)."""
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= length <= min(MAX_HEADER, size - 8)


class SafetensorsFile(ForeignCheckpoint):
    """An open safetensors file (kind ``name``; ``metadata`` holds ``__metadata__``)."""

    format_name = "safetensors file"
    convert_first = (
        "Load it with safetensors.torch.load_file and convert the tensor to a dtype numpy has "
        "before saving (t.to(torch.float32), or t.view(torch.uint8) for its raw bits)"
    )

    def __init__(self, store: ByteStore, path: str) -> None:
        self.store = store
        self.path = path
        size = store.size(path) or 0
        head = bytearray(8)
        self.read_bytes(posixpath.basename(path), 0, memoryview(head), "(header)")
        length = int.from_bytes(head, "little")
        if not 2 <= length <= min(MAX_HEADER, size - 8):
            raise self._bad_file(f"header length {length} for a file of {size} bytes")
        raw = bytearray(length)
        self.read_bytes(posixpath.basename(path), 8, memoryview(raw), "(header)")
        header = self._parse_header(bytes(raw))
        metadata = header.pop(METADATA, {})
        if not isinstance(metadata, dict) or not all(
            type(v) is str and is_text(v) for v in metadata.values()
        ):
            raise self._bad_file("__metadata__ is not an object of strings")
        self.metadata: dict[str, Any] = metadata
        self._start = 8 + length
        values = {k: self._describe(k, v, size) for k, v in header.items()}
        self._check_tiling(values, size - self._start)
        super().__init__(
            store, path, name_document(self.format_name, values, metadata=self.metadata)
        )

    def _parse_header(self, raw: bytes) -> dict[str, Any]:
        """The JSON header, as strictly as the safetensors library reads it.

        UTF-8 (no encoded or escaped lone surrogates), no duplicate keys; nesting deep enough
        to exhaust the JSON parser's recursion is refused like any other malformed header.
        """
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._bad_file(f"the header is not UTF-8 ({error})") from None
        try:
            header = json.loads(text, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as error:
            raise self._bad_file(f"the header is not JSON ({str(error)[:200]})") from None
        if not isinstance(header, dict):
            raise self._bad_file("the header is not a JSON object")
        return header

    def _check_tiling(self, values: dict[str, StoredValue], data_bytes: int) -> None:
        """Tensors must tile the data exactly, in offset order (the safetensors library's rule)."""
        position = 0
        for value in sorted(values.values(), key=lambda v: (v.foreign.offset, v.foreign.length)):  # type: ignore[union-attr]
            assert value.foreign is not None
            begin = value.foreign.offset - self._start
            if begin != position:
                what = "overlaps the one before it" if begin < position else "leaves a gap"
                raise self._bad_file(
                    f"tensor {value.key!r} at data offset {begin} {what} (expected {position}); "
                    "tensors must tile the data exactly"
                )
            position += value.foreign.length
        if position != data_bytes:
            raise self._bad_file(
                f"its tensors cover {position} of its {data_bytes} data bytes; they must cover all"
            )

    def _bad_file(self, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(self.path)} is not a readable safetensors file: {what}. The "
            "file is damaged or truncated; download it again."
        )

    def _describe(self, key: str, info: Any, size: int) -> StoredValue:
        if not isinstance(info, dict):
            raise self._bad_file(
                f"tensor {key!r} is described by {type(info).__name__}, not an object"
            )
        code = str(info.get("dtype"))
        dtype = DTYPES.get(code) or (code if code in PACKED_BITS else None)
        if dtype is None:
            raise UnsupportedFormatError(
                f"Tensor {key!r} of {self.store.display(self.path)} has dtype "
                f"{info.get('dtype')!r}; "
                f"ckptlab reads {', '.join(DTYPES)} and lists {', '.join(PACKED_BITS)}."
            )
        shape_data, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape_data, list) or not all(type(d) is int for d in shape_data):
            raise self._bad_file(f"tensor {key!r} has shape {shape_data!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
        ):
            raise self._bad_file(f"tensor {key!r} has data_offsets {offsets!r}")
        shape = check_shape(tuple(shape_data), f"Tensor {key!r} of {self.store.display(self.path)}")
        begin, end = offsets
        bits = math.prod(shape) * PACKED_BITS.get(dtype, numpy_dtype(dtype).itemsize * 8)
        needed = bits // 8
        if bits % 8 or not 0 <= begin <= end <= size - self._start or end - begin != needed:
            raise self._bad_file(
                f"tensor {key!r} at data_offsets [{begin}, {end}) (data holds {size - self._start} "
                f"bytes; shape {list(shape)} of {dtype} needs {bits / 8:g})"
            )
        return StoredValue(
            key=key,
            shape=shape,
            dtype=dtype,
            foreign=ForeignLocation(
                format="safetensors",
                file=posixpath.basename(self.path),
                offset=self._start + begin,
                length=needed,
                detail="no checksum in this format",
            ),
        )

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        assert value.foreign is not None
        target = out if out is not None else self.allocate(value)
        raw = raw_bytes(target)
        self.read_bytes(value.foreign.file, value.foreign.offset, raw, value.key)
        return target
