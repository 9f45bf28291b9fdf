"""Atomic publication of a checkpoint written under a temporary name (internal).

Locally a checkpoint is written into a hidden sibling ``.<name>.tmp-<uuid>`` and published with
one rename (an atomic exchange when replacing an existing checkpoint, so readers see the old or
the new one, never neither).  On stores without rename the root ``zarr.json`` is the commit
object: it is written last with a create-only conditional write, so a reader that finds it
finds everything it lists, and of two racing writers only one commits (FORMAT.md, "Commit").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator

from ckptlab.errors import (
    NotFoundError,
    StorageError,
    StorageExistsError,
    StorageNotADirectoryError,
    StoragePermissionError,
)
from ckptlab.storage._faults import (
    blocking_file,
    faults_translated,
    noting_failure,
    told_as_writing,
)
from ckptlab.storage._foreign import bundle_files
from ckptlab.storage._kv import (
    ByteStore,
    LocalStore,
    create_locked,
    fsync_dir,
    remove_if_abandoned,
    still_names,
)
from ckptlab.storage._layout import ROOT_DOCUMENT

logger = logging.getLogger("ckptlab")

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


class Staging:
    """The hidden sibling a local checkpoint or export is written into before it is renamed.

    Every local writer of a tree uses it: single-process saves (``write_checkpoint``),
    multi-worker saves (the coordinator holds it while the workers write, ``begin_staging``)
    and safetensors exports (a directory, or with ``directory=False`` a single file).  Local
    writes create their missing parent directories, so a write made after something removed
    the staging directory (``rm -rf`` of the run directory by another job, or its parent's)
    silently creates a new one, holding only what is written from then on.  The directory is
    created here, once, and held open until :meth:`close`; :meth:`check`, called after the
    last write and before the rename, refuses a path that no longer names it (an open
    directory's inode cannot be reused for a new one).  Checking costs a few system calls per
    save, none per value or file.

    The open directory (or file) is also ``flock``-ed until :meth:`close` (``create_locked``),
    so that another writer of the same path (a restarted job racing its predecessor) takes it
    for a live writer's, not for the leftover of a killed one (:func:`remove_leftover`).

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "runs", "ckpt-1")
    >>> staging = Staging(LocalStore(), path)
    >>> staging.check()
    >>> shutil.rmtree(os.path.dirname(path)); os.makedirs(staging.path)  # removed, then re-made
    >>> staging.check()
    Traceback (most recent call last):
    ckptlab.errors.NotFoundError: Could not write .../.ckpt-1.tmp-...: No such file or directory ...
    >>> staging.close()
    """

    def __init__(self, store: ByteStore, path: str, *, directory: bool = True) -> None:
        self.store = store
        parent, name = posixpath.split(path)
        self._made = _missing_directories(parent)
        """The parent directories that did not exist: created here, removed by :meth:`discard`."""
        with faults_translated("write", store.display(path)):  # the run directory too
            self.path, self._fd = create_locked(parent, f".{name}.tmp-", directory=directory)

    def check(self) -> None:
        """Raise :class:`NotFoundError` unless :attr:`path` is still the directory made here.

        The error names the staging path, as a write failing there would; the writer tells
        it as one writing the checkpoint (``told_as``).
        """
        if still_names(self.path, self._fd):
            return
        missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.path)
        raise NotFoundError(
            f"Could not write {self.path}: {missing.strerror} (it, or a directory above it, "
            "was removed while the save wrote it)."
        ) from missing

    def publish(self, path: str, *, durable: bool) -> None:
        """:meth:`check`, then publish the checkpoint written here as ``path`` (:func:`publish`)."""
        self.check()
        publish(self.store, self.path, path, durable=durable)

    def discard(self) -> None:
        """Delete what was written here, and the parent directories made for it if empty.

        A failed write leaves the file system as it found it, missing parents included
        (``runs/new/ckpt-1``: ``runs/new`` goes).  Removal stops at the first directory that
        is not empty (something else was put there meanwhile).
        """
        self.store.delete_tree(self.path)
        for directory in reversed(self._made):
            try:
                os.rmdir(directory)
            except OSError:  # not empty, or gone: leave it and what is above it
                return

    def close(self) -> None:
        """Let go of the directory (published, or deleted after a failure)."""
        os.close(self._fd)


def _missing_directories(directory: str) -> list[str]:
    """``directory`` and those of its parents that do not exist yet, outermost first."""
    top = _nearest_directory(directory)
    missing = []
    while directory != top:
        missing.append(directory)
        directory = posixpath.dirname(directory)
    return missing[::-1]


@contextlib.contextmanager
def writing_into(
    store: ByteStore,
    staged: str,
    path: str,
    staging: Staging | None,
    *,
    commit: str = ROOT_DOCUMENT,
) -> Iterator[None]:
    """The writes and the publication of ``path`` into ``staged`` (``path`` on object stores).

    On failure what was written is deleted and the error is told as one writing ``path``
    (:func:`told_as_writing`: the staging copy is gone, an object is one part of many);
    ``staging``, if any, is closed either way.  Locally that is the ``staged`` file or tree,
    and the parent directories ``staging`` created (:meth:`Staging.discard`).
    On object stores, which are written in place, it is everything below ``path``, retracted
    as a committed checkpoint is (its ``commit`` object first, :func:`retract`): the caller
    made sure ``path`` held nothing of anyone else's before writing (a save retracts its own
    old checkpoint or leftovers and refuses anything else, :func:`prepare_in_place`; an
    export refuses an existing destination).
    """
    with told_as_writing(store.display(path)):
        try:
            yield
        except BaseException as error:

            def discard() -> None:
                if staging is not None:
                    staging.discard()
                elif store.supports_rename:
                    store.delete_tree(staged)
                else:
                    retract(store, staged, durable=False, commit=commit)

            noting_failure(error, f"deleting {store.display(staged)}", discard)
            raise
        finally:
            if staging is not None:
                staging.close()


def remove_leftover(store: ByteStore, path: str) -> bool:
    """Delete ``path``, left by an interrupted save, unless a live writer holds it.

    Returns whether it was deleted.  Locally every writer holds an ``flock`` on its staging
    directory until it is published or deleted (:class:`Staging`), and the kernel releases
    the locks of a dead process, so only what killed writers left goes.  On object stores,
    which have no locks, ``path`` is deleted.
    """
    if not store.supports_rename:
        store.delete_tree(path)
        return True
    with faults_translated("delete", store.display(path)):
        return remove_if_abandoned(path, store.delete_tree)


def clean_leftovers(store: ByteStore, path: str) -> None:
    """Remove temporary siblings of ``path`` left by an interrupted save (WARNING if one stays).

    Those of a live writer of the same path are kept (:func:`remove_leftover`).
    """
    parent, name = posixpath.split(path)
    for entry in store.list_dir(parent):
        if entry.startswith((f".{name}.tmp-", f".{name}.old-")):
            try:
                remove_leftover(store, posixpath.join(parent, entry))
            except StorageError as error:
                logger.warning("Could not remove what an interrupted save left: %s", error)


def _not_a_checkpoint(store: ByteStore, path: str, what: str) -> StorageExistsError:
    return StorageExistsError(
        f"Refusing to write a checkpoint at {store.display(path)}: {what}, which ckptlab did not "
        "write. Choose another path or remove it yourself."
    )


def refuse_a_file_above(store: ByteStore, path: str, doing: str) -> None:
    """Refuse a local ``path`` below a file: nothing can be created at it.

    Raises :class:`StorageNotADirectoryError` naming the file; ``doing`` is what could not be
    done, for the message ("write a checkpoint at ...").

    Examples
    --------
    >>> import tempfile, os
    >>> notes = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> open(notes, "w").close()
    >>> refuse_a_file_above(LocalStore(), f"{notes}/ckpt-1", "write there")
    Traceback (most recent call last):
    ...
    ckptlab.errors.StorageNotADirectoryError: Cannot write there: ... is a file, so nothing ...
    """
    blocker = blocking_file(path) if isinstance(store, LocalStore) else None
    if blocker is not None:
        raise StorageNotADirectoryError(
            f"Cannot {doing}: {blocker} is a file, so nothing can be created inside it. Choose "
            "a path whose parents are directories, or move that file."
        )


def check_target(store: ByteStore, path: str) -> None:
    """Refuse, before anything is written, a local path a checkpoint cannot be written to.

    A file among its parents; a regular file or a directory that is not a checkpoint at the
    path itself; a checkpoint there whose directories are not writable (its old contents could
    not be deleted after the new checkpoint replaced it).
    """
    if not isinstance(store, LocalStore):
        return
    refuse_a_file_above(store, path, f"write a checkpoint at {path}")
    if store.exists(path):
        raise _not_a_checkpoint(store, path, "it is a file")
    parent = _nearest_directory(posixpath.dirname(path))
    if not _may_change(parent):
        raise StoragePermissionError(
            f"Cannot write a checkpoint at {path}: {parent} is not writable. Check its "
            "permissions, or write somewhere else."
        )
    if not store.is_dir(path):
        return
    if not is_committed(store, path):
        entries = store.list_dir(path)
        if entries:
            raise _not_a_checkpoint(store, path, f"it is a directory holding {entries[:5]}")
        return
    locked = _unwritable_directory(path)
    if locked is not None:
        raise StoragePermissionError(
            f"Cannot replace the checkpoint at {path}: {locked} is not writable, so the old "
            f"checkpoint could not be deleted. Make it writable (chmod -R u+w {path}) or write "
            "somewhere else."
        )


def _nearest_directory(path: str) -> str:
    """``path`` or its nearest existing ancestor (what creating ``path`` would change)."""
    while not os.path.isdir(path) and path != posixpath.dirname(path):
        path = posixpath.dirname(path)
    return path


def _may_change(directory: str) -> bool:
    """Whether this process may create, rename and delete entries of ``directory``."""
    effective = os.access in os.supports_effective_ids
    return os.access(directory, os.W_OK | os.X_OK, effective_ids=effective)


def _unwritable_directory(top: str) -> str | None:
    """A directory below ``top`` whose entries this process may not delete, if any."""
    for root, _dirs, _files in os.walk(top):
        if not _may_change(root):
            return root
    return None


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
        raise _not_a_checkpoint(store, path, f"the prefix holds {sorted(entries)[:5]}")


def is_committed(store: ByteStore, path: str) -> bool:
    """Whether a complete checkpoint exists at ``path``."""
    return store.exists(posixpath.join(path, ROOT_DOCUMENT))


def publish(store: ByteStore, staged: str, path: str, *, durable: bool) -> None:
    """Publish the checkpoint written at ``staged`` under ``path`` (rename-capable stores)."""
    if durable:
        store.sync_tree(staged)
    if store.is_dir(path):
        entries = store.list_dir(path)
        if not is_committed(store, path) and entries:
            raise _not_a_checkpoint(store, path, f"it is a directory holding {entries[:5]}")
        if exchange(staged, path):
            if durable:  # the exchange is a directory entry change: make it durable too
                fsync_dir(posixpath.dirname(path) or ".")
            _delete_replaced(store, staged, path)  # now the old checkpoint
            return
        parent, name = posixpath.split(path)
        old = posixpath.join(parent, f".{name}.old-{uuid.uuid4().hex}")
        store.rename(path, old, durable=durable)
        try:
            store.rename(staged, path, durable=durable)
        except BaseException:
            store.rename(old, path, durable=durable)  # put the old checkpoint back
            raise
        _delete_replaced(store, old, path)
        return
    store.rename(staged, path, durable=durable)


def _delete_replaced(store: ByteStore, old: str, path: str) -> None:
    """Delete the checkpoint that ``path`` replaced; the new one stands whatever happens."""
    try:
        store.delete_tree(old)
    except StorageError as error:
        logger.warning(
            "Wrote %s, but its previous contents, now at %s, could not be deleted: %s",
            store.display(path),
            store.display(old),
            error,
        )


def retract(store: ByteStore, path: str, *, durable: bool, commit: str = ROOT_DOCUMENT) -> None:
    """Delete a checkpoint so that it stops being valid before its bytes go.

    Locally a directory is renamed away first; on object stores its ``commit`` object goes
    first (a safetensors export's index: ``model.safetensors.index.json``), then the rest.
    """
    if store.supports_rename and store.is_dir(path):
        parent, name = posixpath.split(path)
        doomed = posixpath.join(parent, f".{name}.old-{uuid.uuid4().hex}")
        store.rename(path, doomed, durable=durable)
        store.delete_tree(doomed)
        return
    store.delete_tree(posixpath.join(path, commit))
    store.delete_tree(path)


def retract_bundle(store: ByteStore, prefix: str) -> list[str]:
    """Delete the TensorFlow bundle ``prefix`` so that it stops being valid before its data goes.

    Its ``.index`` goes first (without it nothing reads the prefix as a checkpoint), then its
    data files, exactly those of ``prefix`` (:func:`bundle_files`).  A crash in between leaves
    data files that no reader takes for a checkpoint; a manager's eviction note has the next
    manager delete them.  Returns the names deleted.
    """
    files = bundle_files(store, prefix)
    for key in files:
        store.delete_tree(key)
    return [posixpath.basename(key) for key in files]
