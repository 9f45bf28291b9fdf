"""Fetching the values a restore step writes: verified first, then read at commit (internal).

A restore must not write anything before every value it writes is known to be intact, and it
must not hold a second copy of the model while it checks.  So values go one of three ways:

* **in place**: the target exposes its own memory as a host array of exactly the stored shape
  and dtype (a CPU ``torch`` tensor, a ``ck.Variable``).  Its checksums are verified now
  through the storage layer's :class:`~ckptlab.storage.ValueReader` (a few MiB of scratch
  memory, nothing kept), and at commit time the value is read straight into that memory; on a
  local disk the reader keeps the files open between the two, so the bytes copied are the
  ones verified.  Extra memory: the reader's scratch buffers.
* **streamed**: every other existing target (a value on an accelerator or on PyTorch's ``meta``
  device, a JAX array, which is immutable and gets a new array) is verified now the same way,
  and at commit time read batch by batch into fresh arrays that go straight to the adapter's
  ``write``.  The fresh arrays are 64-byte aligned, so a framework may adopt one as its own
  memory without a copy (JAX on the CPU does).  Extra memory: one batch, plus whatever the
  framework keeps of the old value until it is replaced.
* **built**: values built from several stored ones (a Mixture-of-Experts model's experts,
  stored one tensor each, fused into one: :class:`Built`) have their sources verified now,
  and at commit, after every other value, are built one at a time: a value's sources are
  read, the build makes it (every value those sources make at once, for a build that gives
  several) and it goes to the adapter's ``write`` before the next one's sources are read.
  Extra memory: one build's sources, what the build needs besides (transformers' fusing:
  about the value twice), and the value until it is written.
* **fetched**: values without a target yet (optimizer slots to create) are read now.
* **guarded**: values whose write runs framework code that may refuse them (a scheduler's or
  a ``GradScaler``'s ``load_state_dict``, a module's ``set_extra_state``: the adapter's
  ``undo``) are read now too, and written first at commit, each after noting how to put its
  target back.  When one refuses, the ones written before it are put back and the restore
  raises :class:`~ckptlab.RestoreConflictError` before any other value is written
  (:func:`commit`).

Ctrl-C while the values are written takes effect once they all are
(:func:`ckptlab.core.interrupts_held`): an interrupt never leaves a model half restored, or one
tensor half read.

On an object store nothing pins the bytes between the passes: the reads at commit time are
verified again, and can still fail if the checkpoint is replaced in between (ckptlab's own
saves never replace one in place); the error then names the value, and the values before it
were written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ckptlab.core import ValueSpec, interrupts_held
from ckptlab.engine._adapter import require_adapter
from ckptlab.engine._execute import mark_written, newest_uid, written_by
from ckptlab.errors import RestoreConflictError
from ckptlab.storage import StoredCheckpoint, ValueReader, numpy_dtype

BATCH_BYTES = 16 * 2**20
"""Bytes of fresh arrays read at commit per batch, for values not read in place."""
ALIGNMENT = 64
"""Byte alignment of the arrays values are read into at commit (what XLA needs to adopt them)."""


class Fetch(NamedTuple):
    """One value to fetch: ``ident`` names the write (a node id, or the target's id)."""

    ident: int
    key: str
    target: Any
    """The object to write into, or ``None`` (a slot to create: always fetched)."""
    stored: ValueSpec
    """What the checkpoint holds for ``key``."""


class Built(NamedTuple):
    """A value :func:`commit` builds from several stored ones.

    ``build`` makes, from the arrays of ``sources`` (in that order), every value those
    sources make, by name; this one is ``name``.  Values sharing ``build`` are built once.
    """

    sources: tuple[str, ...]
    build: Callable[[list[np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]]
    name: str


@dataclass(slots=True)
class Load:
    """What :func:`fetch` got: what to read at commit, and arrays read now."""

    values: ValueReader | None = None
    """The open reader the verified values are read through at commit (closed after)."""
    in_place: dict[int, tuple[str, Any, np.ndarray[Any, Any]]] = field(default_factory=dict)
    """ident -> (key, target, the target's own memory)."""
    streamed: dict[int, tuple[str, Any]] = field(default_factory=dict)
    """ident -> (key, target): verified, read into a fresh array at commit."""
    arrays: dict[int, np.ndarray[Any, Any]] = field(default_factory=dict)
    undo: dict[int, Callable[[], None]] = field(default_factory=dict)
    """ident -> puts a guarded target back as it was when fetched (its array is in ``arrays``)."""
    built: dict[int, tuple[Any, Built]] = field(default_factory=dict)
    """ident -> (target, how): its sources verified, the value built at commit."""


_DTYPES: dict[str, np.dtype[Any]] = {}


def _buffer_for(target: Any, stored: ValueSpec) -> np.ndarray[Any, Any] | None:
    buffer = require_adapter(target).buffer(target)
    if buffer is None or buffer.shape != stored.shape:
        return None
    dtype = _DTYPES.get(stored.dtype)
    if dtype is None:
        dtype = _DTYPES[stored.dtype] = numpy_dtype(stored.dtype)
    return buffer if buffer.dtype == dtype else None


def aligned_empty(shape: Sequence[int], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGNMENT` boundary.

    Examples
    --------
    >>> array = aligned_empty((3, 5), np.dtype("float32"))
    >>> array.shape, array.ctypes.data % ALIGNMENT
    ((3, 5), 0)
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def fetch(
    source: StoredCheckpoint,
    items: Sequence[Fetch],
    *,
    uid: int,
    explicit: bool = False,
    preloaded: dict[int, np.ndarray[Any, Any]] | None = None,
    built: dict[int, Built] | None = None,
) -> Load:
    """Verify what is read at commit, read the rest; raise (writing nothing) on damage.

    ``preloaded``: arrays read before, by ident (taken out as they are used); a guarded
    target's is written first at commit, as every guarded value is.  ``built``: the values
    built at commit from several stored ones, by ident (their items' ``key`` is not read).
    """
    load = Load()
    rest: list[Fetch] = []
    in_place_keys: set[str] = set()
    every = explicit or newest_uid() <= uid  # no newer restore: every target is this one's
    for item in items:
        early = preloaded.pop(item.ident, None) if preloaded else None
        if early is not None:  # read before (a value that had to be rebuilt, or created)
            load.arrays[item.ident] = early
            undo = _undo_for(item.target) if item.target is not None else None
            if undo is not None:
                load.undo[item.ident] = undo
            continue
        how = built.get(item.ident) if built else None
        if how is not None:
            load.built[item.ident] = (item.target, how)
            continue
        if item.target is None:
            rest.append(item)
            continue
        if item.key not in in_place_keys and (  # a key read in place feeds one target
            every or written_by(item.target) <= uid
        ):
            buffer = _buffer_for(item.target, item.stored)
            if buffer is not None:
                load.in_place[item.ident] = (item.key, item.target, buffer)
                in_place_keys.add(item.key)
                continue
        undo = _undo_for(item.target)
        if undo is not None:
            load.undo[item.ident] = undo
            rest.append(item)
            continue
        load.streamed[item.ident] = (item.key, item.target)
    load.values = source.open_values()
    try:
        load.values.verify(
            [key for key, _, _ in load.in_place.values()]
            + [key for key, _ in load.streamed.values()]
            + [key for _, how in load.built.values() for key in how.sources]
        )
        read = load.values.read([item.key for item in rest])
    except BaseException:
        load.values.close()
        raise
    seen: set[str] = set()
    for item in rest:  # two writes sharing a key must not share one array
        load.arrays[item.ident] = read[item.key].copy() if item.key in seen else read[item.key]
        seen.add(item.key)
    return load


def _undo_for(target: Any) -> Callable[[], None] | None:
    hook: Callable[[Any], Callable[[], None] | None] | None = getattr(
        require_adapter(target), "undo", None
    )
    return None if hook is None else hook(target)


@interrupts_held()  # Ctrl-C takes effect once every value is written
def commit(
    source: StoredCheckpoint,
    load: Load,
    write: Callable[[int, np.ndarray[Any, Any]], None],
    placed: Callable[[list[int]], None],
    name_of: Callable[[int], str],
    forget: Callable[[list[int]], None],
    *,
    uid: int,
    explicit: bool = False,
) -> None:
    """Deliver every value of ``load``: ``write(ident, array)``, ``placed(idents)`` in place.

    Guarded arrays come first: when the framework refuses one, the guarded values written
    before it are put back, ``forget`` is told their idents and the refused one's (the caller's
    record of them), and nothing else has been written yet; the error names the object
    (``name_of(ident)``) and keeps the framework's error as its cause.  Then the other arrays
    read by :func:`fetch`; then the in-place values are read into their targets' memory, all
    at once, and ``placed`` is told their idents; then the streamed values, one batch at a
    time (``write`` gets each array before the next batch is read, so the batch's memory is
    released as it goes); then the built values, one build at a time.  A target a newer
    restore wrote since :func:`fetch` is left alone (unless ``explicit``): in place it is not
    read nor delivered; streamed or built it is not read, and ``placed`` is told its ident
    (nothing left to write).
    """
    values = load.values or source.open_values()
    try:
        _write_guarded(source, load, write, name_of, forget)
        for ident, array in load.arrays.items():
            if ident not in load.undo:
                write(ident, array)
        every = explicit or newest_uid() <= uid  # no newer restore: every target is this one's
        in_place = (
            load.in_place
            if every
            else {i: entry for i, entry in load.in_place.items() if written_by(entry[1]) <= uid}
        )
        values.read_into({key: buffer for key, _, buffer in in_place.values()})
        mark_written([target for _, target, _ in in_place.values()], uid)
        placed(list(in_place))
        placed(_write_streamed(source, load, values, write, every, uid))
        built = ((ident, target, how) for ident, (target, how) in load.built.items())
        hows, newer = _still_ours(built, every, uid)
        _write_built(hows, values, write)
        placed(newer)
    finally:
        values.close()


def _write_guarded(
    source: StoredCheckpoint,
    load: Load,
    write: Callable[[int, np.ndarray[Any, Any]], None],
    name_of: Callable[[int], str],
    forget: Callable[[list[int]], None],
) -> None:
    """The guarded values of ``load``, first (see :func:`commit`)."""
    done: list[int] = []
    for ident in load.undo:
        try:
            write(ident, load.arrays[ident])
        except Exception as error:
            for earlier in reversed(done):
                load.undo[earlier]()
            forget([*done, ident])
            raise RestoreConflictError(
                f"Restoring from {source.display_path}: {name_of(ident)} refused the saved "
                f"state ({type(error).__name__}: {error}); nothing was written. Make the "
                "object able to take it (for example, configure it as the saved one was: a "
                "GradScaler saved disabled refuses to load into an enabled one; give a tensor "
                "made by expand() memory of its own), or restore without it."
            ) from error
        done.append(ident)


def _write_streamed(
    source: StoredCheckpoint,
    load: Load,
    values: ValueReader,
    write: Callable[[int, np.ndarray[Any, Any]], None],
    every: bool,
    uid: int,
) -> list[int]:
    """Write the streamed values of ``load``, read batch by batch into fresh arrays.

    Returns the idents left alone because a newer restore wrote their targets.
    """
    streamed = ((ident, target, key) for ident, (key, target) in load.streamed.items())
    idents, newer = _still_ours(streamed, every, uid)
    for batch in source.batches(idents, BATCH_BYTES):
        outs = {}
        for key in batch:
            stored = source.stored(key)
            dtype = numpy_dtype(stored.dtype)
            if dtype.kind != "O":
                outs[key] = aligned_empty(stored.shape, dtype)
        read = values.read_many(batch, outs)  # into the aligned arrays (fresh for strings)
        del outs
        for key in batch:
            _deliver(write, idents[key], read.pop(key))
    return newer


def _write_built(
    idents: dict[Built, list[int]],
    values: ValueReader,
    write: Callable[[int, np.ndarray[Any, Any]], None],
) -> None:
    """Build the values ``idents`` name (each written to its idents), one build at a time."""
    builds: dict[int, list[Built]] = {}  # the values one build gives
    for how in idents:
        builds.setdefault(id(how.build), []).append(how)
    for hows in builds.values():
        sources, build = hows[0].sources, hows[0].build
        read = values.read(sources)
        made = build([read.pop(key) for key in sources])  # the build may free them as it goes
        del read
        for how in hows:
            _deliver(write, idents[how], made.pop(how.name))
        del made


def _still_ours(
    entries: Iterable[tuple[int, Any, Any]], every: bool, uid: int
) -> tuple[dict[Any, list[int]], list[int]]:
    """The idents of ``entries`` (ident, target, what it is written from) still to write.

    By what they are written from; and the idents left alone because a newer restore wrote
    their targets.
    """
    idents: dict[Any, list[int]] = {}
    newer: list[int] = []
    for ident, target, source in entries:
        if every or written_by(target) <= uid:
            idents.setdefault(source, []).append(ident)
        else:
            newer.append(ident)
    return idents, newer


def _deliver(
    write: Callable[[int, np.ndarray[Any, Any]], None],
    idents: list[int],
    array: np.ndarray[Any, Any],
) -> None:
    """``array`` to the last of ``idents``, a copy to each other: each write gets its own."""
    *others, last = idents
    for ident in others:
        write(ident, _copy(array))
    write(last, array)


def _copy(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if array.dtype.kind == "O":
        return array.copy()
    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out
