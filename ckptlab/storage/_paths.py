"""Opening what a user names: a checkpoint, or a checkpoint directory's latest one (internal)."""

from __future__ import annotations

import os

from ckptlab.storage._fsspec import resolve
from ckptlab.storage._kv import ByteStore
from ckptlab.storage._reader import StoredCheckpoint, open_checkpoint
from ckptlab.storage._state import STATE_FILENAME, complete_latest

__all__ = ["open_path", "resolve_path"]


def open_path(path_or_dir: str | os.PathLike[str]) -> StoredCheckpoint:
    """Open a checkpoint, resolving a checkpoint directory to its latest checkpoint.

    Parameters
    ----------
    path_or_dir
        A checkpoint (path or URL), or a directory whose state file names one.

    Returns
    -------
    StoredCheckpoint
        The opened checkpoint: its document is read, no value is.

    Raises
    ------
    NotFoundError
        Nothing is there, or the directory's state file names no complete checkpoint.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> directory = tempfile.mkdtemp()
    >>> path = ck.Checkpoint(w=ck.Variable(1.0)).save(os.path.join(directory, "ckpt"))
    >>> open_path(directory).display_path == path
    True
    """
    return open_checkpoint(*resolve_path(path_or_dir))


def resolve_path(path_or_dir: str | os.PathLike[str]) -> tuple[ByteStore, str]:
    """The store and key of a checkpoint, or of a checkpoint directory's latest checkpoint.

    Parameters
    ----------
    path_or_dir
        As for :func:`open_path`.

    Returns
    -------
    tuple of (ByteStore, str)
        The store holding the checkpoint and its key in that store.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> directory = tempfile.mkdtemp()
    >>> path = ck.Checkpoint(w=ck.Variable(1.0)).save(os.path.join(directory, "ckpt"))
    >>> store, key = resolve_path(directory)
    >>> key.endswith("ckpt-1")
    True
    """
    store, key = resolve(path_or_dir)
    if store.exists(f"{key}/{STATE_FILENAME}") and not store.exists(f"{key}/zarr.json"):
        store, key = resolve(store.display(complete_latest(store, key)))
    return store, key
