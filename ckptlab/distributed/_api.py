"""``save``, ``write``, ``read_region`` and ``plan``: the multi-worker front door (public)."""

from __future__ import annotations

import functools
import operator
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckptlab.distributed._coordinator import SaveStats, WorkerError, abort, begin, timed_finish
from ckptlab.distributed._engines import Engine, LocalEngine
from ckptlab.distributed._plan import SavePlan
from ckptlab.distributed._sharded import stored_key
from ckptlab.distributed._worker import (
    PartManifest,
    SaveJob,
    WorkerFailure,
    plan_for,
    write_part,
    write_part_for,
)
from ckptlab.engine import is_trackable
from ckptlab.errors import InvalidArgumentError
from ckptlab.storage import (
    DirectoryLock,
    WriteOptions,
    checked_options,
    open_path,
    path_text,
    read_rows,
    read_state,
    record_latest,
    resolve,
    writer_info,
)

DEFAULT_TIMEOUT = 600.0
"""Seconds a save waits for its workers before giving up (``timeout=``)."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    path: str | None
    error: str | None = None
    failures: tuple[WorkerFailure, ...] = ()


def write(
    path: str | os.PathLike[str],
    state: Any,
    *,
    engine: Engine | None = None,
    assign: Mapping[str, int] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    options: WriteOptions | None = None,
) -> str:
    """Write one checkpoint at ``path`` from several workers; each writes only its own values.

    Parameters
    ----------
    path
        The checkpoint path (a local/NFS path or an fsspec URL such as ``s3://bucket/ckpt``) that
        every worker can reach.
    state
        A function ``state(rank)`` that returns the worker's trackable root (a
        ``ck.Checkpoint``, a ``ck.Module``, ...); it runs on the worker, so array bytes never
        travel through the engine.  Or a list with one entry per worker: such functions, or
        (``DaskEngine``) futures of states already held by their workers.  With an SPMD engine
        (``TorchEngine``) pass the root itself.
        Every worker must build the same object graph; a variable split across workers is a
        :class:`ShardedVariable` holding only that worker's rows.
    engine
        :class:`LocalEngine` (default, 2 processes), :class:`DaskEngine` or :class:`TorchEngine`.
    assign
        Which worker writes which value, by value key or object path (``{"model/big": 1}``);
        values not named are balanced by bytes.
    timeout
        Seconds to wait for the workers; a worker that raises, dies or does not report in time
        fails the save with a :class:`WorkerError` naming it, and nothing is committed.
    options
        ``durable`` and ``storage_options`` of :class:`ckptlab.WriteOptions` apply.

    Returns
    -------
    str
        ``path``, committed; an ordinary checkpoint any reader opens.
    """
    text = path_text(path)
    settings = checked_options(options, WriteOptions)
    return _run(text, state, engine, assign, timeout, settings, counter=None)


def save(
    file_prefix: str | os.PathLike[str],
    state: Any,
    *,
    engine: Engine | None = None,
    assign: Mapping[str, int] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    options: WriteOptions | None = None,
) -> str:
    """Save ``f"{file_prefix}-{n}"`` from several workers and make it the directory's latest.

    ``n`` is one more than the highest number already saved under ``file_prefix`` (in the
    state file or on disk).  When a worker's state is a ``ck.Checkpoint`` its stored
    ``save_counter`` is ``n`` (the workers' live counters are not changed, except on SPMD
    engines, where each rank's is set to ``n`` after the commit).  Arguments as for :func:`write`.

    Raises
    ------
    LockedError
        A ``CheckpointManager`` of another process holds the directory's lock (checked on the
        coordinator before any worker writes, as ``Checkpoint.save`` does).

    Examples
    --------
    >>> import ckptlab as ck, numpy as np, tempfile
    >>> from ckptlab import distributed as ckd
    >>> def state(rank):
    ...     model = ck.Module()
    ...     model.a = ck.Variable(np.full((4, 3), 1.0))
    ...     model.b = ck.Variable(np.arange(5))
    ...     return ck.Checkpoint(model=model)
    >>> prefix = tempfile.mkdtemp() + "/ckpt"
    >>> path = ckd.save(prefix, state, engine=ckd.LocalEngine(2))
    >>> ck.list_variables(path)[0]
    ('model/a/.ATTRIBUTES/VARIABLE_VALUE', [4, 3])
    """
    prefix = path_text(file_prefix)
    settings = checked_options(options, WriteOptions)
    chosen = engine or LocalEngine()
    number: int = _decide(chosen, prefix, lambda: _next_number(prefix, settings))
    path = f"{prefix}-{number}"
    _run(
        path,
        state,
        chosen,
        assign,
        timeout,
        settings,
        number,
        lambda: record_latest(
            *resolve(path, settings.storage_options or None), durable=settings.durable
        ),
    )
    if not chosen.ships_tasks and hasattr(state, "save_counter"):
        state.save_counter.assign(number)
    return path


def _next_number(prefix: str, options: WriteOptions) -> int:
    """The number of the next checkpoint under ``prefix``, on the coordinator before any write.

    Raises :class:`~ckptlab.LockedError` first when a manager of another process holds the
    directory's lock: the state file this save replaces is that manager's (docs/manager.md).
    """
    store, key = resolve(prefix, options.storage_options or None)
    directory, name = posixpath.split(key)
    DirectoryLock(store, directory).check_plain_save("ckptlab.distributed.save")
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)\Z")
    state = read_state(store, directory)
    names = [*store.list_dir(directory), *((state.latest, *state.all_paths) if state else ())]
    numbers = [int(m.group(1)) for n in names if (m := pattern.match(posixpath.basename(n)))]
    return max(numbers, default=0) + 1


def _run(
    path: str,
    state: Any,
    engine: Engine | None,
    assign: Mapping[str, int] | None,
    timeout: float,
    options: WriteOptions | None,
    counter: int | None,
    on_commit: Callable[[], None] | None = None,
) -> str:
    chosen = engine or LocalEngine()
    items = _per_worker(state, chosen)
    traffic = (chosen.sent_bytes, chosen.received_bytes)
    settings = options or WriteOptions()
    staged: list[SaveJob] = []  # the coordinator's job once staged: aborted on any failure

    def stage() -> SaveJob:
        staged.append(
            begin(path, chosen.world_size, assign=assign, counter=counter, options=settings)
        )
        return staged[0]

    try:
        job: SaveJob = _decide(chosen, path, stage)  # its broadcast fails when a rank has gone
        task = (
            functools.partial(write_part, job, state)
            if items is None
            else functools.partial(write_part_for, job)
        )
        outcomes = chosen.run(task, timeout, items)
    except BaseException:
        if staged:
            abort(staged[0])  # lets go of the staging tree's lock and removes it
        raise
    _conclude(job, chosen, outcomes, on_commit, traffic)
    return path


def _conclude(
    job: SaveJob,
    engine: Engine,
    outcomes: list[Any] | None,
    on_commit: Callable[[], None] | None,
    traffic: tuple[int, int],
) -> None:
    """Commit on the coordinator, then give every process the same verdict (or raise it)."""
    verdict = _Verdict(job.path)
    local_error: BaseException | None = None
    if outcomes is not None:
        writer = writer_info(workers=engine.world_size, engine=type(engine).__name__)
        try:
            _, seconds = timed_finish(job, outcomes, writer)
            engine.last_stats = _stats(job, engine, outcomes, seconds, traffic)
            if on_commit is not None:
                on_commit()
        except BaseException as error:
            failures = error.failures if isinstance(error, WorkerError) else ()
            local_error, verdict = error, _Verdict(None, str(error), failures)
    verdict = engine.broadcast(verdict)
    if local_error is not None:
        raise local_error
    if verdict.error is not None:
        raise WorkerError(verdict.error, verdict.failures)


def _per_worker(state: Any, engine: Engine) -> list[Any] | None:
    """The per-worker states when ``state`` is a list of them (e.g. Dask futures), else ``None``."""
    items = list(state) if isinstance(state, list | tuple) and not is_trackable(state) else None
    if items is not None and len(items) != engine.world_size:
        raise ValueError(
            f"Got {len(items)} states for {engine.world_size} workers; pass one per worker."
        )
    if engine.ships_tasks and any(is_trackable(i) for i in (items or [state])):
        raise TypeError(
            f"{type(engine).__name__} runs the save on other processes, so `state` must be a "
            "function state(rank) that builds or fetches the worker's objects there, or (Dask) "
            "futures of states already on the workers; passing the objects themselves would send "
            "every array through the engine."
        )
    return items


def _decide(engine: Engine, path: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` on the coordinator, broadcast to every process; its error reaches all."""
    message: Any = None
    if engine.is_coordinator:
        try:
            message = compute()
        except Exception as error:
            engine.broadcast(_Verdict(None, f"{type(error).__name__}: {error}"))
            raise
    received = engine.broadcast(message)
    if isinstance(received, _Verdict):
        raise WorkerError(
            f"Multi-worker save of {path} failed on the coordinator: {received.error}"
        )
    return received


