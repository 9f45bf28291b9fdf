"""Readers for checkpoints written by other frameworks, detected by content (internal).

TensorFlow bundles (TF2 object-based and TF1 ``Saver`` V2: ``P.index`` + ``P.data-*``), TF1
``Saver`` V1 files, ``torch.save`` files (zip and legacy), safetensors files, Hugging Face model
directories, PyTorch Distributed Checkpoints, Keras 3 weights, Orbax checkpoints and GGUF files.
Each reader is a :class:`~ckptlab.storage.StoredCheckpoint`, so restore, the readers and the
explorer accept them unchanged.  Nothing here imports TensorFlow, PyTorch, JAX, Keras or Orbax
(``h5py``, ``tensorstore`` and ``gguf`` are optional extras), and nothing named in a file is
ever imported or called.
"""

from __future__ import annotations

import posixpath
import re

from ckptlab.errors import CorruptCheckpointError, NotACheckpointError
from ckptlab.storage._foreign._base import ForeignCheckpoint
from ckptlab.storage._foreign._bundle import TensorBundle, read_index
from ckptlab.storage._foreign._dcp import METADATA_FILE, DCPCheckpoint
from ckptlab.storage._foreign._dcp_metadata import looks_like_metadata
from ckptlab.storage._foreign._gguf import GGUFFile, looks_like_gguf
from ckptlab.storage._foreign._hf import HFShardedDirectory, is_index, open_hf_directory, read_json
from ckptlab.storage._foreign._keras import (
    HDF5_MAGIC,
    KerasWeights,
    is_keras_zip,
    is_sharded_weights_map,
    shard_files,
)
from ckptlab.storage._foreign._members import check_inside
from ckptlab.storage._foreign._orbax import OrbaxCheckpoint, find_orbax_items
from ckptlab.storage._foreign._safetensors import SafetensorsFile, looks_like_safetensors
from ckptlab.storage._foreign._table import MAGIC, Table
from ckptlab.storage._foreign._tfv1 import MAX_V1_BYTES, SavedTensorSlicesFile, looks_like_v1
from ckptlab.storage._foreign._torch import StoreFile, TorchFile, open_zip
from ckptlab.storage._kv import ByteStore

__all__ = [
    "DCPCheckpoint",
    "ForeignCheckpoint",
    "GGUFFile",
    "HFShardedDirectory",
    "KerasWeights",
    "OrbaxCheckpoint",
    "SafetensorsFile",
    "SavedTensorSlicesFile",
    "TensorBundle",
    "TorchFile",
    "bundle_files",
    "bundle_prefix",
    "is_foreign_checkpoint",
    "open_foreign",
]

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}\Z")
MAX_JSON = 64 * 2**20
KNOWN = (
    "its own checkpoint directories, TensorFlow checkpoints (pass the prefix, e.g. 'ckpt-1' for "
    "ckpt-1.index), TF1 V1 files, torch.save files, safetensors files, Hugging Face model "
    "directories (or their index JSON), PyTorch Distributed Checkpoint directories, Keras 3 "
    ".weights.h5 and .keras files, Orbax checkpoint directories and GGUF files"
)


def bundle_prefix(path: str) -> str:
    """Return the TensorFlow prefix a user meant: ``ckpt-1`` for ``ckpt-1.index`` or a data file.

    Examples
    --------
    >>> bundle_prefix("d/ckpt-1.data-00000-of-00001"), bundle_prefix("d/ckpt-1.index")
    ('d/ckpt-1', 'd/ckpt-1')
    """
    if path.endswith(".index"):
        return path[: -len(".index")]
    match = _DATA_SUFFIX.search(path)
    return path[: match.start()] if match else path


