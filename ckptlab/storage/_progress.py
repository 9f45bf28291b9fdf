"""Progress bars for long saves and restores (internal).

A bar appears only when the operation runs for more than about a second (``tqdm``'s ``delay``);
``tqdm.auto`` draws a widget in notebooks and text in a terminal.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

DELAY_SECONDS = 1.0


class Progress:
    """A byte-counting progress bar that stays silent for short operations."""

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit="B",
                unit_scale=True,
                delay=DELAY_SECONDS,
                leave=False,
            )

    def update(self, count: int) -> None:
        """Advance by ``count`` bytes."""
        if self._bar is not None:
            self._bar.update(count)

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
