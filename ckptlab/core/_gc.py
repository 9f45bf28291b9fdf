"""Pausing the cyclic garbage collector while many small objects are built (internal).

Opening a 100,000-value checkpoint creates millions of short-lived dicts, lists and tuples.
Each one counts towards CPython's next generational collection, and every full collection walks
every live object again, so about half the time of parsing a large document went to the
collector finding nothing: the objects built here hold no reference cycles, and reference
counting frees them as usual.  Nothing is leaked by pausing: collections resume afterwards.

When the last block ends having built more than :data:`PROMOTE_ABOVE` objects, every object is
moved to the oldest generation (``gc.freeze()`` then ``gc.unfreeze()``, both constant time)
instead of leaving the new objects young: otherwise the very next collection examines all of
them once more, about 0.25 s for 100,000 values, while the explorer is being displayed.  The
cost is that cyclic garbage made just before the block waits for the next full collection, so
small blocks (a save of a small model in a training loop) leave the generations alone, and so
does a program that froze objects itself.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

PROMOTE_ABOVE = 50_000
"""New container objects a block must leave behind to be promoted in one step."""

_lock = threading.Lock()
_holders = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector paused (nestable, thread-safe).

    A collector the user disabled stays disabled; otherwise it is enabled again when the last
    block using it (in any thread) ends.

    Examples
    --------
    >>> import gc
    >>> with gc_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    global _holders
    with _lock:
        if _holders == 0 and not gc.isenabled():  # the user's choice: leave it alone
            paused = False
        else:
            paused = True
            _holders += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _lock:
                _holders -= 1
                if _holders == 0:
                    if gc.get_count()[0] > PROMOTE_ABOVE and gc.get_freeze_count() == 0:
                        gc.freeze()
                        gc.unfreeze()
                    gc.enable()