def _stats(
    job: SaveJob,
    engine: Engine,
    outcomes: list[Any],
    commit_seconds: float,
    traffic: tuple[int, int],
) -> SaveStats:
    manifests = [o for o in outcomes if isinstance(o, PartManifest)]
    return SaveStats(
        path=job.path,
        world_size=job.world_size,
        bytes_per_worker=tuple(m.nbytes for m in manifests),
        write_seconds=max(m.finished for m in manifests) - min(m.started for m in manifests),
        commit_seconds=commit_seconds,
        sent_bytes=engine.sent_bytes - traffic[0],
        received_bytes=engine.received_bytes - traffic[1],
        worker_seconds=tuple(m.finished - m.started for m in manifests),
        workers=tuple(m.worker for m in manifests),
    )


def read_region(
    path_or_dir: str | os.PathLike[str], key: str, rows: tuple[int, int]
) -> np.ndarray[Any, Any]:
    """Rows ``[start, stop)`` of one stored value, reading only the chunks that hold them.

    This is how a value saved by N workers is loaded by M workers (resharding): each reads its
    own rows.  ``key`` is a value key or an object path (``"model/embedding"``); a checkpoint
    directory means its latest checkpoint.

    Examples
    --------
    >>> import ckptlab as ck, numpy as np, tempfile
    >>> from ckptlab.distributed import read_region
    >>> ckpt = ck.Checkpoint(w=ck.Variable(np.arange(12).reshape(6, 2)))
    >>> path = ckpt.write(tempfile.mkdtemp() + "/c")
    >>> read_region(path, "w", (2, 4))
    array([[4, 5],
           [6, 7]])
    """
    try:
        start, stop = (operator.index(row) for row in rows)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"read_region(rows={rows!r:.60}): expected a (start, stop) pair of integers, e.g. "
            "(0, 1024) for the first 1,024 rows."
        ) from None
    checkpoint = open_path(path_or_dir)
    return read_rows(checkpoint, stored_key(checkpoint.document.values, key), start, stop)


def plan(root: Any, world_size: int, assign: Mapping[str, int] | None = None) -> SavePlan:
    """The plan a multi-worker save of ``root`` would follow: who writes which value and rows.

    Use it to check the balance (``plan(...).bytes_per_worker()``) before saving.
    """
    return plan_for(root, world_size, assign)
