"""Byte stores: the only code that reads and writes bytes (internal).

A :class:`ByteStore` maps ``/``-separated keys to byte strings.  Checkpoint writers and readers
are written against this small protocol, so the local file system, memory and object stores
(any fsspec URL, see ``_fsspec.py``) share one implementation of the format.
``supports_rename`` tells the commit protocol whether it can publish with a rename (local) or
must write a commit object last.  ``ckptlab/testing/store_tests.py`` is the contract every store
passes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Union

from ckptlab.errors import NotFoundError
from ckptlab.storage._faults import translate_faults

if TYPE_CHECKING:
    import numpy as np

Buffer = Union[bytes, bytearray, memoryview, "np.ndarray[Any, Any]"]
"""Anything with the buffer protocol writers hand over: C-contiguous numpy arrays included."""


class ByteStore(Protocol):
    """A key -> bytes store; keys are ``/``-separated paths."""

    supports_rename: bool
    """Whether ``rename`` is atomic and cheap (then commits publish with a rename)."""
    concurrent_writes: bool
    """Whether ``write_many`` runs writes concurrently (writers then hand it many objects at
    once); otherwise writers stream one object at a time with ``write_stream``."""

    def display(self, key: str) -> str:
        """A user-facing path or URL for ``key``."""
        ...

    def write(self, key: str, parts: Sequence[Buffer], *, durable: bool) -> None:
        """Write the concatenation of ``parts`` at ``key``, replacing it."""
        ...

    def write_many(self, items: Sequence[tuple[str, Sequence[Buffer]]], *, durable: bool) -> None:
        """Write several objects (concurrently where that helps); all are written on return."""
        ...

    def write_stream(self, key: str, batches: Iterable[Sequence[Buffer]], *, durable: bool) -> None:
        """Write the concatenation of every batch at ``key``, one batch after the other.

        The next batch is taken only once the previous one is written, so a writer can
        checksum each batch just before handing it over.
        """
        ...

    def write_new(self, key: str, data: Buffer, *, durable: bool) -> bool:
        """Write ``data`` only if ``key`` does not exist; return whether it was written."""
        ...

    def replace(self, key: str, data: Buffer, *, durable: bool) -> None:
        """Replace the object at ``key`` atomically (readers see the old or the new bytes)."""
        ...

    def read(self, key: str) -> bytes:
        """Read a whole object; raise :class:`NotFoundError` when absent."""
        ...

    def read_into(self, key: str, out: memoryview, offset: int) -> int:
        """Read up to ``len(out)`` bytes from byte ``offset``; return how many were read."""
        ...

    def read_ranges(self, requests: Sequence[tuple[str, int, Sequence[memoryview]]]) -> list[int]:
        """Scatter reads: fill each request's buffers in turn from its key's bytes at offset.

        Requests are ``(key, offset, buffers)``; the result is how many bytes each one got.
        """
        ...

    def size(self, key: str) -> int | None:
        """Size of the object at ``key``, or ``None`` when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        ...

    def is_dir(self, key: str) -> bool:
        """Whether ``key`` is a prefix of other keys (a directory)."""
        ...

    def list_dir(self, key: str) -> list[str]:
        """Names directly below ``key`` (empty when it is not a directory)."""
        ...

    def delete_tree(self, key: str) -> None:
        """Delete ``key`` and everything below it (no error when absent)."""
        ...

    def rename(self, source: str, target: str, *, durable: bool) -> None:
        """Atomically move ``source`` (a tree) to ``target``, which must not exist."""
        ...

    def sync_tree(self, key: str) -> None:
        """Make everything below ``key`` durable (fsync files and directories)."""
        ...


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def occupied(store: ByteStore, key: str) -> bool:
    """Whether anything is at ``key``, the same way on every store.

    A file, a directory (on object stores: objects below the prefix), or locally a symbolic
    link, even one to nothing.  What a writer that must not replace anything checks first.
    """
    return (
        store.exists(key)
        or store.is_dir(key)
        or (isinstance(store, LocalStore) and os.path.islink(key))
    )