def bundle_files(store: ByteStore, prefix: str) -> list[str]:
    """The files of the TensorFlow bundle ``prefix``: its ``.index`` first, then its data files.

    Exactly the names TensorFlow gives them, ``<prefix>.index`` and
    ``<prefix>.data-NNNNN-of-NNNNN``: the directory is listed and each name compared whole, never
    used as a pattern (``ckpt-1`` leaves ``ckpt-10``'s files alone, ``runs[1]/ckpt-1`` those of
    ``runs1/ckpt-1``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from ckptlab.storage import LocalStore
    >>> directory = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["ckpt-1.data-00000-of-00001", "ckpt-1.index", "ckpt-10.index", "ckpt-1.meta"]:
    ...     (directory / name).touch()
    >>> [posixpath.basename(f) for f in bundle_files(LocalStore(), f"{directory}/ckpt-1")]
    ['ckpt-1.index', 'ckpt-1.data-00000-of-00001']
    """
    parent, name = posixpath.split(prefix)
    entries = store.list_dir(parent)
    index = [entry for entry in entries if entry == f"{name}.index"]
    data = [e for e in entries if e.startswith(name) and _DATA_SUFFIX.fullmatch(e, len(name))]
    return [posixpath.join(parent, entry) for entry in index + sorted(data)]


def is_foreign_checkpoint(store: ByteStore, path: str) -> bool:
    """Cheap check: a TensorFlow prefix, or a single file (detected fully when opened)."""
    return store.exists(f"{bundle_prefix(path)}.index") or store.exists(path)


def open_foreign(store: ByteStore, path: str) -> ForeignCheckpoint | None:
    """Open a foreign checkpoint at ``path`` by content; ``None`` when nothing is there.

    A TensorFlow bundle is a prefix, so it is found by its ``<prefix>.index``, whose content
    decides: a table that is not a V1 file.  Anything else is recognised by the file's own
    bytes, whatever its name (``model.pt`` may be a safetensors file).

    Raises
    ------
    NotACheckpointError
        ``path`` is a file that is not a checkpoint ckptlab recognises, or a directory of
        several checkpoints with nothing joining them.
    UnsupportedFormatError
        A refused pickle, a link out of a checkpoint's directory.
    CorruptCheckpointError
        The file is recognised but damaged or hostile; the message names the file.
    """
    prefix = bundle_prefix(path)
    index = f"{prefix}.index"
    has_index, is_file = store.exists(index), store.exists(path)
    if has_index:
        if not is_file:  # the prefix: the index must be a bundle index (typed errors if not)
            return TensorBundle(store, prefix)
        table = _bundle_index(store, index)
        if table is not None:
            return TensorBundle(store, prefix, table)
    if not is_file:
        return _open_directory(store, path) if store.is_dir(path) else None
    found = _open_file(store, path)
    if found is not None:
        return found
    if has_index:  # neither a bundle nor a file ckptlab knows: say what is wrong with the index
        return TensorBundle(store, prefix)
    head = bytearray(min(store.size(path) or 0, 8))
    store.read_into(path, memoryview(head), 0)
    shown = f"first bytes {bytes(head).hex(' ')}" if head else "the file is empty"
    raise NotACheckpointError(
        f"{store.display(path)} is a file, but not a checkpoint ckptlab recognises ({shown}). "
        f"ckptlab opens {KNOWN}. Is {posixpath.basename(path)!r} the right file?"
    )


def _bundle_index(store: ByteStore, index: str) -> Table | None:
    """The table of ``index`` if it is a bundle index (table magic, not a V1 file), else None."""
    size = store.size(index) or 0
    tail = bytearray(min(size, 8))
    store.read_into(index, memoryview(tail), size - len(tail))
    if bytes(tail) != MAGIC:
        return None
    table = read_index(store, index)
    return None if looks_like_v1(table) else table


def _open_directory(store: ByteStore, path: str) -> ForeignCheckpoint | None:
    """Recognise a directory by its entry files' content; ``None`` if nothing fits."""
    names = store.list_dir(path)
    metadata = posixpath.join(path, METADATA_FILE)
    if METADATA_FILE in names and looks_like_metadata(_head(store, metadata, inside=path)):
        return DCPCheckpoint(store, path)
    items = find_orbax_items(store, path, names)
    if items:
        return OrbaxCheckpoint(store, path, items)
    found = open_hf_directory(store, path, names, _open_file)
    return found if found is not None else _open_keras_directory(store, path, names)


