"""The coordinator's side of a multi-worker save: stage, merge manifests, commit once (internal)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ckptlab.core import (
    CRC_BLOCK,
    FORMAT_VERSION,
    ArrayInfo,
    CheckpointDocument,
    ValueTable,
    gc_paused,
    parse_document,
    parse_graph_nodes,
)
from ckptlab.distributed._plan import SavePlan, plan_save
from ckptlab.distributed._worker import PartManifest, SaveJob, WorkerFailure
from ckptlab.errors import CkptlabError
from ckptlab.storage import (
    WriteOptions,
    begin_staging,
    discard_staged,
    publish_staged,
    resolve,
    storage_options_for,
)


class WorkerError(CkptlabError, RuntimeError):
    """A multi-worker save failed because a worker raised, died or never reported.

    Nothing was committed: the checkpoint directory's latest checkpoint is unchanged.
    ``failures`` holds one :class:`WorkerFailure` per worker that did not deliver its part.
    """

    def __init__(self, message: str, failures: Sequence[WorkerFailure] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveStats:
    """Measurements of the last multi-worker save (see ``benchmarks/bench_distributed.py``)."""

    path: str
    world_size: int
    bytes_per_worker: tuple[int, ...]
    write_seconds: float
    """From the first worker starting to write (state built) to the last one finishing."""
    commit_seconds: float
    """Merging the manifests, writing the document and publishing."""
    sent_bytes: int
    """Pickled size of everything the engine sent to workers for this save."""
    received_bytes: int
    """Pickled size of everything it brought back (the manifests) for this save."""
    worker_seconds: tuple[float, ...] = ()
    """How long each worker spent writing its part."""
    workers: tuple[str, ...] = field(default_factory=tuple)


def begin(
    path: str,
    world_size: int,
    *,
    assign: Mapping[str, int] | None,
    counter: int | None,
    options: WriteOptions,
) -> SaveJob:
    """Stage the checkpoint ``path`` and describe the job every worker receives."""
    storage_options = (
        {**storage_options_for(path), **options.storage_options} if "://" in path else None
    )
    store, key = resolve(path, storage_options)
    assigned = dict(assign) if assign else None  # before staging: nothing may fail after it
    staged = begin_staging(store, key, durable=options.durable)
    return SaveJob(
        path=path,
        staged=staged,
        world_size=world_size,
        assign=assigned,
        counter=counter,
        durable=options.durable,
        storage_options=storage_options,
    )


def abort(job: SaveJob) -> None:
    """Remove whatever the workers wrote for ``job`` (nothing was committed)."""
    store, key = resolve(job.path, job.storage_options)
    discard_staged(store, job.staged, key)


def failure_message(job: SaveJob, failures: Sequence[WorkerFailure]) -> str:
    """One message naming every failed worker and its exception."""
    lines = [
        f"Multi-worker save of {job.path} failed; nothing was committed and the previous "
        f"checkpoint is still the latest. {len(failures)} of {job.world_size} workers did not "
        "deliver their part:"
    ]
    for failure in sorted(failures, key=lambda f: f.rank):
        lines.append(
            f"  worker {failure.rank} ({failure.worker}) {failure.reason}: {failure.error}"
        )
        if failure.traceback:
            tail = failure.traceback.strip().splitlines()[-6:]
            lines.extend(f"    | {line}" for line in tail)
    lines.append("Fix the cause and save again; re-running a worker's part is safe.")
    return "\n".join(lines)


@gc_paused()  # the merged columns and the document: many small objects, no cycles
def finish(
    job: SaveJob, outcomes: Sequence[PartManifest | WorkerFailure], writer: Mapping[str, Any]
) -> CheckpointDocument:
    """Merge the workers' manifests and commit once; on any failure discard the parts and raise."""
    try:
        failures = [o for o in outcomes if isinstance(o, WorkerFailure)]
        if failures:
            raise WorkerError(failure_message(job, failures), failures)
        manifests = sorted(
            (o for o in outcomes if isinstance(o, PartManifest)), key=lambda m: m.rank
        )
        document = merge(job, manifests, writer)
        store, key = resolve(job.path, job.storage_options)
        publish_staged(store, job.staged, key, document.to_json(), durable=job.durable)
    except BaseException:
        abort(job)
        raise
    return document


