"""The Zarr v3 layout of a checkpoint: metadata documents, chunk keys, chunk shapes (internal).

Written directly (not through zarr-python's array machinery, which costs milliseconds per array)
but exactly to the Zarr v3 specification, so ``zarr.open_group`` reads every checkpoint:

* ``zarr.json`` — the root group; ``attributes.ckptlab`` holds the checkpoint document.
* ``values/<n>/`` — a value with its own array, chunked along axis 0.
* ``packed/<dtype>/`` — a flat 1-D array holding many small values of one dtype.

Every chunk is encoded with the ``bytes`` codec (little endian) then ``crc32c``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import ml_dtypes
import numpy as np
import orjson

from ckptlab.core import FOREIGN_ITEMSIZE, ITEMSIZE
from ckptlab.errors import UnsupportedFormatError

CHUNK_BYTES = 64 * 2**20
"""Own arrays larger than this are split along axis 0 into chunks of about this size."""
PACK_CHUNK_BYTES = 16 * 2**20
"""Chunk size of packed arrays."""
PACK_THRESHOLD = 1 * 2**20
"""Values of at most this many bytes are packed (chosen by ``benchmarks/bench_storage.py``)."""
ROOT_DOCUMENT = "zarr.json"


_NAMES: dict[np.dtype[Any], str] = {}
"""Storable dtypes seen so far -> their names (``np.dtype.name`` is slow Python code)."""


def dtype_name(dtype: np.dtype[Any], where: str) -> str:
    """The format's name for a numpy dtype; refuse anything that cannot be stored."""
    cached = _NAMES.get(dtype)
    if cached is not None:
        return cached
    name = dtype.name
    if name not in ITEMSIZE or dtype.fields is not None:
        raise UnsupportedFormatError(
            f"{where} has dtype {dtype!r}, which ckptlab cannot store; supported: "
            f"{', '.join(sorted(ITEMSIZE))}. Convert it first (for example arr.astype('float32'))."
        )
    _NAMES[dtype] = name
    return name


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The little-endian numpy dtype for a format dtype name.

    Dtypes only foreign checkpoints hold (``FOREIGN_ITEMSIZE``) map to ml_dtypes, and
    ``string`` to ``object`` (arrays of ``bytes``).
    """
    if name == "bfloat16":
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    if name not in ITEMSIZE and name in FOREIGN_ITEMSIZE:
        return np.dtype(object) if name == "string" else np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name).newbyteorder("<") if ITEMSIZE[name] > 1 else np.dtype(name)


def choose_chunks(
    shape: tuple[int, ...], itemsize: int, target: int | None = None
) -> tuple[int, ...]:
    """Chunk shape of an own array: whole up to ``target`` bytes, else balanced rows along axis 0.

    Rows are spread evenly over the fewest chunks of at most about ``target`` bytes, so the
    padding of the last chunk is under one row per chunk.

    Examples
    --------
    >>> choose_chunks((4, 3), 4)
    (4, 3)
    >>> choose_chunks((1000, 1000), 4, target=400_000)
    (100, 1000)
    >>> choose_chunks((1050, 1000), 4, target=400_000)
    (96, 1000)
    """
    target = CHUNK_BYTES if target is None else target
    chunks = tuple(max(d, 1) for d in shape)
    if not shape or math.prod(shape) * itemsize <= target:
        return chunks
    row = math.prod(chunks[1:]) * itemsize
    count = -(-shape[0] * row // target)
    return (max(1, -(-shape[0] // count)), *chunks[1:])


def pack_chunk(length: int, itemsize: int, target: int | None = None) -> int:
    """Chunk length (elements) of a packed array: balanced, and unpadded when there is one chunk.

    Examples
    --------
    >>> pack_chunk(10, 4)
    10
    >>> pack_chunk(10_000_000, 4, target=16_000_000)
    3333334
    """
    if length == 0:
        return 1
    target = PACK_CHUNK_BYTES if target is None else target
    count = -(-length * itemsize // target)
    return -(-length // count)


def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Number of chunks along each axis."""
    return tuple(-(-d // c) for d, c in zip(shape, chunks, strict=True))


def chunk_key(array: str, index: tuple[int, ...]) -> str:
    """Zarr v3 default chunk key (``values/3/c/0/0``; ``values/3/c`` for 0-d arrays)."""
    return "/".join([array, "c", *map(str, index)])


def fill_value(name: str) -> Any:
    """The ``fill_value`` of an array's ``zarr.json`` (never used: every chunk is written)."""
    if name == "bool":
        return False
    if name.startswith("complex"):
        return [0.0, 0.0]
    if name.startswith(("float", "bfloat")):
        return 0.0
    return 0


def array_metadata(
    shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, key: str | None
) -> bytes:
    """The ``zarr.json`` of an array."""
    bytes_codec: dict[str, Any] = {"name": "bytes"}
    if ITEMSIZE[dtype] > 1:
        bytes_codec["configuration"] = {"endian": "little"}
    document = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value(dtype),
        "codecs": [bytes_codec, {"name": "crc32c"}],
        "attributes": {"ckptlab_key": key} if key is not None else {},
    }
    return json.dumps(document).encode()


def group_metadata(attributes: dict[str, Any] | None = None) -> bytes:
    """The ``zarr.json`` of a group."""
    document = {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}
    return orjson.dumps(document)  # compact UTF-8; the root document of 100,000 values: 9x faster
