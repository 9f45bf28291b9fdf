"""What is at a path that holds no checkpoint, said by the error that refuses it (internal).

Runs only on that error path, so it may look around: a checkpoint directory's state file, a
symbolic link to nothing (a hub cache snapshot whose blob was deleted), a Hugging Face hub
cache repository (``models--<org>--<name>``, whose model is in a snapshot), a folder of
numbered checkpoint folders (a trainer's ``output/checkpoint-500``, accelerate's
``checkpoints/checkpoint_3``), and the numbered checkpoints next to a missing prefix.
:func:`hub_repository` is also what the link rule of ``_foreign/_members.py`` follows.
"""

from __future__ import annotations

import os
import posixpath
import re

from ckptlab.errors import NotFoundError
from ckptlab.storage._kv import ByteStore, LocalStore

_STEP = re.compile(r"(\d+)(?!.*\d)")
"""The last number in a name: ``checkpoint-500``, ``checkpoint_3``, ``ckpt-12``."""
_ENTRY_NAMES = frozenset(
    {"zarr.json", "checkpoint", ".metadata", "_CHECKPOINT_METADATA", "_METADATA"}
)
_ENTRY_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json", ".keras", ".weights.h5")
"""A folder holding a file named so holds a checkpoint (for advice only; readers go by content)."""
MAX_FOLDERS = 50
"""Numbered folders looked into (the newest first) to say which hold checkpoints."""


def not_found(store: ByteStore, path: str) -> NotFoundError:
    """The error for ``path``, which holds no checkpoint: what is there instead, and what to pass.

    Examples
    --------
    >>> from ckptlab.storage import LocalStore
    >>> print(not_found(LocalStore(), "/nonexistent/ckpt"))  # doctest: +ELLIPSIS
    Failed to find any matching files for /nonexistent/ckpt. You may be missing the checkpoint ...
    """
    shown = store.display(path)
    if store.exists(posixpath.join(path, "checkpoint")):
        from ckptlab.storage._state import complete_latest  # (at module level: circular)

        complete_latest(store, path)  # an empty or dangling state file: that precise error
        return NotFoundError(
            f"{shown} is a checkpoint directory, not a checkpoint. Pass one checkpoint, e.g. "
            f"ck.latest_checkpoint({shown!r})."
        )
    dangling = broken_link(store, path)
    if dangling is not None:
        return NotFoundError(dangling)
    if store.is_dir(path):
        return NotFoundError(_directory(store, path))
    if isinstance(store, LocalStore) and os.path.exists(path) and not os.path.isfile(path):
        return NotFoundError(
            f"{shown} is neither a file nor a directory (a device, a pipe or a socket). Pass a "
            "checkpoint: the path that save() or write() returned, or a checkpoint file."
        )
    parent, name = posixpath.split(path)
    siblings = sorted(n for n in store.list_dir(parent) if n.startswith(f"{name}-"))
    hint = (
        "You may be missing the checkpoint suffix (e.g. the '-1' in 'ckpt-1'); "
        f"ck.latest_checkpoint({store.display(parent or '.')!r}) names the newest one"
    )
    if siblings:
        hint += f"; found {', '.join(siblings[:5])} next to it"
    return NotFoundError(f"Failed to find any matching files for {shown}. {hint}.")


def _directory(store: ByteStore, path: str) -> str:
    """Why directory ``path`` is no checkpoint, and what to pass instead."""
    shown = store.display(path)
    names = store.list_dir(path)
    entries = (posixpath.join(path, n) for n in names if _is_entry(n))
    links = [d for d in (broken_link(store, key) for key in entries) if d]
    if links:
        count = f" ({len(links)} of its links point to nothing)" if len(links) > 1 else ""
        return f"{shown} is a directory, but not a checkpoint ckptlab can read{count}: {links[0]}"
    snapshot = _hub_snapshot(store, path)
    if snapshot is not None:
        return snapshot
    folders = _checkpoint_folders(store, path, names)
    if len(folders) == 1:
        return (
            f"{shown} is a directory, not a checkpoint: it holds one checkpoint, in "
            f"{folders[0]}: pass {store.display(posixpath.join(path, folders[0]))}."
        )
    if folders:
        listed = ", ".join(folders if len(folders) <= 5 else [*folders[:2], "...", *folders[-2:]])
        newest = store.display(posixpath.join(path, folders[-1]))
        return (
            f"{shown} is a directory, not a checkpoint: it holds {len(folders)} checkpoints in "
            f"folders: {listed}. Pass one of them, e.g. the newest, {newest}; "
            f"ck.explore({shown!r}) shows them as a training run."
        )
    return (
        f"{shown} is a directory but not a ckptlab checkpoint (no zarr.json with a checkpoint "
        "document). Pass the path that save() or write() returned."
    )