class LocalStore:
    """Files on a local (or network-mounted) file system; keys are absolute paths."""

    supports_rename = True
    concurrent_writes = False

    def display(self, key: str) -> str:
        """Return the path itself."""
        return key

    @translate_faults("write")
    def write(self, key: str, parts: Sequence[Buffer], *, durable: bool) -> None:
        """Write a file (parent directories are created)."""
        os.makedirs(os.path.dirname(key), exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, parts)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    @translate_faults("write")
    def write_many(self, items: Sequence[tuple[str, Sequence[Buffer]]], *, durable: bool) -> None:
        """Write files one after the other (a local disk gains nothing from concurrency)."""
        for key, parts in items:
            self.write(key, parts, durable=durable)

    @translate_faults("write")
    def write_stream(self, key: str, batches: Iterable[Sequence[Buffer]], *, durable: bool) -> None:
        """Write a file batch after batch with ``writev`` (parent directories are created)."""
        os.makedirs(os.path.dirname(key), exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for batch in batches:
                _write_all(fd, batch)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    @translate_faults("create")
    def write_new(self, key: str, data: Buffer, *, durable: bool) -> bool:
        """Create a file exclusively (``O_EXCL``)."""
        os.makedirs(os.path.dirname(key), exist_ok=True)
        try:
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            _write_all(fd, [data])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return True

    @translate_faults("replace")
    def replace(self, key: str, data: Buffer, *, durable: bool) -> None:
        """Write a hidden temporary sibling, fsync it, rename it over ``key``, fsync the directory.

        Several writers may replace one file at once (threads, processes): each holds an
        ``flock`` on its temporary from creating it until it is renamed, so temporaries nobody
        holds are what killed writers left (the kernel released their locks); those are
        removed first, and a live writer's is never touched.
        """
        parent, name = os.path.split(key)
        prefix = f".{name}.tmp-"
        for entry in self.list_dir(parent):
            if entry.startswith(prefix):
                remove_if_abandoned(os.path.join(parent, entry), self.delete_tree)
        temporary, fd = create_locked(parent, prefix)
        try:
            _write_all(fd, [data])
            if durable:
                os.fsync(fd)
            os.replace(temporary, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        finally:
            os.close(fd)  # releases the lock
        if durable:
            fsync_dir(parent or ".")

    @translate_faults("read")
    def read(self, key: str) -> bytes:
        """Read a whole file."""
        try:
            with open(key, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"No file at {key}.") from None

    @translate_faults("read")
    def read_into(self, key: str, out: memoryview, offset: int) -> int:
        """Read straight into ``out`` with ``preadv`` (no intermediate copy)."""
        fd = _open_for_reading(key)
        try:
            return preadv_all(fd, [out], offset)
        finally:
            os.close(fd)

    @translate_faults("read")
    def read_ranges(self, requests: Sequence[tuple[str, int, Sequence[memoryview]]]) -> list[int]:
        """``preadv`` each range straight into its buffers (one system call per 1024 buffers)."""
        counts = []
        opened: tuple[str, int] | None = None
        try:
            for key, offset, buffers in requests:
                if opened is None or opened[0] != key:
                    if opened is not None:
                        os.close(opened[1])
                        opened = None
                    opened = (key, _open_for_reading(key))
                counts.append(preadv_all(opened[1], buffers, offset))
        finally:
            if opened is not None:
                os.close(opened[1])
        return counts

    @translate_faults("inspect")
    def size(self, key: str) -> int | None:
        """Return the file size."""
        try:
            status = os.stat(key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    @translate_faults("inspect")
    def exists(self, key: str) -> bool:
        """Return whether a file exists (a directory that may not be entered is an error)."""
        return stat.S_ISREG(_mode(key))

    @translate_faults("inspect")
    def is_dir(self, key: str) -> bool:
        """Return whether a directory exists (a directory that may not be entered is an error)."""
        return stat.S_ISDIR(_mode(key))

    @translate_faults("list")
    def list_dir(self, key: str) -> list[str]:
        """List a directory."""
        try:
            return sorted(os.listdir(key))
        except (FileNotFoundError, NotADirectoryError):
            return []

    @translate_faults("delete")
    def delete_tree(self, key: str) -> None:
        """Remove a file or a directory tree (what is already gone is no error)."""
        if os.path.isdir(key) and not os.path.islink(key):
            shutil.rmtree(key, **_IGNORE_MISSING)
        else:  # below a file (NotADirectoryError) nothing can exist either
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(key)

    @translate_faults("rename")
    def rename(self, source: str, target: str, *, durable: bool) -> None:
        """``os.rename`` then fsync the parent directories."""
        os.rename(source, target)
        if durable:
            fsync_dir(os.path.dirname(target) or ".")
            if os.path.dirname(source) != os.path.dirname(target):
                fsync_dir(os.path.dirname(source) or ".")

    @translate_faults("sync")
    def sync_tree(self, key: str) -> None:
        """Fsync every directory below ``key`` (files were fsynced when written)."""
        for directory in _walk_dirs(key):
            fsync_dir(directory)


def create_locked(parent: str, prefix: str, *, directory: bool = False) -> tuple[str, int]:
    """Create ``parent/<prefix><hex>`` (a file, or a ``directory``) and ``flock`` it.

    Returns its path and descriptor; closing the descriptor releases the lock.  A writer's
    temporary (a state file's, a save's staging directory) is held this way from its creation
    until it is renamed or deleted, so that a clean-up removes only what dead writers left
    (:func:`remove_if_abandoned`).  A clean-up may take one in the instant between its
    creation and its lock; then it is gone, and another is created.
    """
    remove = os.rmdir if directory else os.unlink
    while True:
        path = os.path.join(parent, f"{prefix}{uuid.uuid4().hex}")
        if directory:
            os.makedirs(path)  # and its missing parents (a file among them: ENOTDIR)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue  # a clean-up took it before it was opened
        else:
            os.makedirs(parent or ".", exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _lock(fd, fcntl.LOCK_EX)
            if still_names(path, fd):
                return path, fd
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                remove(path)
            raise
        os.close(fd)


def still_names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file or directory open as ``fd`` (device and inode).

    Nothing else can take an open file's inode, so ``False`` means that ``path`` was removed
    (and perhaps created anew) since ``fd`` was opened.  (On NFS, ``fd`` of something another
    machine removed is stale: ``ESTALE``.)
    """
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError as error:
        if isinstance(error, FileNotFoundError | NotADirectoryError) or error.errno == errno.ESTALE:
            return False
        raise


_UNLOCKABLE = frozenset({errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL})
"""What ``flock`` raises where the file system cannot lock that file: NFS emulates ``flock``
with a write lock, which a descriptor opened read-only (every directory's) cannot take."""


def _lock(fd: int, operation: int) -> bool:
    """``flock(fd, operation)``; ``False`` where the file system cannot lock ``fd``.

    Temporaries there are written unlocked and cleaned up as before locks existed: a writer
    of the same path on such a file system can still remove another's (docs/manager.md).
    """
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as error:
        if error.errno in _UNLOCKABLE:
            return False
        raise
    return True


def remove_if_abandoned(path: str, delete: Callable[[str], None]) -> bool:
    """``delete(path)`` unless its writer holds it (:func:`create_locked`); return whether it ran.

    The lock is held while ``delete`` runs, so a writer cannot take the temporary meanwhile.
    Where the file system cannot lock it, ``path`` is deleted (:func:`_lock`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # (a FIFO there must not block)
    except FileNotFoundError:
        return False  # its writer renamed it
    try:
        _lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its writer is alive
    else:
        delete(path)
        return True
    finally:
        os.close(fd)


def _mode(path: str) -> int:
    """The file type and mode of ``path`` (0 when nothing is there).

    Unlike ``os.path.isfile`` it does not take "permission denied" for "nothing there": the
    state file of a directory this process may not enter is not missing.
    """
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _raise_unless_missing(function: object, path: str, error: object) -> None:
    """``shutil.rmtree`` error handler: what is already gone is fine, anything else is not."""
    exception = error if isinstance(error, BaseException) else error[1]  # type: ignore[index]
    if not isinstance(exception, FileNotFoundError | NotADirectoryError):
        raise exception


_IGNORE_MISSING: dict[str, Any] = (
    {"onexc": _raise_unless_missing}
    if sys.version_info >= (3, 12)
    else {"onerror": _raise_unless_missing}
)


def _open_for_reading(key: str) -> int:
    try:
        return os.open(key, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"No file at {key}.") from None


def preadv_all(
    fd: int, buffers: Sequence[Buffer | Any], offset: int, nbytes: int | None = None
) -> int:
    """Fill ``buffers`` in turn from ``offset`` until they are full or the file ends.

    Buffers may be memoryviews, bytearrays or writable C-contiguous numpy arrays; ``nbytes``
    is their total size when the caller knows it.
    """
    if len(buffers) <= _IOV_MAX:  # the usual case: one system call
        count = os.preadv(fd, buffers, offset)  # type: ignore[arg-type]  # numpy arrays too
        if nbytes is None:
            nbytes = sum(map(buffer_size, buffers))
        if count in (0, nbytes):
            return count
    views = [v for v in map(byte_view, buffers) if len(v)]
    done = first = 0
    while first < len(views):
        count = os.preadv(fd, views[first : first + _IOV_MAX], offset + done)
        if count == 0:
            break
        done += count
        first = _advance(views, first, count)
    return done


def _advance(views: list[memoryview], first: int, count: int) -> int:
    """Drop ``count`` transferred bytes from ``views[first:]``; return the new first index."""
    while count:
        head = views[first]
        if count >= len(head):
            count -= len(head)
            first += 1
        else:
            views[first] = head[count:]
            count = 0
    return first


_IOV_MAX = 1024


def _walk_dirs(top: str) -> Iterator[str]:
    for root, _dirs, _files in os.walk(top, topdown=False):
        yield root


def _write_all(fd: int, parts: Sequence[Buffer]) -> None:
    """``writev`` every part (any buffer: bytes, memoryviews, contiguous numpy arrays)."""
    for start in range(0, len(parts), _IOV_MAX):
        group: Sequence[Any] = parts[start : start + _IOV_MAX]
        written = os.writev(fd, group)
        if written == sum(map(buffer_size, group)):
            continue
        views = [v for v in map(byte_view, group) if len(v)]
        first = _advance(views, 0, written)
        while first < len(views):  # a short write (a signal, a full disk): go on where it stopped
            first = _advance(views, first, os.writev(fd, views[first:]))


def buffer_size(part: Any) -> int:
    """Size in bytes of a buffer (numpy arrays included: ``len`` would count rows)."""
    size = getattr(part, "nbytes", None)
    return len(part) if size is None else int(size)


def byte_view(part: Any) -> memoryview:
    """A flat byte view of a buffer; numpy arrays of any dtype (bfloat16 has no buffer format)."""
    if hasattr(part, "dtype") and hasattr(part, "view"):
        part = part.reshape(-1).view("uint8")
    return memoryview(part).cast("B")
