"""Shared fixtures: small programs built from ckptlab objects."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import uuid

import numpy as np
import pytest

import ckptlab as ck


def pytest_sessionfinish(session, exitstatus):
    """Under ``CKPTLAB_NO_SKIPS=1`` (set by ``make test``) a skipped test fails the run.

    Skips exist for partial installations (no Chromium, no Dask, no torch); the full test
    command installs everything, so a skip there means a check silently did not run.
    """
    if os.environ.get("CKPTLAB_NO_SKIPS") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"CKPTLAB_NO_SKIPS=1: {len(skipped)} skipped test(s) count as failures "
            "(install what they name, or unset CKPTLAB_NO_SKIPS)",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def peak_bytes():
    """``peak_bytes(action)``: the most memory Python held at once while ``action()`` ran."""

    def measure(action) -> int:
        tracemalloc.start()
        try:
            action()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    return measure


@pytest.fixture
def ckpt_dir(tmp_path):
    """A fresh directory for checkpoints."""
    return tmp_path


@pytest.fixture
def ck_log(caplog):
    """Capture WARNING+ records of the ckptlab logger.

    Garbage earlier tests left in reference cycles is collected first: a status collected
    during this test would log its own warning here.
    """
    gc.collect()
    caplog.set_level(logging.WARNING, logger="ckptlab")
    return caplog


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt during the test, as in a terminal or a notebook.

    A process started in the background (CI's job) inherits SIGINT ignored, and Python then
    leaves it ignored: the handler a user's session has is installed for the test.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


FOREIGN_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "foreign")


@pytest.fixture
def tensorflow_bundle():
    """``tensorflow_bundle(store, prefix)``: a bundle TensorFlow 2.21 wrote, copied to ``prefix``.

    Its ``<prefix>.index`` and ``<prefix>.data-00000-of-00001`` (tests/fixtures/foreign/tf2_module).
    """

    def copy(store, prefix):
        for suffix in (".index", ".data-00000-of-00001"):
            with open(os.path.join(FOREIGN_FIXTURES, "tf2_module", f"ckpt-1{suffix}"), "rb") as f:
                store.write(prefix + suffix, [f.read()], durable=False)

    return copy


@pytest.fixture
def trained_model():
    """Factory: a built Sequential model and an Adam optimizer that has taken one step."""
    return _trained_model


def _trained_model(units=(4, 2), inputs=3, seed=0):
    """A built Sequential model and an Adam optimizer that has taken one step."""
    rng = np.random.default_rng(seed)
    model = ck.layers.Sequential([ck.layers.Dense(u) for u in units])
    model(rng.standard_normal((2, inputs)).astype("float32"))
    optimizer = ck.optimizers.Adam(0.1)
    params = [v for layer in model.layers for v in (layer.kernel, layer.bias)]
    optimizer.apply_gradients([(rng.standard_normal(p.shape), p) for p in params])
    return model, optimizer


@pytest.fixture
def kill_at_marker():
    """Factory: run Python ``script`` in a child process; ``kill -9`` it when it prints ``marker``.

    Returns the child's output up to the kill.  The child must print ``marker`` (flushed) at the
    point to crash; ending without printing it fails the test with the child's stderr.
    """

    def run(script, *args, marker="KILL ME"):
        with tempfile.TemporaryFile("w+") as stderr:  # a file: a chatty child never blocks
            child = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            lines = []
            for line in child.stdout:
                lines.append(line)
                if marker in line:
                    os.kill(child.pid, signal.SIGKILL)
                    break
            else:
                child.wait()
                stderr.seek(0)
                raise AssertionError(f"child ended without printing {marker!r}: {stderr.read()}")
            child.wait(timeout=60)
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        return "".join(lines)

    return run


@pytest.fixture
def no_space(monkeypatch):
    """``no_space(match)``: writes into local files whose name ``match(name)`` accepts fail
    with ``OSError(ENOSPC)``, as on a full disk (injected where the store calls ``writev``)."""
    from ckptlab.storage import _kv

    def fail_writes(match):
        original = _kv._write_all

        def write_all(fd, parts):
            if match(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            original(fd, parts)

        monkeypatch.setattr(_kv, "_write_all", write_all)

    return fail_writes


@pytest.fixture
def run_unprivileged():
    """``run_unprivileged(script, *args)``: run Python ``script`` in a child that file
    permissions apply to, and return the completed process.

    As root the child keeps uid 0 but loses the capabilities that bypass permission checks
    (``setpriv`` from util-linux), so a read-only directory is read-only to it too.
    """

    def run(script, *args):
        prefix = []
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            assert setpriv, "as root, permission tests need util-linux's setpriv"
            drop = "-dac_override,-dac_read_search,-fowner"
            prefix = [setpriv, "--bounding-set", drop, "--inh-caps", drop]
        return subprocess.run(
            [*prefix, sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


HOLD_THE_LOCK = """
    import sys, time, ckptlab as ck
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), sys.argv[1], max_to_keep=1)
    manager.save()
    print("LOCKED", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def manager_in_another_process():
    """``with manager_in_another_process(directory) as child``: a child process whose manager
    saved ckpt-1 into ``directory`` and holds its lock until the block ends (kill -9)."""

    @contextlib.contextmanager
    def holding(directory):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(HOLD_THE_LOCK), str(directory)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline() == "LOCKED\n"
            yield child
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL

    return holding


@pytest.fixture(scope="session")
def s3_server():
    """A local S3 server (moto) with the bucket ``ckptlab-test``; its options are registered."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    from ckptlab.testing import LocalS3Server

    with LocalS3Server() as server:
        ck.storage.set_storage_options(f"s3://{server.bucket}", **server.storage_options)
        yield server
        ck.storage.set_storage_options(f"s3://{server.bucket}")


@pytest.fixture
def s3_prefix(s3_server):
    """A fresh ``s3://ckptlab-test/<uuid>`` URL (no trailing slash)."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex}"


@pytest.fixture
def memory_prefix():
    """A fresh ``memory://`` URL."""
    return f"memory://ckptlab-tests/{uuid.uuid4().hex}"
