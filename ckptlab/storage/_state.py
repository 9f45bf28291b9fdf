"""Reading and replacing a directory's state file (internal)."""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from collections.abc import Iterator

from ckptlab.core import CheckpointState, check_type, format_state, parse_state
from ckptlab.errors import CorruptCheckpointError, NotFoundError, StorageIsADirectoryError
from ckptlab.storage._commit import is_committed, retract
from ckptlab.storage._faults import restate
from ckptlab.storage._fsspec import resolve
from ckptlab.storage._kv import ByteStore

STATE_FILENAME = "checkpoint"
MAX_STATE_BYTES = 16 * 2**20
"""Bytes a state file may hold (some 200,000 checkpoints listed): a bigger one is refused unread."""
logger = logging.getLogger("ckptlab")


def join_listed(directory: str, name: str) -> str:
    """``name``, a checkpoint the state file of ``directory`` lists, as read inside it.

    A relative name is joined to the directory, as TensorFlow reads it; an absolute path or a
    URL stays as it is.  ``directory`` is a path or URL as given, or a store's key.

    Examples
    --------
    >>> join_listed("runs/", "ckpt-3"), join_listed("s3://bucket/runs", "ckpt-3")
    ('runs/ckpt-3', 's3://bucket/runs/ckpt-3')
    >>> join_listed("runs", "/elsewhere/ckpt-1"), join_listed("runs", "memory://b/ckpt-2")
    ('/elsewhere/ckpt-1', 'memory://b/ckpt-2')
    """
    return name if posixpath.isabs(name) or "://" in name else posixpath.join(directory, name)


def listed_path(store: ByteStore, directory: str, name: str) -> str:
    """The path or URL of ``name``, a checkpoint the state file of ``directory`` lists.

    Relative names are read inside the directory, as TensorFlow does; a URL in the state file
    stays as it is.  On an object store the result is a URL (``s3://bucket/run/ckpt-3``), not
    the store's key (``bucket/run/ckpt-3``, which would be read as a local path).

    Examples
    --------
    >>> from ckptlab.storage import resolve
    >>> store, directory = resolve("memory://bucket/run")
    >>> listed_path(store, directory, "ckpt-3")
    'memory://bucket/run/ckpt-3'
    >>> listed_path(*resolve("/runs/a"), "ckpt-3"), listed_path(*resolve("/runs/a"), "/b/ckpt-1")
    ('/runs/a/ckpt-3', '/b/ckpt-1')
    """
    return name if "://" in name else store.display(join_listed(directory, name))


