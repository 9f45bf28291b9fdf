"""Orbax checkpoints (JAX): the tree from ``_METADATA``, arrays through tensorstore (internal).

An Orbax PyTree checkpoint directory holds ``_METADATA`` (JSON: every leaf's key path and value
type) and one Zarr array per array leaf, named by the dot-joined path (``params.dense.kernel``):
either as plain directories (``<name>/.zarray`` or ``<name>/zarr.json``) or inside an OCDBT
key-value store (``manifest.ocdbt`` + ``d/``, ``ocdbt.process_<i>/``).  Zarr v2 and v3 (with
``sharding_indexed``) both occur.  ``tensorstore`` (extra ``ckptlab[orbax]``) reads them; JAX and
Orbax are never imported.  Opening reads ``_METADATA`` and every array's Zarr metadata (in one
batch of concurrent reads); values are read when asked for.  Keys are the leaf paths joined with
``/`` (``params/dense/kernel``, list items by index).  A step directory of a
``CheckpointManager`` (``_CHECKPOINT_METADATA`` + one directory per item) opens its items (keys
prefixed by the item name when there are several), and a manager's root opens its latest step
(step directories ``12`` or ``<step_prefix>_00012``).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import threading
from typing import Any

import numpy as np

from ckptlab.core import (
    FOREIGN_ITEMSIZE,
    ITEMSIZE,
    UNREADABLE_DTYPES,
    ForeignLocation,
    StoredValue,
)
from ckptlab.errors import CorruptCheckpointError, NotFoundError, UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint, check_shape, name_document, require
from ckptlab.storage._foreign._hf import read_json
from ckptlab.storage._foreign._members import check_tree, safe_member
from ckptlab.storage._kv import ByteStore, LocalStore
from ckptlab.storage._layout import numpy_dtype

TREE_FILE = "_METADATA"
STEP_FILE = "_CHECKPOINT_METADATA"
STRINGS_FILE = "_strings.json"
MAX_TREE = 256 * 2**20
MAX_ARRAY_METADATA = 2**20
TENSORSTORE_ERRORS = (ValueError, RuntimeError, OSError)
"""What tensorstore raises for a damaged store (``ValueError("DATA_LOSS: ...")`` mostly)."""
STEP_NAME = re.compile(r"(?:(?P<prefix>.+)_)?(?P<step>[0-9]+)")
"""A step directory's name: ``12``, ``0012`` or ``<step_prefix>_00012``."""
TMP_SUFFIX = ".orbax-checkpoint-tmp"
"""Orbax writes a step under ``<name>.orbax-checkpoint-tmp-<n>`` and renames it when done."""
TYPESTR = re.compile(r"[<>|=]?[biufc][0-9]{1,2}")
"""A Zarr v2 ``dtype`` string of numbers: byte order, kind, size in bytes (``<f4``, ``|b1``)."""
ARRAY_TYPES = {"jax.Array", "np.ndarray", "scalar"}
"""``value_type`` of leaves stored as Zarr arrays (Orbax saves Python scalars as 0-d arrays)."""


def find_orbax_items(store: ByteStore, directory: str, names: list[str]) -> list[tuple[str, str]]:
    """``(item name, item directory)`` of the Orbax checkpoint at ``directory``; [] if none.

    ``directory`` may be an item (``_METADATA``), a step (``_CHECKPOINT_METADATA`` and item
    directories) or a manager's root (step directories named as Orbax names them, ``12`` or
    ``<step_prefix>_00012``: the latest step is opened).

    Raises
    ------
    NotFoundError
        ``directory`` holds Orbax step directories of which none is finished.
    UnsupportedFormatError
        ``directory`` holds finished steps under several step prefixes.
    """
    if TREE_FILE in names:
        return [("", directory)]
    if STEP_FILE in names:
        items = _items(store, directory, names)
        return items if len(items) > 1 else [("", path) for _, path in items]
    # Orbax's rule (orbax.checkpoint.path.step.step_from_checkpoint_name): digits, or a prefix,
    # an underscore and digits (step_prefix="ckpt", step_format_fixed_length=5: "ckpt_00012").
    matches = [(STEP_NAME.fullmatch(name), name) for name in names]
    candidates = sorted(
        (int(match["step"]), match["prefix"] or "", name) for match, name in matches if match
    )
    steps = [
        found
        for found in candidates
        if store.exists(posixpath.join(directory, found[2], STEP_FILE))
    ]
    prefixes = sorted({prefix for _, prefix, _ in steps})
    if len(prefixes) > 1:
        raise UnsupportedFormatError(
            f"{store.display(directory)} holds Orbax steps of {len(prefixes)} managers (step "
            f"prefixes {', '.join(repr(p) for p in prefixes[:5])}), so its latest step is "
            "ambiguous. Open the step directory you want (e.g. "
            f"{store.display(posixpath.join(directory, steps[-1][2]))})."
        )
    if steps:
        step = posixpath.join(directory, steps[-1][2])
        return find_orbax_items(store, step, store.list_dir(step))
    unfinished = [name for name in names if TMP_SUFFIX in name]
    latest = posixpath.join(directory, candidates[-1][2]) if candidates else None
    if latest is not None and _items(store, latest, store.list_dir(latest)):
        unfinished.append(candidates[-1][2])
    if unfinished:
        raise NotFoundError(
            f"{store.display(directory)} looks like an Orbax CheckpointManager directory (it "
            f"holds {', '.join(repr(n) for n in sorted(unfinished)[:5])}) but has no finished "
            f"step: Orbax writes {STEP_FILE} into a step directory when it commits the step. "
            "If a save is running, wait for it (CheckpointManager.wait_until_finished()); if it "
            "was interrupted, save again or open an item directory (one holding "
            f"{TREE_FILE}) directly."
        )
    return []


