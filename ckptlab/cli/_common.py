"""What every ``ckptlab`` command shares: output, exit codes, opening a checkpoint argument."""

from __future__ import annotations

import json
import os
from typing import IO, TYPE_CHECKING, Any

from ckptlab.cli._style import Style

if TYPE_CHECKING:  # commands import storage when they run: `ckptlab --version` stays instant
    from ckptlab.storage import StoredCheckpoint

EXIT_OK = 0
"""Success; for ``diff``: the checkpoints are equal; for ``verify``: every value is intact."""
EXIT_PROBLEMS = 1
"""Problems found: damaged values (``verify``), differences (``diff``), an unreadable checkpoint,
or Graphviz's ``dot`` failed (``export --format svg``)."""
EXIT_USAGE = 2
"""Usage error: bad arguments, or a path that does not exist or is not a checkpoint."""
EXIT_UNAVAILABLE = 3
"""The request needs something that is not installed (``export --format svg`` without Graphviz)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): the status a shell gives a command SIGINT ended (128 + 2)."""


class CommandError(Exception):
    """A failure reported as one ``ckptlab: error: ...`` line with a given exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Output:
    """Where a command writes: text lines (styled) or one JSON document."""

    def __init__(self, stream: IO[str], style: Style, *, json_mode: bool) -> None:
        self.stream = stream
        self.style = style
        self.json = json_mode

    def line(self, text: str = "") -> None:
        """Write one line of text."""
        self.stream.write(text + "\n")

    def emit_json(self, data: Any) -> None:
        """Write ``data`` as indented JSON (one document per command)."""
        json.dump(data, self.stream, indent=2, allow_nan=False)
        self.stream.write("\n")


def open_target(path: str) -> tuple[StoredCheckpoint, str | None]:
    """Open a checkpoint argument; a checkpoint directory resolves to its latest checkpoint.

    Returns
    -------
    tuple
        The open checkpoint, and the directory it was resolved from (``None`` when ``path``
        named a checkpoint directly).
    """
    from ckptlab.storage import open_path, resolve

    source = open_path(path)
    store, key = resolve(os.fspath(path))
    resolved_from = store.display(key) if source.path.rstrip("/") != key.rstrip("/") else None
    return source, resolved_from
