"""The directory state file (named ``checkpoint``), TensorFlow's text format (internal, pure).

::

    model_checkpoint_path: "ckpt-2"
    all_model_checkpoint_paths: "ckpt-1"
    all_model_checkpoint_paths: "ckpt-2"
    all_model_checkpoint_timestamps: 1764000000.5
    all_model_checkpoint_timestamps: 1764000060.25
    last_preserved_timestamp: 1763999999.0

Paths are relative to the directory (absolute paths are kept as they are).  The file is a
``CheckpointState`` message in protobuf's text format, read as its specification defines it
(https://protobuf.dev/reference/protobuf/textformat-spec/): ``#`` comments, fields in any layout,
``;`` or ``,`` after a field, ``[a, b]`` lists for the repeated fields, and a later value of a
singular field replacing an earlier one (``text_format.Merge``, which TensorFlow reads it with).
A field ``CheckpointState`` does not have is refused, as TensorFlow refuses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from ckptlab.errors import CorruptCheckpointError

MAX_LINE = 65_536
"""Characters in one line: far beyond any path a file system or object store takes."""

_SPACE = r"(?:[ \t\n\v\f\r]+|\#[^\n]*)*+"  # whitespace and comments
_TOKEN = re.compile(
    _SPACE
    + r"""(?: (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<number>(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?)
      (?![0-9A-Za-z_.])  # no letter or digit right after: "010", "0x10", "10bar" are refused
    | (?P<name>[A-Za-z_][0-9A-Za-z_]*)
    | (?P<mark>[:;,\[\]-])
    | (?P<end>\Z)
    | (?P<unknown>) )""",
    re.VERBOSE,
)
_FIX = (
    "A state file is protobuf text format, such as 'model_checkpoint_path: \"ckpt-1\"'; "
    "fix or delete it (the checkpoints themselves stay readable)."
)


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
    >>> parse_state('model_checkpoint_path: "b" all_model_checkpoint_paths: ["a", "b"]', "x")
    CheckpointState(latest='b', all_paths=('a', 'b'), timestamps=(), last_preserved=None)
    """
    _check_line_lengths(text, source)
    tokens = _Tokens(text, source)
    values: dict[str, list[str | float]] = {field: [] for field in _FIELDS}
    while tokens.kind != "end":
        if tokens.kind != "name" or tokens.value not in _FIELDS:
            raise tokens.error(f"a field of CheckpointState ({', '.join(_FIELDS)})")
        field = tokens.pop()
        tokens.take(":", f"':' after {field}")
        read, repeated = _FIELDS[field]
        if repeated and tokens.skip("["):
            values[field] += _list(tokens, read)
        else:
            values[field].append(read(tokens))
        tokens.skip(";") or tokens.skip(",")
    latest = values["model_checkpoint_path"][-1:]
    if not latest or not latest[0]:  # proto3, as TensorFlow: an empty string is no value
        raise CorruptCheckpointError(
            f"Invalid checkpoint state loaded from {source}: it has no model_checkpoint_path. "
            "An empty or truncated state file is refused rather than treated as 'no checkpoint', "
            "so that training does not silently start over; fix or delete the file."
        )
    preserved = values["last_preserved_timestamp"][-1:]
    return CheckpointState(
        latest=str(latest[0]),
        all_paths=tuple(map(str, values["all_model_checkpoint_paths"])),
        timestamps=tuple(map(float, values["all_model_checkpoint_timestamps"])),
        last_preserved=float(preserved[0]) if preserved else None,
    )


def _check_line_lengths(text: str, source: str) -> None:
    if len(text) <= MAX_LINE:
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line) > MAX_LINE:
            raise CorruptCheckpointError(
                f"Checkpoint state file {source} does not parse at line {number}: expected at "
                f"most {MAX_LINE} characters, found {len(line)} ({line[:40]!r}...). {_FIX}"
            )


class _Tokens:
    """The tokens of a text-format file, one at a time: ``kind`` and ``value`` of the current one.

    ``kind`` is ``string``, ``number``, ``name``, the punctuation itself (``:``, ``[``...),
    ``end`` after the last token, or ``unknown`` where no token starts.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.kind, self.value, self.start, self.end = "", "", 0, 0
        self.pop()

    def pop(self) -> str:
        """The current token's text; moves on to the next token."""
        value = self.value
        match = _TOKEN.match(self.text, self.end)
        assert match is not None  # the empty "unknown" matches where no other token does
        kind = match.lastgroup or ""
        self.value, self.start, self.end = match.group(kind), match.start(kind), match.end()
        self.kind = self.value if kind == "mark" else kind
        return value

    def skip(self, kind: str) -> bool:
        """Pop the current token if it is of ``kind``; say whether it was."""
        if self.kind != kind:
            return False
        self.pop()
        return True

    def take(self, kind: str, expected: str) -> str:
        """Pop the current token, which must be of ``kind`` (else: an error saying ``expected``)."""
        if self.kind != kind:
            raise self.error(expected)
        return self.pop()

    def error(
        self, expected: str, found: str | None = None, at: int | None = None
    ) -> CorruptCheckpointError:
        """A parse error at the current token (or at position ``at``) naming line and column."""
        text, position = self.text, self.start if at is None else at
        line_start = text.rfind("\n", 0, position) + 1
        line_end = text.find("\n", position)
        line = text[line_start : len(text) if line_end < 0 else line_end]
        if found is None and self.kind == "end":
            found = "the end of the file"
        elif found is None:
            found = repr((self.value or line[position - line_start :])[:40])
        return CorruptCheckpointError(
            f"Checkpoint state file {self.source} does not parse at line "
            f"{text.count(chr(10), 0, position) + 1}, column {position - line_start + 1} "
            f"({line[:80]!r}): expected {expected}, found {found}. {_FIX}"
        )


