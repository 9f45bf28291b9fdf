"""Object stores and other fsspec URLs, through zarr's ``FsspecStore`` (internal).

``s3://``, ``gs://``, ``memory://``... paths are served by :class:`FsspecStore`, a
:class:`~ckptlab.storage.ByteStore` over ``zarr.storage.FsspecStore``: every call goes through
zarr's event loop (``zarr.core.sync.sync``), so s3fs sessions are shared with zarr and writes of
many chunks run concurrently.  Object stores have no rename: checkpoints are written in place and
published by a create-only conditional write of the root ``zarr.json`` (FORMAT.md, "Commit").

Credentials and endpoints come, in this order, from the ``storage_options`` passed to
:func:`resolve`, from :func:`set_storage_options` (longest matching URL prefix), and from
fsspec's own configuration (``FSSPEC_S3_ENDPOINT_URL=...`` or ``fsspec.config.conf``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from ckptlab.core import argument_error
from ckptlab.errors import InvalidArgumentError, NotFoundError
from ckptlab.storage._faults import translate_faults
from ckptlab.storage._kv import Buffer, ByteStore, LocalStore, buffer_size, byte_view

T = TypeVar("T")

CONCURRENCY = 16
"""Requests in flight at once on an object store (uploads of chunks, ranged reads)."""

_OPTIONS: dict[str, dict[str, Any]] = {}
_STORES: dict[tuple[str, str], FsspecStore] = {}
_LOCK = threading.Lock()


def set_storage_options(url_prefix: str, /, **options: Any) -> None:
    """Use fsspec ``options`` (endpoint, credentials...) for every URL starting with ``url_prefix``.

    The longest matching prefix wins; ``set_storage_options(prefix)`` with no options forgets a
    prefix.  Options reach the fsspec file system unchanged (for ``s3://`` see s3fs:
    ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``...).

    Parameters
    ----------
    url_prefix
        A URL prefix such as ``"s3://bucket"`` or ``"s3://bucket/run"``.
    **options
        fsspec storage options for URLs under the prefix; none forgets the prefix.

    Examples
    --------
    >>> set_storage_options("s3://my-bucket", endpoint_url="http://127.0.0.1:9000", anon=False)
    >>> storage_options_for("s3://my-bucket/run-1/ckpt-3")["endpoint_url"]
    'http://127.0.0.1:9000'
    >>> set_storage_options("s3://my-bucket")
    >>> storage_options_for("s3://my-bucket/run-1/ckpt-3")
    {}
    """
    if not isinstance(url_prefix, str) or "://" not in url_prefix:
        raise argument_error(
            "url_prefix",
            "a URL prefix (str)",
            url_prefix,
            "ck.set_storage_options('s3://bucket', endpoint_url='http://127.0.0.1:9000')",
        )
    with _LOCK:
        if options:
            _OPTIONS[url_prefix.rstrip("/")] = dict(options)
        else:
            _OPTIONS.pop(url_prefix.rstrip("/"), None)


def storage_options_for(url: str) -> dict[str, Any]:
    """The options registered for the longest prefix of ``url`` (``{}`` when none)."""
    with _LOCK:
        matches = [p for p in _OPTIONS if url == p or url.startswith(p + "/")]
        return dict(_OPTIONS[max(matches, key=len)]) if matches else {}


def _sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on zarr's event loop; when this raises, it is no longer running.

    Waiting can end early (Ctrl-C): then the coroutine is cancelled, and awaited, before the
    interrupt goes on, so an interrupted upload cannot land on a later save.
    """
    from zarr.core.sync import sync

    settled = threading.Event()
    abandoned = threading.Event()
    tasks: list[asyncio.Task[Any]] = []

    async def run() -> T:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            if abandoned.is_set():  # interrupted before it started
                coroutine.close()
                raise asyncio.CancelledError
            return await coroutine
        finally:
            settled.set()

    try:
        result: T = sync(run())
    except BaseException:
        abandoned.set()
        if tasks and not settled.is_set():
            tasks[0].get_loop().call_soon_threadsafe(tasks[0].cancel)
            settled.wait()
        raise
    return result


