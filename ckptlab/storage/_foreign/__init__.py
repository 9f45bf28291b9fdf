"""Readers for checkpoints written by other frameworks, detected by content (internal).

TensorFlow bundles (TF2 object-based and TF1 ``Saver`` V2: ``P.index`` + ``P.data-*``), TF1
``Saver`` V1 files, ``torch.save`` files (zip and legacy) and safetensors files.  Each reader is
a :class:`~ckptlab.storage.StoredCheckpoint`, so restore, the readers and the explorer accept
them unchanged.  Nothing here imports TensorFlow or PyTorch, and nothing named in a file is
ever imported or called.
"""

from __future__ import annotations

import posixpath
import re

from ckptlab.errors import UnsupportedFormatError
from ckptlab.storage._foreign._base import ForeignCheckpoint
from ckptlab.storage._foreign._bundle import TensorBundle
from ckptlab.storage._foreign._safetensors import SafetensorsFile, looks_like_safetensors
from ckptlab.storage._foreign._table import MAGIC, Table
from ckptlab.storage._foreign._tfv1 import MAX_V1_BYTES, SavedTensorSlicesFile, looks_like_v1
from ckptlab.storage._foreign._torch import TorchFile
from ckptlab.storage._kv import ByteStore

__all__ = [
    "ForeignCheckpoint",
    "SafetensorsFile",
    "SavedTensorSlicesFile",
    "TensorBundle",
    "TorchFile",
    "bundle_prefix",
    "is_foreign_checkpoint",
    "open_foreign",
]

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


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


def is_foreign_checkpoint(store: ByteStore, path: str) -> bool:
    """Cheap check: a TensorFlow prefix, or a single file (detected fully when opened)."""
    return store.exists(f"{bundle_prefix(path)}.index") or store.exists(path)


def open_foreign(store: ByteStore, path: str) -> ForeignCheckpoint | None:
    """Open a foreign checkpoint at ``path`` by content; ``None`` when nothing is there.

    Raises
    ------
    UnsupportedFormatError
        ``path`` is a file that is not a checkpoint ckptlab recognises (or a refused pickle).
    CorruptCheckpointError
        The file is recognised but damaged or hostile; the message names the file.
    """
    prefix = bundle_prefix(path)
    if store.exists(f"{prefix}.index"):
        return TensorBundle(store, prefix)
    if not store.exists(path):
        return None
    size = store.size(path) or 0
    head = bytearray(min(size, 16))
    store.read_into(path, memoryview(head), 0)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return TorchFile(store, path)
    if looks_like_safetensors(bytes(head), size):
        return SafetensorsFile(store, path)
    tail = bytearray(min(size, 8))
    store.read_into(path, memoryview(tail), size - len(tail))
    if bytes(tail) == MAGIC and size <= MAX_V1_BYTES:
        table = Table(store.read(path), store.display(path))
        if looks_like_v1(table):
            return SavedTensorSlicesFile(store, path, table)
    raise UnsupportedFormatError(
        f"{store.display(path)} is a file, but not a checkpoint ckptlab recognises (first bytes "
        f"{bytes(head[:8]).hex(' ')}). ckptlab opens its own checkpoint directories, TensorFlow "
        "checkpoints (pass the prefix, e.g. 'ckpt-1' for ckpt-1.index), TF1 V1 files, "
        f"torch.save files and safetensors files. Is {posixpath.basename(path)!r} the right file?"
    )
