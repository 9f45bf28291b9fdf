"""One rank of a torch.distributed (gloo) job that saves with ckptlab (run by test_torch.py).

Usage: RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python torch_job.py DIRECTORY
(optionally S3_URL=s3://bucket/prefix S3_ENDPOINT=http://127.0.0.1:port: also write there).
Prints one JSON line with what this rank observed.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

import ckptlab as ck
from ckptlab import distributed as ckd
from ckptlab.storage import set_storage_options

ROWS, COLS = 600, 256


def full_weight():
    return torch.arange(ROWS * COLS, dtype=torch.float32).reshape(ROWS, COLS)


def build(rank, world):
    """This rank's state: replicated layers, and its own rows of a sharded weight."""
    torch.manual_seed(0)
    model = ck.Module()
    model.layers = [ck.Variable(torch.randn(128, 256).numpy()) for _ in range(3)]
    model.scale = ck.Variable(np.float32(2.5))
    bounds = ckd.row_partition(ROWS, world, multiple=100)
    local = full_weight()[bounds[rank] : bounds[rank + 1]].numpy()
    model.weight = ckd.ShardedVariable(local, shape=(ROWS, COLS), partition=bounds, rank=rank)
    return ck.Checkpoint(model=model)


def attempt(report, name, call):
    try:
        report[name] = {"ok": call()}
    except ckd.WorkerError as error:
        report[name] = {"error": str(error), "failed": [f.rank for f in error.failures]}


def dying(report, prefix, ckpt, engine):
    """Rank 1's process exits in the middle of the save; rank 0 must name it and not commit."""

    def state(r):
        if r == 1:
            os._exit(5)
        return ckpt

    started = time.monotonic()
    attempt(report, "die", lambda: ckd.save(prefix, state, engine=engine, timeout=10))
    report["seconds"] = time.monotonic() - started
    print(json.dumps(report), flush=True)


def unreachable(report, directory, engine):
    """Rank 1 exits before the job's broadcast, so rank 0's fails after it staged the save."""
    if engine.rank == 1:
        os._exit(7)
    time.sleep(1)  # the gloo pairs see rank 1's sockets close
    try:
        ckd.write(os.path.join(directory, "ckpt-1"), ck.Checkpoint(), engine=engine)
    except Exception as error:  # torch's own error type (DistBackendError, RuntimeError)
        report["broadcast"] = {"error": type(error).__name__}
    report["left"] = sorted(os.listdir(directory))
    print(json.dumps(report), flush=True)


def main(directory):
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    engine = ckd.TorchEngine()
    ckpt = build(rank, world)
    prefix = os.path.join(directory, "ckpt")
    report = {"rank": rank}
    if os.environ.get("SCENARIO") == "die":
        dying(report, prefix, ckpt, engine)
        return
    if os.environ.get("SCENARIO") == "unreachable":
        unreachable(report, directory, engine)
        return
    attempt(report, "save", lambda: ckd.save(prefix, ckpt, engine=engine))
    report["counter"] = int(ckpt.save_counter.numpy())
    report["traffic"] = engine.sent_bytes + engine.received_bytes
    if os.environ.get("S3_URL"):
        bucket = "/".join(os.environ["S3_URL"].split("/")[:3])
        set_storage_options(
            bucket, endpoint_url=os.environ["S3_ENDPOINT"], key="testing", secret="testing"
        )
        attempt(report, "s3", lambda: ckd.write(os.environ["S3_URL"], ckpt, engine=engine))

    def raising(r):
        if r == 1:
            raise KeyError("rank 1 lost its optimizer state")
        return ckpt

    attempt(report, "raise", lambda: ckd.save(prefix, raising, engine=engine))

    def hanging(r):
        if r == 1:
            time.sleep(5)
        return ckpt

    attempt(report, "hang", lambda: ckd.save(prefix, hanging, engine=engine, timeout=2))
    print(json.dumps(report), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
