"""The protocol without an engine: parts written in-process, merged, read back bit-exactly."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab import distributed as ckd
from ckptlab.distributed._coordinator import begin, finish
from ckptlab.distributed._worker import write_part

DTYPES = [
    "bool",
    "int8",
    "uint16",
    "int64",
    "float16",
    "float32",
    "float64",
    "complex64",
    ml_dtypes.bfloat16,
]


@st.composite
def programs(draw):
    """A world size and value specs: (dtype, shape, sharded?)."""
    workers = draw(st.integers(1, 3))
    specs = []
    for _ in range(draw(st.integers(1, 6))):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)))
        sharded = bool(shape) and draw(st.booleans())
        cuts = (
            sorted(
                draw(st.lists(st.integers(0, shape[0]), min_size=workers - 1, max_size=workers - 1))
            )
            if sharded
            else []
        )
        specs.append((dtype, shape, (0, *cuts, shape[0]) if sharded else None))
    return workers, specs, draw(st.integers(0, 2**32 - 1))


def full_values(specs, seed):
    rng = np.random.default_rng(seed)
    values = []
    for dtype, shape, _ in specs:
        raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
        values.append(raw.view(dtype).reshape(shape))
    return values


def worker_state(specs, values, rank):
    model = ck.Module()
    model.values = []
    for (_dtype, shape, partition), full in zip(specs, values, strict=True):
        if partition is None:
            model.values.append(ck.Variable(full.copy()))
        else:
            rows = slice(partition[rank], partition[rank + 1])
            model.values.append(
                ckd.ShardedVariable(full[rows], shape=shape, partition=partition, rank=rank)
            )
    return model


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(programs())
def test_parts_merge_into_a_bit_exact_checkpoint(tmp_path_factory, program):
    workers, specs, seed = program
    values = full_values(specs, seed)
    path = str(tmp_path_factory.mktemp("p") / "c")
    options = ck.WriteOptions(durable=False)
    job = begin(path, workers, assign=None, counter=None, options=options)
    manifests = [
        write_part(job, worker_state(specs, values, rank), rank) for rank in range(workers)
    ]
    finish(job, manifests, {})
    reader = ck.load_checkpoint(path)
    for index, full in enumerate(values):
        key = f"values/{index}/.ATTRIBUTES/VARIABLE_VALUE"
        stored = reader.get_tensor(key)
        assert stored.dtype == full.dtype and stored.shape == full.shape
        assert stored.tobytes() == full.tobytes()
        if full.ndim and full.shape[0]:
            middle = full.shape[0] // 2
            region = ckd.read_region(path, key, (middle, full.shape[0]))
            assert region.tobytes() == full[middle:].tobytes()
    assert ck.storage.verify_checkpoint(path) == []


def test_workers_with_different_programs_are_refused(tmp_path):
    job = begin(str(tmp_path / "c"), 2, assign=None, counter=None, options=ck.WriteOptions())
    first = write_part(job, ck.Checkpoint(w=ck.Variable(np.zeros(3))), 0)
    second = write_part(job, ck.Checkpoint(w=ck.Variable(np.zeros(4))), 1)
    refused = r"Saving .*c: workers \[1\] planned a different save.*distributed\.plan\("
    with pytest.raises(ckd.WorkerError, match=refused):  # as every other rank gets it
        finish(job, [first, second], {})
    assert list(tmp_path.iterdir()) == []