def _open_keras_directory(
    store: ByteStore, path: str, names: list[str]
) -> ForeignCheckpoint | None:
    """A folder holding one Keras checkpoint; ``None`` if it holds none.

    A ``.weights.json`` is the checkpoint its shards (``model_00000.weights.h5``) are parts of;
    without one, a single ``.keras`` or ``.weights.h5`` file is.  Several of either are several
    checkpoints (a run of ``epoch_3.weights.h5`` files): the user picks one.
    """
    for suffixes in ((".weights.json",), (".keras", ".weights.h5")):
        found = sorted(
            n for n in names if n.endswith(suffixes) and store.size(posixpath.join(path, n))
        )
        if len(found) > 1:  # several checkpoints (a run of epoch_3.weights.h5 files), not one
            raise NotACheckpointError(
                f"{store.display(path)} holds several Keras checkpoints ({', '.join(found[:5])}"
                f"{', ...' if len(found) > 5 else ''}); pass one of them."
            )
        if found:
            key = posixpath.join(path, found[0])
            check_inside(store, path, key)
            return _open_file(store, key)
    return None


def _zip_names(store: ByteStore, path: str, size: int) -> list[str]:
    """Member names of a zip (its central directory only); empty if it does not parse."""
    try:
        _, members = open_zip(StoreFile(store, path, size), CorruptCheckpointError)
    except CorruptCheckpointError:
        return []  # the torch reader reports what is wrong with it
    return [member.filename for member in members]


def _head(store: ByteStore, path: str, count: int = 96, inside: str | None = None) -> bytes:
    """The first bytes of a file (fewer if it is shorter); ``inside``: its checkpoint directory."""
    if inside is not None:
        check_inside(store, inside, path)
    head = bytearray(min(store.size(path) or 0, count))
    store.read_into(path, memoryview(head), 0)
    return bytes(head)


def _open_json(store: ByteStore, path: str) -> ForeignCheckpoint | None:
    """A JSON file that stands for a checkpoint: an HF index (its directory is opened)."""
    data = read_json(store, path, MAX_JSON, "a checkpoint index")
    if is_sharded_weights_map(data):  # Keras: group path -> [shard files]
        return KerasWeights(store, path, shards=shard_files(data))
    if isinstance(data, dict) and "tree_metadata" in data:  # Orbax's _METADATA
        directory = posixpath.dirname(path)
        return OrbaxCheckpoint(store, directory, [("", directory)])
    if is_index(data):
        directory, name = posixpath.split(path)
        return HFShardedDirectory(store, directory, name, _open_file)
    return None


def _open_file(store: ByteStore, path: str) -> ForeignCheckpoint | None:
    """Recognise a single file by its first and last bytes; ``None`` if nothing fits."""
    size = store.size(path) or 0
    head = _head(store, path)
    if looks_like_safetensors(head, size):  # first: its length may start with 0x80
        return SafetensorsFile(store, path)
    if looks_like_metadata(head):  # a DCP .metadata pickle: its directory is the checkpoint
        return DCPCheckpoint(store, posixpath.dirname(path))
    if head[:4] == b"PK\x03\x04" and is_keras_zip(_zip_names(store, path, size)):
        return KerasWeights(store, path, zipped=True)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return TorchFile(store, path)
    if head[:8] == HDF5_MAGIC:
        return KerasWeights(store, path)
    if looks_like_gguf(head):
        return GGUFFile(store, path)
    if head.lstrip()[:1] == b"{":  # an index or metadata: a file of a multi-file checkpoint
        check_inside(store, posixpath.dirname(path), path)
        return _open_json(store, path)
    tail = bytearray(min(size, 8))
    store.read_into(path, memoryview(tail), size - len(tail))
    if bytes(tail) == MAGIC and size <= MAX_V1_BYTES:
        table = Table(store.read(path), store.display(path))
        if looks_like_v1(table):
            return SavedTensorSlicesFile(store, path, table)
        raise NotACheckpointError(
            f"{store.display(path)} is a TensorFlow table but not a V1 checkpoint: the index of "
            f"a bundle, which is opened through its prefix, and {posixpath.basename(path)!r} is "
            "not named '<prefix>.index'. Rename it, or pass the prefix of its bundle."
        )
    return None
