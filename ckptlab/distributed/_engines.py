"""Engines run one task per worker and bring back small results (public classes, re-exported).

An engine answers four questions for the save protocol: how many workers there are, whether
this process is the coordinator, how to run ``task(rank)`` on every worker with a deadline
(returning each worker's result or a :class:`WorkerFailure`), and how to broadcast a small
object from the coordinator.  Driver engines (:class:`LocalEngine`, :class:`DaskEngine`) run in
the coordinating process and ship ``task`` to workers; SPMD engines
(:class:`ckptlab.distributed.TorchEngine`) run in every worker, which all call the same save.
Engines count the pickled bytes they send and receive, so a test can check that no array bytes
travel through them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import time
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from ckptlab.distributed._coordinator import SaveStats
from ckptlab.distributed._worker import WorkerFailure, failure_from

Outcome = Any
"""A worker's result, or a :class:`WorkerFailure`."""


class Engine(Protocol):
    """What the save protocol needs from a distributed engine."""

    world_size: int
    is_coordinator: bool
    ships_tasks: bool
    """Whether ``run`` pickles the task to other processes (then state must be a function)."""
    sent_bytes: int
    """Pickled bytes sent to workers so far (all saves)."""
    received_bytes: int
    """Pickled bytes received from workers so far (all saves)."""
    last_stats: SaveStats | None
    """Measurements of the last save this process coordinated."""

    def broadcast(self, value: Any) -> Any:
        """The coordinator's ``value``, on every process."""
        ...

    def run(
        self, task: Callable[..., Any], timeout: float, items: Sequence[Any] | None = None
    ) -> list[Outcome] | None:
        """Run ``task(rank)`` (or ``task(rank, items[rank])``) on every worker.

        Returns the outcomes by rank on the coordinator, ``None`` elsewhere.
        """
        ...


def dumps(value: Any) -> bytes:
    """Pickle with cloudpickle when available (functions defined in a notebook then travel)."""
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - cloudpickle comes with the dask extra
        try:
            return pickle.dumps(value)
        except (pickle.PicklingError, AttributeError) as error:
            raise TypeError(
                f"Cannot send the state function to the workers ({error}). Define it in an "
                "importable module, or pip install cloudpickle (included in ckptlab[dask]) to "
                "send functions defined in a notebook or script."
            ) from error
    data: bytes = cloudpickle.dumps(value)
    return data


def _child(connection: Connection, payload: bytes, item: bytes | None, rank: int) -> None:
    """Body of a local worker process: run the task, send back its result or its failure."""
    try:
        task = pickle.loads(payload)
        outcome = task(rank) if item is None else task(rank, pickle.loads(item))
    except BaseException as error:
        outcome = failure_from(rank, error)
    try:
        connection.send_bytes(pickle.dumps(outcome))
    except Exception as error:  # an unpicklable result
        connection.send_bytes(pickle.dumps(failure_from(rank, error)))
    connection.close()


class LocalEngine:
    """Worker processes on this machine, started fresh for each save (the default engine).

    Parameters
    ----------
    workers
        Number of worker processes.
    start_method
        ``multiprocessing`` start method; ``spawn`` (default) is safe with threads and in notebooks.

    Examples
    --------
    >>> from ckptlab.distributed import LocalEngine
    >>> LocalEngine(2).world_size
    2
    """

    is_coordinator = True
    ships_tasks = True

    def __init__(self, workers: int = 2, *, start_method: str = "spawn") -> None:
        if workers < 1:
            raise ValueError(f"LocalEngine needs at least one worker, got {workers}")
        self.world_size = workers
        self.start_method = start_method
        self.sent_bytes = 0
        self.received_bytes = 0
        self.last_stats: SaveStats | None = None

    def __repr__(self) -> str:
        return f"LocalEngine(workers={self.world_size}, start_method={self.start_method!r})"

    def broadcast(self, value: Any) -> Any:
        """The coordinator is the only caller: return ``value``."""
        return value

    def run(
        self, task: Callable[..., Any], timeout: float, items: Sequence[Any] | None = None
    ) -> list[Outcome]:
        """Start one process per worker, wait for all of them until ``timeout`` seconds."""
        payload = dumps(task)
        context: Any = multiprocessing.get_context(self.start_method)
        processes, readers = [], []
        for rank in range(self.world_size):
            reader, writer = context.Pipe(duplex=False)
            item = None if items is None else dumps(items[rank])
            process = context.Process(
                target=_child,
                args=(writer, payload, item, rank),
                name=f"ckptlab-worker-{rank}",
                daemon=False,  # a state function may start processes of its own
            )
            process.start()
            writer.close()
            processes.append(process)
            readers.append(reader)
            self.sent_bytes += len(payload) + len(item or b"")
        try:
            return self._collect(processes, readers, time.monotonic() + timeout, timeout)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join()
            for reader in readers:
                reader.close()

    def _collect(
        self,
        processes: Sequence[Any],
        readers: Sequence[Connection],
        deadline: float,
        timeout: float,
    ) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        pending = set(range(self.world_size))
        while pending and (remaining := deadline - time.monotonic()) > 0:
            wait(
                [readers[r] for r in pending] + [processes[r].sentinel for r in pending],
                timeout=remaining,
            )
            for rank in sorted(pending):
                outcome = self._poll(rank, processes[rank], readers[rank])
                if outcome is not None:
                    outcomes[rank] = outcome
                    pending.discard(rank)
        for rank in pending:
            outcomes[rank] = WorkerFailure(
                rank=rank,
                worker=f"local pid {processes[rank].pid}",
                reason="timeout",
                error=f"did not report within {timeout:g} s (killed)",
            )
        return [outcomes[r] for r in range(self.world_size)]

    def _poll(self, rank: int, process: Any, reader: Connection) -> Outcome | None:
        if reader.poll():
            try:
                data = reader.recv_bytes()
            except EOFError:
                data = b""
            if data:
                self.received_bytes += len(data)
                return pickle.loads(data)
        if process.exitcode is None:
            return None
        return WorkerFailure(
            rank=rank,
            worker=f"local pid {process.pid}",
            reason="died",
            error=f"the process exited with code {process.exitcode} before reporting",
        )