def _list(tokens: _Tokens, read: Callable[[_Tokens], str | float]) -> list[str | float]:
    """The values of a ``[a, b]`` list whose ``[`` was popped."""
    if tokens.skip("]"):
        return []
    values = [read(tokens)]
    while tokens.skip(","):
        values.append(read(tokens))
    tokens.take("]", "',' or ']' in the list")
    return values


def _number(tokens: _Tokens) -> float:
    """A double: ``-`` (optional) before ``1.5``, ``17``, ``1e9``, ``2.5f``, ``inf`` or ``nan``."""
    sign = -1.0 if tokens.skip("-") else 1.0
    if tokens.kind == "name" and tokens.value.lower() in ("inf", "infinity", "nan"):
        return sign * float(tokens.pop())
    return sign * float(tokens.take("number", "a number (such as 1764000000.5)").rstrip("fF"))


def _string(tokens: _Tokens) -> str:
    r"""A string: quoted pieces (adjacent ones joined), with C escapes, of UTF-8 bytes.

    Pieces are ``"..."`` or ``'...'``; escapes are C's (``\'``, octal ``\303``, ``\xe8``,
    ``\u00e8``).  TensorFlow writes non-ASCII names as octal escapes of their UTF-8 bytes and
    escapes apostrophes; ckptlab writes JSON strings, which are text-format strings too.

    Examples
    --------
    >>> read = lambda text: _string(_Tokens(text, "x"))
    >>> read(r'"bob\'s run-1"'), read(r'"mod\303\250le-1"'), read("'a' 'b'")
    ("bob's run-1", 'modèle-1', 'ab')
    """
    if tokens.kind != "string":
        raise tokens.error("a quoted string")
    start = tokens.start
    data = bytearray()
    while tokens.kind == "string":
        piece = tokens.pop()
        try:
            data += _unescaped(piece[1:-1])
        except ValueError as bad:
            expected = "an escape of the text format (\\n, \\', \\303, \\xe8, \\u00e8...)"
            raise tokens.error(expected, found=repr(str(bad)), at=start) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise tokens.error("UTF-8 bytes", found=f"{bytes(data)[:40]!r}", at=start) from None


_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))"
)
_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "?": 63}
_SIMPLE.update({"\\": 92, "'": 39, '"': 34})


def _unescaped(body: str) -> bytes:
    """The bytes of a quoted piece's ``body``; a ``ValueError`` names an invalid escape."""
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
            point = int(short or long, 16)
            if point > 0x10FFFF or 0xD800 <= point < 0xE000:  # not a Unicode scalar value
                raise ValueError(escape.group())
            out += chr(point).encode()
        elif char in _SIMPLE:
            out.append(_SIMPLE[char])
        else:
            raise ValueError(escape.group())
        last = escape.end()
    out += body[last:].encode()
    return bytes(out)


_FIELDS: dict[str, tuple[Callable[[_Tokens], str | float], bool]] = {
    "model_checkpoint_path": (_string, False),
    "all_model_checkpoint_paths": (_string, True),
    "all_model_checkpoint_timestamps": (_number, True),
    "last_preserved_timestamp": (_number, False),
}
"""The fields of ``CheckpointState``: how to read a value, and whether the field is repeated."""


def format_state(state: CheckpointState) -> str:
    """Render a state file.

    Examples
    --------
    >>> print(format_state(CheckpointState(latest="ckpt-1", all_paths=("ckpt-1",))))
    model_checkpoint_path: "ckpt-1"
    all_model_checkpoint_paths: "ckpt-1"
    <BLANKLINE>
    """
    lines = [f"model_checkpoint_path: {_quoted(state.latest)}"]
    lines += [f"all_model_checkpoint_paths: {_quoted(p)}" for p in state.all_paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in state.timestamps]
    if state.last_preserved is not None:
        lines.append(f"last_preserved_timestamp: {state.last_preserved!r}")
    return "\n".join(lines) + "\n"


def _quoted(path: str) -> str:
    r"""A text-format string: JSON's escapes, non-ASCII as UTF-8 (as TensorFlow writes it).

    JSON would write a character beyond U+FFFF as two ``\u`` surrogates, which the text format
    does not take (TensorFlow ignored such a state file, ckptlab refused it).
    """
    return json.dumps(path, ensure_ascii=False)
