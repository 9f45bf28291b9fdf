r"""Text that leaves the library: names from checkpoints are untrusted (internal).

A key holding ``ESC ]0;title BEL`` would retitle the user's terminal, ``ESC [2J`` clear it, an
OSC-8 sequence plant a link, and a newline forge an output line.  Everything ckptlab prints,
logs or raises passes names through :func:`printable` first (repr-quoted names already are).
"""

from __future__ import annotations


def printable(text: str) -> str:
    r"""``text`` with every non-printable character written as a Python escape.

    Printable characters of any script are kept as they are; control characters, format
    characters such as bidi overrides, line and paragraph separators and lone surrogates
    (everything :meth:`str.isprintable` rejects, except the space) become ``\x1b``, ``\n``,
    ``\u202e``, ``\udcff``.  Backslashes are kept, so a name is shown as it is written.

    Examples
    --------
    >>> printable("model/dense/kernel")
    'model/dense/kernel'
    >>> print(printable("\x1b]0;pwned\x07a\nb\u202e"))
    \x1b]0;pwned\x07a\nb\u202e
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_text(text: str) -> bool:
    r"""Whether ``text`` can be encoded as UTF-8 (no lone surrogates).

    Examples
    --------
    >>> is_text("kernel"), is_text("bad\udcff")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
