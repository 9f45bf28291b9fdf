"""The ckptlab error hierarchy (public).

Every error derives from :class:`CkptlabError` and from the builtin it resembles, so existing
``except FileNotFoundError`` or ``except ValueError`` clauses keep working.  Messages follow one
shape: where (object path or file), what was expected, what was found, and what to do.

Examples
--------
>>> issubclass(NotFoundError, FileNotFoundError)
True
>>> issubclass(RestoreConflictError, TypeError)
True
"""

from __future__ import annotations

__all__ = [
    "AssignmentError",
    "CkptlabError",
    "CorruptCheckpointError",
    "LockedError",
    "MissingDependencyError",
    "NotFoundError",
    "NotSaveableError",
    "RestoreConflictError",
    "UnknownPathError",
    "UnsafePickleError",
    "UnsupportedFormatError",
]


class CkptlabError(Exception):
    """Base class of every ckptlab error."""


class NotFoundError(CkptlabError, FileNotFoundError):
    """A checkpoint path, key or state file is missing."""


class CorruptCheckpointError(CkptlabError, ValueError):
    """A document does not parse or validate, or stored bytes are missing or fail a check."""


class RestoreConflictError(CkptlabError, ValueError, TypeError):
    """Shapes or dtypes of bound values conflict; nothing was written.

    ``conflicts`` holds one :class:`ckptlab.core.Conflict` per problem.
    """

    def __init__(self, message: str, conflicts: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class UnsupportedFormatError(CkptlabError, ValueError):
    """An unknown ``format_version``, or a value type that cannot be stored."""


class MissingDependencyError(CkptlabError, ImportError):
    """Reading a format needs an optional package that is not installed.

    The message names the extra that installs it (``pip install 'ckptlab[keras]'``).
    """


class UnsafePickleError(UnsupportedFormatError):
    """A pickle (``torch.save`` file) references a global outside ckptlab's allow-list.

    ``global_name`` is the refused ``module.name``; nothing named in the file was imported or run.
    """

    def __init__(self, message: str, global_name: str = "") -> None:
        super().__init__(message)
        self.global_name = global_name


class AssignmentError(CkptlabError, ValueError, TypeError):
    """``Variable.assign`` (or a constructor) got a value of the wrong shape or dtype."""


class UnknownPathError(CkptlabError, ValueError):
    """An object-graph path given to ``only=`` (or a reader) names nothing in the checkpoint."""


class NotSaveableError(CkptlabError, ValueError):
    """A tracked container was changed in a way that breaks restore-on-create (SEMANTICS 64-66)."""


class LockedError(CkptlabError, RuntimeError):
    """Another process holds the lock of a checkpoint directory."""