def read_state(
    store: ByteStore, directory: str, filename: str | None = None
) -> CheckpointState | None:
    """The parsed state file of ``directory``, or ``None`` when there is none.

    Raises
    ------
    CorruptCheckpointError
        The state file does not parse.
    StorageIsADirectoryError
        A directory is where the state file belongs.
    """
    key = posixpath.join(directory, filename or STATE_FILENAME)
    if not store.exists(key):
        if store.is_dir(key):
            raise StorageIsADirectoryError(
                f"{store.display(key)} is a directory, but it is where the state file of the "
                f"checkpoint directory {store.display(directory)} belongs (a file naming the "
                "latest checkpoint). Rename or remove that directory."
            )
        return None
    size = store.size(key)
    if size is not None and size > MAX_STATE_BYTES:
        raise CorruptCheckpointError(
            f"Checkpoint state file {store.display(key)} holds {size} bytes; a state file names "
            f"checkpoints, a few bytes each (at most {MAX_STATE_BYTES} are read). It is damaged "
            "or not a state file: fix or delete it (the checkpoints themselves stay readable)."
        )
    raw = store.read(key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\ufffd"
    return parse_state(text, store.display(key))


def write_state(store: ByteStore, directory: str, state: CheckpointState, *, durable: bool) -> None:
    """Replace the state file atomically (temporary file, fsync, rename)."""
    store.replace(
        posixpath.join(directory, STATE_FILENAME), format_state(state).encode(), durable=durable
    )


@contextlib.contextmanager
def listed_or_removed(store: ByteStore, directory: str, checkpoint: str) -> Iterator[None]:
    """Record the committed ``checkpoint`` in the block; if that fails, it is listed or deleted.

    After a failure (no space for the state file, no permission...) the checkpoint stays only
    when the state file on disk lists it (a re-save of a listed number, or a write that took
    effect before failing); otherwise it is deleted, so that no save leaves a committed
    checkpoint that no state file lists and no manager deletes.  The error raised (of the
    original's class) names the checkpoint, the state file and what became of the checkpoint.
    """
    try:
        yield
    except BaseException as error:
        outcome = _list_or_remove(store, directory, checkpoint)
        state_file = store.display(posixpath.join(directory, STATE_FILENAME))
        message = (
            f"{store.display(checkpoint)} was written, but recording it in {state_file} failed, "
            f"so {outcome}. {error}"
        )
        restated = restate(error, message)
        if restated is error:
            error.add_note(f"{store.display(checkpoint)}: {outcome}.")
            raise
        raise restated from error


def record_latest(store: ByteStore, checkpoint: str, *, durable: bool) -> None:
    """Make the committed ``checkpoint`` its directory's latest (``Checkpoint.save``).

    The state file then names it alone, relative to the directory; if replacing the state file
    fails, the checkpoint is kept only when the state file lists it (:func:`listed_or_removed`).
    """
    directory = posixpath.dirname(checkpoint)
    relative = relative_to(directory, checkpoint)
    state = CheckpointState(latest=relative, all_paths=(relative,))
    with listed_or_removed(store, directory, checkpoint):
        write_state(store, directory, state, durable=durable)


def _list_or_remove(store: ByteStore, directory: str, checkpoint: str) -> str:
    """After a failed record of ``checkpoint``: keep it if listed, else delete it; say which."""
    name = relative_to(directory, checkpoint)
    try:
        state = read_state(store, directory)
    except Exception as unreadable:
        return f"it was kept (the state file could not be read back either: {unreadable})"
    if state is not None and name in (state.latest, *state.all_paths):
        return "it was kept: the state file lists it"
    try:
        retract(store, checkpoint, durable=True)
    except Exception as undeletable:
        return f"it should have been deleted, but that failed too ({undeletable})"
    return "it was deleted (a checkpoint no state file lists would never be cleaned up)"


def relative_to(directory: str, path: str) -> str:
    """``path`` relative to ``directory`` when it lies inside it (as TF writes state files)."""
    if path.startswith(directory.rstrip("/") + "/"):
        return path[len(directory.rstrip("/")) + 1 :]
    return path


def latest_checkpoint(
    checkpoint_dir: str | os.PathLike[str], latest_filename: str | None = None
) -> str | None:
    """The newest complete checkpoint listed in the directory's state file, or ``None``.

    The state file is TensorFlow's (docs/semantics.md S26-S28), so TensorFlow's directories
    work too.

    Parameters
    ----------
    checkpoint_dir
        A directory (path or URL).
    latest_filename
        The state file's name; ``None``: ``checkpoint``.

    Returns
    -------
    str or None
        The checkpoint's path, or ``None`` when there is no state file or the checkpoint it
        names is not complete.

    Raises
    ------
    CorruptCheckpointError
        The state file is empty or does not parse (TensorFlow would return ``None``, and a
        training script would start over).
    StoragePermissionError
        The state file, or the directory holding it, may not be read or entered.

    Examples
    --------
    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> ck.latest_checkpoint(directory) is None
    True
    >>> path = ck.Checkpoint().save(directory + "/ckpt")
    >>> ck.latest_checkpoint(directory) == path
    True
    """
    name, expected = "latest_filename", "the state file's name (str) or None"
    check_type(latest_filename, (str, type(None)), name, expected, f"{name}='checkpoint'")
    store, directory = resolve(checkpoint_dir)
    path, complete = named_latest(store, directory, latest_filename)
    if path is None:
        return None
    if not complete:
        logger.error("Couldn't match files for checkpoint %s", store.display(path))  # as TF
        return None
    given = os.fspath(checkpoint_dir)
    if "://" in given:
        return store.display(path)
    inside = posixpath.relpath(path, directory)
    if inside.startswith("../"):  # the state file names a checkpoint outside the directory
        return path
    return os.path.join(given, inside)  # as given, as TF joins them: "runs/ckpt-1", not absolute


def named_latest(
    store: ByteStore, directory: str, filename: str | None = None
) -> tuple[str | None, bool]:
    """The key the state file names as the latest, and whether that checkpoint is complete.

    ``(None, False)`` without a state file.  Complete means ckptlab's, TensorFlow's or a
    single-file checkpoint is there.  Unlike :func:`latest_checkpoint` it logs nothing: callers
    that raise say it in their error.
    """
    state = read_state(store, directory, filename)
    if state is None:
        return None, False
    path = join_listed(directory, state.latest)
    return path, is_committed(store, path) or _is_foreign(store, path)


def complete_latest(store: ByteStore, directory: str) -> str:
    """The complete checkpoint the state file of ``directory`` names as the latest.

    What opening a checkpoint directory means (``ck.list_variables(dir)``); the errors say
    what is wrong instead of logging it.

    Raises
    ------
    CorruptCheckpointError
        The state file is empty or does not parse.
    NotFoundError
        The checkpoint it names is missing or incomplete.
    """
    latest, complete = named_latest(store, directory)
    if latest is None or not complete:
        raise NotFoundError(
            f"{store.display(directory)} is a checkpoint directory whose state file names "
            f"{store.display(latest or '')} as the latest checkpoint, but it is missing or "
            "incomplete (deleted, or its save was interrupted). Pass a checkpoint path "
            "(one the state file lists, or another one), or save one first."
        )
    return latest


def _is_foreign(store: ByteStore, path: str) -> bool:
    """A TensorFlow prefix or a single-file checkpoint (TF writes the same state file)."""
    from ckptlab.storage._foreign import is_foreign_checkpoint

    return is_foreign_checkpoint(store, path)
