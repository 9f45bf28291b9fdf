"""Writing safetensors files, sharded with a Hugging Face index when large (internal).

One file ``model.safetensors``, or shards ``model-0000K-of-0000N.safetensors`` of at most
``max_shard_size`` bytes each (a value larger than that gets a shard of its own) plus
``model.safetensors.index.json`` (``{"metadata": {"total_size": N}, "weight_map": ...}``),
which is what ``transformers``' ``save_pretrained`` writes and ``from_pretrained`` reads.
Within a file, tensors are ordered by dtype size (largest first), then by name, as the
safetensors library orders them, so every tensor is aligned to its element size.  Values are
read one at a time and written straight to the file (local files) or one shard at a time
(object stores), so memory stays bounded by the largest value (or shard).  Locally everything
is written under a temporary name, held open and locked as a save's (``Staging``), and
published with one rename; an export first removes what killed exports of its path left.
Object stores have no rename: there the files are written in place, the index last (a reader
takes a directory with shards and no index for no export), and a failure deletes them again,
the index first (``writing_into``, as a failed save's objects are deleted).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ckptlab.errors import InvalidArgumentError, StorageExistsError, UnsupportedFormatError
from ckptlab.storage._commit import Staging, clean_leftovers, writing_into
from ckptlab.storage._foreign._safetensors import DTYPES, METADATA
from ckptlab.storage._kv import Buffer, ByteStore, occupied
from ckptlab.storage._layout import numpy_dtype
from ckptlab.storage._reader import StoredCheckpoint
from ckptlab.storage._stream import raw_bytes

READ_BYTES = 64 * 2**20
"""Values are read this many bytes at a time (one reader per batch, not one per value)."""

SAFETENSORS_DTYPES = {dtype: code for code, dtype in DTYPES.items()}
"""ckptlab dtype -> safetensors dtype code (the reader's table, inverted)."""
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_UNITS = {
    "": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*$", re.IGNORECASE)


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string such as ``"5GB"`` (10**9) or ``"500MiB"`` (2**20).

    Examples
    --------
    >>> parse_size("5GB"), parse_size("1.5KiB"), parse_size(100)
    (5000000000, 1536, 100)
    """
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = _SIZE.match(size) if isinstance(size, str) else None
    nbytes = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()]) if match else 0
    if nbytes < 1:  # "0.5B" is no byte at all
        raise InvalidArgumentError(
            f"max_shard_size must be at least one byte, as an int or a string such as '5GB' or "
            f"'500MiB'; got {size!r}."
        )
    return nbytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One tensor to write: its name in the file, safetensors dtype, shape, size, source key."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    itemsize: int
    key: str
    """The key the value is read from in the source checkpoint."""


def plan_shards(entries: Sequence[Entry], max_bytes: int | None) -> list[list[Entry]]:
    """Split ``entries`` (in order) into shards of at most ``max_bytes`` (HF's greedy rule).

    Examples
    --------
    >>> e = [Entry(k, "F32", (n,), 4 * n, 4, k) for k, n in (("a", 3), ("b", 3), ("c", 10))]
    >>> [[x.name for x in s] for s in plan_shards(e, 24)]
    [['a', 'b'], ['c']]
    """
    shards: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        if max_bytes is not None and shards[-1] and size + entry.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def header_bytes(entries: Sequence[Entry], metadata: dict[str, str]) -> bytes:
    """The length prefix and JSON header of a file holding ``entries`` in that order."""
    header: dict[str, Any] = {METADATA: metadata} if metadata else {}
    offset = 0
    for entry in entries:
        header[entry.name] = {
            "dtype": entry.dtype,
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def write_safetensors(
    store: ByteStore,
    path: str,
    source: StoredCheckpoint,
    names: Mapping[str, str],
    *,
    max_shard_size: int | str | None,
    metadata: dict[str, str],
    index_metadata: dict[str, Any],
    durable: bool,
) -> list[str]:
    """Write ``source``'s values as safetensors at ``path``; return the files written.

    ``names`` maps each name to write to the source key holding its value.

    ``path`` ending in ``.safetensors`` is one file (``max_shard_size`` must then be ``None``);
    any other path is a directory that gets ``model.safetensors``, or shards and an index.
    ``path`` must not exist yet.
    """
    if METADATA in names:
        raise UnsupportedFormatError(
            f"Cannot write safetensors to {store.display(path)}: a value would be named "
            f"{METADATA!r}, which safetensors reserves for the header's metadata (readers would "
            "refuse the file). Rename it (key_map=ck.KeyMap(...), or --rename)."
        )
    values = source.document.values
    entries = []
    for name, key in names.items():
        value = values[key]
        itemsize = numpy_dtype(value.dtype).itemsize
        dtype = SAFETENSORS_DTYPES[value.dtype]
        entries.append(Entry(name, dtype, value.shape, value.nbytes, itemsize, key))
    single = path.endswith(".safetensors")
    if single and max_shard_size is not None:
        raise InvalidArgumentError(
            f"{store.display(path)} names one file, so it cannot be sharded; pass a directory "
            "to shard with max_shard_size, or leave max_shard_size out."
        )
    if occupied(store, path):
        raise StorageExistsError(
            f"Refusing to write safetensors to {store.display(path)}: it exists. Choose a new "
            "path or remove it yourself."
        )
    shards = plan_shards(entries, None if max_shard_size is None else parse_size(max_shard_size))
    files = (
        [posixpath.basename(path)]
        if single
        else [SINGLE_FILE]
        if len(shards) == 1
        else [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    )
    staging: Staging | None = None
    if not store.supports_rename:
        target = path  # written in place, one object per file
    else:  # held (locked) until renamed, so that clean-ups of the path take it for a live one's
        clean_leftovers(store, path)  # what killed exports of the path left
        staging = Staging(store, path, directory=not single)
        target = staging.path
    with writing_into(store, target, path, staging, commit=INDEX_FILE):
        for name, shard in zip(files, shards, strict=True):
            ordered = sorted(shard, key=lambda e: (-e.itemsize, e.name))
            file = target if single else posixpath.join(target, name)
            _write_file(store, file, source, ordered, metadata, durable)
        if len(shards) > 1:
            weight_map = {e.name: n for n, shard in zip(files, shards, strict=True) for e in shard}
            total = sum(e.nbytes for e in entries)
            index = {"metadata": {**index_metadata, "total_size": total}, "weight_map": weight_map}
            text = json.dumps(index, indent=2, ensure_ascii=False).encode() + b"\n"
            store.write(posixpath.join(target, INDEX_FILE), [text], durable=durable)
        if staging is not None:
            if durable and not single:
                store.sync_tree(target)
            staging.check()
        if store.supports_rename:
            store.rename(target, path, durable=durable)
    written = files + ([INDEX_FILE] if len(shards) > 1 else [])
    return [path] if single else [posixpath.join(path, n) for n in written]


def _write_file(
    store: ByteStore,
    file: str,
    source: StoredCheckpoint,
    entries: Sequence[Entry],
    metadata: dict[str, str],
    durable: bool,
) -> None:
    keys = [e.key for e in entries]  # a key twice when two names share one stored value

    def batches() -> Iterator[list[Buffer]]:  # a file a batch at a time (object stores: one upload)
        yield [header_bytes(entries, metadata)]
        for batch in source.batches(keys, READ_BYTES):
            arrays = source.read_many(batch)
            yield [raw_bytes(arrays[key]) for key in batch]

    store.write_stream(file, batches(), durable=durable)
