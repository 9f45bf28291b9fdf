"""Framework programs: saving and restoring a ~450 MB Flax NNX model, against Orbax.

Targets (issue 14):

* saving and restoring the model through ``ck.Checkpoint`` at or below Orbax's
  ``StandardCheckpointer`` save and restore, measured in the same run;
* restore peak RSS at most the model's bytes + 64 MiB.

The model is a GPT-style stack built from a config (12 blocks of width 768, MLP 4x, a 32,000
token embedding: 110 M float32 parameters, 443 MiB), with real (random) weights.  Both libraries
restore the way their documentation recommends: into an abstract model from ``nnx.eval_shape``
(Orbax: ``checkpointer.restore(path, abstract_state)`` then ``nnx.update``).  ckptlab is also
timed restoring into a model that already holds arrays (they are replaced one value at a time).

Saves: ckptlab with ``durable=False`` (Orbax does not fsync either) and with its default
``durable=True``; Orbax's save includes ``wait_until_finished()``.  An untimed ``os.sync()``
runs before every save and every restore.  Timings are the fastest of interleaved rounds (the
machine is shared); peak RSS is measured in a fresh process per library, from ``VmHWM`` reset
through ``/proc/self/clear_refs`` just before the restore.

    .venv/bin/python benchmarks/bench_frameworks.py            # ~450 MB, 3 rounds (~3 minutes)
    .venv/bin/python benchmarks/bench_frameworks.py --quick    # a 30 MB model, 1 round
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

MiB = 2**20
SLACK = 64 * MiB


def model_config(quick: bool) -> dict[str, int]:
    if quick:
        return {"vocab": 4000, "width": 256, "blocks": 4}
    return {"vocab": 32000, "width": 768, "blocks": 12}


def build(config: dict[str, int], abstract: bool = False) -> Any:
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, width: int, rngs: nnx.Rngs) -> None:
            self.norm1 = nnx.LayerNorm(width, rngs=rngs)
            self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
            self.out = nnx.Linear(width, width, rngs=rngs)
            self.norm2 = nnx.LayerNorm(width, rngs=rngs)
            self.up = nnx.Linear(width, 4 * width, rngs=rngs)
            self.down = nnx.Linear(4 * width, width, rngs=rngs)

    class GPT(nnx.Module):
        def __init__(self, vocab: int, width: int, blocks: int, rngs: nnx.Rngs) -> None:
            self.embed = nnx.Embed(vocab, width, rngs=rngs)
            self.blocks = nnx.List([Block(width, rngs) for _ in range(blocks)])
            self.norm = nnx.LayerNorm(width, rngs=rngs)

    def make() -> Any:
        return GPT(**config, rngs=nnx.Rngs(0))

    return nnx.eval_shape(make) if abstract else make()


def model_bytes(model: Any) -> int:
    import jax
    from flax import nnx

    leaves = jax.tree.leaves(nnx.state(model))
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in leaves)


# -- the two libraries ----------------------------------------------------------------------------


def ckptlab_save(model: Any, path: str, durable: bool) -> None:
    import ckptlab as ck

    options = ck.WriteOptions(durable=durable, progress=False)
    ck.Checkpoint(model=model).write(path, options=options)


def ckptlab_restore(target: Any, path: str) -> Any:
    import ckptlab as ck
    from ckptlab.storage import ReadOptions

    ck.Checkpoint(model=target).read(path, options=ReadOptions(progress=False))
    return target


def orbax_save(model: Any, path: str) -> None:
    import orbax.checkpoint as ocp
    from flax import nnx

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, nnx.state(model))
    checkpointer.wait_until_finished()
    checkpointer.close()


def orbax_restore(target: Any, path: str) -> Any:
    import orbax.checkpoint as ocp
    from flax import nnx

    checkpointer = ocp.StandardCheckpointer()
    _, abstract_state = nnx.split(target)
    nnx.update(target, checkpointer.restore(path, abstract_state))
    checkpointer.close()
    return target


# -- measurements ---------------------------------------------------------------------------------


def timed(action: Any, *args: Any) -> float:
    os.sync()
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def check_equal(a: Any, b: Any) -> None:
    import jax
    import numpy as np
    from flax import nnx

    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b)), strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def timings(config: dict[str, int], root: str, rounds: int) -> dict[str, float]:
    model = build(config)
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for i in range(rounds):
        record("ckptlab save", timed(ckptlab_save, model, f"{root}/ck{i}", False))
        record("ckptlab save, durable", timed(ckptlab_save, model, f"{root}/ckd{i}", True))
        record("Orbax save", timed(orbax_save, model, f"{root}/orbax{i}"))
    concrete = build(config)  # a second model, holding arrays already
    for i in range(rounds):  # targets are built before the clock starts
        abstract = build(config, abstract=True)
        record(
            "ckptlab restore (abstract model)", timed(ckptlab_restore, abstract, f"{root}/ck{i}")
        )
        record(
            "ckptlab restore (model with arrays)", timed(ckptlab_restore, concrete, f"{root}/ck{i}")
        )
        abstract = build(config, abstract=True)
        record("Orbax restore (abstract model)", timed(orbax_restore, abstract, f"{root}/orbax{i}"))
    check_equal(ckptlab_restore(build(config, abstract=True), f"{root}/ck0"), model)
    check_equal(orbax_restore(build(config, abstract=True), f"{root}/orbax0"), model)
    return best


def peak_rss(method: str, config: dict[str, int], path: str) -> dict[str, float]:
    """One restore in a fresh process: its RSS before and its peak during the restore (MiB)."""
    command = [sys.executable, __file__, "--rss-child", method, json.dumps(config), path]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rss_child(method: str, config: dict[str, int], path: str) -> None:
    import gc

    concrete = method.endswith("arrays")
    target = build(config, abstract=not concrete)
    restore = orbax_restore if method.startswith("orbax") else ckptlab_restore
    if method.startswith("orbax"):  # import what the restore imports, outside the measurement
        import orbax.checkpoint  # noqa: F401
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:  # reset the peak (VmHWM) to the current RSS
        handle.write("5")
    before = _rss_mib("VmRSS")
    restore(target, path)
    peak = _rss_mib("VmHWM")
    print(json.dumps({"before": before, "peak": peak, "extra": peak - before}))


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 30 MB model, one round")
    parser.add_argument("--rounds", type=int, default=0, help="default: 3 (1 with --quick)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        method, config, path = args.rss_child
        rss_child(method, json.loads(config), path)
        return
    config = model_config(args.quick)
    rounds = args.rounds or (1 if args.quick else 3)
    size = model_bytes(build(config, abstract=True))
    print(f"model: {config}, {size / MiB:.0f} MiB of float32 parameters, {rounds} round(s)")
    root = tempfile.mkdtemp(prefix="bench_frameworks_")
    try:
        best = timings(config, root, rounds)
        rss = {
            method: peak_rss(method, config, f"{root}/{'orbax' if 'orbax' in method else 'ck'}0")
            for method in ("ckptlab abstract", "ckptlab arrays", "orbax abstract")
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(best, rss, size)


def report(best: dict[str, float], rss: dict[str, dict[str, float]], size: int) -> None:
    print("\n| measure | seconds | vs Orbax |")
    print("|---|---|---|")
    for name, seconds in best.items():
        peer = best["Orbax save" if "save" in name else "Orbax restore (abstract model)"]
        print(f"| {name} | {seconds:.3f} | {seconds / peer:.2f}x |")
    print("\n| restore peak RSS above the process before it | MiB | model + 64 MiB |")
    print("|---|---|---|")
    budget = (size + SLACK) / MiB
    for method, numbers in rss.items():
        print(f"| {method} | {numbers['extra']:.0f} | {budget:.0f} |")
    save_ok = best["ckptlab save"] <= best["Orbax save"]
    restore_ok = best["ckptlab restore (abstract model)"] <= best["Orbax restore (abstract model)"]
    rss_ok = rss["ckptlab abstract"]["extra"] <= budget
    print(
        f"\ntargets: save at or below Orbax {'met' if save_ok else 'MISSED'}; restore at or "
        f"below Orbax {'met' if restore_ok else 'MISSED'}; restore peak RSS <= model + 64 MiB "
        f"{'met' if rss_ok else 'MISSED'}"
    )
    sys.exit(0 if save_ok and restore_ok and rss_ok else 1)


if __name__ == "__main__":
    main()
