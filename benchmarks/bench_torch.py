"""PyTorch benchmark: saving and restoring a real torch model through ``ck.Checkpoint``.

``python benchmarks/bench_torch.py`` (``--quick`` for a smoke run, ``--markdown`` for the README
table).  The model is GPT-2 small built from its config by ``transformers`` (124M parameters,
~475 MiB in float32, tied embeddings), no download.  In one run, with the method order rotated
each round and medians reported:

* save: ``ck.Checkpoint(model=m).write`` (not durable, like its peers; durable is ckptlab's
  default and is reported too), ``torch.save(m.state_dict())``,
  ``safetensors.torch.save_model``;
* restore into the live model: ``ck.Checkpoint(model=m).read``,
  ``m.load_state_dict(torch.load(f, mmap=True, weights_only=True))``,
  ``safetensors.torch.load_model``;
* peak RSS above the built model during each restore, each in a fresh process.

Ratios are ckptlab's time over the best peer's (lower is better).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import ckptlab as ck

MiB = 2**20
NO_PROGRESS = ck.storage.ReadOptions(progress=False)
QUIET = ck.WriteOptions(progress=False, durable=False)


def build(quick: bool):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=256, n_head=4) if quick else GPT2Config()
    return GPT2LMHeadModel(config).eval()


def savers(model, directory: str) -> dict[str, Callable[[], None]]:
    import safetensors.torch
    import torch

    return {
        "ckptlab": lambda: ck.Checkpoint(model=model).write(
            os.path.join(directory, "ck"), options=QUIET
        ),
        "ckptlab durable": lambda: ck.Checkpoint(model=model).write(
            os.path.join(directory, "ckd"), options=ck.WriteOptions(progress=False)
        ),
        "torch.save": lambda: torch.save(model.state_dict(), os.path.join(directory, "m.pt")),
        "safetensors": lambda: safetensors.torch.save_model(
            model, os.path.join(directory, "m.safetensors")
        ),
    }


def restorers(model, directory: str) -> dict[str, Callable[[], None]]:
    import safetensors.torch
    import torch

    def from_torch() -> None:
        state = torch.load(os.path.join(directory, "m.pt"), mmap=True, weights_only=True)
        model.load_state_dict(state)

    return {
        "ckptlab": lambda: (
            ck.Checkpoint(model=model)
            .read(os.path.join(directory, "ck"), options=NO_PROGRESS)
            .assert_consumed()
            and None
        ),
        "torch.load(mmap)+load_state_dict": from_torch,
        "safetensors.load_model": lambda: (
            safetensors.torch.load_model(model, os.path.join(directory, "m.safetensors")) and None
        ),
    }


def rounds(methods: dict[str, Callable[[], None]], count: int) -> dict[str, float]:
    """Median seconds per method; each round starts with a different method."""
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    for index in range(count):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


PEAK_SCRIPT = """
import gc, sys
sys.path.insert(0, {bench!r})
import bench_torch as b
model = b.build({quick!r})
action = b.restorers(model, {directory!r})[{name!r}]
gc.collect()
def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS:")
action()
print(status("VmHWM:") - before)
"""


def peak_above_model(name: str, directory: str, quick: bool) -> int:
    """Bytes of peak RSS a restore adds above the built model, in a fresh process.

    Linux's peak-RSS counter is reset after the model is built (``/proc/self/clear_refs``), so
    the peak during the restore minus the RSS before it is what the restore needed on top.
    """
    script = PEAK_SCRIPT.format(
        bench=os.path.dirname(os.path.abspath(__file__)),
        quick=quick,
        directory=directory,
        name=name,
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    model = build(args.quick)
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    unique = sum(p.numel() * p.element_size() for p in model.parameters())
    directory = tempfile.mkdtemp(prefix="ckptlab-bench-torch-")
    try:
        load = os.getloadavg()[0]
        save = rounds(savers(model, directory), args.rounds)
        restore = rounds(restorers(model, directory), args.rounds)
        peaks = {name: peak_above_model(name, directory, args.quick) for name in restore}
    finally:
        shutil.rmtree(directory)
    best_save = min(v for k, v in save.items() if not k.startswith("ckptlab"))
    best_restore = min(v for k, v in restore.items() if k != "ckptlab")
    print(
        f"GPT-2{' (quick)' if args.quick else ''}: {unique / MiB:.0f} MiB of parameters "
        f"({nbytes / MiB:.0f} MiB in state_dict with the tied weight twice), "
        f"{args.rounds} rounds, load average {load:.1f}"
    )
    rows = [("save", name, t, t / best_save, None) for name, t in save.items()]
    rows += [("restore", name, t, t / best_restore, peaks[name]) for name, t in restore.items()]
    if args.markdown:
        print("| step | method | seconds | vs best peer | restore peak RSS above model |")
        print("|---|---|---|---|---|")
        for step, name, seconds, ratio, peak in rows:
            shown = "" if peak is None else f"{peak / MiB:.0f} MiB"
            print(f"| {step} | {name} | {seconds:.3f} | {ratio:.2f}x | {shown} |")
    else:
        for step, name, seconds, ratio, peak in rows:
            shown = "" if peak is None else f"  peak +{peak / MiB:.0f} MiB"
            print(f"{step:8s} {name:34s} {seconds:7.3f} s  {ratio:5.2f}x{shown}")


if __name__ == "__main__":
    main()