async def _all(
    call: Callable[..., Coroutine[Any, Any, T]], arguments: Iterable[Sequence[Any]], limit: int
) -> list[T]:
    """``call(*args)`` for each of ``arguments``, ``limit`` at a time; all settled on return.

    ``asyncio.gather`` raises the first failure and leaves the others running: a failed
    ``write_many`` went on uploading in the background, and a late upload of a failed save
    landed on top of its retry, damaging a committed checkpoint.  Here, when one call fails (or
    the whole is cancelled), the others are cancelled and awaited before the first error is
    raised, so a call that raised leaves nothing running (and no "exception never retrieved").
    """
    semaphore = asyncio.Semaphore(limit)

    async def limited(args: Sequence[Any]) -> T:
        async with semaphore:
            return await call(*args)

    tasks = [asyncio.ensure_future(limited(args)) for args in arguments]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


_DELETES = 64
"""Objects deleted concurrently."""


class FsspecStore:
    """A :class:`~ckptlab.storage.ByteStore` over ``zarr.storage.FsspecStore`` (no rename)."""

    supports_rename = False
    concurrent_writes = True

    def __init__(self, store: Any, protocol: str) -> None:
        self.zarr_store = store
        """The wrapped ``zarr.storage.FsspecStore`` (rooted at the file system's root)."""
        self.fs = store.fs
        """Its asynchronous fsspec file system."""
        self.protocol = protocol

    @classmethod
    def from_url(
        cls, url: str, storage_options: Mapping[str, Any] | None = None
    ) -> tuple[FsspecStore, str]:
        """The store serving ``url`` and the key of ``url`` inside it."""
        import json

        import fsspec
        from zarr.storage import FsspecStore as ZarrFsspecStore

        protocol = url.split("://", 1)[0]
        options = {**storage_options_for(url), **(storage_options or {})}
        token = (protocol, json.dumps(options, sort_keys=True, default=repr))
        key = fsspec.get_filesystem_class(protocol)._strip_protocol(url)  # memory: "/x/ckpt"
        key = key.rstrip("/") or key
        with _LOCK:
            store = _STORES.get(token)
            if store is None:
                zarr_store = ZarrFsspecStore.from_url(f"{protocol}://", storage_options=options)
                zarr_store = ZarrFsspecStore(zarr_store.fs, path="", read_only=False)
                store = _STORES[token] = cls(zarr_store, protocol)
        return store, key

    def display(self, key: str) -> str:
        """Return the URL."""
        return f"{self.protocol}://{key.lstrip('/')}"

    # -- writing ----------------------------------------------------------------------------

    async def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        await self.fs._pipe_file(key, b"".join(cast("Sequence[bytes]", parts)))

    @translate_faults("write")
    def write(self, key: str, parts: Sequence[Buffer], *, durable: bool) -> None:
        """Upload one object (durable once acknowledged)."""
        _sync(self._put(key, parts))

    @translate_faults("write")
    def write_many(self, items: Sequence[tuple[str, Sequence[Buffer]]], *, durable: bool) -> None:
        """Upload objects concurrently (at most :data:`CONCURRENCY` in flight)."""
        if items:
            _sync(_all(self._put, items, CONCURRENCY))

    @translate_faults("write")
    def write_stream(self, key: str, batches: Iterable[Sequence[Buffer]], *, durable: bool) -> None:
        """Upload the concatenation of the batches as one object."""
        self.write(key, [part for batch in batches for part in batch], durable=durable)

    @translate_faults("create")
    def write_new(self, key: str, data: Buffer, *, durable: bool) -> bool:
        """A create-only conditional upload (``If-None-Match: *`` on S3); False if it exists."""

        async def run() -> bool:
            try:
                await self.fs._pipe_file(key, bytes(data), mode="create")
            except FileExistsError:
                return False
            except TypeError:  # a file system without create-only writes: check, then write
                if await self._is_file(key):
                    return False
                await self.fs._pipe_file(key, bytes(data))
            return True

        return _sync(run())

    def replace(self, key: str, data: Buffer, *, durable: bool) -> None:
        """Single-object uploads are atomic on object stores."""
        self.write(key, [data], durable=durable)

    # -- reading ----------------------------------------------------------------------------

    @translate_faults("read")
    def read(self, key: str) -> bytes:
        """Download one object."""
        from zarr.core.buffer import default_buffer_prototype

        buffer = _sync(self.zarr_store.get(key, default_buffer_prototype()))
        if buffer is None:
            raise NotFoundError(f"No object at {self.display(key)}.")
        data: bytes = buffer.to_bytes()
        return data

    async def _range(self, key: str, offset: int, buffers: Sequence[memoryview]) -> int:
        total = sum(map(buffer_size, buffers))
        if not total:
            return 0
        try:
            data = await self.fs._cat_file(key, start=offset, end=offset + total)
        except FileNotFoundError:
            raise NotFoundError(f"No object at {self.display(key)}.") from None
        except OSError as error:  # S3 answers 416 for a range past the end
            if "not satisfiable" in str(error).lower() or "InvalidRange" in str(error):
                return 0
            raise
        done = 0
        for out in map(byte_view, buffers):
            count = max(0, min(len(out), len(data) - done))
            out[:count] = data[done : done + count]
            done += count
        return done

    @translate_faults("read")
    def read_into(self, key: str, out: memoryview, offset: int) -> int:
        """Ranged read into ``out``."""
        return _sync(self._range(key, offset, [out]))

    @translate_faults("read")
    def read_ranges(self, requests: Sequence[tuple[str, int, Sequence[memoryview]]]) -> list[int]:
        """One ranged GET per request, concurrently; the bytes are copied into the buffers."""
        return _sync(_all(self._range, requests, CONCURRENCY)) if requests else []

    async def _info(self, key: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.fs._info(key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return info

    async def _is_file(self, key: str) -> bool:
        info = await self._info(key)
        return info is not None and info.get("type") == "file"

    @translate_faults("inspect")
    def size(self, key: str) -> int | None:
        """Object size, or ``None`` when there is no object at ``key``."""
        info = _sync(self._info(key))
        if info is None or info.get("type") != "file":
            return None
        return int(info["size"])

    @translate_faults("inspect")
    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        return _sync(self._is_file(key))

    def is_dir(self, key: str) -> bool:
        """Whether objects exist below the prefix ``key``."""
        return bool(self.list_dir(key))

    @translate_faults("list")
    def list_dir(self, key: str) -> list[str]:
        """Names directly below the prefix ``key``."""

        async def run() -> list[str]:
            try:
                entries = await self.fs._ls(key, detail=False, refresh=True)
            except (FileNotFoundError, NotADirectoryError):
                return []
            prefix = key.rstrip("/") + "/"
            names = {
                str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries if str(e).startswith(prefix)
            }
            return sorted(names)

        return _sync(run())

    @translate_faults("delete")
    def delete_tree(self, key: str) -> None:
        """Delete ``key`` and everything below it, and nothing else.

        fsspec's ``rm`` takes its paths as glob patterns: a checkpoint at ``runs/exp[1]`` would
        take ``runs/exp1`` with it (and leave itself).  So the objects are found by a walk
        (``find`` never globs) and deleted one by one (a version-3 checkpoint is a handful).
        """

        async def gone(path: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                await self.fs._rm_file(path)

        async def run() -> None:
            found: list[str] = await self.fs._find(key)
            try:
                await _all(gone, [(path,) for path in found], _DELETES)
            finally:
                self.fs.invalidate_cache(key)

        _sync(run())

    def rename(self, source: str, target: str, *, durable: bool) -> None:
        """Object stores have no atomic rename."""
        raise NotImplementedError("object stores have no atomic rename")

    def sync_tree(self, key: str) -> None:
        """Uploads are durable once acknowledged."""


def resolve(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[ByteStore, str]:
    """The store holding ``path`` and the key of ``path`` inside it.

    Local paths (and ``file://`` URLs) are served by :class:`LocalStore`; any other URL by
    :class:`FsspecStore` (``storage_options`` as in :func:`set_storage_options`).
    """
    text = path_text(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return FsspecStore.from_url(text, storage_options)
    return LocalStore(), os.path.abspath(text)


def path_text(path: object) -> str:
    r"""``path`` as a string, refused when no store could hold it (every path goes through here).

    Raises
    ------
    InvalidArgumentError
        ``path`` is not a ``str`` or ``os.PathLike`` of one, or contains a NUL character.

    Examples
    --------
    >>> path_text("runs/a\x00b")
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: The path 'runs/a\x00b' contains a NUL character ...
    """
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"Expected a path (a str or an os.PathLike such as pathlib.Path) or a URL, got "
            f"{path!r} ({type(path).__name__}). Pass the path as a string "
            "(bytes: path.decode())."
        )
    if "\x00" in text:
        raise InvalidArgumentError(
            f"The path {text!r} contains a NUL character ('\\x00'), which no file system or "
            "object store accepts in a path; nothing was read or written. Remove it (it often "
            "comes from a C string or a fixed-size buffer decoded with its padding: "
            "text.rstrip('\\x00'))."
        )
    return text