def broken_link(store: ByteStore, key: str) -> str | None:
    """What is wrong when ``key`` is a symbolic link to nothing, else ``None``.

    Examples
    --------
    >>> from ckptlab.storage import LocalStore
    >>> broken_link(LocalStore(), "/") is None
    True
    """
    if not isinstance(store, LocalStore) or not os.path.islink(key) or os.path.exists(key):
        return None
    raw, real = os.readlink(key), os.path.realpath(key)
    pointed = raw if raw == real else f"{raw} ({real})"
    if hub_repository(os.path.realpath(os.path.dirname(key))) is not None:
        return (
            f"{key} is a symbolic link to {pointed}, which does not exist: the hub cache's blob "
            "was deleted (huggingface-cli delete-cache, or an interrupted download). Download "
            "the model again."
        )
    return (
        f"{key} is a symbolic link to {pointed}, which does not exist. Restore the file it "
        "points to, or pass the real file."
    )


def hub_repository(real: str) -> str | None:
    """The hub cache repository whose snapshot holds ``real`` (a real path), else ``None``.

    The hub cache keeps ``models--<org>--<name>/snapshots/<revision>/`` (``models--gpt2``
    without an org; a model may sit in a subfolder of it) whose files are links into
    ``models--<org>--<name>/blobs/``.

    Examples
    --------
    >>> hub_repository("/hub/models--org--m/snapshots/abc/text_encoder")
    '/hub/models--org--m'
    >>> hub_repository("/runs/snapshots/abc") is None  # not a models--... folder
    True
    """
    parts = real.split(os.sep)
    for i in range(len(parts) - 2, 0, -1):  # the deepest snapshots/<revision> wins
        if parts[i] == "snapshots" and parts[i - 1].startswith("models--"):
            return os.sep.join(parts[:i])
    return None


def _hub_snapshot(store: ByteStore, path: str) -> str | None:
    """For a hub cache repository (or its ``snapshots``): the snapshot to pass, else ``None``."""
    repo = path.rstrip("/")
    what = "a Hugging Face hub cache repository"
    if posixpath.basename(repo) == "snapshots":
        repo, what = posixpath.dirname(repo), f"the snapshots folder of {what}"
    if not posixpath.basename(repo).startswith("models--"):
        return None
    snapshots = posixpath.join(repo, "snapshots")
    revisions = [n for n in store.list_dir(snapshots) if store.is_dir(posixpath.join(snapshots, n))]
    if not revisions:
        return None
    shown = store.display(path)
    main = posixpath.join(repo, "refs", "main")
    small = 0 < (store.size(main) or 0) <= 256  # a commit hash
    named = store.read(main).decode("ascii", "replace").strip() if small else ""
    opening = f"{shown} is {what}, not a checkpoint: its files are in a snapshot. Pass"
    if named in revisions:
        return (
            f"{opening} {store.display(posixpath.join(snapshots, named))} (the revision refs/main "
            "names; huggingface_hub.snapshot_download() returns that path)."
        )
    found = ", ".join(sorted(revisions)[:5])
    return f"{opening} {store.display(snapshots)}/<revision> (found: {found})."


def _checkpoint_folders(store: ByteStore, path: str, names: list[str]) -> list[str]:
    """Numbered folders of ``path`` holding checkpoint files, oldest first.

    Only the newest :data:`MAX_FOLDERS` numbered entries are looked into.
    """
    steps = {name: _STEP.search(name) for name in names if not name.startswith(".")}
    numbered = sorted(((int(m.group(1)), n) for n, m in steps.items() if m), reverse=True)
    held = [
        (step, name)
        for step, name in numbered[:MAX_FOLDERS]
        if any(map(_is_entry, store.list_dir(posixpath.join(path, name))))
    ]
    return [name for _, name in sorted(held)]


def _is_entry(name: str) -> bool:
    """Whether a file named ``name`` is (part of) a checkpoint, by its name (advice only)."""
    return name in _ENTRY_NAMES or name.endswith(_ENTRY_SUFFIXES)
