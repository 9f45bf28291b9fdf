"""A multi-file checkpoint's files stay inside it: by name and through symbolic links (internal).

An index or a metadata file names the other files of its checkpoint (Hugging Face shards, DCP
``.distcp`` files, Keras ``.weights.json`` shards, Orbax arrays, TensorFlow data files).  A name
may not leave the checkpoint's directory (:func:`safe_member`), and on a local file system no file
the reader opens may be a symbolic link that resolves outside it (:func:`check_inside`), except
into the ``blobs`` of the Hugging Face hub cache repository whose snapshot the directory is
(docs/foreign-formats.md §12.1): ``models--<org>--<name>/blobs``, a real directory (a ``blobs``
that is itself a link could lead anywhere).  Only :class:`~ckptlab.storage.LocalStore` keys can
be links.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from ckptlab.errors import CorruptCheckpointError, UnsupportedFormatError
from ckptlab.storage._kv import ByteStore, LocalStore
from ckptlab.storage._missing import hub_repository


def safe_member(store: ByteStore, directory: str, name: Any, where: str) -> str:
    """The store key of file ``name`` inside ``directory``; refuse paths and links that leave it.

    Examples
    --------
    >>> from ckptlab.storage import LocalStore
    >>> safe_member(LocalStore(), "/m", "model-00001-of-00002.safetensors", "index")
    '/m/model-00001-of-00002.safetensors'
    >>> safe_member(LocalStore(), "/m", "../etc/passwd", "index")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ckptlab.errors.CorruptCheckpointError: index names the file '../etc/passwd'...
    """
    parts = name.split("/") if isinstance(name, str) else []
    if (
        not parts
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise CorruptCheckpointError(
            f"{where} names the file {name!r}; expected a relative path inside the directory "
            "(no '..', not absolute). The file is damaged or hostile."
        )
    key = posixpath.join(directory, name)
    check_inside(store, directory, key)
    return key


def check_inside(store: ByteStore, directory: str, key: str) -> None:
    """Refuse ``key`` (a path below ``directory``) if a link on its way resolves outside.

    Costs one ``lstat`` per path component below ``directory`` when nothing is a link.
    """
    if not isinstance(store, LocalStore):
        return
    relative = os.path.relpath(key, directory)
    parts = relative.split(os.sep)
    if ".." not in parts:
        path = directory
        for part in parts:
            path = os.path.join(path, part)
            if os.path.islink(path):
                break
        else:
            return  # no link on the way: the file is where its name says
    target = os.path.realpath(key)
    real = os.path.realpath(directory)
    repository = hub_repository(real)
    blobs = os.path.join(repository, "blobs") if repository else None
    if _within(target, real) or (blobs and not os.path.islink(blobs) and _within(target, blobs)):
        return
    linked = (
        f" {blobs} is itself a symbolic link (to {os.path.realpath(blobs)}), which ckptlab does "
        "not follow: a link there could lead anywhere."
        if blobs and os.path.islink(blobs)
        else ""
    )
    raise UnsupportedFormatError(
        f"{key} is a symbolic link to {target}, outside the checkpoint directory "
        f"{directory}. ckptlab reads the files of a multi-file checkpoint only from inside "
        "its directory (or, for a Hugging Face hub cache snapshot, from that repository's "
        f"blobs directory).{linked} Copy the real files into the directory (e.g. cp -L) instead "
        "of linking them."
    )


def check_tree(store: ByteStore, directory: str, top: str) -> None:
    """:func:`check_inside` for ``top`` and every file and directory below it (not following links).

    For readers whose library opens files by itself (tensorstore under an Orbax item).
    """
    if not isinstance(store, LocalStore):
        return
    check_inside(store, directory, top)
    pending = [top]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    check_inside(store, directory, entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
