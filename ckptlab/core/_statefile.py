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
MAX_LINE = 65_536
"""Characters in one line: far beyond any path a file system or object store takes."""


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
        match = _LINE.match(line) if len(line) <= MAX_LINE else None
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


_PIECE = re.compile(r"""\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")
_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))"
)
_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "?": 63}
_SIMPLE.update({"\\": 92, "'": 39, '"': 34})


def _string(raw: str) -> str:
    r"""A protobuf text-format string: quoted pieces, C escapes, UTF-8.

    Pieces are ``"..."`` or ``'...'`` (adjacent ones joined); escapes are C's (``\'``, octal
    ``\303``, ``\xe8``, ``\u00e8``).  TensorFlow writes non-ASCII names as octal escapes of
    their UTF-8 bytes and escapes apostrophes; ckptlab writes JSON strings, which are
    text-format strings too.

    Examples
    --------
    >>> _string(r'"bob\'s run-1"'), _string(r'"mod\303\250le-1"'), _string("'a' 'b'")
    ("bob's run-1", 'modèle-1', 'ab')
    """
    data = bytearray()
    position = 0
    while position < len(raw):
        piece = _PIECE.match(raw, position)
        if piece is None:
            raise ValueError(raw)
        data += _unescaped(piece.group(1)[1:-1])
        position = piece.end()
    if not raw:
        raise ValueError(raw)
    return data.decode("utf-8")  # a UnicodeDecodeError is a ValueError


def _unescaped(body: str) -> bytes:
    out = bytearray()
    last = 0
    for escape in _ESCAPE.finditer(body):
        out += body[last : escape.start()].encode()
        octal, byte, short, long, char = escape.groups()
        if octal or byte:
            value = int(octal, 8) if octal else int(byte, 16)
            if value > 255:
                raise ValueError(escape.group())
            out.append(value)
        elif short or long:
            out += chr(int(short or long, 16)).encode()
        elif char in _SIMPLE:
            out.append(_SIMPLE[char])
        else:
            raise ValueError(escape.group())
        last = escape.end()
    out += body[last:].encode()
    return bytes(out)


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
