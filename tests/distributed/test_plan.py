"""The multi-worker plan: balance, explicit assignment, chunk-aligned regions, one writer each."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptlab import distributed as ckd
from ckptlab.distributed._plan import ValueEntry, plan_save

MIB = 2**20


def entry(key, rows, cols=256, dtype="float32", partition=None):
    return ValueEntry(
        key=f"{key}/.ATTRIBUTES/VARIABLE_VALUE",
        shape=(rows, cols),
        dtype=dtype,
        partition=partition,
    )


def test_balances_by_bytes_largest_first():
    entries = [entry("a", 4096), entry("b", 3072), entry("c", 2048), entry("d", 1024)]
    plan = plan_save(entries, 2)
    assert plan.bytes_per_worker() == (5 * MIB, 5 * MIB)


def test_explicit_assignment_by_path_or_key_wins():
    entries = [entry("a", 4096), entry("b", 4096)]
    plan = plan_save(entries, 2, {"a": 1, "b/.ATTRIBUTES/VARIABLE_VALUE": 1})
    assert plan.bytes_per_worker() == (0, 8 * MIB)


def test_invalid_assignments_are_listed_together():
    with pytest.raises(ValueError, match=r"'nope' names no value; 'a' -> 5 is not a worker"):
        plan_save([entry("a", 8)], 2, {"nope": 0, "a": 5})


def test_unsharded_values_are_packed_per_worker_and_dtype():
    entries = [entry(f"s{i}", 1, 4) for i in range(6)] + [entry("big", 4096, dtype="int64")]
    plan = plan_save(entries, 3)
    arrays = {p.array for p in plan.placements}
    assert arrays == {"data/int64_w0", "data/float32_w1", "data/float32_w2"}  # big one first
    assert all(p.packed for p in plan.placements)


def test_sharded_regions_fall_on_chunk_boundaries():
    bounds = ckd.row_partition(100_000, 3, multiple=1000)
    plan = plan_save([entry("big", 100_000, 1024, partition=bounds)], 3)
    (placement,) = plan.placements
    rows = placement.chunks[0]
    assert all(b % rows == 0 for b in bounds[1:-1])
    assert rows * 1024 * 4 <= 64 * MIB
    assert [(r.rank, r.start, r.stop) for r in placement.regions] == [
        (0, bounds[0], bounds[1]),
        (1, bounds[1], bounds[2]),
        (2, bounds[2], bounds[3]),
    ]


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        ((0, 10), "expected 3 row boundaries"),
        ((0, 12, 10), "must not decrease"),
        ((0, 5, 9), "from 0 to 10"),
    ],
)
def test_bad_partitions_are_refused(partition, message):
    with pytest.raises(ValueError, match=message):
        plan_save([entry("x", 10, partition=partition)], 2)


def test_sharded_values_cannot_also_be_assigned():
    with pytest.raises(ValueError, match="remove it from assign"):
        plan_save([entry("x", 10, partition=(0, 5, 10))], 2, {"x": 0})


def test_digest_is_stable_and_sensitive():
    entries = [entry("a", 4096), entry("b", 100)]
    assert plan_save(entries, 2).digest == plan_save(list(reversed(entries)), 2).digest
    assert plan_save(entries, 2).digest != plan_save(entries, 3).digest


@st.composite
def workloads(draw):
    workers = draw(st.integers(1, 4))
    entries = []
    for index in range(draw(st.integers(1, 8))):
        rows = draw(st.integers(0, 3000))
        cols = draw(st.sampled_from([1, 7, 512]))
        partition = None
        if draw(st.booleans()):
            cuts = sorted(
                draw(st.lists(st.integers(0, rows), min_size=workers - 1, max_size=workers - 1))
            )
            partition = (0, *cuts, rows)
        entries.append(entry(f"v{index}", rows, cols, partition=partition))
    return entries, workers


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_every_chunk_has_exactly_one_writer(workload):
    entries, workers = workload
    plan = plan_save(entries, workers, chunk_bytes=64 * 1024)
    packs = {}
    for placement in plan.placements:
        if placement.packed:
            (region,) = placement.regions
            assert packs.setdefault(placement.array, region.rank) == region.rank
            continue
        per_chunk = placement.chunks[0]
        writers = {}
        for region in placement.regions:
            assert region.start % per_chunk == 0
            assert region.stop % per_chunk == 0 or region.stop == placement.shape[0]
            for index in range(region.start // per_chunk, math.ceil(region.stop / per_chunk)):
                assert index not in writers, (placement, region)
                writers[index] = region.rank
        assert sorted(writers) == list(range(math.ceil(placement.shape[0] / per_chunk)))
    assert sum(plan.bytes_per_worker()) == sum(e.nbytes for e in entries)
