"""How long does ``save(blocking=False)`` block the training loop, against a blocking save?

Workload ``model``: a 12-layer d=512 transformer (attention, MLP, layer norms, positional
embedding) built from ``ck.Variable`` in ``ck.Module``s, with Adam slots: ~580 values, ~460 MB.
Target (issue 4): the non-blocking call returns in at most 20% of the blocking save's time.

    .venv/bin/python benchmarks/bench_async.py            # the model workload
    .venv/bin/python benchmarks/bench_async.py --quick    # a 4-layer d=256 model, one repeat

Prints medians and the ratio; exits non-zero when the ratio misses the target.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

import ckptlab as ck

TARGET = 0.20


def block(d: int, rng: np.random.Generator) -> ck.Module:
    """One transformer block: attention (q, k, v, o), a 4x MLP and two layer norms."""
    layer = ck.Module()

    def dense(shape: tuple[int, ...]) -> ck.Variable:
        return ck.Variable(rng.standard_normal(shape, dtype=np.float32) * 0.02)

    for name in ("query", "key", "value", "output"):
        sub = ck.Module()
        sub.kernel, sub.bias = dense((d, d)), ck.Variable(np.zeros(d, np.float32))
        setattr(layer, name, sub)
    layer.mlp_in = ck.Module()
    layer.mlp_in.kernel, layer.mlp_in.bias = (
        dense((d, 4 * d)),
        ck.Variable(np.zeros(4 * d, np.float32)),
    )
    layer.mlp_out = ck.Module()
    layer.mlp_out.kernel, layer.mlp_out.bias = (
        dense((4 * d, d)),
        ck.Variable(np.zeros(d, np.float32)),
    )
    for name in ("norm_1", "norm_2"):
        norm = ck.Module()
        norm.gamma, norm.beta = (
            ck.Variable(np.ones(d, np.float32)),
            ck.Variable(np.zeros(d, np.float32)),
        )
        setattr(layer, name, norm)
    return layer


def model_workload(layers: int, d: int) -> ck.Checkpoint:
    """The transformer and an Adam optimizer that has taken one step (so every slot exists)."""
    rng = np.random.default_rng(0)
    model = ck.Module()
    model.position = ck.Variable(rng.standard_normal((512, d), dtype=np.float32) * 0.02)
    model.blocks = [block(d, rng) for _ in range(layers)]
    model.final_norm = ck.Variable(np.ones(d, np.float32))
    params = [v for _, v in _variables(model)]
    optimizer = ck.optimizers.Adam(1e-4)
    optimizer.apply_gradients([(np.full(p.shape, 1e-3, np.float32), p) for p in params])
    return ck.Checkpoint(model=model, optimizer=optimizer)


def _variables(obj: object, prefix: str = "") -> list[tuple[str, ck.Variable]]:
    found = []
    for name, child in obj._ck_children():  # type: ignore[attr-defined]
        if isinstance(child, ck.Variable):
            found.append((prefix + name, child))
        else:
            found += _variables(child, f"{prefix}{name}/")
    return found


def measure(ckpt: ck.Checkpoint, directory: str, repeats: int) -> dict[str, float]:
    """Seconds: blocking saves, then non-blocking calls (the first allocates staging buffers)."""
    options = ck.WriteOptions(progress=False)  # durable, as by default
    blocking, calls, total = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ckpt.save(f"{directory}/ckpt", options=options)
        blocking.append(time.perf_counter() - start)
    for _ in range(repeats + 1):
        start = time.perf_counter()
        handle = ckpt.save(f"{directory}/ckpt", blocking=False, options=options)
        calls.append(time.perf_counter() - start)
        handle.result()
        total.append(time.perf_counter() - start)
    return {
        "blocking": statistics.median(blocking),
        "first_call": calls[0],
        "call": statistics.median(calls[1:]),
        "total": statistics.median(total[1:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 layers, d=256, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary dir)")
    args = parser.parse_args()
    layers, d, repeats = (4, 256, 1) if args.quick else (12, 512, args.repeats)
    ckpt = model_workload(layers, d)
    directory = tempfile.mkdtemp(dir=args.dir, prefix="bench_async-")
    try:
        probe = ckpt.write(f"{directory}/probe", options=ck.WriteOptions(progress=False))
        reader = ck.load_checkpoint(probe)
        dtypes = reader.get_variable_to_dtype_map()
        shapes = reader.get_variable_to_shape_map()
        size = sum(math.prod(shapes[k]) * np.dtype(dtypes[k]).itemsize for k in shapes)
        result = measure(ckpt, directory, repeats)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ratio = result["call"] / result["blocking"]
    rate = size / result["blocking"] / 1e9
    print(f"workload: {layers} layers, d={d}, {len(shapes)} values, {size / 1e6:.0f} MB")
    print(f"blocking save (durable)       {result['blocking']:.3f} s ({rate:.2f} GB/s)")
    print(f"save(blocking=False), first   {result['first_call']:.3f} s (allocates staging)")
    print(f"save(blocking=False), later   {result['call']:.3f} s")
    print(f"non-blocking end to end       {result['total']:.3f} s")
    print(f"first call / blocking         {result['first_call'] / result['blocking']:.3f}")
    print(f"ratio later call / blocking   {ratio:.3f} (target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