class DaskEngine:
    """Dask distributed workers: one task pinned to each worker; the client is the coordinator.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    workers
        Worker addresses to use, in rank order; default every worker, sorted by address.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> cluster = LocalCluster(n_workers=2, processes=False, dashboard_address=None)
    >>> client = Client(cluster)
    >>> DaskEngine(client).world_size
    2
    >>> client.close(); cluster.close()
    """

    is_coordinator = True
    ships_tasks = True

    def __init__(self, client: Any, workers: Sequence[str] | None = None) -> None:
        self.client = client
        self.addresses = (
            list(workers) if workers else sorted(client.scheduler_info(n_workers=-1)["workers"])
        )
        if not self.addresses:
            raise ValueError(
                "The Dask cluster has no workers; start some or wait for them "
                "(client.wait_for_workers(n))."
            )
        self.world_size = len(self.addresses)
        self.sent_bytes = 0
        self.received_bytes = 0
        self.last_stats: SaveStats | None = None

    def __repr__(self) -> str:
        return f"DaskEngine(workers={self.addresses})"

    def broadcast(self, value: Any) -> Any:
        """The client is the only caller: return ``value``."""
        return value

    def run(
        self, task: Callable[..., Any], timeout: float, items: Sequence[Any] | None = None
    ) -> list[Outcome]:
        """Submit ``task(rank[, items[rank]])`` pinned to worker ``rank``; gather until ``timeout``.

        ``items`` may be Dask futures: each must already be held by its rank's worker, so that
        no state travels between workers.
        """
        from distributed import wait as dask_wait

        if items is not None:
            self._check_placement(items, timeout)
        token = uuid.uuid4().hex[:12]
        self.sent_bytes += len(dumps(task)) * self.world_size
        futures = [
            self.client.submit(
                task,
                rank,
                *(() if items is None else (items[rank],)),
                workers=[address],
                allow_other_workers=False,
                pure=False,
                key=f"ckptlab-part-{token}-{rank}",
            )
            for rank, address in enumerate(self.addresses)
        ]
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0 and not self._settled(futures):
            with contextlib.suppress(TimeoutError):
                dask_wait(futures, timeout=min(remaining, 0.5))  # type: ignore[no-untyped-call]
        outcomes = [self._outcome(rank, future, timeout) for rank, future in enumerate(futures)]
        for future in futures:
            future.cancel()
        return outcomes

    def _check_placement(self, items: Sequence[Any], timeout: float) -> None:
        from distributed import Future
        from distributed import wait as dask_wait

        futures = [f for f in items if isinstance(f, Future)]
        with contextlib.suppress(TimeoutError):
            dask_wait(futures, timeout=timeout)  # type: ignore[no-untyped-call]
        held = self.client.who_has(futures)
        for rank, item in enumerate(items):
            holders = list(held.get(item.key, ())) if isinstance(item, Future) else []
            if isinstance(item, Future) and self.addresses[rank] not in holders:
                raise ValueError(
                    f"The state of worker {rank} ({item.key}) is held by {holders}, not by "
                    f"worker {rank} ({self.addresses[rank]}): it would have to travel. "
                    "Create the engine with DaskEngine(client, workers=[...]) listing, in rank "
                    "order, the workers that hold the states."
                )

    def _settled(self, futures: Sequence[Any]) -> bool:
        """Whether every part finished or failed, or a worker with a pending part left."""
        pending = [r for r, f in enumerate(futures) if f.status not in ("finished", "error")]
        if not pending:
            return True
        alive = self.client.scheduler_info(n_workers=-1)["workers"]
        return any(self.addresses[r] not in alive for r in pending)

    def _outcome(self, rank: int, future: Any, timeout: float) -> Outcome:
        address = self.addresses[rank]
        if future.status == "finished":
            result = future.result()
            self.received_bytes += len(pickle.dumps(result))
            return result
        if future.status == "error":
            error = future.exception()
            if isinstance(error, BaseException):
                error = error.with_traceback(future.traceback())
                return failure_from(rank, error, worker=address)
        if address not in self.client.scheduler_info(n_workers=-1)["workers"]:
            return WorkerFailure(
                rank=rank,
                worker=address,
                reason="died",
                error="the worker left the cluster before reporting",
            )
        return WorkerFailure(
            rank=rank,
            worker=address,
            reason="timeout",
            error=f"did not report within {timeout:g} s",
        )
