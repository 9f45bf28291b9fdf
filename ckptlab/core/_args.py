"""The check public entry points share for an argument of the wrong type (pure).

A wrong argument is refused where it enters, before anything is read, written or changed, with
one :class:`~ckptlab.InvalidArgumentError` saying which argument, what it must be, what it was
and an example of a right one; not with an ``AttributeError`` from deep inside ckptlab when the
value is first used.
"""

from __future__ import annotations

import reprlib

from ckptlab.errors import InvalidArgumentError

_SHORT = reprlib.Repr()
"""A bounded ``repr``: an argument may be a dict of tensors or a huge string."""
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60


def check_type(
    value: object, types: type | tuple[type, ...], name: str, expected: str, example: str
) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is one of ``types``.

    Parameters
    ----------
    value
        The argument as given.
    types
        What ``isinstance`` accepts.
    name
        The argument's name, as the caller wrote it (``options``).
    expected
        What it must be, in words (``a ck.WriteOptions or None``).
    example
        A right call or value, shown as the fix (``options=ck.WriteOptions(durable=False)``).

    Examples
    --------
    >>> check_type(None, (str, type(None)), "latest_filename", "a str or None", "'checkpoint'")
    >>> check_type({"durable": False}, type(None), "options", "a ck.WriteOptions or None",
    ...            "options=ck.WriteOptions(durable=False)")
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: Expected a ck.WriteOptions or None for `options`, got \
{'durable': False} (dict). Pass e.g. options=ck.WriteOptions(durable=False).
    """
    if not isinstance(value, types):
        raise argument_error(name, expected, value, example)


def argument_error(name: str, expected: str, value: object, example: str) -> InvalidArgumentError:
    """The error :func:`check_type` raises, for checks ``isinstance`` cannot express.

    Parameters
    ----------
    name, expected, example
        As for :func:`check_type`.
    value
        What was found (shown with a bounded ``repr`` and its type).

    Examples
    --------
    >>> print(argument_error("rules", "(pattern, replacement) pairs", "ab", "[('a', 'b')]"))
    Expected (pattern, replacement) pairs for `rules`, got 'ab' (str). Pass e.g. [('a', 'b')].
    """
    return InvalidArgumentError(
        f"Expected {expected} for `{name}`, got {_SHORT.repr(value)} ({type(value).__name__}). "
        f"Pass e.g. {example}."
    )
