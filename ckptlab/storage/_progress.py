"""Progress bars for long saves and restores (internal).

A bar appears only once an operation has run for :data:`DELAY_SECONDS`: until then nothing of
tqdm is created, so short saves and restores cost nothing and start no thread.  ``tqdm.auto``
draws a widget in notebooks and text in a terminal.  Our bars run without tqdm's monitor
thread (a thread alive at ``fork()`` can deadlock the child, e.g. a training loop that saves
from a forked worker).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

DELAY_SECONDS = 1.0
_BAR_CLASS: Any = None


def _bar_class() -> Any:
    global _BAR_CLASS
    if _BAR_CLASS is None:
        from tqdm.auto import tqdm

        _BAR_CLASS = type("CkptlabProgress", (tqdm,), {"monitor_interval": 0})
    return _BAR_CLASS


class Progress:
    """A byte-counting progress bar that stays silent (and absent) for short operations.

    Examples
    --------
    >>> with Progress(10, "writing", enabled=True) as bar:
    ...     bar.update(10)
    >>> bar.shown
    False
    """

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled and total > 0
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None

    @property
    def shown(self) -> bool:
        """Whether a bar was drawn."""
        return self._bar is not None

    def update(self, count: int) -> None:
        """Advance by ``count`` bytes; draw the bar once the delay has passed."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.enabled and time.monotonic() - self.started >= DELAY_SECONDS:
            self._bar = _bar_class()(
                total=self.total,
                initial=self.done,
                desc=self.description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
