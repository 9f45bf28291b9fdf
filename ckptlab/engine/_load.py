"""Fetching the values a restore step writes: verified first, then read in place (internal).

A restore must not write anything before every value it writes is known to be intact, and it
must not hold a second copy of the model while it checks.  So values go one of two ways:

* **in place**: the target exposes its own memory as a host array of exactly the stored shape
  and dtype (a CPU ``torch`` tensor, a ``ck.Variable``).  Its checksum is verified now in
  bounded batches without keeping the bytes, and at commit time the value is read straight into
  that memory (verified again on the way).  Extra memory: one batch.
* **fetched**: everything else (values on an accelerator, on PyTorch's ``meta`` device, values
  whose shape changes, slots that do not exist yet) is read now into a fresh array, and handed
  to the adapter's ``write`` at commit time.

The in-place read at commit time can still fail if the file changes between the two passes (a
concurrent writer replacing a checkpoint in place, which ckptlab's own saves never do); the
error then names the value, and the values before it in the batch were written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckptlab.engine._adapter import require_adapter
from ckptlab.engine._execute import mark_written, written_by
from ckptlab.storage import StoredCheckpoint, numpy_dtype

BATCH_BYTES = 16 * 2**20
"""Bytes verified (or read in place) per storage call: the extra memory of a restore."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """One value to fetch: ``ident`` names the write (a node id, or the target's id)."""

    ident: int
    key: str
    target: Any
    """The object to write into, or ``None`` (a slot to create: always fetched)."""


@dataclass(slots=True)
class Load:
    """What :func:`fetch` got: buffers to read into at commit, and arrays read now."""

    in_place: dict[int, tuple[str, Any, np.ndarray[Any, Any]]] = field(default_factory=dict)
    arrays: dict[int, np.ndarray[Any, Any]] = field(default_factory=dict)


def _buffer_for(target: Any, source: StoredCheckpoint, key: str) -> np.ndarray[Any, Any] | None:
    buffer = require_adapter(target).buffer(target)
    if buffer is None:
        return None
    stored = source.stored(key)
    if buffer.shape != tuple(stored.shape) or buffer.dtype != numpy_dtype(stored.dtype):
        return None
    return buffer


def _batches(keys: Sequence[str], source: StoredCheckpoint) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for key in keys:
        nbytes = source.stored(key).nbytes
        if batch and size + nbytes > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(key)
        size += nbytes
    if batch:
        yield batch


def verify(source: StoredCheckpoint, keys: Iterable[str]) -> None:
    """Check the bytes of ``keys`` against their checksums, keeping at most one batch."""
    unique = list(dict.fromkeys(keys))
    for batch in _batches(unique, source):
        source.read_many(batch)


def fetch(
    source: StoredCheckpoint,
    items: Sequence[Fetch],
    *,
    uid: int,
    explicit: bool = False,
    preloaded: dict[int, np.ndarray[Any, Any]] | None = None,
) -> Load:
    """Verify what can be read in place, read the rest; raise (writing nothing) on damage."""
    load = Load()
    rest: list[Fetch] = []
    in_place_keys: set[str] = set()
    for item in items:
        early = (preloaded or {}).pop(item.ident, None)
        if early is not None:
            load.arrays[item.ident] = early
            continue
        if (
            item.target is not None
            and item.key not in in_place_keys  # a key read in place feeds one target
            and (explicit or written_by(item.target) <= uid)
        ):
            buffer = _buffer_for(item.target, source, item.key)
            if buffer is not None:
                load.in_place[item.ident] = (item.key, item.target, buffer)
                in_place_keys.add(item.key)
                continue
        rest.append(item)
    verify(source, (key for key, _, _ in load.in_place.values()))
    read = source.read_many(item.key for item in rest)  # batched, verified, with progress
    seen: set[str] = set()
    for item in rest:  # two writes sharing a key must not share one array
        load.arrays[item.ident] = read[item.key].copy() if item.key in seen else read[item.key]
        seen.add(item.key)
    return load


def read_in_place(
    source: StoredCheckpoint, load: Load, *, uid: int, explicit: bool = False
) -> list[int]:
    """Read the in-place values into their targets' memory; return the idents written.

    A target a newer restore wrote since :func:`fetch` is left alone (unless ``explicit``).
    """
    wanted = {
        ident: entry
        for ident, entry in load.in_place.items()
        if explicit or written_by(entry[1]) <= uid
    }
    by_key = {key: ident for ident, (key, _, _) in wanted.items()}
    for batch in _batches(list(by_key), source):
        source.read_many(batch, {key: wanted[by_key[key]][2] for key in batch})
        for key in batch:
            mark_written(wanted[by_key[key]][1], uid)
    return list(wanted)
