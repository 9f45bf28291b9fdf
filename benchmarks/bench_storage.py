"""Storage benchmark: ckptlab against the formats people would otherwise pick, in one run.

``python benchmarks/bench_storage.py`` (add ``--quick`` for a smoke run, ``--markdown`` for the
README table, ``--json FILE`` to keep the numbers).  On the same arrays it times:

* ckptlab ``Checkpoint.write`` / ``Checkpoint.read`` through the whole API (variables in a
  Module, optimizer slots, graph matching), not durable, no progress bar;
* raw single-file I/O (``os.writev`` of every array, ``readinto`` preallocated arrays);
* ``np.savez`` (uncompressed) / ``np.load``; safetensors ``save_file`` / ``load_file``;
* ``torch.save`` / ``torch.load(weights_only=True)`` and TensorFlow's ``tf.train.Checkpoint``
  when importable (skipped otherwise).

Workloads (the issue's): ``small`` 10,000 float32 values of 1 KiB; ``model`` a 12-layer d=512
transformer with Adam slots (~580 values, ~470 MB); ``large`` 100 float32 values of 10 MiB.
Also: durable saves (ckptlab's default, fsync) against the peers followed by ``os.sync()``;
peak RSS during a restore, in a fresh process; opening and listing a 100,000-value checkpoint;
S3 requests for ``small`` against a local moto server.  Reported numbers are medians; loads are
warm (the file was just written).  Ratios are ckptlab's time over the peer's (lower is better).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ckptlab as ck
from ckptlab.storage import _layout

MiB = 2**20
PEERS = ("safetensors", "np.savez", "torch.save")
NO_PROGRESS = ck.storage.ReadOptions(progress=False)


# -- workloads ------------------------------------------------------------------------------------


def spec(workload: str, quick: bool) -> dict[str, Any]:
    """Sizes of a workload (quick: the same shapes, scaled down)."""
    if workload == "small":
        return {"count": 1_000 if quick else 10_000, "elements": 256}
    if workload == "model":
        return {
            "layers": 2 if quick else 12,
            "d": 128 if quick else 512,
            "vocab": 1_000 if quick else 2_000,
        }
    if workload == "large":
        return {"count": 10 if quick else 100, "rows": 256 if quick else 2_560, "cols": 1_024}
    raise ValueError(workload)


def fill(shape: tuple[int, ...], rng: np.random.Generator | None) -> np.ndarray:
    """Random float32 data, or touched memory with ``rng=None`` (a restore target)."""
    if rng is None:
        array = np.empty(shape, np.float32)
        array.fill(1.0)
        return array
    return rng.standard_normal(shape, dtype=np.float32)


def transformer_shapes(layers: int, d: int, vocab: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"embed/tokens": (vocab, d), "embed/positions": (d, d)}
    for i in range(layers):
        block = f"blocks/{i}"
        for name in ("q", "k", "v", "o"):
            shapes[f"{block}/attn/{name}/kernel"] = (d, d)
            shapes[f"{block}/attn/{name}/bias"] = (d,)
        for norm in ("ln1", "ln2"):
            shapes[f"{block}/{norm}/gamma"] = (d,)
            shapes[f"{block}/{norm}/beta"] = (d,)
        shapes[f"{block}/ffn/up/kernel"] = (d, 4 * d)
        shapes[f"{block}/ffn/up/bias"] = (4 * d,)
        shapes[f"{block}/ffn/down/kernel"] = (4 * d, d)
        shapes[f"{block}/ffn/down/bias"] = (d,)
    shapes["final/gamma"] = (d,)
    shapes["final/beta"] = (d,)
    return shapes


def build_program(workload: str, quick: bool, rng: np.random.Generator | None) -> ck.Checkpoint:
    """The ckptlab program holding a workload (random values, or a restore target)."""
    sizes = spec(workload, quick)
    model = ck.Module()
    if workload == "small":
        model.values = [ck.Variable(fill((sizes["elements"],), rng)) for _ in range(sizes["count"])]
        return ck.Checkpoint(model=model)
    if workload == "large":
        shape = (sizes["rows"], sizes["cols"])
        model.weights = [ck.Variable(fill(shape, rng)) for _ in range(sizes["count"])]
        return ck.Checkpoint(model=model)
    variables = []
    for path, shape in transformer_shapes(sizes["layers"], sizes["d"], sizes["vocab"]).items():
        parent = model
        *parents, leaf = path.split("/")
        for name in parents:
            child = getattr(parent, name, None)
            if child is None:
                child = ck.Module()
                setattr(parent, name, child)
            parent = child
        variable = ck.Variable(fill(shape, rng))
        setattr(parent, leaf, variable)
        variables.append(variable)
    optimizer = ck.optimizers.Adam(1e-3)
    if rng is not None:  # one step creates the m and v slots; a restore target gets them restored
        optimizer.apply_gradients([(fill(v.shape, rng), v) for v in variables])
    return ck.Checkpoint(model=model, optimizer=optimizer)


def arrays_of(path: str) -> dict[str, np.ndarray]:
    reader = ck.load_checkpoint(path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


# -- methods --------------------------------------------------------------------------------------

Saver = Callable[[str], None]
Loader = Callable[[str], Any]


class Raw:
    """The floor: every array's bytes in one file, read back into preallocated arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.layout: list[tuple[str, int, tuple[int, ...], np.dtype]] = []

    def save(self, path: str, durable: bool = False) -> None:
        self.layout.clear()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            offset = 0
            views = []
            for key, array in self.arrays.items():
                self.layout.append((key, offset, array.shape, array.dtype))
                views.append(memoryview(np.ascontiguousarray(array)).cast("B"))
                offset += array.nbytes
            for start in range(0, len(views), 1024):
                os.writev(fd, views[start : start + 1024])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def load(self, path: str) -> dict[str, np.ndarray]:
        out = {}
        with open(path, "rb", buffering=0) as handle:
            for key, offset, shape, dtype in self.layout:
                array = np.empty(shape, dtype)
                handle.seek(offset)
                handle.readinto(memoryview(array).cast("B"))
                out[key] = array
        return out


