"""Keras 3 programs, on each backend: ``keras_cases.py`` run in a process per backend.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so each backend gets a
fresh interpreter running the same cases; a failing case shows its pytest output here.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

CASES = pathlib.Path(__file__).with_name("keras_cases.py")


NAME_BASED = "weight_files"
"""The cases that read Keras' own files (through ckptlab's Keras reader)."""


def run_cases(backend, tmp_path, selection):
    for needed in ("keras", backend):  # not imported here: keras would pick its backend now
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed (pip install 'ckptlab[keras]' and {backend})")
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(tmp_path / "keras")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection, CASES],
        capture_output=True,
        text=True,
        env=env,
        cwd=CASES.parents[3],
    )
    assert done.returncode == 0, f"{backend} backend:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_programs_on_each_backend(backend, tmp_path):
    run_cases(backend, tmp_path, f"not {NAME_BASED}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_programs_restore_from_keras_files(backend, tmp_path):
    pytest.importorskip("h5py")
    if importlib.util.find_spec("ckptlab.storage._foreign._keras") is None:
        pytest.skip("ckptlab's reader of Keras weight files is not part of this tree")
    run_cases(backend, tmp_path, NAME_BASED)
