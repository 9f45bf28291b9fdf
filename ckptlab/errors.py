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
>>> issubclass(StoragePermissionError, PermissionError) and issubclass(StorageError, OSError)
True
"""

from __future__ import annotations

__all__ = [
    "AssignmentError",
    "CkptlabError",
    "CorruptCheckpointError",
    "LockedError",
    "NotACheckpointError",
    "NotFoundError",
    "NotSaveableError",
    "RestoreConflictError",
    "StorageError",
    "StorageExistsError",
    "StorageIsADirectoryError",
    "StorageNotADirectoryError",
    "StoragePermissionError",
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


class NotACheckpointError(UnsupportedFormatError):
    """A path holds a file that is not a checkpoint in any format ckptlab reads."""


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


class StorageError(CkptlabError, OSError):
    """The file system or object store refused an operation (space, permission, network...).

    No space left, no permission, a read-only file system, a network or credentials error of an
    object store.  The message names the path and the operation and says what to do; ``errno``,
    ``strerror`` and ``filename`` are those of the original error, which is the ``__cause__``.
    The subclasses below also inherit the builtin error they resemble.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class StoragePermissionError(StorageError, PermissionError):
    """No permission to read, create, replace or delete a file, directory or object."""


class StorageExistsError(StorageError, FileExistsError):
    """Something that is not a ckptlab checkpoint is where one would be written."""


class StorageNotADirectoryError(StorageError, NotADirectoryError):
    """A file is where a path needs a directory (e.g. ``save("notes.txt/ckpt")``)."""


class StorageIsADirectoryError(StorageError, IsADirectoryError):
    """A directory is where a file belongs (e.g. a directory named like the state file)."""
