"""Asynchronous saves: :class:`SaveHandle` and the one-save-in-flight rule (public handle).

``Checkpoint.save(..., blocking=False)`` and ``CheckpointManager.save(..., blocking=False)``
copy every value on the calling thread (one host copy, into staging buffers kept between
non-blocking saves), then write on a background thread and return a :class:`SaveHandle`.
Per :class:`~ckptlab.Checkpoint` at most one save is in flight: the next ``save``/``write``
(blocking or not) first waits for it, and if it failed and nobody has seen the error through
:meth:`SaveHandle.result`/:meth:`SaveHandle.exception`, the next call raises it instead of
saving.  The thread is not a daemon, so interpreter exit waits for an in-flight save; if the
process is killed instead, the previous checkpoint stays the latest (the state file is only
updated after the new checkpoint is committed).  A failed save consumes its number.  A failure
nobody retrieved (no ``result()``/``exception()``, no later save) is logged as an ERROR when
its handle is garbage-collected or at interpreter exit, whichever comes first, so a failed
last save never goes unnoticed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ckptlab.errors import CkptlabError

__all__ = ["SaveHandle"]

logger = logging.getLogger("ckptlab")


class SaveHandle:
    """A checkpoint being written in the background.

    Returned by ``save(..., blocking=False)``; ``result()`` waits and returns the saved path
    (or raises the save's error).  An error nobody retrieves is raised by the next save, or
    logged when the handle is collected.

    Parameters
    ----------
    path
        The checkpoint being written.
    work
        The write, run on the handle's thread (internal; ``save`` makes handles).

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> ckpt = ck.Checkpoint(w=ck.Variable([1.0, 2.0]))
    >>> handle = ckpt.save(os.path.join(tempfile.mkdtemp(), "ckpt"), blocking=False)
    >>> ckpt.w.assign([9.0, 9.0])  # does not affect what is being saved  # doctest: +ELLIPSIS
    <ck.Variable ...>
    >>> os.path.basename(handle.result())
    'ckpt-1'
    >>> handle.done()
    True
    """

    def __init__(self, path: str, work: Callable[[], str]) -> None:
        self.path = path
        """The path being written."""
        self._work: Callable[[], str] | None = work
        self._finished = threading.Event()
        self._result: str | None = None
        self._error: BaseException | None = None
        self._observed = False
        self._thread = threading.Thread(target=self._run, name=f"ckptlab save {path}")

    def _run(self) -> None:
        work, self._work = self._work, None  # the snapshot is freed when the write ends
        try:
            if work is not None:
                self._result = work()
        except BaseException as error:  # surfaced by result() and by the next save
            self._error = error
            _UNSEEN.add(self)  # ...or logged if neither ever happens
        finally:
            del work
            self._finished.set()

    def done(self) -> bool:
        """Whether the save has finished (successfully or not).

        Returns
        -------
        bool

        Examples
        --------
        >>> import tempfile
        >>> handle = ck.Checkpoint().save(tempfile.mkdtemp() + "/ckpt", blocking=False)
        >>> _ = handle.result()
        >>> handle.done()
        True
        """
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the save finishes; return whether it did within ``timeout`` seconds.

        Parameters
        ----------
        timeout
            Seconds to wait at most; ``None``: until it finishes.

        Returns
        -------
        bool
            Whether the save has finished.

        Examples
        --------
        >>> import tempfile
        >>> ck.Checkpoint().save(tempfile.mkdtemp() + "/ckpt", blocking=False).wait()
        True
        """
        return self._finished.wait(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait, then return the save's error (``None`` on success); marks the error seen.

        Parameters
        ----------
        timeout
            As for :meth:`wait`.

        Returns
        -------
        BaseException or None
            What the save raised; a seen error is neither raised by the next save nor logged.

        Raises
        ------
        TimeoutError
            The save did not finish within ``timeout``.

        Examples
        --------
        >>> import tempfile
        >>> ck.Checkpoint().save(tempfile.mkdtemp() + "/ckpt", blocking=False).exception() is None
        True
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"The save to {self.path} did not finish within {timeout} s.")
        self._mark_seen()
        return self._error

    def _mark_seen(self) -> None:
        self._observed = True
        _UNSEEN.discard(self)

    def _report_unseen(self) -> None:
        """Log the save's error at ERROR level if it failed and nobody has seen the error."""
        error = self._error
        if error is None or self._observed:
            return
        self._mark_seen()
        logger.error(
            "The asynchronous save to %s failed and its error was never retrieved (nothing "
            "was saved there; the state file still names the last committed checkpoint; call "
            "handle.result() on the SaveHandle that save(..., blocking=False) returned to see "
            "and handle such errors): %s: %s",
            self.path,
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
        )

    def __del__(self) -> None:
        # best effort; not contextlib.suppress: late in interpreter shutdown, module globals
        # such as contextlib may already be None
        try:  # noqa: SIM105
            self._report_unseen()
        except Exception:
            pass

    def result(self, timeout: float | None = None) -> str:
        """Wait, then return the saved path or raise the save's error.

        Parameters
        ----------
        timeout
            As for :meth:`wait`.

        Returns
        -------
        str
            The committed checkpoint's path.

        Raises
        ------
        TimeoutError
            As :meth:`exception` does; otherwise whatever the save raised.

        Examples
        --------
        >>> import tempfile
        >>> handle = ck.Checkpoint().save(tempfile.mkdtemp() + "/ckpt", blocking=False)
        >>> handle.result() == handle.path
        True
        """
        error = self.exception(timeout)
        if error is not None:
            raise error
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        state = "running" if not self.done() else ("failed" if self._error else "done")
        return f"<ck.SaveHandle {self.path!r} {state}>"


def stage(
    owner: Any, values: list[tuple[str, np.ndarray[Any, Any]]], *, copy: bool
) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """Copy ``values`` for a non-blocking save (``copy``), or return them as they are.

    The copies go into ``owner``'s staging buffers, reused from its previous non-blocking save
    when key, shape and dtype match (the previous write has finished: saves :func:`settle`
    first), so repeated non-blocking saves neither allocate nor page-fault.  A blocking save
    (and ``CheckpointManager.close``) frees the buffers.
    """
    if not copy:
        discard_staging(owner)
        return values
    pool: dict[str, np.ndarray[Any, Any]] = owner.__dict__.get("_ck_staging") or {}
    staged = []
    for key, array in values:
        buffer = pool.get(key)
        if buffer is None or buffer.shape != array.shape or buffer.dtype != array.dtype:
            buffer = np.empty(array.shape, array.dtype)
        np.copyto(buffer, array)
        staged.append((key, buffer))
    object.__setattr__(owner, "_ck_staging", dict(staged))
    return staged


def discard_staging(owner: Any) -> None:
    """Free ``owner``'s staging buffers (the next non-blocking save allocates new ones)."""
    object.__setattr__(owner, "_ck_staging", None)


def start(owner: Any, path: str, work: Callable[[], str]) -> SaveHandle:
    """Run ``work`` on a background thread as ``owner``'s save in flight."""
    handle = SaveHandle(path, work)
    object.__setattr__(owner, "_ck_pending", handle)
    handle._thread.start()
    return handle


def settle(owner: Any) -> None:
    """Wait for ``owner``'s save in flight; raise its error if nobody has seen it."""
    handle: SaveHandle | None = owner.__dict__.get("_ck_pending")
    if handle is None:
        return
    handle.wait()
    object.__setattr__(owner, "_ck_pending", None)
    if handle._error is not None and not handle._observed:
        handle._mark_seen()
        raise CkptlabError(
            f"The previous asynchronous save to {handle.path} failed, so this call saved "
            f"nothing: {type(handle._error).__name__}: {handle._error}. The state file only "
            "ever names committed checkpoints, so its latest one is complete; fix the cause "
            "and save again (call handle.result() to handle such errors yourself)."
        ) from handle._error


_UNSEEN: weakref.WeakSet[SaveHandle] = weakref.WeakSet()
"""Failed handles whose error nobody has seen yet (logged at exit if still unseen)."""


@atexit.register
def _report_unseen_failures() -> None:
    """At interpreter exit (after in-flight saves finished), log every unseen failure."""
    for handle in list(_UNSEEN):
        handle._report_unseen()