class Restore:
    """ckptlab's loader: ``prepare()`` (untimed) builds the program to restore into."""

    def __init__(self, workload: str, quick: bool) -> None:
        self.workload, self.quick = workload, quick
        self.target: ck.Checkpoint | None = None

    def prepare(self) -> None:
        self.target = None
        gc.collect()
        self.target = build_program(self.workload, self.quick, None)

    def __call__(self, path: str) -> Any:
        if self.target is None:
            self.prepare()
        assert self.target is not None
        status = self.target.read(path, options=NO_PROGRESS).expect_partial()
        self.target = None
        return status


def methods(
    arrays: dict[str, np.ndarray], program: ck.Checkpoint, workload: str, quick: bool
) -> dict[str, tuple[Saver, Loader]]:
    quiet = ck.WriteOptions(durable=False, progress=False)

    ck_load = Restore(workload, quick)
    raw = Raw(arrays)
    table: dict[str, tuple[Saver, Loader]] = {
        "ckptlab": (lambda p: program.write(p, options=quiet) and None, ck_load),
        "raw file": (raw.save, raw.load),
        "np.savez": (lambda p: np.savez(p + ".npz", **arrays), lambda p: _npz_load(p + ".npz")),
    }
    try:
        import safetensors.numpy as st

        table["safetensors"] = (lambda p: st.save_file(arrays, p), st.load_file)
    except ImportError:
        pass
    try:
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        table["torch.save"] = (
            lambda p: torch.save(tensors, p),
            lambda p: torch.load(p, weights_only=True),
        )
    except ImportError:
        pass
    try:
        import tensorflow as tf  # noqa: F401  (not installed on the benchmark machine)

        table["tf.train.Checkpoint"] = _tf_methods(arrays)
    except ImportError:
        pass
    return table


