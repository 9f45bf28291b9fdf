"""Terminal styling for the command line: colour only on a terminal, never when piped.

Colour follows the usual conventions: ``--color=auto`` (the default) colours output only when
standard output is a terminal, ``NO_COLOR`` (any non-empty value) turns it off, ``TERM=dumb``
too; ``--color=always`` and ``--color=never`` override all of that (https://no-color.org).
"""

from __future__ import annotations

import os
from typing import IO, Literal

ColorChoice = Literal["auto", "always", "never"]

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def wants_color(choice: ColorChoice, stream: IO[str]) -> bool:
    """Whether to colour output written to ``stream``.

    Examples
    --------
    >>> import io
    >>> wants_color("auto", io.StringIO())
    False
    >>> wants_color("always", io.StringIO())
    True
    """
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Style:
    r"""Wraps text in ANSI styles when enabled, returns it unchanged otherwise.

    Examples
    --------
    >>> Style(False).red("x"), Style(True).red("x")
    ('x', '\x1b[31mx\x1b[0m')
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def paint(self, text: str, *styles: str) -> str:
        """``text`` with the named styles (``"bold"``, ``"red"``, ...) applied."""
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        """Bold text."""
        return self.paint(text, "bold")

    def dim(self, text: str) -> str:
        """Dimmed text (secondary information)."""
        return self.paint(text, "dim")

    def red(self, text: str) -> str:
        """Red text (errors, damage, removed values)."""
        return self.paint(text, "red")

    def green(self, text: str) -> str:
        """Green text (success, added values)."""
        return self.paint(text, "green")

    def yellow(self, text: str) -> str:
        """Yellow text (changes, warnings)."""
        return self.paint(text, "yellow")

    def cyan(self, text: str) -> str:
        """Cyan text (shapes and dtypes)."""
        return self.paint(text, "cyan")


def human_bytes(count: int) -> str:
    """Format a byte count for humans (binary units).

    Examples
    --------
    >>> human_bytes(0), human_bytes(1023), human_bytes(1536), human_bytes(5 * 2**30)
    ('0 B', '1023 B', '1.5 KiB', '5.0 GiB')
    """
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def describe_shape(shape: tuple[int, ...]) -> str:
    """Format a shape as Python writes tuples: ``()``, ``(3,)``, ``(2, 3)``.

    Examples
    --------
    >>> describe_shape(()), describe_shape((3,)), describe_shape((2, 3))
    ('()', '(3,)', '(2, 3)')
    """
    return str(tuple(shape))
