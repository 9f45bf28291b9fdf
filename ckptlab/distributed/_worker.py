"""One worker's part of a multi-worker save: walk, plan, write own bytes, report (internal).

Runs inside the worker process.  What it returns (a :class:`PartManifest`) is all that travels
back to the coordinator: keys, chunk checksums, pack offsets, timings; never array bytes.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckptlab import Checkpoint
from ckptlab.core import CheckpointDocument, ProgramGraph, gc_paused
from ckptlab.distributed._plan import Placement, Region, SavePlan, ValueEntry, plan_save
from ckptlab.distributed._sharded import Placeholder, ShardedVariable
from ckptlab.engine import Program, check_saveable, is_trackable, require_adapter
from ckptlab.storage import ArraySpec, PartWriter, little_endian, resolve


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveJob:
    """What every worker is told: where to write and how to plan (small, picklable)."""

    path: str
    """The checkpoint's final path or URL."""
    staged: str
    """Where the parts go inside the store (a hidden sibling locally, ``path`` on object stores)."""
    world_size: int
    assign: Mapping[str, int] | None = None
    counter: int | None = None
    """``save_counter`` value to store when the state is a ``ck.Checkpoint`` (``save``)."""
    durable: bool = True
    storage_options: Mapping[str, Any] | None = None
    """fsspec options for a URL ``path`` (the coordinator's, so workers reach the same store)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PartManifest:
    """What a worker wrote: small metadata only."""

    rank: int
    digest: str
    """:attr:`SavePlan.digest` of the plan this worker followed."""
    chunks: Mapping[str, Mapping[int, int]]
    """Own array path -> chunk index along axis 0 -> crc32c, for the chunks written here."""
    packed: Mapping[str, tuple[int, tuple[int, ...]]]
    """Key -> (element offset, checksums) of the packed values written here."""
    packs: Mapping[str, tuple[str, int, int, int]]
    """Data array path -> (dtype, length, chunk, shard) of the data arrays written here."""
    entries: tuple[ValueEntry, ...] | None
    """Every value's spec (worker 0 only): the coordinator re-plans from it."""
    graph: Mapping[str, Any] | None
    """The object graph in version 2's node form, naming values by key (worker 0 only)."""
    nbytes: int
    started: float
    """When the worker started writing (its state built and planned), ``time.time()``."""
    finished: float
    worker: str
    """``host:pid`` of the process that wrote the part."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerFailure:
    """A worker that did not deliver its part."""

    rank: int
    worker: str
    """Where it ran (``host:pid``, or an engine address)."""
    reason: str
    """``raised``, ``died`` or ``timeout``."""
    error: str
    """The exception as ``Type: message``, or what was observed."""
    traceback: str = ""


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def failure_from(rank: int, error: BaseException, worker: str | None = None) -> WorkerFailure:
    """Describe an exception raised by worker ``rank``."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return WorkerFailure(
        rank=rank,
        worker=worker or _where(),
        reason="raised",
        error=f"{type(error).__name__}: {error}",
        traceback=text,
    )


State = Callable[[int], Any]


def collect(
    root: Any, counter: int | None
) -> tuple[ProgramGraph[Any], list[ValueEntry], dict[str, Any]]:
    """Walk ``root``: the program, every value's entry, and the live object behind each key."""
    view = root._ck_view() if isinstance(root, Checkpoint) else Program(root)
    overrides = (
        {id(root.save_counter): counter}
        if counter is not None and isinstance(root, Checkpoint)
        else {}
    )
    program = view.walk()
    entries: list[ValueEntry] = []
    objects: dict[str, Any] = {}
    keys = program.graph.value_keys()
    for node_id, obj in enumerate(program.objects):
        key = keys[node_id]
        if key is None:
            continue
        if isinstance(obj, Placeholder):
            entries.append(ValueEntry(key=key, shape=obj.shape, dtype=obj.dtype.name))
            objects[key] = obj
            continue
        if isinstance(obj, ShardedVariable):
            entries.append(
                ValueEntry(key=key, shape=obj.shape, dtype=obj.dtype.name, partition=obj.partition)
            )
            objects[key] = obj
            continue
        adapter = require_adapter(obj)
        check_saveable(obj, key)
        array = (
            np.asarray(overrides[id(obj)], dtype=np.int64)
            if id(obj) in overrides
            else adapter.read(obj)
        )
        entries.append(ValueEntry(key=key, shape=tuple(array.shape), dtype=array.dtype.name))
        objects[key] = array
    return program, entries, objects