def _npz_load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _tf_methods(arrays: dict[str, np.ndarray]) -> tuple[Saver, Loader]:
    import tensorflow as tf

    module = tf.Module()
    module.values = [tf.Variable(v) for v in arrays.values()]
    checkpoint = tf.train.Checkpoint(module=module)

    def load(path: str) -> None:
        checkpoint.read(path).expect_partial()

    return (lambda p: checkpoint.write(p) and None), load


# -- timing ---------------------------------------------------------------------------------------


def durable_table(
    table: dict[str, tuple[Saver, Loader]], program: ck.Checkpoint
) -> dict[str, tuple[Saver, Loader]]:
    """ckptlab with its default durability (fsync); every peer followed by ``os.sync()``."""

    def synced(save: Saver) -> Saver:
        def run(path: str) -> None:
            save(path)
            os.sync()

        return run

    durable = {name: (synced(save), load) for name, (save, load) in table.items()}
    durable["ckptlab"] = (
        lambda p: program.write(p, options=ck.WriteOptions(progress=False)) and None,
        table["ckptlab"][1],
    )
    return durable


def time_methods(
    table: dict[str, tuple[Saver, Loader]], repeats: int, root: str, durable: bool
) -> dict[str, dict[str, float]]:
    """Median save (and, unless ``durable``, load) seconds of each method, interleaved."""
    kinds = ("save", "load", "save_cpu", "load_cpu")
    times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in kinds} for name in table}
    names = list(table)
    for repeat in range(repeats):
        # Rotate who goes first: the first writer of a round meets the most dirty page cache.
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            save, load = table[name]
            directory = os.path.join(root, f"{name.replace(' ', '_')}-{repeat}")
            os.makedirs(directory)
            path = os.path.join(directory, "ckpt")
            gc.collect()
            os.sync()  # untimed: no write-back of an earlier save throttles this one
            start, cpu = time.perf_counter(), time.process_time()
            save(path)
            times[name]["save"].append(time.perf_counter() - start)
            times[name]["save_cpu"].append(time.process_time() - cpu)
            if not durable:
                os.sync()  # untimed: the kernel is not still writing the save back during the load
                prepare = getattr(load, "prepare", None)
                if prepare is not None:
                    prepare()
                gc.collect()
                start, cpu = time.perf_counter(), time.process_time()
                loaded = load(path)
                times[name]["load"].append(time.perf_counter() - start)
                times[name]["load_cpu"].append(time.process_time() - cpu)
                del loaded
            shutil.rmtree(directory)
    return {
        name: {kind: statistics.median(values) for kind, values in entry.items() if values}
        for name, entry in times.items()
    }


def peak_restore_rss(method: str, workload: str, quick: bool, path: str) -> dict[str, float]:
    """Run one restore in a fresh process; return its baseline and peak RSS (MiB)."""
    command = [sys.executable, __file__, "--rss-child", method, workload, path]
    if quick:
        command.append("--quick")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def rss_child(method: str, workload: str, path: str, quick: bool) -> None:
    import psutil

    process = psutil.Process()
    if method == "ckptlab":
        target = build_program(workload, quick, None)  # the program's own variables
    elif method == "safetensors":
        import safetensors.numpy as st
    elif method == "torch.save":
        import torch
    gc.collect()
    baseline = process.memory_info().rss / MiB
    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak (VmHWM) to the current RSS
        handle.write("5")
    before = _peak_mib()
    loaded: Any = None
    if method == "ckptlab":
        loaded = target.read(path, options=NO_PROGRESS).expect_partial()
    elif method == "safetensors":
        loaded = st.load_file(path)
    elif method == "torch.save":
        loaded = torch.load(path, weights_only=True)
    elif method == "np.savez":
        loaded = _npz_load(path)
    peak = _peak_mib()
    print(
        json.dumps({"baseline": baseline, "before": before, "peak": peak, "extra": peak - baseline})
    )
    del loaded


