"""Who writes what: a deterministic, pure plan of a multi-worker save (internal).

Every stored object gets exactly one writer: a whole value is written by one worker, packed
with that worker's other values of its dtype (``data/<dtype>_w<rank>``); a sharded value gets
its own array, split along axis 0 into regions whose boundaries fall on chunk boundaries, so no
chunk is touched by two workers (Zarr loses data when two writers share a chunk or shard:
docs/distributed.md).
The plan depends only on the value specs, the world size and the explicit assignment, so every
worker and the coordinator compute the same plan independently; its :attr:`SavePlan.digest`
proves they did.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ckptlab.core import ITEMSIZE
from ckptlab.errors import InvalidArgumentError
from ckptlab.storage import CHUNK_BYTES, choose_chunks

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueEntry:
    """What the planner knows about one value: its key, global spec and row partition."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    partition: tuple[int, ...] | None = None
    """Row boundaries ``(0, b1, ..., rows)`` of a sharded value, one region per worker."""

    @property
    def nbytes(self) -> int:
        """Size of the whole value in bytes."""
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """Rows ``[start, stop)`` of an own array, written by worker ``rank``."""

    rank: int
    start: int
    stop: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where one value goes and who writes it."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    array: str
    """``values/<n>`` for an own array, ``data/<dtype>_w<rank>`` for a packed value."""
    chunks: tuple[int, ...] | None
    """Chunk shape of an own array; ``None`` when packed."""
    regions: tuple[Region, ...]
    """The writers; one region covering every row unless the value is sharded."""

    @property
    def packed(self) -> bool:
        """Whether the value lives in a packed array."""
        return self.chunks is None


