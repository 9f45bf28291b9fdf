"""A managed checkpoint directory: its exclusive lock and its leftovers (internal).

Only the managers of one process may save into a directory at a time: the process holds
``<directory>/.ckptlab.lock`` while any of its :class:`~ckptlab.CheckpointManager` objects
does (they share it, and their saves take turns).  Locally the lock is an ``flock`` on that
file, so the kernel releases it when the holder dies (a stale lock is simply taken over; the
file still names the dead holder, which is logged).  The file's content names the holder (pid,
host) so that another process's :class:`~ckptlab.LockedError` can say who holds it.  On object
stores the lock is a create-only object; a lock left by a dead process on the same host is
taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import os
import posixpath
import re
import socket
import threading
import uuid
from collections.abc import Callable, Collection
from typing import Any

import crc32c

from ckptlab.errors import LockedError
from ckptlab.storage._commit import (
    OWN_ENTRIES,
    refuse_a_file_above,
    remove_leftover,
    retract,
    retract_bundle,
)
from ckptlab.storage._faults import faults_translated, noting_failure
from ckptlab.storage._kv import ByteStore, LocalStore, still_names
from ckptlab.storage._layout import ROOT_DOCUMENT
from ckptlab.storage._reader import document_checksum

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILENAME = ".ckptlab.lock"
logger = logging.getLogger("ckptlab")


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def _parse_holder(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_this_process(holder: dict[str, Any] | None) -> bool:
    return (
        holder is not None
        and holder.get("pid") == os.getpid()
        and holder.get("host") == socket.gethostname()
    )


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "an unknown holder (the lock file is being written or is not ckptlab's)"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})"


def _pid_is_gone(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` is a process on this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclasses.dataclass(eq=False)
class _Holding:
    """A directory's lock as this process holds it, shared by its :class:`DirectoryLock` objects."""

    fd: int | None = None
    """The locked descriptor (local directories)."""
    token: str | None = None
    """The token written into the lock object (object stores)."""
    users: set[int] = dataclasses.field(default_factory=set)
    """The ids of the :class:`DirectoryLock` objects that hold it (adding one is atomic, so a
    Ctrl-C cannot leave it counted but not held)."""
    saving: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    """Held by a save of this process into the directory, from its first read of the state
    file to its last delete: saves of one process never interleave."""
    at_exit: Callable[[], None] | None = None
    pid: int = dataclasses.field(default_factory=os.getpid)
    """The process that took it (a forked child inherits ``_HELD`` but not the lock)."""


_HELD: dict[str, _Holding] = {}
"""Locks this process holds, by lock path or URL."""
_HELD_LOCK = threading.Lock()
_DEFERRED: list[DirectoryLock] = []
"""Locks a finalizer released while ``_HELD_LOCK`` was taken; released at the next operation."""


def _release_deferred() -> None:
    while _DEFERRED:
        try:
            lock = _DEFERRED.pop()
        except IndexError:  # another thread took the last one
            return
        lock.release()


