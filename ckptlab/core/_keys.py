"""Key grammar: TensorFlow's escaping of local names and the value-key layout (internal).

A value key is ``<escaped path>/.ATTRIBUTES/<escaped attribute>``, and an optimizer slot's key is
``<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>/.ATTRIBUTES/<attribute>``.  Inside a
local name ``.`` becomes ``..`` and ``/`` becomes ``.S``, so splitting on ``/`` is unambiguous and
a lone ``.`` starts a reserved segment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ckptlab.core._text import printable
from ckptlab.errors import CorruptCheckpointError

ATTRIBUTES = ".ATTRIBUTES"
OPTIMIZER_SLOT = ".OPTIMIZER_SLOT"
VARIABLE_VALUE = "VARIABLE_VALUE"
ROOT = "(root)"


def escape_local_name(name: str) -> str:
    """Escape one local name for use inside a key.

    Examples
    --------
    >>> escape_local_name("a.b/c")
    'a..b.Sc'
    """
    return name.replace(".", "..").replace("/", ".S")


def unescape_local_name(escaped: str) -> str:
    """Invert :func:`escape_local_name`; raise on a lone ``.``.

    Examples
    --------
    >>> unescape_local_name("a..b.Sc")
    'a.b/c'
    """
    out: list[str] = []
    i = 0
    while i < len(escaped):
        char = escaped[i]
        if char != ".":
            out.append(char)
            i += 1
            continue
        nxt = escaped[i + 1 : i + 2]
        if nxt == ".":
            out.append(".")
        elif nxt == "S":
            out.append("/")
        else:
            raise CorruptCheckpointError(
                f"Escaped local name {escaped!r} has a lone '.' at offset {i}; expected '..' or "
                "'.S'. The key was not written by ckptlab or TensorFlow; check where it came from."
            )
        i += 2
    return "".join(out)


def object_prefix(path: Sequence[str]) -> str:
    """Join local names into the escaped object prefix of a key.

    Examples
    --------
    >>> object_prefix(["model", "layers", "0"])
    'model/layers/0'
    """
    return "/".join(escape_local_name(name) for name in path)


def ancestor_paths(prefix: str) -> Iterator[str]:
    """The object prefixes above ``prefix`` (an escaped, ``/``-separated path), outermost first.

    Examples
    --------
    >>> list(ancestor_paths("model/dense/kernel"))
    ['model', 'model/dense']
    >>> list(ancestor_paths("model"))
    []
    """
    at = prefix.find("/")
    while at != -1:
        yield prefix[:at]
        at = prefix.find("/", at + 1)


def value_key(prefix: str, attribute: str = VARIABLE_VALUE) -> str:
    """Build the key of an attribute of the object at ``prefix`` (already escaped).

    Examples
    --------
    >>> value_key("model/dense/kernel")
    'model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE'
    >>> value_key("")
    '/.ATTRIBUTES/VARIABLE_VALUE'
    """
    return f"{prefix}/{ATTRIBUTES}/{escape_local_name(attribute)}"


def slot_prefix(variable_prefix: str, optimizer_prefix: str, slot_name: str) -> str:
    """Build the escaped object prefix of an optimizer slot variable.

    Examples
    --------
    >>> slot_prefix("model/w", "optimizer", "m")
    'model/w/.OPTIMIZER_SLOT/optimizer/m'
    """
    return f"{variable_prefix}/{OPTIMIZER_SLOT}/{optimizer_prefix}/{escape_local_name(slot_name)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedKey:
    """A value key split into its parts (names unescaped)."""

    path: tuple[str, ...]
    """Local names from the root to the object (the variable, for a slot)."""
    attribute: str
    optimizer_path: tuple[str, ...] | None = None
    """For a slot key: the optimizer's path."""
    slot: str | None = None
    """For a slot key: the slot name."""


def split_key(key: str) -> tuple[str, str]:
    """Split a key into its escaped object prefix and its attribute segment.

    Examples
    --------
    >>> split_key("a/b/.ATTRIBUTES/VARIABLE_VALUE")
    ('a/b', 'VARIABLE_VALUE')
    """
    marker = f"/{ATTRIBUTES}/"
    index = key.rfind(marker)
    if index < 0 and key.startswith(f"{ATTRIBUTES}/"):
        return "", key[len(ATTRIBUTES) + 1 :]
    if index < 0:
        raise CorruptCheckpointError(
            f"Key {key!r} has no '/{ATTRIBUTES}/' segment; expected "
            "'<path>/.ATTRIBUTES/<attribute>', as in "
            "'model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE'."
        )
    return key[:index], key[index + len(marker) :]


def parse_key(key: str) -> ParsedKey:
    """Parse a value key.

    Examples
    --------
    >>> parse_key("m/w/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE").slot
    'm'
    """
    prefix, attribute = split_key(key)
    segments = prefix.split("/") if prefix else []
    if OPTIMIZER_SLOT in segments:
        at = segments.index(OPTIMIZER_SLOT)
        rest = segments[at + 1 :]
        if len(rest) < 2:
            raise CorruptCheckpointError(
                f"Slot key {key!r} needs '<optimizer path>/<slot name>' after "
                f"'{OPTIMIZER_SLOT}', found {'/'.join(rest)!r}."
            )
        return ParsedKey(
            path=tuple(unescape_local_name(s) for s in segments[:at]),
            attribute=unescape_local_name(attribute),
            optimizer_path=tuple(unescape_local_name(s) for s in rest[:-1]),
            slot=unescape_local_name(rest[-1]),
        )
    return ParsedKey(
        path=tuple(unescape_local_name(s) for s in segments),
        attribute=unescape_local_name(attribute),
    )


def pretty_path(path: Sequence[str]) -> str:
    r"""Render a path the way TensorFlow's messages do.

    Examples
    --------
    >>> pretty_path(["model", "layers", "0"])
    '(root).model.layers.0'

    Names are shown with control characters escaped (:func:`~ckptlab.core.printable`):

    >>> pretty_path(["\x1b[2J"])
    '(root).\\x1b[2J'
    """
    return ROOT + "".join(f".{printable(name)}" for name in path)


def pretty_slot(variable_path: Sequence[str], optimizer_path: Sequence[str], slot: str) -> str:
    """Render a slot variable's path the way TensorFlow's messages do.

    Examples
    --------
    >>> pretty_slot(["model", "w"], ["optimizer"], "m")
    "(root).optimizer's state 'm' for (root).model.w"
    """
    return f"{pretty_path(optimizer_path)}'s state {slot!r} for {pretty_path(variable_path)}"
