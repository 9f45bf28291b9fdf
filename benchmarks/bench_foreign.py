"""Foreign checkpoints: listing a 5,400-key TensorFlow index, and reading a 1 GiB data file.

Targets (issue 9):

* ``ck.list_variables`` on ``tf1_many_keys`` (5,400 keys, a 271 KB index with two data blocks)
  takes under 0.5 s;
* reading every tensor of a 1 GiB TensorFlow data file (``ck.load_checkpoint(...).get_tensor``,
  every masked crc32c verified) runs at 80% or more of raw single-file read throughput
  (``readinto`` of the whole file into a fresh numpy buffer), both from a warm page cache.

The 1 GiB bundle is written by ckptlab's own minimal TensorBundle writer (which reproduces
TensorFlow's ``tf1_many_keys`` index byte for byte); TensorFlow is not needed.

    .venv/bin/python benchmarks/bench_foreign.py            # 1 GiB
    .venv/bin/python benchmarks/bench_foreign.py --quick    # 128 MiB, fewer repeats

Listing prints the median; reading prints the fastest of interleaved runs (other processes
share the machine) and the ratio; exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import ckptlab as ck
from ckptlab.storage._foreign._bundle_writer import write_bundle

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "foreign"
LIST_TARGET = 0.5
READ_TARGET = 0.80


def timed(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_seconds(function: Any, repeats: int) -> float:
    return statistics.median(timed(function) for _ in range(repeats))


def best_seconds(functions: list[Any], repeats: int) -> list[float]:
    """Fastest of ``repeats`` interleaved runs of each function (robust on a shared machine)."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            times[index].append(timed(function))
    return [min(t) for t in times]


def bench_listing(repeats: int) -> bool:
    prefix = FIXTURES / "tf1_many_keys" / "model.ckpt"
    if not prefix.with_suffix(".ckpt.index").exists():
        print(f"listing: skipped, fixture not found at {prefix}")
        return True
    count = len(ck.list_variables(prefix))
    seconds = median_seconds(lambda: ck.list_variables(prefix), repeats)
    print(f"list_variables, {count} keys: {seconds * 1000:.1f} ms (target < {LIST_TARGET} s)")
    return seconds < LIST_TARGET


def raw_read(path: Path) -> None:
    buffer = np.empty(path.stat().st_size, dtype=np.uint8)
    with open(path, "rb", buffering=0) as handle:
        handle.readinto(memoryview(buffer))


def ckptlab_read(prefix: str) -> None:
    reader = ck.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)


def bench_read(total_mib: int, repeats: int) -> bool:
    directory = Path(tempfile.mkdtemp(prefix="ckptlab-bench-foreign-"))
    try:
        prefix = str(directory / "model.ckpt")
        rows = total_mib * 2**20 // (4 * 4096)
        rng = np.random.default_rng(0)
        tensors = {
            f"layer_{i}/kernel": rng.standard_normal((rows // 4, 4096), dtype=np.float32)
            for i in range(4)
        }
        write_bundle(prefix, tensors)
        del tensors
        data = directory / "model.ckpt.data-00000-of-00001"
        size = data.stat().st_size
        raw_read(data)  # warm the page cache
        ckptlab_read(prefix)
        raw, ours = best_seconds([lambda: raw_read(data), lambda: ckptlab_read(prefix)], repeats)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    gib = size / 2**30
    ratio = raw / ours
    print(f"raw read of {gib:.2f} GiB: {raw:.3f} s ({gib / raw:.2f} GiB/s)")
    print(f"ckptlab read + verify: {ours:.3f} s ({gib / ours:.2f} GiB/s)")
    print(f"throughput ratio ckptlab/raw: {ratio:.2f} (target >= {READ_TARGET})")
    return ratio >= READ_TARGET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB and fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    listing = bench_listing(repeats)
    reading = bench_read(128 if args.quick else 1024, repeats)
    return 0 if listing and reading else 1


if __name__ == "__main__":
    sys.exit(main())
