"""Multi-worker saves from a real torch.distributed job: 2 processes, gloo, 127.0.0.1."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

import ckptlab as ck
from ckptlab import distributed as ckd

pytest.importorskip("torch")

JOB = pathlib.Path(__file__).with_name("torch_job.py")


def run_job(directory, world=2, exits=None, **extra_env):
    exits = exits or {}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        **extra_env,
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, str(JOB), str(directory)],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    reports = []
    for rank, process in enumerate(ranks):
        out, err = process.communicate(timeout=120)
        if rank in exits:
            assert process.returncode == exits[rank], err[-3000:]
            continue
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


@pytest.fixture(scope="module")
def job(tmp_path_factory, s3_server):
    directory = tmp_path_factory.mktemp("torch")
    url = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/torch/ckpt"
    reports = run_job(directory, S3_URL=url, S3_ENDPOINT=s3_server.endpoint)
    return directory, reports, url


def test_ranks_save_one_checkpoint_restorable_in_one_process(job):
    directory, reports, _ = job
    path = str(directory / "ckpt-1")
    assert [r["save"] for r in reports] == [{"ok": path}, {"ok": path}]
    assert [r["counter"] for r in reports] == [1, 1]
    model = ck.Module()
    model.layers = [ck.Variable(np.zeros((128, 256), "float32")) for _ in range(3)]
    model.scale = ck.Variable(np.float32(0))
    model.weight = ck.Variable(np.zeros((600, 256), "float32"))
    ck.Checkpoint(model=model).restore(path).assert_consumed()
    expected = np.arange(600 * 256, dtype="float32").reshape(600, 256)
    np.testing.assert_array_equal(model.weight.numpy(), expected)
    assert float(model.scale.numpy()) == 2.5
    np.testing.assert_array_equal(
        ckd.read_region(path, "model/weight", (250, 420)), expected[250:420]
    )


def test_collectives_carry_no_array_bytes(job):
    _, reports, _ = job
    assert reports[0]["traffic"] < 64 * 1024


def test_a_raising_rank_fails_the_save_on_every_rank(job):
    directory, reports, _ = job
    for report in reports:
        assert report["raise"]["failed"] == [1]
        assert "worker 1 (rank 1) raised: KeyError" in report["raise"]["error"]
    assert ck.latest_checkpoint(directory) == str(directory / "ckpt-1")


def test_a_hanging_rank_is_named_by_the_coordinator(job):
    directory, reports, _ = job
    assert reports[0]["hang"]["failed"] == [1]
    assert "worker 1 (rank 1) timeout" in reports[0]["hang"]["error"]
    assert "error" in reports[1]["hang"]
    assert ck.latest_checkpoint(directory) == str(directory / "ckpt-1")
    # the straggler may write its part after the abort: only into a hidden temporary sibling,
    # which the next save of that path removes
    visible = sorted(p for p in os.listdir(directory) if not p.startswith("."))
    assert visible == ["checkpoint", "ckpt-1"]


def test_ranks_write_to_an_object_store(job):
    _, reports, url = job
    assert [r["s3"] for r in reports] == [{"ok": url}, {"ok": url}]
    expected = np.arange(600 * 256, dtype="float32").reshape(600, 256)
    np.testing.assert_array_equal(ckd.read_region(url, "model/weight", (0, 600)), expected)


def test_a_rank_that_dies_is_named_and_nothing_is_committed(tmp_path):
    (report,) = run_job(tmp_path, exits={1: 5}, SCENARIO="die")
    assert report["die"]["failed"] == [1]
    assert "worker 1 (rank 1)" in report["die"]["error"]
    assert report["seconds"] < 30
    assert not [p for p in os.listdir(tmp_path) if not p.startswith(".")]


def test_a_failed_job_broadcast_releases_and_removes_the_staging_tree(tmp_path):
    """Rank 0 stages the save, then broadcasting the job fails (rank 1 has gone). The staging
    tree stayed flock-ed until rank 0 exited, so a later save of the path took it for a live
    writer's and never removed it; now the coordinator lets go of it and removes it."""
    started = time.monotonic()
    (report,) = run_job(tmp_path, exits={1: 7}, SCENARIO="unreachable")
    assert "error" in report["broadcast"]
    assert report["left"] == []
    assert time.monotonic() - started < 30
