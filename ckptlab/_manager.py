"""``ck.CheckpointManager``: numbered saves, retention, intervals, recovery (public class).

TensorFlow's semantics (docs/semantics.md S82-S90) with six differences, all in the caller's
favour:

* A state-file entry outside the directory is never managed (so never deleted), and
  timestamps that do not pair up with the paths are refused instead of zipped.
* ``restore_or_initialize()`` keeps the restore status as ``restore_status``.
* Retention deletes a checkpoint atomically: it stops being a valid checkpoint (renamed away)
  before its bytes go, and the state file stops listing it before that.  TF writes the state
  file twice around the deletes; ckptlab writes it once, after the sweep.  What a crash leaves
  (trash, interrupted writes, a noted but undeleted evicted checkpoint) is removed by the next
  manager's first save; what a Ctrl-C mid-delete leaves, by the same manager's next save.
* Before every save the manager re-reads the state file and merges what other managers saved
  since (TF saves its stale list, so their checkpoints stay on disk unlisted for good).
* Only the managers of one process save into a directory (a lock taken at their first
  ``save``, held until the last of them is closed); they share it and take turns, as TF's
  managers of one process do.  A manager of another process gets :class:`~ckptlab.LockedError`.
* ``save(..., blocking=False)`` writes in the background (see :class:`~ckptlab.SaveHandle`);
  ``checkpoints`` and ``latest_checkpoint`` change only once the checkpoint is committed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import posixpath
import time
from collections.abc import Callable, Collection
from typing import Any, Literal, overload

import numpy as np

from ckptlab._async import SaveHandle, discard_staging, settle, start
from ckptlab._checkpoint import Checkpoint
from ckptlab.core import (
    CheckpointState,
    RetentionState,
    interrupts_held,
    interval_allows,
    merge,
    positive_int,
    record_save,
    recover,
    sweep,
    validate_policy,
)
from ckptlab.errors import CorruptCheckpointError, InvalidArgumentError, StorageError
from ckptlab.storage import (
    STATE_FILENAME,
    DirectoryLock,
    LocalStore,
    ReadOptions,
    WriteOptions,
    checked_options,
    clear_eviction,
    is_committed,
    listed_or_removed,
    note_eviction,
    noting_failure,
    path_text,
    read_state,
    refuse_a_file_above,
    remove_leftovers,
    resolve,
    retract,
    retract_bundle,
    write_state,
)

__all__ = ["CheckpointManager"]

logger = logging.getLogger("ckptlab")


def _join(directory: str, name: str) -> str:
    if posixpath.isabs(name) or "://" in name:
        return name
    if "://" in directory:
        return f"{directory.rstrip('/')}/{name}"
    return os.path.join(directory, name)


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # deleted: it is not the one a relative directory was resolved against
        return None


def _read_int(value: Any, what: str) -> int:
    """Read an int from an int, a numpy integer or an integer (0-d) ``ck.Variable``."""
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"{what} must be an int or an integer scalar ck.Variable, got {value!r} "
            f"(dtype {array.dtype}, shape {array.shape})."
        )
    return int(array)


def _check_name(name: object) -> None:
    """``checkpoint_name`` is a non-empty name without a path separator or a NUL."""
    if not isinstance(name, str) or not name or "/" in name or "\x00" in name:
        raise InvalidArgumentError(
            "`checkpoint_name` must be a non-empty string without '/' or NUL characters, got "
            f"{name!r}; it prefixes the checkpoint names (ckpt -> ckpt-1). "
            "To save into a subdirectory, put it into `directory`."
        )


class CheckpointManager:
    """Saves numbered checkpoints into a directory and keeps the newest ``max_to_keep``.

    Parameters
    ----------
    checkpoint
        The :class:`~ckptlab.Checkpoint` to save and restore.
    directory
        Where checkpoints and the state file (``checkpoint``) go; a local path or fsspec URL.
        A relative path is resolved now: a later ``os.chdir`` does not move the run.
    max_to_keep
        Active checkpoints to keep (``None``: all).  Older ones are deleted after each save.
    keep_checkpoint_every_n_hours
        Keep (and stop managing) one evicted checkpoint per this many hours.
    checkpoint_name
        Prefix of the checkpoint names (``<directory>/<checkpoint_name>-<n>``).
    step_counter, checkpoint_interval
        With both, ``save()`` only writes once ``step_counter`` advanced by the interval.
    init_fn
        Called by :meth:`restore_or_initialize` when there is nothing to restore.
    clock
        Zero-argument callable returning seconds; ``None`` means ``time.time`` (looked up at
        each call).  Timestamps in the state file come from it.

    Examples
    --------
    >>> import ckptlab as ck, tempfile
    >>> ckpt = ck.Checkpoint(step=ck.Variable(0))
    >>> manager = ck.CheckpointManager(ckpt, tempfile.mkdtemp(), max_to_keep=2)
    >>> for step in range(4):
    ...     _ = ckpt.step.assign(step)
    ...     path = manager.save()
    >>> [p.rsplit("/", 1)[-1] for p in manager.checkpoints]
    ['ckpt-3', 'ckpt-4']
    >>> manager.save(blocking=False).result() == manager.latest_checkpoint
    True
    >>> again = ck.Checkpoint(step=ck.Variable(0))
    >>> manager.close()
    >>> ck.CheckpointManager(again, manager.directory, max_to_keep=2).restore_or_initialize()[-6:]
    'ckpt-5'
    >>> int(again.step.numpy())
    3
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        directory: str | os.PathLike[str],
        max_to_keep: int | None,
        keep_checkpoint_every_n_hours: float | None = None,
        checkpoint_name: str = "ckpt",
        step_counter: Any = None,
        checkpoint_interval: int | None = None,
        init_fn: Callable[[], object] | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(checkpoint, Checkpoint):
            raise InvalidArgumentError(
                f"CheckpointManager expects a ck.Checkpoint, got {type(checkpoint).__name__}; "
                "wrap your objects first: ck.CheckpointManager(ck.Checkpoint(model=model), ...)."
            )
        self._policy = validate_policy(max_to_keep, keep_checkpoint_every_n_hours)
        if checkpoint_interval is not None:
            if step_counter is None:
                raise InvalidArgumentError(
                    "`step_counter` should be passed if `checkpoint_interval` is not None."
                )
            checkpoint_interval = positive_int(
                checkpoint_interval, "checkpoint_interval", "saves at every call"
            )
            _read_int(step_counter, "step_counter")
        _check_name(checkpoint_name)
        for name, function in (("init_fn", init_fn), ("clock", clock)):
            if function is not None and not callable(function):
                raise InvalidArgumentError(
                    f"`{name}` must be a callable taking no arguments or None, got "
                    f"{function!r} ({type(function).__name__})."
                )
        self._checkpoint = checkpoint
        self._directory = path_text(directory)
        self._name = checkpoint_name
        self._step_counter = step_counter
        self._interval = checkpoint_interval
        self._init_fn = init_fn
        self._clock = clock
        self._store, self._key = resolve(self._directory)
        refuse_a_file_above(  # notes.txt: the lock file's error would blame the lock file
            self._store,
            posixpath.join(self._key, STATE_FILENAME),
            f"use {self._directory} as a checkpoint directory",
        )
        self._root = self._store.display(self._key)
        """Where the directory is, resolved now: every read and write goes there."""
        relative = isinstance(self._store, LocalStore) and not os.path.isabs(
            self._directory.removeprefix("file://")
        )
        self._cwd = _working_directory() if relative else None
        """The working directory a relative ``directory`` was resolved against."""
        self._lock = DirectoryLock(self._store, self._key)
        self._last_step: int | None = None
        self._cut_short: set[str] = set()
        """Checkpoints whose retention delete an interrupt (Ctrl-C) may have cut short."""
        self._outside: set[str] = set()
        """State-file entries outside the directory this manager warned about (once each)."""
        self.restore_status: Any = None
        """The status of the restore done by :meth:`restore_or_initialize` (``None`` before)."""
        recovered = recover(self._adoptable(read_state(self._store, self._key)), self._now())
        if recovered.clock_went_back:
            logger.warning(
                "The clock is %.1f s behind the last preserved checkpoint timestamp of %s; "
                "recovered checkpoints will not be deleted.",
                recovered.clock_went_back,
                self._directory,
            )
        self._retention = recovered.state
        self._latest = recovered.latest

    def _now(self) -> float:
        return float(self._clock() if self._clock is not None else time.time())

    # -- properties -------------------------------------------------------------------------

    @property
    def directory(self) -> str:
        """The directory, as given (absolute once a relative one no longer names it).

        A relative directory is resolved when the manager is created; after an ``os.chdir``
        it is shown absolute, since the relative form would name another directory.
        """
        if self._cwd is not None and _working_directory() != self._cwd:
            return self._root
        return self._directory

    @property
    def checkpoint(self) -> Checkpoint:
        """The managed :class:`~ckptlab.Checkpoint`."""
        return self._checkpoint

    @property
    def checkpoints(self) -> list[str]:
        """Paths of the managed checkpoints, oldest first (docs/semantics.md S90)."""
        directory = self.directory
        return [_join(directory, path) for path in self._retention.paths]

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint this manager saved or recovered (docs/semantics.md S90)."""
        return None if self._latest is None else _join(self.directory, self._latest)

    # -- saving -----------------------------------------------------------------------------

    @overload
    def save(
        self,
        checkpoint_number: Any = None,
        check_interval: bool = True,
        *,
        blocking: Literal[True] = True,
        options: WriteOptions | None = None,
    ) -> str | None: ...
    @overload
    def save(
        self,
        checkpoint_number: Any = None,
        check_interval: bool = True,
        *,
        blocking: Literal[False],
        options: WriteOptions | None = None,
    ) -> SaveHandle | None: ...
    def save(
        self,
        checkpoint_number: Any = None,
        check_interval: bool = True,
        *,
        blocking: bool = True,
        options: WriteOptions | None = None,
    ) -> str | SaveHandle | None:
        """Save ``<directory>/<checkpoint_name>-<n>``, record it, delete what is beyond retention.

        ``save_counter`` is always incremented (docs/semantics.md S84).

        Parameters
        ----------
        checkpoint_number
            ``n``: an int or an integer variable (read, not incremented); ``None``: the
            counter.
        check_interval
            ``False`` saves even when ``checkpoint_interval`` says not yet (but never twice at
            one step, docs/semantics.md S88).
        blocking
            ``False`` copies the values now and writes them on a background thread.
        options
            Durability, progress bar, storage options (:class:`ck.WriteOptions`).

        Returns
        -------
        str or SaveHandle or None
            The new checkpoint's path (``blocking=False``: a :class:`ck.SaveHandle`), or
            ``None`` when ``checkpoint_interval`` says not yet.

        Raises
        ------
        LockedError
            Another manager, in this or another process, saves into the directory.

        Examples
        --------
        >>> import tempfile
        >>> manager = ck.CheckpointManager(ck.Checkpoint(), tempfile.mkdtemp(), max_to_keep=1)
        >>> manager.save(checkpoint_number=100).endswith("ckpt-100")
        True
        >>> manager.save().endswith("ckpt-2"), len(manager.checkpoints)
        (True, 1)
        >>> manager.close()
        """
        options = checked_options(options, WriteOptions)
        settle(self._checkpoint)
        step = None
        if self._interval is not None:
            step = _read_int(self._step_counter, "step_counter")
            if not interval_allows(
                self._last_step, step, self._interval, check_interval=check_interval
            ):
                return None
        if checkpoint_number is not None:
            checkpoint_number = _read_int(checkpoint_number, "checkpoint_number")
        self._take_lock()
        counter = self._checkpoint.save_counter
        count = int(counter.numpy()) + 1
        number = count if checkpoint_number is None else checkpoint_number
        name = f"{self._name}-{number}"
        path = _join(self.directory, name)
        store, key = resolve(_join(self._root, name), options.storage_options)
        overrides = {id(counter): np.asarray(count, dtype=np.int64)}  # saved before it is assigned
        write = self._checkpoint._prepare(store, key, options, overrides, snapshot=not blocking)

        def finish() -> str:
            with self._lock.saving():  # managers of this process on this directory take turns
                if self._cut_short:
                    self._finish_deletes_cut_short()
                current = self._current()
                write()
                with interrupts_held():  # committed: record it before a Ctrl-C takes effect
                    if blocking:  # the number is used, even if recording it fails
                        counter.assign(count)
                    self._record_and_sweep(current, name, options)
            if step is not None:  # the step counts as saved only once it is (S88)
                self._last_step = step
            return path

        if blocking:
            return finish()
        counter.assign(count)  # a background save's number is taken now (docs/manager.md)
        return start(self._checkpoint, path, finish)

    def _take_lock(self) -> None:
        if self._lock.acquire():  # the first manager of this process to save here
            self._remove_leftovers()

    def _remove_leftovers(self, only: Collection[str] | None = None) -> None:
        """Finish what an interrupted save or delete left (no other process saves here now).

        ``only``: just what the deletes of these checkpoints left.
        """
        state = read_state(self._store, self._key)
        listed = [*self._retention.paths, *((*state.all_paths, state.latest) if state else ())]
        keys = {self._key_of(path) for path in listed}
        names = {posixpath.basename(k) for k in keys if posixpath.dirname(k) == self._key}
        removed = remove_leftovers(self._store, self._key, self._name, names, only=only)
        if removed:
            logger.info(
                "Removed what interrupted saves or deletes left in %s: %s",
                self._directory,
                ", ".join(removed),
            )

    def _finish_deletes_cut_short(self) -> None:
        """Remove what this manager's retention deletes that an interrupt cut short left.

        Called under the process's save mutex: no other save of this process is running here.
        """
        names = {
            posixpath.basename(k) for k in self._cut_short if posixpath.dirname(k) == self._key
        }
        try:
            self._remove_leftovers(only=names)
        except StorageError as error:  # noted: the next manager of the directory deletes them
            logger.warning(
                "Removing what interrupted deletes left in %s failed: %s", self._directory, error
            )
        self._cut_short.clear()

    def _adoptable(self, state: CheckpointState | None) -> CheckpointState | None:
        """``state`` without the entries retention must never delete: those outside the directory.

        The state file pairs ``all_model_checkpoint_paths`` with
        ``all_model_checkpoint_timestamps`` by position; TensorFlow zips lists of different
        lengths, which hands timestamps to the wrong checkpoints (a path added by hand takes
        its neighbour's and becomes managed).  A mismatch is refused instead, naming the file
        and the fix.  An entry naming a path outside the directory (an absolute path or URL
        elsewhere, ``../other/ckpt``) is dropped with a WARNING, once per manager: it is not
        managed, not listed in :attr:`checkpoints`, and never deleted (docs/manager.md).
        """
        if state is None:
            return None
        if state.timestamps and len(state.timestamps) != len(state.all_paths):
            where = self._store.display(posixpath.join(self._key, STATE_FILENAME))
            raise CorruptCheckpointError(
                f"Checkpoint state file {where} lists {len(state.all_paths)} checkpoints "
                f"(all_model_checkpoint_paths) but {len(state.timestamps)} timestamps "
                "(all_model_checkpoint_timestamps). They are paired by position, so a "
                "CheckpointManager cannot tell which timestamp is whose, and would delete the "
                "wrong checkpoints. Give every listed checkpoint its timestamp, in the same "
                "order, or remove every all_model_checkpoint_timestamps line (the manager then "
                "manages, and deletes, none of the listed checkpoints)."
            )
        outside = [path for path in state.all_paths if not self._inside(path)]
        if not outside:
            return state
        new = sorted(set(outside) - self._outside)
        if new:
            self._outside.update(new)
            logger.warning(
                "The state file of %s lists checkpoints outside that directory: %s. A "
                "CheckpointManager never deletes anything outside its directory, so it does not "
                "manage them (they are not in manager.checkpoints, and its next save drops them "
                "from the state file); they stay on disk.",
                self._directory,
                ", ".join(new),
            )
        stamps = state.timestamps or (None,) * len(state.all_paths)
        kept = [(p, t) for p, t in zip(state.all_paths, stamps, strict=True) if p not in outside]
        return dataclasses.replace(
            state,
            all_paths=tuple(p for p, _ in kept),
            timestamps=tuple(t for _, t in kept if t is not None),
        )

    def _inside(self, name: str) -> bool:
        """Whether the state-file entry ``name`` names a path inside the directory."""
        name = name.removeprefix("file://")
        if "://" in name:
            protocol, rest = name.split("://", 1)
            where = f"{protocol}://{posixpath.normpath('/' + rest).lstrip('/')}"
        elif posixpath.isabs(name):
            where = posixpath.normpath(name)
        else:
            where = self._store.display(posixpath.normpath(posixpath.join(self._key, name)))
        return where.startswith(self._root.rstrip("/") + "/")

    def _key_of(self, name: str) -> str:
        if "://" in name or posixpath.isabs(name):
            return resolve(name)[1]
        return posixpath.join(self._key, name)

    def _current(self) -> RetentionState:
        """The manager's list merged with the state file as it is now (others may have saved).

        Called under the lock and the process's save mutex, before anything is written.
        """
        on_disk = read_state(self._store, self._key)
        theirs = None if on_disk is None else recover(self._adoptable(on_disk), self._now()).state
        listed = set(theirs.paths) if theirs is not None else set()
        present = {
            path
            for path in self._retention.paths
            if path not in listed and is_committed(self._store, self._key_of(path))
        }
        if theirs is None:  # never written, or deleted (rm -rf): only what is still on disk
            return RetentionState(
                active=tuple(entry for entry in self._retention.active if entry[0] in present),
                last_preserved=self._retention.last_preserved,
            )
        return merge(self._retention, theirs, present)

    def _record_and_sweep(self, current: RetentionState, name: str, options: WriteOptions) -> None:
        """Record the committed ``name``, sweep, write the state file once, then delete.

        If anything before the state file is replaced fails (the clock, noting the evictions,
        writing the state file), the new checkpoint is deleted unless the state file lists it
        (:func:`listed_or_removed`).
        """
        doomed: list[str] = []
        with listed_or_removed(self._store, self._key, self._key_of(name)):
            try:  # the clock, the policy and the notes may fail too: all after the commit
                result = sweep(record_save(current, name, self._now()), self._policy)
                state = CheckpointState(
                    latest=name,
                    all_paths=result.state.paths,
                    timestamps=result.state.timestamps,
                    last_preserved=result.state.last_preserved,
                )
                doomed = [self._key_of(path) for path in result.delete]
                self._cut_short.update(doomed)  # until they are deleted (a Ctrl-C, docs/manager.md)
                for key in doomed:  # so that a crash after the state-file write cannot orphan it
                    note_eviction(self._store, key)
                write_state(self._store, self._key, state, durable=options.durable)
            except BaseException as error:
                self._withdraw_eviction_notes(doomed, error)
                raise
        self._retention, self._latest = result.state, name
        for key in doomed:
            try:
                retract(self._store, key, durable=options.durable)
                retract_bundle(self._store, key)  # TensorFlow's, in a directory it took over
                clear_eviction(self._store, key)
            except StorageError as error:  # noted: the next manager of the directory deletes it
                logger.warning(
                    "Saved %s, but deleting %s (beyond max_to_keep) failed: %s",
                    self._store.display(self._key_of(name)),
                    self._store.display(key),
                    error,
                )
        self._cut_short.clear()

    def _withdraw_eviction_notes(self, doomed: list[str], error: BaseException) -> None:
        """After a failed state-file write: withdraw the notes of checkpoints still listed."""
        try:
            state = read_state(self._store, self._key)
            listed = {self._key_of(path) for path in state.all_paths} if state else set()
        except Exception:  # unreadable: withdraw every note (keeping checkpoints is the safe side)
            listed = set(doomed)
        for key in doomed:
            if key in listed:
                noting_failure(
                    error,
                    f"deleting the eviction note of {self._store.display(key)}",
                    functools.partial(clear_eviction, self._store, key),
                )

    # -- restoring --------------------------------------------------------------------------

    def restore_or_initialize(self, *, options: ReadOptions | None = None) -> str | None:
        """Restore the latest checkpoint and return its path, or call ``init_fn`` and return None.

        The restore's status is kept as :attr:`restore_status` (docs/semantics.md S89), so its
        unused value warnings can be silenced with ``manager.restore_status.expect_partial()``.

        Parameters
        ----------
        options
            Passed to the restore (:class:`ck.ReadOptions`), e.g.
            ``ck.ReadOptions(progress=False)`` to turn its progress bar off.

        Returns
        -------
        str or None
            The restored checkpoint's path, or ``None`` when there was none.

        Examples
        --------
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> step = ck.Variable(0)
        >>> manager = ck.CheckpointManager(ck.Checkpoint(step=step), directory, max_to_keep=1)
        >>> manager.restore_or_initialize() is None  # nothing saved yet
        True
        >>> _ = step.assign(7)
        >>> path = manager.save()
        >>> manager.close()
        >>> fresh = ck.Variable(0)
        >>> again = ck.CheckpointManager(ck.Checkpoint(step=fresh), directory, max_to_keep=1)
        >>> again.restore_or_initialize() == path, int(fresh.numpy())
        (True, 7)
        """
        options = checked_options(options, ReadOptions)
        settle(self._checkpoint)
        if self._latest is not None:
            where = _join(self._root, self._latest)  # not the working directory's "runs/ckpt-3"
            self.restore_status = self._checkpoint.restore(where, options=options)
            if self._interval is not None:
                self._last_step = _read_int(self._step_counter, "step_counter")
            return self.latest_checkpoint
        if self._init_fn is not None:
            self._init_fn()
        return None

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Wait for a save in flight, free its staging buffers, release the directory lock.

        Also what leaving a ``with`` block does; the manager may save again afterwards (it
        takes the lock again).

        Examples
        --------
        >>> import tempfile
        >>> with ck.CheckpointManager(ck.Checkpoint(), tempfile.mkdtemp(), max_to_keep=1) as m:
        ...     handle = m.save(blocking=False)
        >>> handle.done()
        True
        """
        try:
            settle(self._checkpoint)
        finally:
            discard_staging(self._checkpoint)
            self._lock.release()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        lock = self.__dict__.get("_lock")
        if lock is not None:
            try:  # noqa: SIM105 (best effort; at interpreter exit contextlib may be None)
                lock.release_from_finalizer()
            except Exception:
                pass

    def __repr__(self) -> str:
        return (
            f"<ck.CheckpointManager {self._directory!r} max_to_keep={self._policy.max_to_keep} "
            f"checkpoints={len(self._retention.active)} latest={self._latest!r}>"
        )