def merge(
    job: SaveJob, manifests: Sequence[PartManifest], writer: Mapping[str, Any]
) -> CheckpointDocument:
    """Build the checkpoint document from the manifests; every chunk must be reported once."""
    if [m.rank for m in manifests] != list(range(job.world_size)) or manifests[0].entries is None:
        raise CkptlabError(
            f"Expected one manifest per worker 0..{job.world_size - 1}, "
            f"got ranks {[m.rank for m in manifests]}."
        )
    plan = plan_save(manifests[0].entries, job.world_size, job.assign)
    differing = [m.rank for m in manifests if m.digest != plan.digest]
    if differing:
        raise WorkerError(  # every rank raises this (docs/distributed.md, "Faults")
            f"Saving {job.path}: workers {differing} planned a different save than worker 0 "
            "(their programs differ in keys, shapes, dtypes or partitions); nothing was "
            "committed. Every worker must build the same object graph: compare "
            f"ckptlab.distributed.plan(state, {job.world_size}).placements on the workers."
        )
    table = _value_table(plan, manifests)
    graph = parse_graph_nodes(manifests[0].graph, table, job.path)
    document = CheckpointDocument(
        format_version=FORMAT_VERSION,
        kind="object",
        graph=graph,
        values=table,
        writer=dict(writer),
        crc_block=CRC_BLOCK,
    )
    data = orjson.loads(orjson.dumps(document.to_json()))  # exactly what readers will parse
    return parse_document(data, job.path)


def _value_table(plan: SavePlan, manifests: Sequence[PartManifest]) -> ValueTable:
    """The document's value columns: packed values from the manifests, then own arrays."""
    arrays: list[ArrayInfo] = [
        ArrayInfo(path=path, dtype=dtype, length=length, chunk=chunk, shard=shard)
        for m in manifests
        for path, (dtype, length, chunk, shard) in sorted(m.packs.items())
    ]
    number = {info.path: i for i, info in enumerate(arrays)}
    keys, shapes, ids, offsets, crcs = [], [], [], [], []
    for placement in plan.placements:
        keys.append(placement.key)
        shapes.append(placement.shape)
        if placement.packed:
            offset, checksums = manifests[placement.regions[0].rank].packed[placement.key]
            ids.append(number[placement.array])
            offsets.append(offset)
            crcs.append(checksums)
            continue
        assert placement.chunks is not None
        found: dict[int, int] = {}
        for region in placement.regions:
            found.update(manifests[region.rank].chunks.get(placement.array, {}))
        count = -(-placement.shape[0] // placement.chunks[0]) if placement.shape else 1
        if math.prod(placement.shape) == 0:
            count = 0
        if sorted(found) != list(range(count)):
            raise CkptlabError(
                f"Chunks of {placement.key!r} are missing from the manifests: "
                f"have {sorted(found)}, need 0..{count - 1}."
            )
        ids.append(len(arrays))
        arrays.append(
            ArrayInfo(path=placement.array, dtype=placement.dtype, chunks=placement.chunks)
        )
        offsets.append(0)
        crcs.append(tuple(found[i] for i in range(count)))
    return ValueTable(
        keys=keys, shapes=shapes, array_ids=ids, offsets=offsets, crcs=crcs, arrays=tuple(arrays)
    )


def timed_finish(
    job: SaveJob, outcomes: Sequence[PartManifest | WorkerFailure], writer: Mapping[str, Any]
) -> tuple[CheckpointDocument, float]:
    """:func:`finish` and how long it took."""
    start = time.perf_counter()
    document = finish(job, outcomes, writer)
    return document, time.perf_counter() - start
