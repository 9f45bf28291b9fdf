"""Storage faults become ckptlab errors that name the path and say what to do (internal).

Every :class:`~ckptlab.storage.ByteStore` method of the built-in stores is wrapped by
:func:`translate_faults`: an ``OSError`` (no space, no permission, a file where a directory
belongs...) or an object-store client error (botocore, aiohttp...) leaves the store as a
:class:`~ckptlab.StorageError` whose class also inherits the builtin the original was
(``PermissionError`` stays catchable as ``PermissionError``), with the original as its cause.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ckptlab.errors import (
    CkptlabError,
    NotFoundError,
    StorageError,
    StorageExistsError,
    StorageIsADirectoryError,
    StorageNotADirectoryError,
    StoragePermissionError,
)

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("ckptlab")

_CLASSES: tuple[tuple[type[OSError], type[CkptlabError]], ...] = (
    (FileNotFoundError, NotFoundError),
    (PermissionError, StoragePermissionError),
    (FileExistsError, StorageExistsError),
    (NotADirectoryError, StorageNotADirectoryError),
    (IsADirectoryError, StorageIsADirectoryError),
)
_REMOTE_CLIENTS = frozenset({"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs"})
"""Libraries whose exceptions are storage faults even when they are not ``OSError``."""


def is_storage_fault(error: BaseException) -> bool:
    """Whether ``error`` is a fault of the storage (not of ckptlab or of the caller's input)."""
    if isinstance(error, CkptlabError):
        return False
    if isinstance(error, OSError):
        return True
    modules = {cls.__module__.split(".")[0] for cls in type(error).__mro__}
    return bool(modules & _REMOTE_CLIENTS)


def blocking_file(path: str) -> str | None:
    """The nearest ancestor of local ``path`` that exists but is not a directory."""
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if os.path.lexists(parent):
            return None if os.path.isdir(parent) else parent
        parent = os.path.dirname(parent)
    return None


def _advice(error: BaseException, where: str) -> str:
    """What to do about ``error`` (what it means for ``where``)."""
    code = getattr(error, "errno", None)
    if code in (errno.EACCES, errno.EPERM) or isinstance(error, PermissionError):
        return (
            f"Check the permissions of {where} and of the directories above it (for a URL: the "
            "credentials), or use another path."
        )
    if code == errno.EROFS:
        return "The file system is mounted read-only: use a path on a writable one."
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "Free some space (for example delete old checkpoints) or save somewhere else."
    if code == errno.ENOTDIR:
        blocker = blocking_file(str(getattr(error, "filename", None) or where))
        if blocker is not None:
            return (
                f"{blocker} is a file, so nothing can be created inside it. Choose a path whose "
                "parents are directories, or move that file away."
            )
        return "A part of the path is a file where a directory is needed; choose another path."
    if code == errno.EISDIR:
        return f"{where} is a directory where a file belongs: remove or rename it."
    if code == errno.EEXIST:
        return f"{where} is in the way: remove it or choose another path."
    if isinstance(error, FileNotFoundError) and "://" in where:
        return (
            "Check that the bucket exists and that the URL names it right (create the bucket "
            "first), or use another URL."
        )
    if not isinstance(error, OSError) or isinstance(error, ConnectionError | TimeoutError):
        return (
            "Check that the object store is reachable and the endpoint and credentials are "
            "right (ck.set_storage_options(url_prefix, endpoint_url=..., key=..., secret=...))."
        )
    return "Check the storage (space, permissions, device errors) and try again."


def _reason(error: BaseException) -> str:
    """What went wrong, in a few words: the ``strerror``, else the error's class and text."""
    return getattr(error, "strerror", None) or f"{type(error).__name__}: {error}"


def storage_error(error: BaseException, doing: str, where: str) -> CkptlabError:
    """The ckptlab error for ``error``, raised while trying to ``doing`` (``"write"``) ``where``.

    Examples
    --------
    >>> error = storage_error(PermissionError(13, "Permission denied"), "write", "/ro/ckpt-1")
    >>> isinstance(error, PermissionError), str(error).split(".")[0]
    (True, 'Could not write /ro/ckpt-1: Permission denied')
    """
    filename = getattr(error, "filename", None)
    reason = _reason(error)
    at = f" (at {filename})" if filename and str(filename) != where else ""
    message = f"Could not {doing} {where}: {reason}{at}. {_advice(error, where)}"
    kind: type[CkptlabError] = StorageError
    for builtin, translated in _CLASSES:
        if isinstance(error, builtin):
            kind = translated
            break
    result = kind(message)
    if isinstance(result, StorageError):  # its message stays the one above (see __str__)
        result.errno = getattr(error, "errno", None)
        result.strerror = getattr(error, "strerror", None)
        result.filename = filename
    return result


def restate(error: BaseException, message: str) -> BaseException:
    """``error`` with ``message`` instead of its own: same class, errno and file name.

    Storage faults that are not ckptlab errors yet become one (as :func:`storage_error` would);
    other errors are returned as they are.
    """
    if isinstance(error, StorageError):
        restated = type(error)(message)
        restated.errno, restated.strerror = error.errno, error.strerror
        restated.filename = error.filename
        return restated
    if isinstance(error, NotFoundError):
        return NotFoundError(message)
    if is_storage_fault(error):
        translated = storage_error(error, "", "")
        return restate(translated, message)
    return error


_REMOVED = (
    "Something removed the directory it was being written in, or one above it (another job "
    "cleaning up the run directory?), before it was complete; nothing was published. Keep "
    "that directory in place and try again."
)
"""What a file gone missing during a save or an export means (:func:`told_as`)."""


def told_as(error: BaseException, where: str) -> BaseException:
    """``error``, a storage fault on a save's hidden staging copy, told as one writing ``where``.

    The staging copy (``.ckpt-3.tmp-<uuid>/data/float32/0``) is deleted by the time anyone
    reads the message, and on an object store (written in place) the failing object is one of
    many, so it names the checkpoint being written; the class, ``errno``,
    ``strerror`` and notes are kept, and ``filename`` is ``where``.  A missing file (a
    :class:`NotFoundError`, not a :class:`StorageError`: the directory was removed meanwhile)
    is told the same way, with the reason of the ``OSError`` that caused it and what that
    means for the save.  Other errors are returned as they are.

    Examples
    --------
    >>> full = storage_error(OSError(28, "No space left on device"), "write", "/r/.c-3.tmp-1/d")
    >>> told = told_as(full, "/r/c-3")
    >>> str(told).split(".")[0], told.errno, told.filename
    ('Could not write /r/c-3: No space left on device', 28, '/r/c-3')
    """
    if not isinstance(error, StorageError | NotFoundError):
        return error
    reason = error.strerror or _reason(error.__cause__ or error)
    removed = isinstance(error, NotFoundError) and "://" not in where  # (a URL: no bucket?)
    advice = _REMOVED if removed else _advice(error, where)
    told = restate(error, f"Could not write {where}: {reason}. {advice}")
    if isinstance(told, StorageError):
        told.filename = where
    for note in getattr(error, "__notes__", ()):
        told.add_note(note)
    return told


@contextlib.contextmanager
def told_as_writing(where: str) -> Iterator[None]:
    """Errors raised in the block told as faults writing ``where`` (:func:`told_as`).

    For the writers of checkpoints and exports, whose faults happen on a hidden staging copy
    or on one object of many.
    """
    try:
        yield
    except BaseException as error:
        told = told_as(error, where)
        if told is error:
            raise
        raise told from error.__cause__


def _keys(argument: object) -> list[str]:
    """The keys of a call on many objects: the first ``str`` of each of its items."""
    if not isinstance(argument, list | tuple):
        return []
    return [item[0] for item in argument if isinstance(item, tuple) and isinstance(item[0], str)]


def translate_faults(doing: str) -> Callable[[F], F]:
    """Decorate a store method that tries to ``doing`` a key: faults leave it as ckptlab errors.

    The path is the method's first argument when it is a key (shown with ``self.display``),
    else the failing file the error names, else what the keys of a call on many objects
    (``write_many``, ``read_ranges``) lie below: object-store client errors name no file.
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def translated(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                if not is_storage_fault(error):
                    raise
                first = args[0] if args else None
                keys = _keys(first)
                if isinstance(first, str):
                    where = self.display(first)
                elif filename := getattr(error, "filename", None):
                    where = str(filename)
                elif keys:
                    below = keys[0] if len(set(keys)) == 1 else posixpath.commonpath(keys)
                    where = self.display(below)
                else:
                    where = "the store"
                raise storage_error(error, doing, where) from error

        return translated  # type: ignore[return-value]

    return decorate


@contextlib.contextmanager
def faults_translated(doing: str, where: str) -> Iterator[None]:
    """Like :func:`translate_faults`, for code that touches the file system directly."""
    try:
        yield
    except Exception as error:
        if not is_storage_fault(error):
            raise
        raise storage_error(error, doing, where) from error


def noting_failure(error: BaseException, what: str, action: Callable[[], object]) -> None:
    """Run the clean-up ``action`` after ``error``; if it fails too, say so on ``error``.

    The clean-up's own error never replaces the error that made it necessary.
    """
    try:
        action()
    except Exception as cleanup:
        error.add_note(f"Cleaning up afterwards also failed: {what}: {cleanup}")
        logger.warning("Could not clean up after a failed operation: %s: %s", what, cleanup)
