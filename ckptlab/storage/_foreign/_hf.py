"""Hugging Face model directories: an index JSON naming shards, or one weights file (internal).

``model.safetensors.index.json`` (or ``pytorch_model.bin.index.json``) holds
``{"metadata": {...}, "weight_map": {name: shard}}``; each shard is opened by its content with
the safetensors or ``torch.save`` reader, which read their headers only.  Only the shards the
index names are opened (stray files in the directory are ignored), every name must be in the
shard the index gives, and a shard path must stay inside the directory.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ckptlab.core import StoredValue
from ckptlab.errors import (
    CorruptCheckpointError,
    NotACheckpointError,
    NotFoundError,
    UnsupportedFormatError,
)
from ckptlab.storage._foreign._base import ForeignCheckpoint, name_document
from ckptlab.storage._foreign._members import check_inside, safe_member
from ckptlab.storage._foreign._safetensors import SafetensorsFile, looks_like_safetensors
from ckptlab.storage._foreign._torch import TorchFile
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._missing import broken_link

MAX_INDEX = 64 * 2**20
"""Index files larger than this are refused (a 1,000-shard, 100,000-tensor index is ~8 MB)."""
INDEX_SUFFIX = ".index.json"
LOAD_ORDER = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""What ``transformers``' ``from_pretrained`` loads from a directory: the first that is there."""

OpenFile = Callable[[ByteStore, str], ForeignCheckpoint | None]


def read_json(store: ByteStore, path: str, limit: int, what: str) -> Any:
    """Parse a small JSON file; damage is a :class:`CorruptCheckpointError` naming the file."""
    size = store.size(path)
    if size is None:
        raise NotFoundError(f"{store.display(path)} is missing; it is {what}.")
    if size > limit:
        raise CorruptCheckpointError(
            f"{store.display(path)} is {size} bytes; ckptlab reads {what} of at most {limit}."
        )
    try:
        return json.loads(store.read(path))
    except (ValueError, RecursionError) as error:
        raise CorruptCheckpointError(
            f"{store.display(path)} is not valid JSON ({str(error)[:200]}); it should be {what}. "
            "The file is damaged; download it again."
        ) from None


def is_index(data: Any) -> bool:
    """Whether parsed JSON is an HF index: a ``weight_map`` of names to shard files."""
    return isinstance(data, dict) and isinstance(data.get("weight_map"), dict)


