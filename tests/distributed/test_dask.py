"""Multi-worker saves on a real Dask LocalCluster (2 worker processes on 127.0.0.1)."""

from __future__ import annotations

import functools
import os
import pathlib
import time

import numpy as np
import psutil
import pytest

import ckptlab as ck
from ckptlab import distributed as ckd

from .conftest import pickle_by_value

pickle_by_value(__name__)

ROWS, COLS = 800, 512
BOUNDS = ckd.row_partition(ROWS, 2, multiple=100)
HANG = 15  # seconds the hung task sleeps: well past the 2 s timeout of the test below


def full_table():
    return np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)


def build(rank):
    """What each Dask worker holds: the same graph, its own rows of ``table``."""
    model = ck.Module()
    model.kernels = [ck.Variable(np.full((256, 512), i, "float32")) for i in range(4)]
    model.bias = ck.Variable(np.arange(3, dtype="float32"))
    start, stop = BOUNDS[rank], BOUNDS[rank + 1]
    model.table = ckd.ShardedVariable(
        full_table()[start:stop], shape=(ROWS, COLS), partition=BOUNDS, rank=rank
    )
    return ck.Checkpoint(model=model)


def raise_on_worker_1(rank):
    if rank == 1:
        raise RuntimeError("worker-side failure")
    return build(rank)


def hang_on_worker_1(rank, woke):
    if rank == 1:
        time.sleep(HANG)  # a Dask task cannot be interrupted: keep it short, run this test last
        pathlib.Path(woke).touch()
    return build(rank)


def restored_program(path):
    model = ck.Module()
    model.kernels = [ck.Variable(np.zeros((256, 512), "float32")) for _ in range(4)]
    model.bias = ck.Variable(np.zeros(3, "float32"))
    model.table = ck.Variable(np.zeros((ROWS, COLS)))
    ck.Checkpoint(model=model).restore(path).assert_existing_objects_matched()
    return model


def test_two_dask_workers_save_one_checkpoint(dask_client, tmp_path):
    engine = ckd.DaskEngine(dask_client)
    path = ckd.save(tmp_path / "ckpt", build, engine=engine)
    model = restored_program(path)
    np.testing.assert_array_equal(model.table.numpy(), full_table())
    assert [float(k.numpy()[0, 0]) for k in model.kernels] == [0, 1, 2, 3]
    stats = engine.last_stats
    assert len(set(stats.workers)) == 2  # two processes wrote, neither of them this one
    assert not any(w.endswith(f":{os.getpid()}") for w in stats.workers)
    assert engine.sent_bytes + engine.received_bytes < 64 * 1024
    assert ck.latest_checkpoint(tmp_path) == path


def _loopback_bytes() -> int:
    return psutil.net_io_counters(pernic=True)["lo"].bytes_sent


def test_no_array_bytes_cross_the_network(dask_client, tmp_path):
    """Measured where Dask's messages travel (127.0.0.1), not by what the engine reports."""
    held = 4 * 256 * 512 * 4 + 3 * 4 + ROWS * COLS * 8  # 5.2 MB the workers hold between them
    engine = ckd.DaskEngine(dask_client)
    ckd.save(tmp_path / "warm-up", build, engine=engine)  # imports and connections
    before = _loopback_bytes()
    ckd.save(tmp_path / "ckpt", build, engine=engine)
    moved = _loopback_bytes() - before
    assert moved < 256 * 1024, f"{moved} bytes crossed the loopback for a {held}-byte checkpoint"
    # The measurement sees arrays that do travel: the same table sent to a worker and back.
    before = _loopback_bytes()
    dask_client.gather(dask_client.scatter(full_table()))
    assert _loopback_bytes() - before > ROWS * COLS * 8


def test_states_already_held_by_the_workers(dask_client, tmp_path):
    engine = ckd.DaskEngine(dask_client)
    states = [
        dask_client.submit(build, rank, workers=[address], pure=False)
        for rank, address in enumerate(engine.addresses)
    ]
    path = ckd.save(tmp_path / "ckpt", states, engine=engine)
    np.testing.assert_array_equal(restored_program(path).table.numpy(), full_table())
    assert engine.sent_bytes + engine.received_bytes < 64 * 1024
    with pytest.raises(ValueError, match="would have to travel"):
        ckd.save(tmp_path / "ckpt", list(reversed(states)), engine=engine)
    assert ck.latest_checkpoint(tmp_path) == path


def test_a_raising_dask_worker_is_named(dask_client, tmp_path):
    first = ckd.save(tmp_path / "ckpt", build, engine=ckd.DaskEngine(dask_client))
    with pytest.raises(ckd.WorkerError, match="worker-side failure") as caught:
        ckd.save(tmp_path / "ckpt", raise_on_worker_1, engine=ckd.DaskEngine(dask_client))
    assert "worker 1 (tcp://127.0.0.1:" in str(caught.value)
    assert ck.latest_checkpoint(tmp_path) == first
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-1"]


def test_dask_workers_save_to_an_object_store(dask_client, s3_url):
    path = ckd.save(f"{s3_url}/dask/ckpt", build, engine=ckd.DaskEngine(dask_client))
    np.testing.assert_array_equal(restored_program(path).table.numpy(), full_table())


def test_a_silent_dask_worker_times_out(dask_client, tmp_path):
    """The error comes at the timeout, while the hung task still sleeps (it has not woken)."""
    woke = tmp_path / "woke"
    state = functools.partial(hang_on_worker_1, woke=str(woke))
    target = tmp_path / "c"
    with pytest.raises(ckd.WorkerError, match="worker 1 .* did not report within 2 s") as caught:
        ckd.write(target, state, engine=ckd.DaskEngine(dask_client), timeout=2)
    assert not woke.exists()
    assert {f.rank: f.reason for f in caught.value.failures}[1] == "timeout"
    assert not target.exists()


def die_on_worker_1(rank):
    if rank == 1:
        os._exit(3)
    return build(rank)


def test_a_dying_dask_worker_is_named(dask_client, tmp_path):
    engine = ckd.DaskEngine(dask_client)
    lost = engine.addresses[1]
    with pytest.raises(
        ckd.WorkerError, match="worker 1 .* died: the worker left the cluster"
    ) as caught:
        ckd.write(tmp_path / "c", die_on_worker_1, engine=engine, timeout=60)
    # noticed when the worker left (a "died" failure), not at the timeout
    assert {f.rank: f.reason for f in caught.value.failures}[1] == "died"
    assert os.listdir(tmp_path) == []
    dask_client.wait_for_workers(2, timeout=30)  # the nanny restarts it under a new address
    assert lost not in dask_client.scheduler_info(n_workers=-1)["workers"]
