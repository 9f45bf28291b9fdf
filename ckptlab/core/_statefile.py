"""The directory state file (named ``checkpoint``), TensorFlow's text format (internal, pure).

::

    model_checkpoint_path: "ckpt-2"
    all_model_checkpoint_paths: "ckpt-1"
    all_model_checkpoint_paths: "ckpt-2"
    all_model_checkpoint_timestamps: 1764000000.5
    all_model_checkpoint_timestamps: 1764000060.25
    last_preserved_timestamp: 1763999999.0

Paths are relative to the directory (absolute paths are kept as they are).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ckptlab.errors import CorruptCheckpointError

_LINE = re.compile(r"^\s*([a-z_]+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointState:
    """Contents of a state file."""

    latest: str
    all_paths: tuple[str, ...] = ()
    timestamps: tuple[float, ...] = ()
    last_preserved: float | None = None


def parse_state(text: str, source: str) -> CheckpointState:
    """Parse a state file; raise :class:`CorruptCheckpointError` naming ``source`` when invalid.

    Examples
    --------
    >>> parse_state('model_checkpoint_path: "ckpt-1"', "dir/checkpoint").latest
    'ckpt-1'
    """
    latest: str | None = None
    paths: list[str] = []
    stamps: list[float] = []
    preserved: float | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise _bad(source, number, line)
        field, raw = match.groups()
        try:
            if field == "model_checkpoint_path":
                latest = _string(raw)
            elif field == "all_model_checkpoint_paths":
                paths.append(_string(raw))
            elif field == "all_model_checkpoint_timestamps":
                stamps.append(float(raw))
            elif field == "last_preserved_timestamp":
                preserved = float(raw)
            else:
                raise ValueError(field)
        except ValueError:
            raise _bad(source, number, line) from None
    if latest is None:
        raise CorruptCheckpointError(
            f"Invalid checkpoint state loaded from {source}: it has no model_checkpoint_path. "
            "An empty or truncated state file is refused rather than treated as 'no checkpoint', "
            "so that training does not silently start over; fix or delete the file."
        )
    return CheckpointState(
        latest=latest, all_paths=tuple(paths), timestamps=tuple(stamps), last_preserved=preserved
    )


def _string(raw: str) -> str:
    value = json.loads(raw)
    if not isinstance(value, str):
        raise ValueError(raw)
    return value


def _bad(source: str, number: int, line: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"Checkpoint state file {source} does not parse at line {number}: {line[:80]!r}; expected "
        "lines like 'model_checkpoint_path: \"ckpt-1\"'. Fix or delete the file."
    )


def format_state(state: CheckpointState) -> str:
    """Render a state file.

    Examples
    --------
    >>> print(format_state(CheckpointState(latest="ckpt-1", all_paths=("ckpt-1",))))
    model_checkpoint_path: "ckpt-1"
    all_model_checkpoint_paths: "ckpt-1"
    <BLANKLINE>
    """
    lines = [f"model_checkpoint_path: {json.dumps(state.latest)}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(p)}" for p in state.all_paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in state.timestamps]
    if state.last_preserved is not None:
        lines.append(f"last_preserved_timestamp: {state.last_preserved!r}")
    return "\n".join(lines) + "\n"
