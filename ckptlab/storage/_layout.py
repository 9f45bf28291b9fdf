"""The Zarr v3 layout of a checkpoint: metadata documents, chunk keys, chunk shapes (internal).

Written directly (not through zarr-python's array machinery, which costs milliseconds per array)
but exactly to the Zarr v3 specification, so ``zarr.open_group`` reads every checkpoint:

* ``zarr.json`` — the root group; ``attributes.ckptlab`` holds the checkpoint document.
* ``data/<name>/`` — version 3: a flat 1-D array of one dtype holding values back to back,
  stored with the sharding codec (one object per shard, usually one per dtype).
* ``values/<n>/`` — a value with its own array, chunked along axis 0 (versions 1-2; in version 3
  only values written by several workers).
* ``packed/<dtype>/`` — version 2: a flat 1-D array holding many small values of one dtype.

Own arrays' and version 2 packs' chunks are encoded with the ``bytes`` codec (little endian) then
``crc32c``; version 3's shards hold raw bytes, the values' checksums are in the document.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import crc32c
import ml_dtypes
import numpy as np
import orjson

from ckptlab.core import FOREIGN_ITEMSIZE, ITEMSIZE, UNREADABLE_DTYPES, ArrayInfo
from ckptlab.errors import UnsupportedFormatError

CHUNK_BYTES = 64 * 2**20
"""Own arrays larger than this are split along axis 0 into chunks of about this size."""
ROOT_DOCUMENT = "zarr.json"
INNER_BYTES = 1 * 2**20
"""Version 3: size of a data array's inner chunks (what plain Zarr readers fetch at least)."""
LOCAL_SHARD_BYTES: int | None = None
"""Version 3 on file systems: shard size (``None``: one shard per data array)."""
REMOTE_SHARD_BYTES = 64 * 2**20
"""Version 3 on object stores: shard size (objects uploaded concurrently, bounded memory)."""
MISSING = 2**64 - 1
"""A shard index entry for an inner chunk that is not stored (past the end of the array)."""
STORED_AS = {"bfloat16": "uint16"}
"""Version 3 stores these dtypes under another Zarr ``data_type`` of the same width (zarr-python
has no bfloat16); the array's ``attributes.ckptlab_dtype`` names the real one."""


def zarr_data_type(dtype: str) -> tuple[str, dict[str, str]]:
    """The Zarr ``data_type`` of a version-3 array of format dtype ``dtype``, and its attributes.

    Every array, data or own: a dtype zarr-python lacks is stored as its bit patterns
    (``STORED_AS``), labelled ``attributes.ckptlab_dtype`` (FORMAT.md section 5).

    Examples
    --------
    >>> zarr_data_type("bfloat16"), zarr_data_type("float32")
    (('uint16', {'ckptlab_dtype': 'bfloat16'}), ('float32', {}))
    """
    stored = STORED_AS.get(dtype, dtype)
    return stored, ({"ckptlab_dtype": dtype} if stored != dtype else {})


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

    Dtypes only foreign checkpoints hold (``FOREIGN_ITEMSIZE``) map to ml_dtypes, ``string`` to
    ``object`` (arrays of ``bytes``), and ``UNREADABLE_DTYPES`` to raw bytes of their width
    (listings show them; readers refuse to read them).
    """
    if name in UNREADABLE_DTYPES:
        return np.dtype((np.void, FOREIGN_ITEMSIZE[name]))
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
    """The ``zarr.json`` of an own array."""
    stored, attributes = zarr_data_type(dtype)
    document = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": stored,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value(stored),
        "codecs": [bytes_codec(stored), {"name": "crc32c"}],
        "attributes": ({"ckptlab_key": key} if key is not None else {}) | attributes,
    }
    return json.dumps(document).encode()


def bytes_codec(dtype: str) -> dict[str, Any]:
    """Zarr's ``bytes`` codec for ``dtype``: little endian (one-byte dtypes have no order)."""
    codec: dict[str, Any] = {"name": "bytes"}
    if ITEMSIZE[dtype] > 1:
        codec["configuration"] = {"endian": "little"}
    return codec


def group_metadata(attributes: dict[str, Any] | None = None) -> bytes:
    """The ``zarr.json`` of a group."""
    document = {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}
    return orjson.dumps(document)  # compact UTF-8; the root document of 100,000 values: 9x faster


# --- version 3: sharded data arrays ---------------------------------------------------------------


def data_array(path: str, dtype: str, length: int, shard_bytes: int | None = None) -> ArrayInfo:
    """A data array of ``length`` elements: balanced inner chunks of about ``INNER_BYTES``.

    ``shard_bytes=None`` makes one shard of the whole array (local files); otherwise shards hold
    whole inner chunks and about ``shard_bytes`` each.

    Examples
    --------
    >>> info = data_array("data/float32", "float32", 300_000)
    >>> info.chunk, info.shard
    (150000, 300000)
    >>> data_array("data/float32", "float32", 300_000, shard_bytes=2**20).shard
    150000
    """
    itemsize = ITEMSIZE[dtype]
    count = max(1, -(-length * itemsize // INNER_BYTES))
    chunk = max(1, -(-length // count))
    per_shard = count if shard_bytes is None else max(1, shard_bytes // (chunk * itemsize))
    return ArrayInfo(
        path=path, dtype=dtype, length=length, chunk=chunk, shard=chunk * min(per_shard, count)
    )


def shard_count(info: ArrayInfo) -> int:
    """How many shards (stored objects) a data array has."""
    return -(-info.length // info.shard)


def shard_key(path: str, index: int) -> str:
    """The key of a data array's shard (Zarr's ``v2`` chunk key encoding: ``data/float32/0``)."""
    return f"{path}/{index}"


def shard_chunks(info: ArrayInfo, index: int) -> int:
    """How many inner chunks shard ``index`` stores (the last shard may store fewer)."""
    present = min(info.shard, info.length - index * info.shard)
    return -(-present // info.chunk)


def shard_size(info: ArrayInfo, index: int) -> int:
    """The exact size in bytes of shard ``index``: its inner chunks, then the index."""
    chunk_bytes = info.chunk * ITEMSIZE[info.dtype]
    return shard_chunks(info, index) * chunk_bytes + 16 * (info.shard // info.chunk) + 4


def shard_index(info: ArrayInfo, index: int) -> bytes:
    """The index at the end of shard ``index``: (offset, length) per inner chunk, then crc32c.

    Inner chunks are stored in order from byte 0, so the shard's leading bytes are exactly the
    array's bytes; chunks past the end of the array are marked missing.
    """
    chunk_bytes = info.chunk * ITEMSIZE[info.dtype]
    stored = shard_chunks(info, index)
    entries = [(i * chunk_bytes, chunk_bytes) for i in range(stored)]
    entries += [(MISSING, MISSING)] * (info.shard // info.chunk - stored)
    table = struct.pack(f"<{2 * len(entries)}Q", *(v for pair in entries for v in pair))
    return table + crc32c.crc32c(table).to_bytes(4, "little")


def data_metadata(info: ArrayInfo) -> bytes:
    """The ``zarr.json`` of a data array: Zarr's sharding codec over raw little-endian bytes."""
    stored, attributes = zarr_data_type(info.dtype)
    document = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [info.length],
        "data_type": stored,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [info.shard]}},
        "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
        "fill_value": fill_value(stored),
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [info.chunk],
                    "codecs": [bytes_codec(stored)],
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ],
        "attributes": attributes,
    }
    return json.dumps(document).encode()
