"""Multi-worker saves: 2 local workers against 1, and the share of merge + commit.

Workload ``large``: 100 float32 values of 10 MiB (1 GiB).  Every worker builds the same
object graph (as an SPMD job would) and writes only the values the plan gives it.  By default a
worker holds only the values it writes (``Placeholder`` for the others, explicit assignment:
model parallelism); ``--replicated`` gives every worker every value (data parallelism, balanced
by bytes).

Times reported per configuration (median of ``--repeat`` rounds, after one warm-up round; the
configurations are interleaved within each round):

* ``save``: first worker starting to write -> checkpoint committed (process start-up and
  building the state excluded: workers build their state, then meet at a file barrier; for
  the single-process baseline: ``Checkpoint.write``);
* ``wall``: the whole ``ckptlab.distributed.write`` call (spawning workers, building the
  state in each, writing, committing);
* ``slowest``: the longest time one worker spent writing its part;
* ``commit``: merging the manifests, writing the document, publishing.

Run: ``.venv/bin/python benchmarks/bench_distributed.py [--repeat 3] [--no-durable]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

import ckptlab as ck
from ckptlab import distributed as ckd

VALUES, SHAPE = 100, (2560, 1024)  # 10 MiB of float32 each


def large(rank=0, workers=1, partitioned=False):
    """The workload; ``partitioned``: worker ``rank`` holds only values ``i % workers == rank``."""
    model = ck.Module()
    base = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    model.values = [
        ck.Variable(base + i)
        if not partitioned or i % workers == rank
        else ckd.Placeholder(SHAPE, np.float32)
        for i in range(VALUES)
    ]
    return ck.Checkpoint(model=model)


def owners(workers):
    return {f"model/values/{i}": i % workers for i in range(VALUES)}


def large_in_step(barrier, workers, partitioned, rank):
    """Build the state, then wait until every worker has built its own (a file barrier).

    Workers are spawned one after the other and build their state; without the barrier the
    measured write phase would include one worker's start-up while the other writes.
    """
    state = large(rank, workers, partitioned)
    open(os.path.join(barrier, f"ready-{rank}"), "w").close()
    while len([n for n in os.listdir(barrier) if n.startswith("ready-")]) < workers:
        time.sleep(0.005)
    return state


def single_process(directory, options):
    state = large()
    start = time.perf_counter()
    state.write(os.path.join(directory, "single"), options=options)
    seconds = time.perf_counter() - start
    return {
        "save": seconds,
        "wall": seconds,
        "commit": float("nan"),
        "moved": 0,
        "slowest worker": seconds,
    }


def engine_run(directory, workers, options, partitioned):
    engine = ckd.LocalEngine(workers)
    barrier = os.path.join(directory, "barrier")
    os.mkdir(barrier)
    state = functools.partial(large_in_step, barrier, workers, partitioned)
    assign = owners(workers) if partitioned else None
    start = time.perf_counter()
    target = os.path.join(directory, f"workers-{workers}")
    ckd.write(target, state, engine=engine, options=options, assign=assign)
    wall = time.perf_counter() - start
    stats = engine.last_stats
    return {
        "save": stats.write_seconds + stats.commit_seconds,
        "wall": wall,
        "commit": stats.commit_seconds,
        "moved": stats.sent_bytes + stats.received_bytes,
        "slowest worker": max(stats.worker_seconds),
    }


def median_of(runs):
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-durable", action="store_true", help="skip fsync (WriteOptions(durable=False))"
    )
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="every worker holds every value (data parallel); default: each holds only the "
        "values it writes (Placeholders for the others, explicit assignment)",
    )
    args = parser.parse_args()
    options = ck.WriteOptions(durable=not args.no_durable, progress=False)
    configs = {
        "1 process (Checkpoint.write)": lambda d: single_process(d, options),
        "1 worker (LocalEngine(1))": lambda d: engine_run(d, 1, options, not args.replicated),
        "2 workers (LocalEngine(2))": lambda d: engine_run(d, 2, options, not args.replicated),
    }
    runs = {name: [] for name in configs}
    for round_number in range(args.repeat + 1):  # round 0 warms up (memory, page cache): dropped
        for name, run in configs.items():  # interleaved, so drift hits every configuration
            directory = tempfile.mkdtemp(prefix="bench-distributed-", dir=args.dir)
            try:
                result = run(directory)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            if round_number:
                runs[name].append(result)
    results = {name: median_of(r) for name, r in runs.items()}
    report(results, options, args.repeat, args.dir or tempfile.gettempdir(), args.replicated)
    print(
        "save s of every run:",
        {name: [round(r["save"], 2) for r in rs] for name, rs in runs.items()},
    )


def report(results, options, repeat, where, replicated):
    gib = VALUES * SHAPE[0] * SHAPE[1] * 4 / 2**30
    print(f"workload large: {VALUES} float32 values of 10 MiB ({gib:.2f} GiB)")
    print(f"in {where}, durable={options.durable}, {os.cpu_count()} cores, median of {repeat} runs")
    held = "every value (replicated)" if replicated else "only the values it writes"
    print(f"each worker holds {held}")
    header = ("configuration", "save s", "GiB/s", "slowest", "wall s", "commit s", "moved B")
    print("{:34} {:>8} {:>7} {:>8} {:>8} {:>9} {:>9}".format(*header))
    for name, r in results.items():
        row = (
            name,
            r["save"],
            gib / r["save"],
            r["slowest worker"],
            r["wall"],
            r["commit"],
            r["moved"],
        )
        print("{:34} {:8.3f} {:7.2f} {:8.3f} {:8.3f} {:9.4f} {:9.0f}".format(*row))
    two = results["2 workers (LocalEngine(2))"]
    one = results["1 worker (LocalEngine(1))"]
    single = results["1 process (Checkpoint.write)"]
    lines = [
        (
            "speed-up, 2 workers vs 1 worker (save)",
            f"{one['save'] / two['save']:.2f}x (target 1.5x)",
        ),
        ("speed-up, 2 workers vs 1 process writing all", f"{single['save'] / two['save']:.2f}x"),
        ("speed-up, 2 workers vs 1 worker (wall)", f"{one['wall'] / two['wall']:.2f}x"),
        (
            "merge + commit share of the 2-worker save",
            f"{100 * two['commit'] / two['save']:.2f}% (target < 5%)",
        ),
    ]
    for label, value in lines:
        print(f"{label:46} {value}")


if __name__ == "__main__":
    main()
