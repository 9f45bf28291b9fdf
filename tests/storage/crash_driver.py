"""Crash driver for tests/storage/test_crash.py (run as a script, not collected by pytest).

``python crash_driver.py DIRECTORY MODE TRIALS SEED``.  For each trial it forks a child that
saves in a loop (``MODE`` ``save``: ``Checkpoint.save`` into DIRECTORY with the state file;
``write``: ``Checkpoint.write`` over one fixed path) and reports each finished save (its step
and duration) on a pipe.  After the child's first save the driver kills it with SIGKILL at a
random moment within the next save or two (scaled by the measured duration, so the kills land
inside saves however loaded the machine is), reads what the child reported before it died,
then checks, in this process, what a fresh reader finds and prints one JSON line: the latest
checkpoint restores bit-exactly and holds the last step the child reported as saved, or the
next one (killed after committing it, before reporting).  Forking from this already-imported
process keeps 50+ trials fast.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import time

import numpy as np

import ckptlab as ck
from ckptlab.storage import open_checkpoint, resolve, verify_checkpoint


def values_for(step: int) -> dict[str, np.ndarray]:
    """The values every checkpoint with ``step`` holds (deterministic)."""
    rng = np.random.default_rng(step)
    values = {f"small{i}": rng.standard_normal(64).astype(np.float32) for i in range(50)}
    values["large"] = rng.standard_normal((256, 1024)).astype(np.float32)  # 1 MiB, own array
    values["ints"] = rng.integers(-(2**40), 2**40, 300)
    return values


def build(step: int) -> tuple[ck.Checkpoint, ck.Module]:
    model = ck.Module()
    model.step = ck.Variable(np.int64(step))
    for name, value in values_for(step).items():
        setattr(model, name, ck.Variable(value))
    return ck.Checkpoint(model=model), model


def child(directory: str, mode: str, report: int) -> None:
    latest = ck.latest_checkpoint(directory) if mode == "save" else None
    checkpoint, model = build(0)
    if latest is not None:
        checkpoint.restore(latest).assert_consumed()
    step = int(model.step.numpy())
    while True:
        started = time.perf_counter()
        step += 1
        model.step.assign(step)
        for name, value in values_for(step).items():
            getattr(model, name).assign(value)
        if mode == "save":
            checkpoint.save(os.path.join(directory, "ckpt"))
        else:
            checkpoint.write(os.path.join(directory, "fixed"))
        os.write(report, f"{step} {time.perf_counter() - started}\n".encode())


def check(path: str) -> int:
    """Restore ``path`` into a fresh program; return its step; raise if anything is off."""
    checkpoint, model = build(0)
    checkpoint.read(path).expect_partial()
    step = int(model.step.numpy())
    for name, value in values_for(step).items():
        restored = getattr(model, name).numpy()
        if restored.tobytes() != value.tobytes():
            raise AssertionError(f"{path}: {name} differs from step {step}'s value")
    problems = verify_checkpoint(path)
    if problems:
        raise AssertionError(f"{path}: {problems}")
    return step


def inspect(directory: str, mode: str, reported: int) -> dict[str, object]:
    entries = sorted(os.listdir(directory))
    hidden = [e for e in entries if e.startswith(".")]
    visible = [e for e in entries if not e.startswith(".") and e != "checkpoint"]
    result: dict[str, object] = {"hidden": hidden, "visible": len(visible)}
    for name in visible:  # every visible checkpoint is complete
        store, key = resolve(os.path.join(directory, name))
        open_checkpoint(store, key, progress=False)
    if mode == "save":
        latest = ck.latest_checkpoint(directory)
        result["latest"] = os.path.basename(latest) if latest else None
        result["step"] = check(latest) if latest else None
        if latest and os.path.basename(latest) != f"ckpt-{result['step']}":
            raise AssertionError(f"{latest} holds step {result['step']}")
    else:
        result["step"] = check(os.path.join(directory, "fixed"))
    step = result["step"]
    if not isinstance(step, int) or not reported <= step <= reported + 1:
        raise AssertionError(
            f"the child reported step {reported} as saved, but the latest checkpoint holds "
            f"step {step} (expected {reported}, or {reported + 1} if killed after its commit)"
        )
    return result


def main() -> None:
    directory, mode, trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    for trial in range(trials):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(reader)
                child(directory, mode, writer)
            finally:
                os._exit(3)
        os.close(writer)
        with os.fdopen(reader) as reports:
            ready, _, _ = select.select([reports], [], [], 30)
            line = reports.readline() if ready else ""
            duration = float(line.split()[1]) if line else 0.05
            delay = rng.uniform(0.0, 2.0 * duration)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            lines = [line, *reports.read().splitlines()] if line else []
        try:
            if not lines:
                raise AssertionError("the child completed no save within 30 s (hung?)")
            reported = int(lines[-1].split()[0])  # the last save the child saw return
            result = inspect(directory, mode, reported)
            result["reported"] = reported
            result["ok"] = True
        except Exception as error:  # reported to the test, which fails with the message
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        result.update(trial=trial, delay=round(delay, 4), killed=os.WIFSIGNALED(status))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