def _items(store: ByteStore, step: str, names: list[str]) -> list[tuple[str, str]]:
    """``(name, directory)`` of the Orbax items (holding ``_METADATA``) among a step's ``names``."""
    return [
        (name, posixpath.join(step, name))
        for name in names
        if store.exists(posixpath.join(step, name, TREE_FILE))
    ]


class _Array:
    """An array leaf: its item, its name in the item's store and its Zarr driver."""

    __slots__ = ("driver", "item", "key", "name")

    def __init__(self, item: _Item, name: str, driver: str, key: str) -> None:
        self.item, self.name, self.driver, self.key = item, name, driver, key


class _Item:
    """One Orbax item directory: its layout and (opened once) tensorstore key-value store."""

    def __init__(self, reader: OrbaxCheckpoint, prefix: str, path: str) -> None:
        self.reader, self.prefix, self.path = reader, prefix, path
        check_tree(reader.store, reader.path, path)  # tensorstore opens the files below it
        self.tree = read_json(
            reader.store, posixpath.join(path, TREE_FILE), MAX_TREE, "Orbax's tree"
        )
        if not isinstance(self.tree, dict) or not isinstance(self.tree.get("tree_metadata"), dict):
            raise UnsupportedFormatError(
                f"{reader.store.display(posixpath.join(path, TREE_FILE))} has no 'tree_metadata'; "
                "ckptlab reads PyTree checkpoints of orbax-checkpoint 0.5 and later."
            )
        names = reader.store.list_dir(path)
        self.ocdbt = "manifest.ocdbt" in names or any(n.startswith("ocdbt.process_") for n in names)
        self.local = os.path.abspath(path)
        self._kvstore: Any = None
        self._lock = threading.Lock()

    def kvstore_spec(self) -> dict[str, Any]:
        if self.ocdbt:
            return {"driver": "ocdbt", "base": f"file://{self.local}/"}
        return {"driver": "file", "path": f"{self.local}/"}

    def kvstore(self) -> Any:
        with self._lock:
            if self._kvstore is None:
                ts = self.reader.tensorstore
                spec = self.kvstore_spec()
                self._kvstore = ts.KvStore.open(spec, context=self.reader.context).result()
            return self._kvstore


