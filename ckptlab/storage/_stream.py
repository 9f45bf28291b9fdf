"""Version 3 data arrays as streams of pieces: what goes where, checksummed on the way (internal).

A data array holds values back to back in the order the writer lists them.  Writers walk the
values once, handing the store the values' own buffers (no staging copy) in batches of about
:data:`STEP` bytes and computing each value's crc32c on the same buffers just before they are
written, while they are still in the processor's cache.  Readers use :func:`pieces` to split the
byte ranges they want at shard boundaries.  FORMAT.md section 4.2 describes the layout.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future
from typing import Any, TypeVar

import crc32c
import numpy as np

from ckptlab.core import ITEMSIZE, ArrayInfo
from ckptlab.storage._kv import Buffer
from ckptlab.storage._layout import shard_chunks, shard_count, shard_index

T = TypeVar("T")

STEP = 4 * 2**20
"""Bytes handed to the store per batch (and checksummed just before): fits the cache."""
OFFLOAD_BYTES = 64 * 2**20
"""Transfers of at least this many bytes checksum their large pieces on a helper thread."""
PARALLEL_BYTES = 64 * 2**20
"""Local reads of at least this many bytes run on two threads (each thread reads and checks
whole pieces of the work): both the copy and the checksum are memory-bound, and a second core
adds about a quarter to one's throughput on this project's machines."""
OFFLOAD_VALUE = 256 * 2**10
"""Values at least this large are checksummed on the helper (crc32c releases the GIL)."""


def two_threads(nbytes: int, threshold: int) -> bool:
    """Whether moving ``nbytes`` is worth a second thread: large enough, and a second core."""
    return nbytes >= threshold and (os.cpu_count() or 1) > 1


class Helper:
    """One daemon thread that runs the jobs handed to :meth:`submit`, first in, first out.

    Not a ``concurrent.futures`` executor: at interpreter exit Python shuts those down (no new
    jobs) *before* it joins the non-daemon threads still running, so a background save still
    writing then could not hand over its checksums and failed.  This thread takes jobs as long
    as the process runs; being a daemon, it does not keep the process alive when idle.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="ckptlab-helper", daemon=True).start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Queue ``job``; its future holds what it returns or raises."""
        future: Future[T] = Future()
        self._jobs.put((future, job))
        return future

    def _serve(self) -> None:
        _thread.helper = True
        while True:
            future, job = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as error:
                future.set_exception(error)
            del future, job  # hold no job's memory while waiting for the next


_shared: Helper | None = None


def shared_helper() -> Helper:
    """The process's one waiting helper thread, for work split per call (one value's pieces).

    Starting a thread costs ~0.1 ms, a tenth of reading a few MiB from the page cache, so work
    handed over once per value or transfer goes to this thread, started on first use and kept.
    A forked child starts its own (the parent's thread does not exist there).  Callers from
    several threads share it (their jobs queue).  A job of the helper must never wait for
    another one, so work split from a job running there runs inline (:func:`on_helper`).
    """
    global _shared
    if _shared is None:
        _shared = Helper()
    return _shared


_thread = threading.local()


def on_helper() -> bool:
    """Whether this is the :func:`shared_helper` thread (which must not wait for itself)."""
    return getattr(_thread, "helper", False)


def in_two_halves(here: Callable[[], None], there: Callable[[], None]) -> None:
    """Run ``there`` on the shared helper and ``here`` on this thread; return when both are done.

    Both halves fill memory the caller owns, so neither may still run when this returns: an
    error of ``here`` is raised once ``there`` has finished, else an error of ``there``.  On
    the helper itself both halves run here, one after the other.
    """
    if on_helper():
        here()
        there()
        return
    later = shared_helper().submit(there)
    try:
        here()
    finally:
        error = later.exception()  # waits for the helper, whatever happened here
    if error is not None:
        raise error


def _forget_shared_helper() -> None:
    global _shared
    _shared = None


os.register_at_fork(after_in_child=_forget_shared_helper)


class Checksums:
    """Runs checksum jobs in order: inline, or on one helper thread (a second core).

    crc32c is the largest CPU cost of moving checkpoint bytes; on a machine with a spare core
    it can run while the next batch is written or read.  Jobs run first in, first out, so the
    pieces of one value are checksummed in order.  :meth:`wait` returns once every job is done
    and raises the first error a job raised.

    ``ahead`` bounds how many offloaded jobs may wait for the helper: :meth:`run` then waits for
    the oldest.  A reader whose jobs hold scratch buffers sets it, so the scratch it holds stays a
    few batches however far the helper falls behind.

    The helper is the process's :func:`shared_helper` (transfers of ``threshold`` bytes and
    more, on a machine with a second core): no thread is started per transfer.
    """

    def __init__(
        self, total: int, *, ahead: int | None = None, threshold: int = OFFLOAD_BYTES
    ) -> None:
        helped = two_threads(total, threshold) and not on_helper()
        self._helper = shared_helper() if helped else None
        self._pending: list[Future[None]] = []
        self._ahead = ahead
        self._finished = 0
        """Leading jobs of ``_pending`` known to be done (their errors still raised by wait)."""

    def run(self, job: Callable[[], None], *, offload: bool = True) -> None:
        """Run ``job`` now, or (``offload``) on the helper after the jobs queued before it.

        Jobs that must run in order (the pieces of one value) must all be offloaded or none.
        """
        if self._helper is None or not offload:
            job()
            return
        self._pending.append(self._helper.submit(job))
        if self._ahead is not None and len(self._pending) - self._finished > self._ahead:
            futures.wait([self._pending[self._finished]])  # jobs finish in order
            self._finished += 1

    def wait(self) -> None:
        """Wait for every job; raise the first error one raised."""
        pending, self._pending, self._finished = self._pending, [], 0
        for future in pending:
            future.result()

    def abandon(self) -> None:
        """Stop after an error elsewhere: wait for the queued jobs, ignore what they raise."""
        for future in self._pending:
            future.exception()
        self._pending, self._finished = [], 0


MAX_PARTS = 1024
"""Buffers per batch (the system's ``IOV_MAX``)."""


def raw_bytes(array: np.ndarray[Any, Any]) -> memoryview:
    """The bytes of an array as a flat byte view (empty arrays included).

    A C-contiguous array's own memory (writable when the array is); any other array's bytes are
    a C-ordered copy's.
    """
    return array.reshape(-1).view(np.uint8).data if array.size else memoryview(bytearray())


def stream_array(
    info: ArrayInfo,
    members: Sequence[np.ndarray[Any, Any]],
    crcs: list[list[int]],
    block: int,
    checksums: Checksums | None = None,
) -> Iterator[tuple[int, list[Buffer], int]]:
    """Batches of one data array: ``(shard, buffers, value bytes)``; fills ``crcs`` on the way.

    ``members`` are the array's values in order (C-contiguous, little endian); ``crcs[i]``
    receives member ``i``'s checksums, one per ``block`` bytes (large pieces may be checksummed
    on ``checksums``' helper thread while they are written: call its ``wait()`` before using
    ``crcs``).  Batches never cross a shard: a shard's last batch ends with its padding and
    index.  ``STEP`` divides ``block``.
    """
    checksums = checksums or Checksums(0)
    itemsize = ITEMSIZE[info.dtype]
    shard_bytes = info.shard * itemsize
    total = info.length * itemsize
    shard, position = 0, 0
    batch: list[Buffer] = []
    size = 0
    for number, array in enumerate(members):
        nbytes = array.nbytes
        out = crcs[number]
        if nbytes == 0:
            continue
        end = position + nbytes
        if nbytes <= STEP and nbytes <= block and end <= (shard + 1) * shard_bytes:
            if nbytes >= OFFLOAD_VALUE:  # one piece, one checksum: on the helper when it is big
                checksums.run(_piece_job(raw_bytes(array), [0], out, True))
            else:
                out.append(crc32c.crc32c(array))  # type: ignore[arg-type]
            batch.append(array)
            size += nbytes
            position = end
        else:
            view = raw_bytes(array)
            done = 0
            state = [0]  # the block's checksum so far (updated by jobs, in order)
            while done < nbytes:
                boundary = (shard + 1) * shard_bytes - position
                if boundary == 0:  # this shard is full: finish it, go on in the next
                    yield shard, [*batch, *_tail(info, shard)], size
                    batch, size, shard = [], 0, shard + 1
                    continue
                stop = min(nbytes, (done // STEP + 1) * STEP, done + boundary)
                piece = view[done:stop]
                ends = stop % block == 0 or stop == nbytes
                job = _piece_job(piece, state, out, ends)
                checksums.run(job, offload=nbytes >= OFFLOAD_VALUE)
                batch.append(piece)
                size += stop - done
                position += stop - done
                done = stop
                if size >= STEP:
                    yield shard, batch, size
                    batch, size = [], 0
        if size >= STEP or len(batch) >= MAX_PARTS:
            yield shard, batch, size
            batch, size = [], 0
        if position == (shard + 1) * shard_bytes and position < total:
            yield shard, [*batch, *_tail(info, shard)], size
            batch, size, shard = [], 0, shard + 1
    if shard < shard_count(info):
        yield shard, [*batch, *_tail(info, shard)], size


def _piece_job(
    piece: memoryview, state: list[int], out: list[int], ends: bool
) -> Callable[[], None]:
    def job() -> None:
        state[0] = crc32c.crc32c(piece, state[0])
        if ends:
            out.append(state[0])
            state[0] = 0

    return job


def _tail(info: ArrayInfo, shard: int) -> list[Buffer]:
    """A shard's padding (to whole inner chunks) and its index."""
    itemsize = ITEMSIZE[info.dtype]
    present = min(info.shard, info.length - shard * info.shard) * itemsize
    padding = shard_chunks(info, shard) * info.chunk * itemsize - present
    return [bytes(padding), shard_index(info, shard)] if padding else [shard_index(info, shard)]


def pieces(info: ArrayInfo, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """Split bytes ``[start, stop)`` of a data array by shard: ``(shard, offset in it, length)``.

    Examples
    --------
    >>> info = ArrayInfo(path="data/int8", dtype="int8", length=10, chunk=2, shard=4)
    >>> list(pieces(info, 3, 9))
    [(0, 3, 1), (1, 0, 4), (2, 0, 1)]
    """
    shard_bytes = info.shard * ITEMSIZE[info.dtype]
    while start < stop:
        shard, within = divmod(start, shard_bytes)
        count = min(stop - start, shard_bytes - within)
        yield shard, within, count
        start += count
