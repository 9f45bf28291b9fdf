"""Shared fixtures for the foreign-format tests: the committed framework files and manifest."""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import warnings
from pathlib import Path
from typing import Any

import pytest

import ckptlab as ck

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "foreign"
collect_ignore = ["writers"]
"""Scripts the tests run in subprocesses to write real framework files (they import Keras,
JAX, Orbax, torch.distributed): not test modules, and not to be imported for doctests."""


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "manifest.json").read_text())["fixtures"]


@pytest.fixture
def bounded():
    """``bounded(action, seconds=30, memory=2**30)``: run ``action()`` in a forked child.

    The child may use at most ``memory`` bytes of address space more than the test process
    and ``seconds`` of wall time (a regression must fail the test, not take the machine down).
    Returns ``None`` when ``action`` returned, else ``(is a ckptlab error, type name, message)``.
    """

    def run(action, seconds: float = 30, memory: int = 2**30):
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            # JAX (imported by earlier tests in this process) warns that a fork of a threaded
            # process may deadlock; the child runs only ckptlab's readers, never JAX.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            pid = os.fork()
        if pid == 0:  # the child: limit, run, report, exit without cleanup
            os.close(read_end)
            code = 0
            try:
                used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf(
                    "SC_PAGE_SIZE"
                )
                resource.setrlimit(resource.RLIMIT_AS, (used + memory, used + memory))
                signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not pytest-timeout's handler
                signal.alarm(int(seconds))
                try:
                    action()
                    outcome = None
                except BaseException as error:
                    outcome = (
                        isinstance(error, ck.CkptlabError),
                        type(error).__name__,
                        str(error)[:4000],
                    )
                os.write(write_end, pickle.dumps(outcome))
            except BaseException:
                code = 3
            os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert data, f"the child died (status {status}: timeout or memory limit or crash)"
        return pickle.loads(data)

    return run
