"""Atomic publication of a checkpoint written under a temporary name (internal).

Locally a checkpoint is written into a hidden sibling ``.<name>.tmp-<uuid>`` and published with
one rename (an atomic exchange when replacing an existing checkpoint, so readers see the old or
the new one, never neither).  On stores without rename the root ``zarr.json`` is the commit
object: it is written last with a create-only conditional write, so a reader that finds it
finds everything it lists, and of two racing writers only one commits (FORMAT.md, "Commit").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import posixpath
import uuid
from collections.abc import Callable

from ckptlab.errors import CkptlabError
from ckptlab.storage._kv import ByteStore, fsync_dir
from ckptlab.storage._layout import ROOT_DOCUMENT

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    return function


_RENAMEAT2 = _libc_renameat2()


def exchange(a: str, b: str) -> bool:
    """Atomically swap two directories (Linux ``renameat2``); return False if unsupported."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def temporary_name(path: str) -> str:
    """A hidden sibling of ``path`` for writing (``dir/.ckpt-1.tmp-<uuid>``)."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")


def clean_leftovers(store: ByteStore, path: str) -> None:
    """Remove temporary siblings of ``path`` left by an interrupted save."""
    parent, name = posixpath.split(path)
    for entry in store.list_dir(parent):
        if entry.startswith((f".{name}.tmp-", f".{name}.old-")):
            store.delete_tree(posixpath.join(parent, entry))


ABORTED = "aborted"
"""On object stores, what an aborted multi-worker save leaves in its prefix (FORMAT.md 6): the
number stays taken, so a hung worker that wakes up later cannot write into the next save."""
OWN_ENTRIES = frozenset({"data", "values", "packed", ABORTED})
"""Names a checkpoint prefix holds besides ``zarr.json`` (anything else is not ours)."""


def prepare_in_place(store: ByteStore, path: str, *, durable: bool) -> None:
    """Make ``path`` empty before an in-place write on a store without rename.

    A committed checkpoint is retracted (its commit object goes first); the remains of an
    interrupted write (no commit object, only ckptlab's own names) are deleted; anything else
    is refused, so a save never deletes data it did not write.
    """
    entries = set(store.list_dir(path))
    if ROOT_DOCUMENT in entries:
        retract(store, path, durable=durable)
    elif entries and entries <= OWN_ENTRIES:
        store.delete_tree(path)
    elif entries:
        raise CkptlabError(
            f"Refusing to write a checkpoint at {store.display(path)}: the prefix holds "
            f"{sorted(entries)[:5]}, which ckptlab did not write. Choose another prefix or remove "
            "it yourself."
        )


def is_committed(store: ByteStore, path: str) -> bool:
    """Whether a complete checkpoint exists at ``path``."""
    return store.exists(posixpath.join(path, ROOT_DOCUMENT))


def publish(store: ByteStore, staged: str, path: str, *, durable: bool) -> None:
    """Publish the checkpoint written at ``staged`` under ``path`` (rename-capable stores)."""
    if durable:
        store.sync_tree(staged)
    if store.is_dir(path):
        if not is_committed(store, path) and store.list_dir(path):
            raise CkptlabError(
                f"Refusing to overwrite {store.display(path)}: it exists and is not a ckptlab "
                "checkpoint. Choose another prefix or remove it yourself."
            )
        if exchange(staged, path):
            store.delete_tree(staged)  # now the old checkpoint
            if durable:  # the exchange is a directory entry change: make it durable too
                fsync_dir(posixpath.dirname(path) or ".")
            return
        parent, name = posixpath.split(path)
        old = posixpath.join(parent, f".{name}.old-{uuid.uuid4().hex}")
        store.rename(path, old, durable=durable)
        store.rename(staged, path, durable=durable)
        store.delete_tree(old)
        return
    store.rename(staged, path, durable=durable)


def retract(store: ByteStore, path: str, *, durable: bool) -> None:
    """Delete a checkpoint so that it stops being valid before its bytes go."""
    if store.supports_rename and store.is_dir(path):
        parent, name = posixpath.split(path)
        doomed = posixpath.join(parent, f".{name}.old-{uuid.uuid4().hex}")
        store.rename(path, doomed, durable=durable)
        store.delete_tree(doomed)
        return
    store.delete_tree(posixpath.join(path, ROOT_DOCUMENT))
    store.delete_tree(path)
