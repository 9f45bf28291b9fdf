"""Mutation fuzzing of every foreign format: typed errors only, no hang, bounded memory.

Each format runs ``fuzz_driver.py`` in a subprocess for about 20 seconds: committed framework
files are mutated (bytes, and inside the checksums of zips and tables), then opened, listed,
read and verified, under a 2 GiB address-space limit and a 10 s limit per case.  Any exception
that is not a ckptlab error, a case past its time, or the memory limit fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("fuzz_driver.py")
ROOT = Path(__file__).resolve().parents[3]
SECONDS = 20


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torch-zip", "torch-legacy", "tf-bundle", "tf-v1", "safetensors"])
def test_mutated_foreign_files_fail_cleanly(tmp_path, fmt):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(DRIVER), fmt, str(SECONDS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        check=False,
        env=env,
    )
    kept = sorted(p.name for p in tmp_path.glob("failure.*"))
    assert done.returncode == 0, f"{kept}\n{done.stderr[-6000:]}"
    outcomes = json.loads(done.stdout.splitlines()[-1])
    assert outcomes["cases"] >= 100, outcomes
    assert outcomes.get("read: ok", 0) > 0, outcomes  # mutations that keep a file valid
    assert outcomes["cases"] - outcomes.get("read: ok", 0) > 0, outcomes  # and ones that do not