@gc_paused()  # a walk, a plan and a record per value: many small objects, no cycles
def write_part(job: SaveJob, state: Any, rank: int) -> PartManifest:
    """Build (or take) this worker's state and write its part of the checkpoint.

    ``state`` is a trackable root, or a function ``state(rank)`` returning one.  Writing the
    same part twice writes the same bytes under the same names.
    """
    root = state if is_trackable(state) or not callable(state) else state(rank)
    program, entries, objects = collect(root, job.counter)
    plan = plan_save(entries, job.world_size, job.assign)
    started = time.time()
    store, _ = resolve(job.path, job.storage_options)
    writer = PartWriter(store, job.staged, durable=job.durable)
    chunks, packed, packs, nbytes = _write_assigned(writer, plan, rank, objects)
    writer.close()
    return PartManifest(
        rank=rank,
        digest=plan.digest,
        chunks=chunks,
        packed=packed,
        packs=packs,
        entries=tuple(entries) if rank == 0 else None,
        graph=_graph_json(program) if rank == 0 else None,
        nbytes=nbytes,
        started=started,
        finished=time.time(),
        worker=_where(),
    )


def write_part_for(job: SaveJob, rank: int, state: Any) -> PartManifest:
    """:func:`write_part` with the arguments in the order engines pass per-worker states."""
    return write_part(job, state, rank)


def _write_assigned(
    writer: PartWriter, plan: SavePlan, rank: int, objects: Mapping[str, Any]
) -> tuple[
    dict[str, dict[int, int]],
    dict[str, tuple[int, tuple[int, ...]]],
    dict[str, tuple[str, int, int, int]],
    int,
]:
    """Queue every value and region the plan gives ``rank``: chunk crcs, pack entries, bytes."""
    chunks: dict[str, dict[int, int]] = {}
    members: dict[str, list[tuple[str, np.ndarray[Any, Any]]]] = defaultdict(list)
    nbytes = 0
    for placement, region in plan.for_worker(rank):
        rows = _rows_of(objects[placement.key], placement, region)
        nbytes += rows.nbytes
        if placement.packed:
            members[placement.array].append((placement.key, rows))
            continue
        shape, chunk_shape = placement.shape, placement.chunks or ()
        spec = ArraySpec(
            path=placement.array,
            key=placement.key,
            shape=shape,
            dtype=placement.dtype,
            chunks=chunk_shape,
        )
        if region is placement.regions[0]:
            writer.array_metadata(spec)
        chunks[placement.array] = writer.rows(spec, rows, region.start)
    packed: dict[str, tuple[int, tuple[int, ...]]] = {}
    packs: dict[str, tuple[str, int, int, int]] = {}
    for path, group in members.items():
        info, offsets = writer.pack(path, group)
        packs[path] = (info.dtype, info.length, info.chunk, info.shard)
        packed.update(offsets)
    return chunks, packed, packs, nbytes


def _rows_of(source: Any, placement: Placement, region: Region) -> np.ndarray[Any, Any]:
    """The rows of ``region`` as a C-contiguous little-endian array."""
    if isinstance(source, Placeholder):
        raise ValueError(
            f"Worker {region.rank} was given {placement.key!r} to write but holds only a "
            "placeholder of it. Assign it to the worker that holds it: "
            f"assign={{{placement.key.removesuffix('/.ATTRIBUTES/VARIABLE_VALUE')!r}: <worker>}}."
        )
    if isinstance(source, ShardedVariable):
        start, stop = source.rows
        if (start, stop) != (region.start, region.stop):
            raise RuntimeError(
                f"worker {region.rank} holds rows {source.rows} of {placement.key!r}, "
                f"but the plan gives it {region}"
            )
        return little_endian(source.local, placement.key)
    return little_endian(np.asarray(source), placement.key)


def _graph_json(program: ProgramGraph[Any]) -> dict[str, Any]:
    """Version 2's node form: values are named by key (the coordinator numbers them)."""
    document = CheckpointDocument(format_version=2, kind="object", graph=program.graph, values={})
    graph: dict[str, Any] = document.to_json()["graph"]
    return graph


def plan_for(root: Any, world_size: int, assign: Mapping[str, int] | None = None) -> SavePlan:
    """The plan a multi-worker save of ``root`` by ``world_size`` workers would follow.

    Examples
    --------
    >>> import ckptlab as ck
    >>> from ckptlab.distributed import plan
    >>> model = ck.Module()
    >>> model.a = ck.Variable(np.zeros((512, 1024), "float32"))
    >>> model.b = ck.Variable(np.zeros((256, 1024), "float32"))
    >>> plan(ck.Checkpoint(model=model), 2, assign={"model/b": 0}).bytes_per_worker()
    (1048576, 2097152)
    """
    _, entries, _ = collect(root, None)
    return plan_save(entries, world_size, assign)