def _peak_mib() -> float:
    """The process's peak RSS (VmHWM) in MiB; ``ru_maxrss`` would include the parent's at fork."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the other measurements -----------------------------------------------------------------------


def open_and_list(root: str, count: int, repeats: int) -> dict[str, float]:
    model = ck.Module()
    model.values = [ck.Variable(np.float32(i)) for i in range(count)]
    path = ck.Checkpoint(model=model).write(
        os.path.join(root, "many"), options=ck.WriteOptions(durable=False, progress=False)
    )
    listing, opening = [], []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        names = ck.list_variables(path)
        listing.append(time.perf_counter() - start)
        start = time.perf_counter()
        ck.load_checkpoint(path)
        opening.append(time.perf_counter() - start)
    assert len(names) == count
    return {
        "values": count,
        "list": statistics.median(listing),
        "open_with_graph": statistics.median(opening),
        "document_mb": os.path.getsize(os.path.join(path, "zarr.json")) / 1e6,
    }


def s3_requests(quick: bool) -> dict[str, Any]:
    try:
        from ckptlab.testing import LocalS3Server
    except ImportError:
        return {}
    program = build_program("small", quick, np.random.default_rng(0))
    with LocalS3Server() as server:
        ck.storage.set_storage_options(f"s3://{server.bucket}", **server.storage_options)
        server.reset()
        start = time.perf_counter()
        program.save(f"s3://{server.bucket}/run/ckpt", options=ck.WriteOptions(progress=False))
        save = {
            "requests": server.total,
            "seconds": time.perf_counter() - start,
            "by_method": dict(server.requests),
        }
        server.reset()
        start = time.perf_counter()
        target = build_program("small", quick, None)
        target.restore(ck.latest_checkpoint(f"s3://{server.bucket}/run")).assert_consumed()
        restore = {
            "requests": server.total,
            "seconds": time.perf_counter() - start,
            "by_method": dict(server.requests),
        }
    return {"save": save, "restore": restore}


# -- reporting ------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(results: dict[str, Any], markdown: bool) -> list[tuple[str, bool | None, str]]:
    targets: list[tuple[str, bool | None, str]] = []
    for workload, data in results["workloads"].items():
        times = data["times"]
        ours = times["ckptlab"]
        print(f"\n## {workload}: {data['values']} values, {data['bytes'] / MiB:.0f} MiB")
        print(
            "| method | save s | load s | ckptlab/method save | ckptlab/method load "
            "| save CPU s | load CPU s | ckptlab/method CPU save | ckptlab/method CPU load |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, entry in times.items():
            print(
                f"| {name} | {entry['save']:.3f} | {entry['load']:.3f} | "
                f"{ratio(ours['save'], entry['save'])} | {ratio(ours['load'], entry['load'])} | "
                f"{entry['save_cpu']:.3f} | {entry['load_cpu']:.3f} | "
                f"{ratio(ours['save_cpu'], entry['save_cpu'])} | "
                f"{ratio(ours['load_cpu'], entry['load_cpu'])} |"
            )
        peers = {name: times[name] for name in PEERS if name in times}
        for kind in ("save", "load"):
            best = min(peers.items(), key=lambda item: item[1][kind])
            value = ours[kind] / best[1][kind]
            cpu = ours[f"{kind}_cpu"] / best[1][f"{kind}_cpu"]
            targets.append(
                (
                    f"{workload} {kind} within 1.25x of the fastest peer ({best[0]})",
                    value <= 1.25,
                    f"{value:.2f}x wall ({cpu:.2f}x CPU)",
                )
            )
        if workload == "large":
            for kind in ("save", "load"):
                value = ours[kind] / times["raw file"][kind]
                cpu = ours[f"{kind}_cpu"] / times["raw file"][f"{kind}_cpu"]
                shown = f"{value:.2f}x wall ({cpu:.2f}x CPU)"
                targets.append((f"large {kind} within 1.5x of raw file I/O", value <= 1.5, shown))
        durable = data.get("durable")
        if durable:
            print("\ndurable saves (ckptlab fsyncs; peers: save + os.sync())")
            print("| method | save s | ckptlab/method |")
            print("|---|---|---|")
            for name, entry in durable.items():
                versus = ratio(durable["ckptlab"]["save"], entry["save"])
                print(f"| {name} | {entry['save']:.3f} | {versus} |")
        rss = data.get("rss")
        if rss:
            print("\npeak RSS during restore, above the process before the restore (MiB)")
            for name, entry in rss.items():
                print(f"  {name}: {entry['extra']:.0f}")
            limit = data["bytes"] / MiB + 64
            targets.append(
                (
                    f"{workload} restore peak RSS <= checkpoint bytes + 64 MiB ({limit:.0f} MiB)",
                    rss["ckptlab"]["extra"] <= limit,
                    f"{rss['ckptlab']['extra']:.0f} MiB",
                )
            )
    if "tf.train.Checkpoint" not in next(iter(results["workloads"].values()))["times"]:
        targets.append(
            (
                "10x faster than tf.train.Checkpoint on small, 2x on model",
                None,
                "TensorFlow not installed",
            )
        )
    listing = results.get("listing")
    if listing:
        print(
            f"\nopen + list a {listing['values']:,}-value checkpoint: {listing['list']:.3f} s "
            f"(full open with the object graph {listing['open_with_graph']:.3f} s; "
            f"document {listing['document_mb']:.1f} MB)"
        )
        targets.append(
            (
                f"open + list {listing['values']:,} values under 0.5 s",
                listing["list"] < 0.5,
                f"{listing['list']:.3f} s",
            )
        )
    s3 = results.get("s3")
    if s3:
        print(
            f"\nS3 (moto on 127.0.0.1), small: save {s3['save']['requests']} requests "
            f"{s3['save']['by_method']}, restore {s3['restore']['requests']} requests"
        )
        targets.append(
            (
                "small saved to S3 in <= 30 requests",
                s3["save"]["requests"] <= 30,
                str(s3["save"]["requests"]),
            )
        )
    print("\n## targets")
    for name, met, value in targets:
        mark = "n/a" if met is None else ("met" if met else "MISSED")
        print(f"- {mark}: {name}: {value}")
    if markdown:
        print("\n" + readme_table(results, targets))
    return targets


def readme_table(results: dict[str, Any], targets: list[tuple[str, bool | None, str]]) -> str:
    lines = [
        "| workload | ckptlab save s | ckptlab restore s | safetensors save / load s "
        "| np.savez save / load s | torch.save save / load s | raw file save / load s |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, data in results["workloads"].items():
        t = data["times"]

        pairs = [
            f"{t[name]['save']:.3f} / {t[name]['load']:.3f}" if name in t else "n/a"
            for name in ("safetensors", "np.savez", "torch.save", "raw file")
        ]
        size = f"{data['bytes'] / MiB:.0f} MiB, {data['values']:,} values"
        ours = f"{t['ckptlab']['save']:.3f} | {t['ckptlab']['load']:.3f}"
        lines.append(f"| {workload} ({size}) | {ours} | {' | '.join(pairs)} |")
    lines.append("")
    lines += [
        f"- {'n/a' if met is None else ('met' if met else 'missed')}: {name}: {value}"
        for name, met, value in targets
    ]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------


def keep_freed_memory() -> None:
    """Make malloc keep freed memory (as a long-running training process's heap does).

    Without this, whichever method first touches memory the kernel has not handed out before
    pays for the page faults (measured here at ~9 us per 4 KiB page: 2.4 s per GiB), and the
    order of methods decides the ranking.  Arrays up to 32 MiB then come from the heap and are
    reused; nothing is returned to the kernel while the benchmark runs.
    """
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * MiB)
    libc.mallopt(m_trim_threshold, 2**31 - 1)  # an int: the largest threshold malloc takes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny workloads, one repeat (smoke run)"
    )
    parser.add_argument("--workloads", default="small,model,large")
    parser.add_argument("--repeats", type=int, default=0, help="default: 5 (small), 3 (others)")
    parser.add_argument("--no-durable", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument(
        "--sweep", action="store_true", help="ckptlab only: try thresholds and chunk sizes"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the README table")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--rss-child", nargs=3, metavar=("METHOD", "WORKLOAD", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child, quick=args.quick)
        return
    keep_freed_memory()
    if args.sweep:
        sweep(args.quick)
        return
    root = tempfile.mkdtemp(prefix="ckptlab-bench-")
    results: dict[str, Any] = {
        "workloads": {},
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
    }
    try:
        for workload in args.workloads.split(","):
            repeats = args.repeats or (1 if args.quick else (5 if workload == "small" else 3))
            program = build_program(workload, args.quick, np.random.default_rng(0))
            path = program.write(
                os.path.join(root, "source"), options=ck.WriteOptions(durable=False, progress=False)
            )
            arrays = arrays_of(path)
            shutil.rmtree(path)
            table = methods(arrays, program, workload, args.quick)
            entry: dict[str, Any] = {
                "values": len(arrays),
                "bytes": sum(a.nbytes for a in arrays.values()),
            }
            print(
                f"{workload}: {entry['values']} values, {entry['bytes'] / MiB:.0f} MiB, "
                f"{repeats} repeats",
                file=sys.stderr,
            )
            entry["times"] = time_methods(table, repeats, root, durable=False)
            if not args.no_durable:
                entry["durable"] = time_methods(
                    durable_table(table, program), max(1, repeats // 2 + 1), root, durable=True
                )
            if not args.no_rss:
                entry["rss"] = {}
                for name in ("ckptlab", *[p for p in PEERS if p in table]):
                    target = os.path.join(root, "rss")
                    os.makedirs(target)
                    table[name][0](os.path.join(target, "ckpt"))
                    file = os.path.join(target, "ckpt") + (".npz" if name == "np.savez" else "")
                    entry["rss"][name] = peak_restore_rss(name, workload, args.quick, file)
                    shutil.rmtree(target)
            results["workloads"][workload] = entry
            del program, arrays, table
            gc.collect()
        results["listing"] = open_and_list(
            root, 10_000 if args.quick else 100_000, 3 if args.quick else 5
        )
        if not args.no_s3:
            results["s3"] = s3_requests(args.quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["targets"] = report(results, args.markdown)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)


def sweep(quick: bool) -> None:
    """ckptlab save/load medians (wall and CPU) for several thresholds and chunk sizes.

    The pack threshold matters for ``model`` (its values are 2 KiB to 4 MiB); the chunk size
    for ``large`` (10 MiB values; chunks below that split them).
    """
    root = tempfile.mkdtemp(prefix="ckptlab-sweep-")
    settings = [("model", t * 1024, _layout.CHUNK_BYTES) for t in (64, 256, 1024, 4096)]
    settings += [("large", _layout.PACK_THRESHOLD, c * MiB) for c in (1, 4, 16, 64)]
    default_chunk = _layout.CHUNK_BYTES
    try:
        for workload, threshold, chunk in settings:
            program = build_program(workload, quick, np.random.default_rng(0))
            _layout.CHUNK_BYTES = chunk
            options = ck.WriteOptions(durable=False, progress=False, pack_threshold=threshold)
            table: dict[str, tuple[Saver, Loader]] = {
                "ckptlab": (
                    lambda p, o=options, c=program: c.write(p, options=o) and None,
                    Restore(workload, quick),
                )
            }
            t = time_methods(table, 1 if quick else 5, root, durable=False)["ckptlab"]
            print(
                f"{workload} pack_threshold={threshold // 1024} KiB chunk={chunk // MiB} MiB: "
                f"save {t['save']:.3f} s ({t['save_cpu']:.3f} CPU) "
                f"load {t['load']:.3f} s ({t['load_cpu']:.3f} CPU)",
                flush=True,
            )
            del program
    finally:
        _layout.CHUNK_BYTES = default_chunk
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