@dataclass(frozen=True, slots=True, kw_only=True)
class SavePlan:
    """The whole plan: one placement per value, in key order.

    Examples
    --------
    >>> entries = [ValueEntry(key="a", shape=(4096, 1024), dtype="float32"),
    ...            ValueEntry(key="b", shape=(2048, 1024), dtype="float32"),
    ...            ValueEntry(key="c", shape=(2048, 1024), dtype="float32")]
    >>> plan = plan_save(entries, world_size=2)
    >>> plan.bytes_per_worker()
    (16777216, 16777216)
    >>> [p.regions[0].rank for p in plan.placements]
    [0, 1, 1]
    """

    world_size: int
    placements: tuple[Placement, ...]

    def bytes_per_worker(self) -> tuple[int, ...]:
        """How many value bytes each worker writes."""
        totals = [0] * self.world_size
        for placement in self.placements:
            row = math.prod(placement.shape[1:]) * ITEMSIZE[placement.dtype]
            for region in placement.regions:
                size = (region.stop - region.start) * row if placement.shape else row
                totals[region.rank] += size
        return tuple(totals)

    def for_worker(self, rank: int) -> list[tuple[Placement, Region]]:
        """The ``(placement, region)`` pairs worker ``rank`` writes."""
        return [(p, r) for p in self.placements for r in p.regions if r.rank == rank]

    @property
    def digest(self) -> str:
        """A short hash of the plan: equal on every worker that planned the same save."""
        data = [
            [
                p.key,
                list(p.shape),
                p.dtype,
                p.array,
                p.chunks,
                [[r.rank, r.start, r.stop] for r in p.regions],
            ]
            for p in self.placements
        ]
        text = json.dumps([self.world_size, data], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_assignment(
    assign: Mapping[str, int] | None, keys: Sequence[str], world_size: int
) -> dict[str, int]:
    """Map an explicit assignment (by value key or object path) onto value keys.

    An object path is a key without ``/.ATTRIBUTES/VARIABLE_VALUE`` (``"model/dense/kernel"``).
    Unknown names and out-of-range workers raise one :class:`ValueError` listing them all.
    """
    known = set(keys)
    resolved: dict[str, int] = {}
    problems = []
    for name, rank in (assign or {}).items():
        key = name if name in known else f"{name}{_SUFFIX}"
        if key not in known:
            problems.append(f"{name!r} names no value")
        elif not isinstance(rank, int) or not 0 <= rank < world_size:
            problems.append(f"{name!r} -> {rank!r} is not a worker in [0, {world_size})")
        else:
            resolved[key] = rank
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise ValueError(
            f"Invalid worker assignment: {shown}. Keys are value keys or object paths such as "
            "'model/dense/kernel' (ck.list_variables lists the keys); workers are numbered from 0."
        )
    return resolved


def plan_save(
    entries: Sequence[ValueEntry],
    world_size: int,
    assign: Mapping[str, int] | None = None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> SavePlan:
    """Plan a save by ``world_size`` workers.

    Parameters
    ----------
    entries
        Every value of the checkpoint (the same on every worker).
    world_size
        Number of workers.
    assign
        Explicit writers by value key or object path; the rest are balanced by bytes (largest
        first, each to the worker with the fewest bytes so far).  Sharded values are written by
        the workers that hold their regions and cannot be assigned.
    chunk_bytes
        Sharded values' own arrays are chunked along axis 0 to about ``chunk_bytes`` (and so
        that every region boundary is a chunk boundary); every other value is packed.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    ordered = sorted(entries, key=lambda e: e.key)
    explicit = resolve_assignment(assign, [e.key for e in ordered], world_size)
    for entry in ordered:
        _check_partition(entry, world_size, explicit)
    writers = _balance(ordered, world_size, explicit)
    placements = []
    own = 0
    for entry in ordered:
        if entry.partition is None:
            rank = writers[entry.key]
            placements.append(
                Placement(
                    key=entry.key,
                    shape=entry.shape,
                    dtype=entry.dtype,
                    array=f"data/{entry.dtype}_w{rank}",
                    chunks=None,
                    regions=(Region(rank=rank, start=0, stop=_rows(entry.shape)),),
                )
            )
            continue
        placements.append(_own_placement(entry, f"values/{own}", chunk_bytes))
        own += 1
    return SavePlan(world_size=world_size, placements=tuple(placements))


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def _check_partition(entry: ValueEntry, world_size: int, explicit: Mapping[str, int]) -> None:
    if entry.partition is None:
        return
    where = f"Sharded value {entry.key!r}"
    if entry.key in explicit:
        raise ValueError(
            f"{where} is written by the workers holding its regions; remove it from assign=."
        )
    check_partition(where, entry.shape, entry.partition, world_size)


def check_partition(
    where: str, shape: tuple[int, ...], bounds: Sequence[int], world_size: int | None = None
) -> None:
    """Refuse row boundaries that do not cut ``shape``'s rows into ordered regions.

    ``world_size``: how many regions there must be (any number when ``None``).
    """
    if not shape:
        raise InvalidArgumentError(
            f"{where} is a scalar; only arrays with at least one axis can be sharded."
        )
    regions = max(len(bounds) - 1, 1) if world_size is None else world_size
    if len(bounds) != regions + 1 or bounds[0] != 0 or bounds[-1] != shape[0]:
        raise InvalidArgumentError(
            f"{where} has partition {list(bounds)}; expected {regions + 1} row boundaries "
            f"from 0 to {shape[0]} (one region per worker), e.g. "
            f"ckptlab.distributed.row_partition({shape[0]}, {regions})."
        )
    if any(b > a for a, b in zip(bounds[1:], bounds, strict=False)):
        raise InvalidArgumentError(
            f"{where} has partition {list(bounds)}; boundaries must not decrease."
        )


def _balance(
    entries: Sequence[ValueEntry], world_size: int, explicit: Mapping[str, int]
) -> dict[str, int]:
    load = [0] * world_size
    writers = dict(explicit)
    for entry in entries:
        if entry.partition is not None:
            row = entry.nbytes // max(entry.shape[0], 1)
            for rank in range(world_size):
                load[rank] += (entry.partition[rank + 1] - entry.partition[rank]) * row
        elif entry.key in writers:
            load[writers[entry.key]] += entry.nbytes
    free = [e for e in entries if e.partition is None and e.key not in writers]
    for entry in sorted(free, key=lambda e: (-e.nbytes, e.key)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        writers[entry.key] = rank
        load[rank] += entry.nbytes
    return writers


def _own_placement(entry: ValueEntry, array: str, chunk_bytes: int) -> Placement:
    """A sharded value's own array: chunked so every region boundary is a chunk boundary."""
    shape, bounds = entry.shape, entry.partition
    assert bounds is not None
    assert shape
    row = math.prod(shape[1:]) * ITEMSIZE[entry.dtype]
    chunks = choose_chunks(shape, ITEMSIZE[entry.dtype], chunk_bytes)
    inner = [b for b in bounds[1:-1] if 0 < b < shape[0]]
    if inner:
        rows = _largest_divisor_at_most(math.gcd(*inner), max(1, chunk_bytes // max(row, 1)))
        chunks = (rows, *chunks[1:])
    regions = tuple(
        Region(rank=r, start=bounds[r], stop=bounds[r + 1])
        for r in range(len(bounds) - 1)
        if bounds[r + 1] > bounds[r]
    ) or (Region(rank=0, start=0, stop=0),)  # no rows at all: worker 0 writes the metadata
    return Placement(
        key=entry.key, shape=shape, dtype=entry.dtype, array=array, chunks=chunks, regions=regions
    )


def _largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest divisor of ``number`` not above ``limit`` (``number`` itself when it fits)."""
    if number <= limit:
        return number
    best = 1
    for small in range(1, math.isqrt(number) + 1):
        if number % small == 0:
            if small <= limit:
                best = max(best, small)
            if number // small <= limit:
                best = max(best, number // small)
    return best