class HFShardedDirectory(ForeignCheckpoint):
    """A Hugging Face model directory with an index JSON (kind ``name``, keys = HF names).

    ``metadata`` is the index's ``metadata``; ``shard_metadata`` each safetensors shard's
    ``__metadata__`` (``{"format": "pt"}``); ``shards`` the open shard readers by file name.
    """

    def __init__(self, store: ByteStore, directory: str, index: str, open_file: OpenFile) -> None:
        self.store = store
        self.path = directory
        self.index_file = index
        where = store.display(posixpath.join(directory, index))
        check_inside(store, directory, posixpath.join(directory, index))
        data = read_json(store, posixpath.join(directory, index), MAX_INDEX, "an HF index JSON")
        if not is_index(data):
            raise CorruptCheckpointError(
                f"{where} has no 'weight_map' object; an HF index is "
                '{"metadata": {...}, "weight_map": {"<name>": "<shard file>"}}.'
            )
        weight_map: dict[str, Any] = data["weight_map"]
        odd = next((v for v in weight_map.values() if not isinstance(v, str)), None)
        if odd is not None:
            raise CorruptCheckpointError(
                f"{where} maps a tensor to {odd!r:.80}; an HF index maps names to shard files."
            )
        metadata = data.get("metadata", {})
        self.metadata: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
        """The index's ``metadata`` (``total_size`` and whatever the writer added)."""
        self.shards: dict[str, ForeignCheckpoint] = {}
        for shard in dict.fromkeys(weight_map.values()):
            self.shards[shard] = self._open_shard(shard, where, open_file)
        self.shard_metadata = {
            name: dict(shard.metadata)
            for name, shard in self.shards.items()
            if isinstance(shard, SafetensorsFile)
        }
        kinds = {shard.format_name for shard in self.shards.values()}
        count = f"{len(self.shards)} shard{'' if len(self.shards) == 1 else 's'}"
        shards = f"{count}: {', '.join(sorted(kinds))}" if self.shards else "empty"
        self.format_name = f"Hugging Face model directory ({shards})"
        self.checksums = bool(self.shards) and all(s.checksums for s in self.shards.values())
        self._shard_of: dict[str, ForeignCheckpoint] = {}
        values: dict[str, StoredValue] = {}
        for name, shard_name in weight_map.items():
            shard = self.shards[shard_name]
            stored = shard.document.values.get(name)
            if stored is None:
                raise CorruptCheckpointError(
                    f"{where} puts {name!r} in {shard_name}, which does not hold it (it holds "
                    f"{len(shard.document.values)} tensors). The directory is incomplete or "
                    "its shards are from another model; download it again."
                )
            values[name] = stored
            self._shard_of[name] = shard
        super().__init__(
            store, directory, name_document(self.format_name, values, metadata=self.metadata)
        )

    def _open_shard(self, shard: Any, where: str, open_file: OpenFile) -> ForeignCheckpoint:
        key = safe_member(self.store, self.path, shard, where)
        if not self.store.exists(key) and not self.store.is_dir(key):
            dangling = broken_link(self.store, key)
            raise NotFoundError(
                f"{where} names the shard {shard!r}, which is missing from "
                f"{self.store.display(self.path)}. "
                + (dangling or "Download every shard of the model.")
            )
        reader = _open_weights(self.store, key, open_file)
        if reader is None:  # not opened as what it is: an index naming itself would recurse
            raise CorruptCheckpointError(
                f"{where} names {shard!r} as a shard, but {self.store.display(key)} is "
                f"{_content(self.store, key)}, neither a safetensors nor a torch.save file. "
                "The index or the shard is damaged; download the model again."
            )
        return reader

    def file(self, name: str) -> str:
        """The store key of a file inside the directory."""
        return posixpath.join(self.path, name)

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        return self._shard_of[value.key]._load(value, out)  # value is the shard's own record

    def read_arrays(self, keys: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Fresh arrays of ``keys``: one scatter read per safetensors shard (restores use it)."""
        values = [self.stored(key) for key in dict.fromkeys(keys)]
        found: dict[str, np.ndarray[Any, Any]] = {}
        spans: dict[str, list[StoredValue]] = {}
        for value in values:
            shard = self._shard_of[value.key]
            if isinstance(shard, SafetensorsFile):
                spans.setdefault(shard.path, []).append(value)
            else:
                found[value.key] = shard.read(value.key)
        for members in spans.values():
            found.update(self._shard_of[members[0].key].read_spans(members))
        return {value.key: found[value.key] for value in values}


def open_hf_directory(
    store: ByteStore, directory: str, names: list[str], open_file: OpenFile
) -> ForeignCheckpoint | None:
    """The model in an HF directory, as ``transformers`` finds it; ``None`` if there is none.

    ``transformers`` (``modeling_utils``) loads the first of ``model.safetensors``,
    ``model.safetensors.index.json``, ``pytorch_model.bin``, ``pytorch_model.bin.index.json``
    that is there (:data:`LOAD_ORDER`), so a stale index beside a newer ``model.safetensors``
    does not count.  Without any of them: another ``*.index.json`` whose content is a weight map
    (safetensors indexes first), else the one weights file found by content.
    """
    present = set(names)
    for name in LOAD_ORDER:
        found = _open_entry(store, directory, name, open_file) if name in present else None
        if found is not None:
            return found
    others = (n for n in names if n.endswith(INDEX_SUFFIX) and n not in LOAD_ORDER)
    for name in sorted(others, key=_index_rank):
        found = _open_index(store, directory, name, open_file)
        if found is not None:
            return found
    candidates: dict[str, list[str]] = {"safetensors": [], "torch": []}
    outside: UnsupportedFormatError | None = None
    """A weights file linked from outside the directory: not read, and the reason when nothing
    else is (a link named like anything else is no reason: the folder is then no checkpoint)."""
    for name in names:
        key = posixpath.join(directory, name)
        size = store.size(key)
        if size is None or name.endswith(".json") or name in LOAD_ORDER:
            continue
        try:
            check_inside(store, directory, key)
        except UnsupportedFormatError as error:
            if name.endswith(WEIGHTS_SUFFIXES):
                outside = outside or error
            continue
        kind = _weights_kind(store, key, size)
        if kind is not None:
            candidates[kind].append(name)
    for kind, files in candidates.items():
        opened: list[ForeignCheckpoint] = []
        for name in files:
            try:
                reader = open_file(store, posixpath.join(directory, name))
            except (CorruptCheckpointError, UnsupportedFormatError):
                continue  # not weights after all (training_args.bin, a damaged file, ...)
            if isinstance(reader, SafetensorsFile | TorchFile):
                opened.append(reader)
        if len(opened) == 1:
            return opened[0]
        if opened:  # a folder of several checkpoints (a run of step_10.pt files), not one
            raise NotACheckpointError(
                f"{store.display(directory)} holds several {kind} weights files and no index "
                f"JSON ({', '.join(files[:5])}); pass one of them."
            )
    if outside is not None:
        raise outside
    return None


def _open_entry(
    store: ByteStore, directory: str, name: str, open_file: OpenFile
) -> ForeignCheckpoint | None:
    """``name`` of :data:`LOAD_ORDER` if it holds weights (an index: a weight map); else ``None``.

    It is what ``transformers`` would load, so its damage, or a link out of the directory, is
    the error rather than a reason to open another file.
    """
    if name.endswith(INDEX_SUFFIX):
        return _open_index(store, directory, name, open_file)
    key = posixpath.join(directory, name)
    if store.size(key) is None:
        return None
    check_inside(store, directory, key)
    return _open_weights(store, key, open_file)


def _open_weights(store: ByteStore, key: str, open_file: OpenFile) -> ForeignCheckpoint | None:
    """The safetensors or ``torch.save`` reader of ``key``; ``None`` if it holds no weights.

    Decided by the file's first bytes before it is opened, so a file that is something else (a
    Git LFS pointer, an HTML error page, an index JSON, a directory) is never opened as that.
    """
    size = store.size(key)
    if size is None or _weights_kind(store, key, size) is None:
        return None
    reader = open_file(store, key)
    return reader if isinstance(reader, SafetensorsFile | TorchFile) else None


def _content(store: ByteStore, key: str) -> str:
    """What ``key`` holds, in words, for an error: a directory, empty, JSON, or its first bytes."""
    size = store.size(key)
    if size is None:
        return "a directory"
    head = bytearray(min(size, 8))
    store.read_into(key, memoryview(head), 0)
    if not head:
        return "an empty file"
    if head.lstrip()[:1] == b"{":
        return "a JSON file"
    return f"a file whose first bytes are {bytes(head).hex(' ')}"


def _open_index(
    store: ByteStore, directory: str, name: str, open_file: OpenFile
) -> HFShardedDirectory | None:
    """The sharded model of index ``name`` if its content is a weight map, else ``None``."""
    key = posixpath.join(directory, name)
    if not store.exists(key):
        return None
    check_inside(store, directory, key)
    if not is_index(read_json(store, key, MAX_INDEX, "an HF index JSON")):
        return None
    return HFShardedDirectory(store, directory, name, open_file)


def _weights_kind(store: ByteStore, key: str, size: int) -> str | None:
    """``"safetensors"`` or ``"torch"`` by a file's first bytes, else ``None``."""
    head = bytearray(min(size, 16))
    store.read_into(key, memoryview(head), 0)
    if looks_like_safetensors(bytes(head), size):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    return None


WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
"""Names of weights files (a link out of the folder named so is reported, not skipped)."""


def _index_rank(name: str) -> tuple[bool, str]:
    return "safetensors" not in name, name
