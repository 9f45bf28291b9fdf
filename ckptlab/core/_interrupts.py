"""Holding Ctrl-C while a step that must not stop halfway runs (internal).

A restore's writes (all or nothing) and a save's commit and record (a committed checkpoint the
state file does not list yet) are such steps.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (``SIGINT``) until the block has run.

    Without this a ``KeyboardInterrupt`` could stop a restore between two values, or halfway
    through one large value read into its tensor, or leave a committed checkpoint that no state
    file lists.  The interrupt takes effect when the block
    ends, through the handler that was installed before it (a notebook's interrupt button
    raises ``KeyboardInterrupt`` there).  Signal handlers belong to the main thread, so
    elsewhere (a background restore) the block runs as it is.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is None  # a handler not installed from Python
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)