class OrbaxCheckpoint(ForeignCheckpoint):
    """An Orbax PyTree checkpoint (kind ``name``; keys = leaf paths, ``params/dense/kernel``).

    ``literals`` holds the leaves that are not arrays (strings, ``None``); ``tree_metadata``
    the parsed ``_METADATA`` of each item.
    """

    format_name = "Orbax checkpoint"

    def __init__(self, store: ByteStore, path: str, items: list[tuple[str, str]]) -> None:
        self.store = store
        self.path = path
        if not isinstance(store, LocalStore):
            raise UnsupportedFormatError(
                f"{store.display(path)} is an Orbax checkpoint; ckptlab reads those from local "
                "directories only (through tensorstore). Copy it to a local disk first."
            )
        self.tensorstore = require("tensorstore", "orbax", "Orbax checkpoints")
        self.context = self.tensorstore.Context()
        self.literals: dict[str, Any] = {}
        self._arrays: dict[str, _Array] = {}
        self._opened: dict[str, Any] = {}
        """Key -> the open tensorstore array."""
        self._lock = threading.Lock()
        values: dict[str, StoredValue] = {}
        self.tree_metadata: dict[str, Any] = {}
        for prefix, item_path in items:
            item = _Item(self, prefix, item_path)
            self.tree_metadata[prefix] = item.tree
            values.update(self._leaves(item))
        kinds = sorted({"OCDBT" if a.item.ocdbt else "plain" for a in self._arrays.values()})
        drivers = sorted({a.driver for a in self._arrays.values()})
        self.format_name = f"Orbax checkpoint ({', '.join(kinds + drivers) or 'empty'})"
        super().__init__(store, path, name_document(self.format_name, values))

    def _bad(self, where: str, what: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(
            f"{self.store.display(where)} is not a readable Orbax checkpoint: {what}. It is "
            "damaged or was not completely written; copy it again from its source."
        )

    def _leaves(self, item: _Item) -> dict[str, StoredValue]:
        """Every array leaf of one item, its Zarr metadata read in one concurrent batch."""
        leaves: list[tuple[str, str]] = []
        strings: list[str] = []
        where = self.store.display(posixpath.join(item.path, TREE_FILE))
        paths: dict[str, list[str]] = {}
        """Key -> the leaf path it joins (two leaves may not join to one key)."""
        for entry in item.tree["tree_metadata"].values():
            path = self._key_path(item, entry)
            key = posixpath.join(item.prefix, *path) if item.prefix else "/".join(path)
            other = paths.setdefault(key, path)
            if other is not path:
                raise UnsupportedFormatError(
                    f"{where} has two leaves, {tuple(other)!r:.200} and {tuple(path)!r:.200}, "
                    f"both named {key!r:.200} once their keys are joined with '/'; ckptlab "
                    "cannot list both. Load it with Orbax and rename one."
                )
            metadata = entry.get("value_metadata", {})
            if not isinstance(metadata, dict):
                raise self._bad(item.path, f"leaf {key!r:.80} has value_metadata {metadata!r:.60}")
            kind = metadata.get("value_type")
            if kind in ARRAY_TYPES:
                name = ".".join(path)  # the array's key in the item's store: stays inside it
                safe_member(self.store, item.path, name, f"{where} (the array of leaf {key!r:.80})")
                leaves.append((key, name))
            elif kind == "string":
                strings.append(key)
                self.literals[key] = ".".join(path)
            else:
                self.literals[key] = None
        if strings:
            self._read_strings(item, strings)
        documents = self._array_metadata(item, [name for _, name in leaves])
        values = {}
        for (key, name), (driver, metadata) in zip(leaves, documents, strict=True):
            shape, dtype = self._spec(item, name, driver, metadata)
            self._arrays[key] = _Array(item, name, driver, key)
            values[key] = StoredValue(
                key=key,
                shape=shape,
                dtype=dtype,
                foreign=ForeignLocation(
                    format="orbax",
                    file=f"{posixpath.basename(item.path)}/{name}",
                    offset=0,
                    length=int(np.prod(shape)) * numpy_dtype(dtype).itemsize,
                    detail=f"{driver} array{' in OCDBT' if item.ocdbt else ''}; no checksum",
                ),
            )
        return values

    def _key_path(self, item: _Item, entry: Any) -> list[str]:
        keys = entry.get("key_metadata") if isinstance(entry, dict) else None
        if not isinstance(keys, list) or not keys:
            raise self._bad(item.path, f"a leaf is described by {entry!r:.80}")
        path = []
        for part in keys:
            name = part.get("key") if isinstance(part, dict) else None
            if not isinstance(name, str | int):
                raise self._bad(item.path, f"a leaf path holds the key {name!r:.60}")
            path.append(str(name))
        return path

    def _array_metadata(self, item: _Item, names: list[str]) -> list[tuple[str, Any]]:
        """``(driver, Zarr metadata)`` of every array, read concurrently."""
        if not names:
            return []
        try:
            kvstore = item.kvstore()
            pending = [
                (kvstore.read(f"{n}/.zarray"), kvstore.read(f"{n}/zarr.json")) for n in names
            ]
            results = [(v2.result(), v3.result()) for v2, v3 in pending]
        except TENSORSTORE_ERRORS as error:  # a damaged manifest.ocdbt or d/ file
            raise self._bad(
                item.path, f"tensorstore could not read it ({str(error)[:300]})"
            ) from None
        found = []
        for name, (v2, v3) in zip(names, results, strict=True):
            for driver, result in (("zarr", v2), ("zarr3", v3)):
                if result.state == "value":
                    raw = bytes(result.value)
                    if len(raw) > MAX_ARRAY_METADATA:
                        raise self._bad(item.path, f"the metadata of {name} is {len(raw)} bytes")
                    try:
                        found.append((driver, json.loads(raw)))
                    except (ValueError, RecursionError):
                        raise self._bad(item.path, f"the metadata of {name} is not JSON") from None
                    break
            else:
                raise NotFoundError(
                    f"{self.store.display(item.path)}: the array {name!r} named by {TREE_FILE} is "
                    "missing. The checkpoint is incomplete; copy all of it."
                )
        return found

    def _spec(
        self, item: _Item, name: str, driver: str, metadata: Any
    ) -> tuple[tuple[int, ...], str]:
        """Shape and dtype from a ``.zarray`` (``dtype``) or a ``zarr.json`` (``data_type``)."""
        shape = metadata.get("shape") if isinstance(metadata, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise self._bad(item.path, f"array {name} has shape {shape!r:.60}")
        where = f"Array {name!r} of {self.store.display(item.path)}"
        kind = metadata.get("dtype" if driver == "zarr" else "data_type")
        dtype = _dtype(kind)
        if dtype is None:
            raise UnsupportedFormatError(
                f"{where} has data type {kind!r:.60}; ckptlab reads "
                "bool, integers, floats (bfloat16 and float8 too) and complex."
            )
        return check_shape(tuple(shape), where), dtype

    def _read_strings(self, item: _Item, keys: list[str]) -> None:
        path = posixpath.join(item.path, STRINGS_FILE)
        found = (
            read_json(self.store, path, MAX_TREE, "Orbax's string leaves")
            if self.store.exists(path)
            else {}
        )
        for key in keys:
            value = found.get(self.literals[key]) if isinstance(found, dict) else None
            self.literals[key] = value

    def file(self, name: str) -> str:
        """The store key of a file inside the checkpoint directory."""
        return posixpath.join(self.path, name)

    def _open(self, array: _Array) -> Any:
        """The tensorstore of one array (opened once; its metadata is read again here)."""
        with self._lock:
            opened = self._opened.get(array.key)
        if opened is None:
            spec = {
                "driver": array.driver,
                "kvstore": array.item.kvstore_spec(),
                "path": array.name,
            }
            ts = self.tensorstore
            opened = ts.open(spec, open=True, read=True, context=self.context).result()
            with self._lock:
                self._opened[array.key] = opened
        return opened

    def _load(self, value: StoredValue, out: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        target = out if out is not None else self.allocate(value)
        array = self._arrays[value.key]
        try:
            source = self._open(array)
            if tuple(source.shape) != value.shape:
                raise self.damaged(value.key, f"tensorstore sees shape {list(source.shape)}")
            self.tensorstore.array(target).write(source).result()
        except TENSORSTORE_ERRORS as error:
            if isinstance(error, CorruptCheckpointError):
                raise
            raise self.damaged(value.key, f"tensorstore could not read it ({error})") from None
        return target


def _dtype(kind: Any) -> str | None:
    """The dtype name for a Zarr v2 dtype string or v3 data type (``None``: not numbers).

    A v2 string is parsed by numpy only when it is a plain type string (byte order, kind, size:
    :data:`TYPESTR`): sub-array (``(2,)f4``), structured, date and platform-sized (``p``)
    dtypes are no checkpoint values, and numpy raises ``ValueError`` on some of them.

    Examples
    --------
    >>> _dtype("<f4"), _dtype("bfloat16"), _dtype("bool"), _dtype(">i8"), _dtype("|O")
    ('float32', 'bfloat16', 'bool', 'int64', None)
    >>> _dtype("(99999999999,)f4"), _dtype("(2,)<f4"), _dtype("<f4,<f4"), _dtype("p")
    (None, None, None, None)
    """
    if not isinstance(kind, str):
        return None
    bare = kind.lstrip("<>|=")
    if bare in ITEMSIZE or (
        bare in FOREIGN_ITEMSIZE and bare != "string" and bare not in UNREADABLE_DTYPES
    ):
        return bare
    if TYPESTR.fullmatch(kind) is None:
        return None
    try:
        name = np.dtype(kind).name
    except TypeError:  # a size numpy has no type of (<i3)
        return None
    return name if name in ITEMSIZE else None