class DirectoryLock:
    """The save lock of one checkpoint directory: exclusive between processes, shared within one.

    Every manager of this process that saves into the directory shares the lock (as
    TensorFlow's managers share a directory); a manager of another process gets
    :class:`LockedError` until the last of them releases it.

    Examples
    --------
    >>> import tempfile
    >>> from ckptlab.storage import LocalStore
    >>> directory = tempfile.mkdtemp()
    >>> lock, again = DirectoryLock(LocalStore(), directory), DirectoryLock(LocalStore(), directory)
    >>> lock.acquire(), again.acquire()  # True: this process did not hold it before
    (True, False)
    >>> lock.release(); again.held
    True
    >>> again.release(); again.held
    False
    """

    def __init__(self, store: ByteStore, directory: str) -> None:
        self.store = store
        self.key = posixpath.join(directory, LOCK_FILENAME)
        self._holding: _Holding | None = None

    @property
    def _uses_flock(self) -> bool:
        return isinstance(self.store, LocalStore) and fcntl is not None

    @property
    def _where(self) -> str:
        return self.store.display(self.key)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._holding is not None

    def acquire(self) -> bool:
        """Take the lock; return whether this process did not hold it before.

        ``False`` when this object holds it already.  A lock file that is no longer the one
        this process locked (its directory was deleted or replaced) is locked again.  Raises
        :class:`LockedError` naming the holder when another process holds it.
        """
        _release_deferred()
        with _HELD_LOCK:
            if self._holding is not None:
                self._relock_if_lost(self._holding)
                return False
            holding = _HELD.get(self._where)
            if holding is not None and holding.pid != os.getpid():  # the parent's, before a fork
                del _HELD[self._where]
                holding = None
            if holding is not None:
                self._relock_if_lost(holding)
            first = holding is None
            if holding is None:
                holding = _Holding()
            try:
                if first:
                    self._take(holding)
                    _HELD[self._where] = holding
                holding.users.add(id(self))
                self._holding = holding
            except BaseException as error:  # a Ctrl-C too: nothing stays locked that nothing holds
                self._holding = None
                if self._leave(holding):
                    release = functools.partial(self._give_up, holding)
                    noting_failure(error, f"releasing {self._where}", release)
                raise
        return first

    def release(self) -> None:
        """Give the lock up (no-op when not held); the process keeps it while others use it."""
        holding, self._holding = self._holding, None
        if holding is None:
            return
        _release_deferred()
        with _HELD_LOCK:
            if not self._leave(holding):
                return
        self._give_up(holding)

    def _leave(self, holding: _Holding) -> bool:
        """Stop holding ``holding``; whether it was the last holder (then forgotten: give it up).

        Called with ``_HELD_LOCK`` taken.
        """
        holding.users.discard(id(self))
        if holding.users:
            return False
        if _HELD.get(self._where) is holding:
            del _HELD[self._where]
        return True

    def release_from_finalizer(self) -> None:
        """:meth:`release` for ``__del__``: never waits for the process's lock table.

        A garbage collection can run a finalizer on a thread that is inside a lock operation
        (holding ``_HELD_LOCK``); waiting there would deadlock the thread on itself.  When the
        table is taken, the release is left to the process's next lock operation.
        """
        if _HELD_LOCK.acquire(blocking=False):
            _HELD_LOCK.release()
            self.release()
        else:
            _DEFERRED.append(self)

    def saving(self) -> threading.RLock:
        """The mutex a save of this process holds from reading the state file to deleting.

        Only valid while the lock is held.
        """
        if self._holding is None:
            raise RuntimeError(f"{self._where} is not held by this DirectoryLock.")
        return self._holding.saving

    def _take(self, holding: _Holding) -> None:
        if self._uses_flock:
            self._acquire_flock(holding)
            return
        holding.token = self._acquire_object()

        def release_at_exit() -> None:  # an object outlives its process unless deleted
            self._delete_object(holding)

        holding.at_exit = release_at_exit
        atexit.register(release_at_exit)

    def _give_up(self, holding: _Holding) -> None:
        if holding.pid != os.getpid():  # inherited through a fork: the parent still holds it
            if holding.fd is not None:
                os.close(holding.fd)
            return
        if holding.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(holding.fd, 0)
            os.close(holding.fd)  # closing the descriptor releases the flock
        if holding.at_exit is not None:
            atexit.unregister(holding.at_exit)
        if holding.token is not None:
            self._delete_object(holding)

    def _delete_object(self, holding: _Holding) -> None:
        holder = self._read_object()
        if holder is not None and holder.get("token") == holding.token:
            self.store.delete_tree(self.key)

    def _locked_error(
        self, holder: dict[str, Any] | None, *, plain_save: str | None = None
    ) -> LockedError:
        directory = self.store.display(posixpath.dirname(self.key))
        where = self.store.display(self.key)
        if plain_save is None and _is_this_process(holder):
            return LockedError(
                f"Checkpoint directory {directory} is locked by this process, "
                f"{_describe(holder)}, though not under this path: a CheckpointManager of "
                "this process saves into it under another path to the same directory (a "
                "symbolic link, a bind mount). Use that manager or that path, or close that "
                "manager first (manager.close()); if there is none, restarting this process "
                f"(in a notebook: restart the kernel) releases the lock. Lock file: {where}."
            )
        remedy = (
            f"Lock file: {where}."
            if self._uses_flock
            else f"If that process is gone (e.g. a machine that crashed), delete {where}."
        )
        why = (
            f"a CheckpointManager saves into it, and {plain_save} would replace the state "
            "file that manager keeps (dropping its checkpoint list and timestamps). Save into "
            "another directory, or close that manager (manager.close()) or let its process "
            "finish."
            if plain_save is not None
            else "the managers of one process at a time may save into a directory. Close the "
            "other process's manager (manager.close()) or let that process finish, or save "
            "into another directory."
        )
        return LockedError(
            f"Checkpoint directory {directory} is locked by {_describe(holder)}: {why} {remedy}"
        )

    def check_plain_save(self, caller: str = "Checkpoint.save") -> None:
        """Raise :class:`LockedError` if another process's manager holds the lock.

        Called by ``Checkpoint.save`` and ``ckptlab.distributed.save`` (``caller``, named in
        the error), which replace the directory's state file.  Nothing is
        created: a directory that no manager ever locked has no lock file.  A manager of this
        process does not stop it (TensorFlow's behaviour, docs/semantics.md S90: that manager keeps
        its list and merges it with the state file at its next save).
        """
        _release_deferred()
        with _HELD_LOCK:
            holding = _HELD.get(self._where)
            if holding is not None and holding.pid == os.getpid():
                return
        locked, holder = self._peek_flock() if self._uses_flock else self._peek_object()
        if locked and not _is_this_process(holder):
            raise self._locked_error(holder, plain_save=caller)

    def _peek_flock(self) -> tuple[bool, dict[str, Any] | None]:
        """Whether someone holds the flock (and the record it wrote), without taking it."""
        try:
            fd = os.open(self.key, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return False, None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # closing the descriptor releases it
        except BlockingIOError:
            return True, _parse_holder(os.pread(fd, 4096, 0))
        finally:
            os.close(fd)
        return False, None

    def _peek_object(self) -> tuple[bool, dict[str, Any] | None]:
        """Whether a lock object exists whose holder may be alive (and its record)."""
        try:
            holder = _parse_holder(self.store.read(self.key))
        except FileNotFoundError:
            return False, None
        return holder is None or not _pid_is_gone(holder), holder

    def _relock_if_lost(self, holding: _Holding) -> None:
        """Lock the lock file again if it is not the file ``holding`` locks (``rm -rf runs``).

        A deleted or replaced lock file locks nothing: another process would lock the new one.
        Raises :class:`LockedError` when one did; the next call tries again.
        """
        if not self._uses_flock or holding.pid != os.getpid() or self._locks_the_file(holding):
            return
        lost, holding.fd = holding.fd, None
        if lost is not None:
            os.close(lost)
        self._acquire_flock(holding)
        logger.warning(
            "The lock file %s was deleted or replaced while this process held it (was its "
            "directory deleted?); locked it again.",
            self._where,
        )

    def _locks_the_file(self, holding: _Holding) -> bool:
        """Whether ``holding`` locks the file now at the lock path (same device and inode)."""
        if holding.fd is None:
            return False
        with faults_translated("inspect the lock file", self.key):
            return still_names(self.key, holding.fd)

    def _acquire_flock(self, holding: _Holding) -> None:
        """Lock the lock file as ``holding.fd``, then write this process's record into it.

        The descriptor is closed on any error, a Ctrl-C too, until ``holding`` records it;
        from then on giving ``holding`` up releases it.
        """
        directory = posixpath.dirname(self.key)
        refuse_a_file_above(self.store, self.key, f"lock the checkpoint directory {directory}")
        with faults_translated("create the lock file", self.key):
            os.makedirs(directory, exist_ok=True)
            fd = os.open(self.key, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = _parse_holder(os.pread(fd, 4096, 0))
            finally:
                os.close(fd)
            raise self._locked_error(holder) from None
        except BaseException:  # a Ctrl-C as the lock was taken
            os.close(fd)
            raise
        holding.fd = fd
        previous = _parse_holder(os.pread(fd, 4096, 0))
        if previous is not None:
            logger.warning(
                "Took over the lock of %s left by pid %s on host %s, which ended without "
                "releasing it.",
                posixpath.dirname(self.key),
                previous.get("pid"),
                previous.get("host"),
            )
        record = json.dumps(_holder_record()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)

    def _read_object(self) -> dict[str, Any] | None:
        try:
            return _parse_holder(self.store.read(self.key))
        except FileNotFoundError:
            return None

    def _acquire_object(self) -> str:
        record = _holder_record()
        data = json.dumps(record).encode()
        if self.store.write_new(self.key, data, durable=True):
            return str(record["token"])
        holder = self._read_object()
        if holder is None or not (_pid_is_gone(holder) or _is_this_process(holder)):
            raise self._locked_error(holder)
        logger.warning(  # this process's own lock object is stale too: _HELD does not have it
            "Taking over the lock of %s left by pid %s, which no longer holds it.",
            self.store.display(posixpath.dirname(self.key)),
            holder.get("pid"),
        )
        again = self._read_object()
        if again is not None and again.get("token") == holder.get("token"):
            self.store.delete_tree(self.key)
        if not self.store.write_new(self.key, data, durable=True):
            raise self._locked_error(self._read_object())
        return str(record["token"])


EVICTION_SUFFIX = ".evicted"
"""A manager's note ``.<name>.evicted`` that it is deleting checkpoint ``<name>``."""


def _eviction_note(path: str) -> str:
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}{EVICTION_SUFFIX}")


_ZARR_CHECKSUM, _INDEX_CHECKSUM = "zarr.json crc32c", "index crc32c"
"""The labels of a note's CRC-32Cs of what identifies a checkpoint at ``<path>``: the root
``<path>/zarr.json`` of ckptlab's (:func:`document_checksum`), the ``<path>.index`` of a
TensorFlow bundle (a manager that resumed a TensorFlow directory evicts those)."""


def _checksums(store: ByteStore, path: str) -> dict[str, int]:
    """The CRC-32Cs of what identifies the checkpoints at ``path`` (none: nothing is there)."""
    found = {}
    document = document_checksum(store, path)
    if document is not None:
        found[_ZARR_CHECKSUM] = document
    with contextlib.suppress(FileNotFoundError):
        found[_INDEX_CHECKSUM] = int(crc32c.crc32c(store.read(path + ".index")))
    return found


def note_eviction(store: ByteStore, path: str) -> None:
    """Before the state file stops listing ``path``, note that its manager is deleting it.

    The note holds the checksum of the checkpoint's root ``zarr.json`` (of its ``.index`` for a
    TensorFlow bundle): if the process dies after the state-file write and before the delete,
    :func:`remove_leftovers` removes exactly that checkpoint (provably the one its manager
    superseded) and nothing written there since.  It needs no fsync: a lost note only means a
    checkpoint is kept.
    """
    checksums = _checksums(store, path)
    if checksums:
        store.write(_eviction_note(path), [json.dumps(checksums).encode()], durable=False)


def clear_eviction(store: ByteStore, path: str) -> None:
    """Remove the note of a finished delete."""
    store.delete_tree(_eviction_note(path))


def remove_leftovers(
    store: ByteStore,
    directory: str,
    checkpoint_name: str,
    listed: Collection[str],
    *,
    only: Collection[str] | None = None,
) -> list[str]:
    """Delete what interrupted saves and deletes of a manager left; return what went.

    * hidden ``.<name>.old-<uuid>`` trees: checkpoints ``retract`` renamed away;
    * hidden ``.<checkpoint_name>-<n>.tmp-<uuid>`` trees: interrupted writes (not those a
      live writer holds, :func:`~ckptlab.storage._commit.remove_leftover`);
    * on object stores, ``<checkpoint_name>-<n>`` prefixes with no commit object and only
      ckptlab's own entries: interrupted writes or deletes;
    * a checkpoint its manager noted as evicted (:func:`note_eviction`) that no state file
      lists, while its root ``zarr.json`` is byte for byte the one noted;
    * likewise a TensorFlow bundle, by its ``.index``; and the data files of a noted bundle
      whose ``.index`` is gone (a delete interrupted after the index went).

    A complete checkpoint without such a note is never deleted, listed or not (a checkpoint
    kept by ``keep_checkpoint_every_n_hours``, one saved by ``Checkpoint.save``, or one
    committed just before a crash prevented the state file from naming it).  Callers hold
    the directory lock.  ``only``: just the trash and eviction notes of these checkpoints
    (deletes of this process that an interrupt cut short), nothing else.
    """
    name = re.escape(checkpoint_name)
    temporary = re.compile(rf"\.{name}-[0-9]+\.tmp-[0-9a-f]{{32}}")
    numbered = re.compile(rf"{name}-[0-9]+")
    removed = []
    for entry in store.list_dir(directory):
        if only is not None and _evicted_name(entry) not in only:
            continue
        path = posixpath.join(directory, entry)
        if entry.startswith(".") and entry.endswith(EVICTION_SUFFIX):
            removed += _finish_eviction(store, path, entry[1 : -len(EVICTION_SUFFIX)], listed)
            continue
        retracted = entry.startswith(".") and ".old-" in entry
        unfinished = (
            not store.supports_rename
            and numbered.fullmatch(entry) is not None
            and _is_unfinished(store, path)
        )
        if (retracted or temporary.fullmatch(entry) or unfinished) and remove_leftover(store, path):
            removed.append(entry)
    return removed


def _evicted_name(entry: str) -> str | None:
    """The checkpoint whose eviction note or renamed-away trash ``entry`` is, if it is one."""
    if not entry.startswith("."):
        return None
    if entry.endswith(EVICTION_SUFFIX):
        return entry[1 : -len(EVICTION_SUFFIX)]
    name, old, _ = entry[1:].rpartition(".old-")
    return name if old else None


def _is_unfinished(store: ByteStore, path: str) -> bool:
    """An object-store prefix holding only ckptlab's arrays and no commit object."""
    entries = set(store.list_dir(path))
    return bool(entries) and ROOT_DOCUMENT not in entries and entries <= OWN_ENTRIES


def _finish_eviction(store: ByteStore, note: str, name: str, listed: Collection[str]) -> list[str]:
    path = posixpath.join(posixpath.dirname(note), name)
    removed = []
    if name not in listed:
        noted, found = _read_note(store, note), _checksums(store, path)
        if _ZARR_CHECKSUM in found and noted.get(_ZARR_CHECKSUM) == found[_ZARR_CHECKSUM]:
            retract(store, path, durable=True)
            removed.append(name)
        elif not store.supports_rename and _is_unfinished(store, path):
            store.delete_tree(path)
            removed.append(name)
        # a noted bundle: its index unchanged, or gone (a delete interrupted after the index)
        index = noted.get(_INDEX_CHECKSUM)
        if index is not None and found.get(_INDEX_CHECKSUM) in (index, None):
            removed += retract_bundle(store, path)
    store.delete_tree(note)
    return removed


def _read_note(store: ByteStore, note: str) -> dict[str, Any]:
    """An eviction note's checksums; none when unreadable (e.g. lost in a power cut)."""
    try:
        noted = json.loads(store.read(note))
    except (FileNotFoundError, ValueError):
        return {}
    return noted if isinstance(noted, dict) else {}
