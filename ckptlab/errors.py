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
    "InvalidArgumentError",
    "LockedError",
    "MissingDependencyError",
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
    """Base class of every ckptlab error.

    Examples
    --------
    >>> try:
    ...     ck.load_checkpoint("/nonexistent/ckpt-1")
    ... except ck.CkptlabError as error:
    ...     type(error).__name__
    'NotFoundError'
    """


class NotFoundError(CkptlabError, FileNotFoundError):
    """A checkpoint path, key or state file is missing.

    Examples
    --------
    >>> ck.Checkpoint().restore("/nonexistent/ckpt")
    Traceback (most recent call last):
    ckptlab.errors.NotFoundError: Failed to find any matching files for /nonexistent/ckpt. ...
    """


class CorruptCheckpointError(CkptlabError, ValueError):
    """A document does not parse or validate, or stored bytes are missing or fail a check.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> directory = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (directory / "checkpoint").write_text("not a state file")
    >>> ck.latest_checkpoint(directory)
    Traceback (most recent call last):
    ckptlab.errors.CorruptCheckpointError: ...
    """


class RestoreConflictError(CkptlabError, ValueError, TypeError):
    """Shapes or dtypes of bound values conflict; nothing was written.

    Parameters
    ----------
    message
        Every conflict, one per line: path, key, program side and checkpoint side.
    conflicts
        One planned write (a :class:`ckptlab.core.Assignment` or slot restore) per conflict,
        kept as ``conflicts``.

    Examples
    --------
    >>> import tempfile
    >>> path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(tempfile.mkdtemp() + "/c")
    >>> w = ck.Variable([0.0, 0.0, 0.0])
    >>> ck.Checkpoint(w=w).restore(path)
    Traceback (most recent call last):
    ckptlab.errors.RestoreConflictError: Restoring from ... found 1 conflict(s); ...
      (root).w (w/.ATTRIBUTES/VARIABLE_VALUE): Received incompatible tensor with shape (2,) ...
    ...
    >>> w.numpy()
    array([0., 0., 0.])
    """

    def __init__(self, message: str, conflicts: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class UnsupportedFormatError(CkptlabError, ValueError):
    """An unknown ``format_version``, or a value type that cannot be stored.

    Examples
    --------
    >>> import tempfile
    >>> ck.Checkpoint(w=ck.Variable(np.array(["text"], dtype=object))).write(tempfile.mkdtemp())
    Traceback (most recent call last):
    ckptlab.errors.UnsupportedFormatError: ...
    """


class MissingDependencyError(CkptlabError, ImportError):
    """Reading a format needs an optional package that is not installed.

    The message names the extra that installs it (``pip install 'ckptlab[keras]'``).

    Examples
    --------
    >>> error = ck.MissingDependencyError("GGUF needs gguf: pip install 'ckptlab[gguf]'")
    >>> isinstance(error, ImportError), "ckptlab[gguf]" in str(error)
    (True, True)
    """


class NotACheckpointError(UnsupportedFormatError):
    """A path holds a file that is not a checkpoint in any format ckptlab reads.

    Also a directory holding several checkpoints and nothing joining them (several weights
    files and no index JSON, several Keras files): it is no one checkpoint; pass one of them.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("not a checkpoint")
    >>> ck.list_variables(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ckptlab.errors.NotACheckpointError: ...
    """


class UnsafePickleError(UnsupportedFormatError):
    """A pickle (``torch.save`` file) references a global outside ckptlab's allow-list.

    Nothing named in the file was imported or run.

    Parameters
    ----------
    message
        What was refused, in which file, and what to do.
    global_name
        The refused ``module.name``, kept as ``global_name``.

    Examples
    --------
    >>> error = ck.UnsafePickleError("refused os.system in model.pt", global_name="os.system")
    >>> error.global_name, isinstance(error, ck.UnsupportedFormatError)
    ('os.system', True)
    """

    def __init__(self, message: str, global_name: str = "") -> None:
        super().__init__(message)
        self.global_name = global_name


class AssignmentError(CkptlabError, ValueError, TypeError):
    """``Variable.assign`` (or a constructor) got a value of the wrong shape or dtype.

    Examples
    --------
    >>> ck.Variable([1.0, 2.0]).assign([1.0, 2.0, 3.0])
    Traceback (most recent call last):
    ckptlab.errors.AssignmentError: ...
    """


class UnknownPathError(CkptlabError, ValueError):
    """An object-graph path given to ``only=`` (or a reader) names nothing in the checkpoint.

    Examples
    --------
    >>> import tempfile
    >>> path = ck.Checkpoint(w=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
    >>> status = ck.Checkpoint(w=ck.Variable(0.0)).read(path, lazy=True)
    >>> status.run_restore_ops(only=["model"])
    Traceback (most recent call last):
    ckptlab.errors.UnknownPathError: ...
    """


class NotSaveableError(CkptlabError, ValueError):
    """A tracked container was changed so that it cannot be saved (docs/semantics.md S64-S66).

    Examples
    --------
    >>> import tempfile
    >>> model = ck.Module()
    >>> model.layers = [ck.Variable(1.0), ck.Variable(2.0)]
    >>> del model.layers[0]  # the second variable's saved name would change
    >>> ck.Checkpoint(model=model).write(tempfile.mkdtemp())
    Traceback (most recent call last):
    ckptlab.errors.NotSaveableError: (root).model.layers: Unable to save the object ...
    """


class InvalidArgumentError(CkptlabError, ValueError, TypeError):
    """An argument has the wrong type or value (TensorFlow's ``InvalidArgumentError``).

    Raised before anything is written or changed: a ``CheckpointManager`` argument that is not
    what it must be (``max_to_keep=1.5``), a path with a NUL character, ``options=`` or
    ``key_map=`` given as a dict.  It is a ``ValueError`` and a ``TypeError`` too, the builtins
    such mistakes raise elsewhere.

    Examples
    --------
    >>> import tempfile
    >>> ck.CheckpointManager(ck.Checkpoint(), tempfile.mkdtemp(), max_to_keep=1.5)
    Traceback (most recent call last):
    ckptlab.errors.InvalidArgumentError: Expected a positive integer or `None` for ...
    """


class LockedError(CkptlabError, RuntimeError):
    """Another process holds the lock of a checkpoint directory.

    Managers of one process share a directory's lock; a manager (or a plain ``save``) of another
    process gets this error, naming the holder's pid and host.

    Examples
    --------
    >>> issubclass(ck.LockedError, ck.CkptlabError)
    True
    """


class StorageError(CkptlabError, OSError):
    """The file system or object store refused an operation (space, permission, network...).

    No space left, no permission, a read-only file system, a network or credentials error of an
    object store.  The message names the path and the operation and says what to do; ``errno``,
    ``strerror`` and ``filename`` are those of the original error, which is the ``__cause__``.
    The subclasses below also inherit the builtin error they resemble.

    Examples
    --------
    >>> issubclass(ck.StorageError, OSError)
    True
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class StoragePermissionError(StorageError, PermissionError):
    """No permission to read, create, replace or delete a file, directory or object.

    Examples
    --------
    >>> issubclass(ck.StoragePermissionError, PermissionError)
    True
    """


class StorageExistsError(StorageError, FileExistsError):
    """Something that is not a ckptlab checkpoint is where one would be written.

    Examples
    --------
    >>> issubclass(ck.StorageExistsError, FileExistsError)
    True
    """


class StorageNotADirectoryError(StorageError, NotADirectoryError):
    """A file is where a path needs a directory (e.g. ``save("notes.txt/ckpt")``).

    Examples
    --------
    >>> issubclass(ck.StorageNotADirectoryError, NotADirectoryError)
    True
    """


class StorageIsADirectoryError(StorageError, IsADirectoryError):
    """A directory is where a file belongs (e.g. a directory named like the state file).

    Examples
    --------
    >>> issubclass(ck.StorageIsADirectoryError, IsADirectoryError)
    True
    """
