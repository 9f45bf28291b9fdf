"""Crash safety: saves killed with SIGKILL at random moments never leave a partial checkpoint.

A driver process (``crash_driver.py``) forks a child that saves in a loop and kills it after a
random delay, 60 times; after each kill a fresh reader must find the last committed checkpoint
intact (bit-exact, verified) and holding at least the last save the child reported as finished,
``latest_checkpoint`` must never name a partial one, and leftovers of the interrupted save
(hidden temporaries) never pile up and are removed by the next save.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import LocalStore, _commit

DRIVER = Path(__file__).with_name("crash_driver.py")
ROOT = Path(__file__).resolve().parents[2]
QUIET = ck.WriteOptions(progress=False)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_driver(directory, mode, trials, seed):
    process = subprocess.run(
        [sys.executable, str(DRIVER), str(directory), mode, str(trials), str(seed)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=ENV,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return [json.loads(line) for line in process.stdout.splitlines()]


@pytest.mark.slow  # kill -9 loops in a subprocess
@pytest.mark.parametrize(("mode", "seed"), [("save", 1), ("write", 2)])
def test_killed_saves_never_leave_a_partial_checkpoint(tmp_path, mode, seed):
    results = run_driver(tmp_path, mode, 30, seed)
    assert len(results) == 30
    failures = [r for r in results if not r["ok"]]
    assert not failures, failures[:3]
    assert all(r["killed"] for r in results)
    # leftovers never pile up: at most one checkpoint and one state-file temporary, both
    # removed by the next save that gets that far
    assert all(len(r["hidden"]) <= 2 for r in results), [r["hidden"] for r in results]
    # the latest checkpoint holds the last save the child saw return (or the one after it)
    assert all(r["reported"] <= r["step"] <= r["reported"] + 1 for r in results)
    steps = [r["step"] for r in results if r.get("step") is not None]
    assert len(steps) >= 20, "too few saves completed before the kills; the test proves little"
    if mode == "save":
        assert steps == sorted(steps)  # the latest never goes backwards
    # the next save cleans the leftovers of the killed one
    checkpoint = ck.Checkpoint(x=ck.Variable(np.zeros(3)))
    if mode == "save":
        checkpoint.save_counter.assign(steps[-1])
        checkpoint.save(str(tmp_path / "ckpt"))
    else:
        checkpoint.write(str(tmp_path / "fixed"))
    assert [e for e in os.listdir(tmp_path) if e.startswith(".")] == []


def test_durable_by_default_fsyncs_and_can_be_turned_off(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    checkpoint = ck.Checkpoint(w=ck.Variable(np.zeros((300, 1000), np.float32)), b=ck.Variable(1.0))
    checkpoint.save(str(tmp_path / "ckpt"))
    durable = len(synced)
    assert durable >= 8  # chunks, metadata, directories, the state file and its directory
    synced.clear()
    checkpoint.save(str(tmp_path / "ckpt"), options=ck.WriteOptions(durable=False))
    assert synced == []
    assert ck.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


def test_overwriting_a_checkpoint_fsyncs_its_directory_after_the_swap(tmp_path, monkeypatch):
    """FORMAT 6 step 4: replacing an existing checkpoint (write() over it, or re-saving a
    number) is durable on return: the parent directory is fsynced after the exchange."""
    events = []
    real_fsync, real_exchange = os.fsync, _commit.exchange

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def exchange(a, b):
        swapped = real_exchange(a, b)
        events.append(("exchange", swapped))
        return swapped

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(_commit, "exchange", exchange)
    checkpoint = ck.Checkpoint(w=ck.Variable(np.arange(1000.0)))
    path = checkpoint.write(tmp_path / "fixed")
    checkpoint.w.assign(np.arange(1000.0) * 2)
    events.clear()
    checkpoint.write(tmp_path / "fixed")
    assert ("exchange", True) in events  # renameat2 swapped the directories
    after = events[events.index(("exchange", True)) + 1 :]
    assert ("fsync", str(tmp_path)) in after
    fresh = ck.Variable(np.zeros(1000))
    ck.Checkpoint(w=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(fresh.numpy(), np.arange(1000.0) * 2)
    events.clear()  # write(..., durable=False) still fsyncs nothing
    checkpoint.write(tmp_path / "fixed", options=ck.WriteOptions(durable=False))
    assert [e for e in events if e[0] == "fsync"] == []


PAUSED_IN_REPLACE = """
    import os, sys, time
    from ckptlab.storage import LocalStore
    key, text, then = sys.argv[1:]
    rename = os.replace
    def paused(source, target):
        print("PAUSED", flush=True)  # its temporary state file is written
        sys.stdin.readline() if then == "go on" else time.sleep(600)
        rename(source, target)
    os.replace = paused
    LocalStore().replace(key, text.encode(), durable=True)
"""


@contextlib.contextmanager
def paused_writer(script, *args):
    """Run ``script`` in a child process until it prints ``PAUSED``; when the block ends, it
    goes on (a line on its stdin) and must succeed."""
    live = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout.readline() == "PAUSED\n"
        yield
        _, errors = live.communicate("\n", timeout=60)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 0, errors


def test_replacing_the_state_file_removes_what_killed_writers_left_but_not_live_ones(
    tmp_path, kill_at_marker
):
    """Each writer of a state file writes a hidden ``.checkpoint.tmp-<hex>`` and renames it.
    A replace removes those a killed writer left (they never pile up), but not the one another
    process is writing now; before, it removed that one too, and the other save failed."""
    key = str(tmp_path / "checkpoint")
    kill_at_marker(PAUSED_IN_REPLACE, key, "killed", "die", marker="PAUSED")
    [killed] = os.listdir(tmp_path)
    with paused_writer(PAUSED_IN_REPLACE, key, "other", "go on"):
        [other] = set(os.listdir(tmp_path)) - {killed}
        LocalStore().replace(key, b"this process", durable=True)
        assert sorted(os.listdir(tmp_path)) == sorted([other, "checkpoint"])
    assert os.listdir(tmp_path) == ["checkpoint"]
    assert (tmp_path / "checkpoint").read_text() == "other"  # recorded last


PAUSED_IN_SAVE = """
    import sys, time
    import numpy as np
    import ckptlab as ck
    from ckptlab.storage import LocalStore
    path, value, then = sys.argv[1:]
    write_stream = LocalStore.write_stream
    def paused(store, key, batches, *, durable):  # the data shard: one call
        write_stream(store, key, batches, durable=durable)
        print("PAUSED", flush=True)  # its staging directory holds its data
        sys.stdin.readline() if then == "go on" else time.sleep(600)
    LocalStore.write_stream = paused
    values = ck.Checkpoint(v=ck.Variable(np.full(1000, float(value))))
    values.write(path, options=ck.WriteOptions(progress=False))
"""


def test_a_save_removes_what_killed_writers_left_but_not_a_live_writers_staging(
    tmp_path, kill_at_marker
):
    """Two processes writing the same ``ckpt-5`` (a restarted job racing its predecessor):
    each writes its own hidden ``.ckpt-5.tmp-<uuid>`` tree, and a save removes the ones a
    killed writer left (they never pile up), but not the one the other process is writing.
    Before, it removed that one too, and the other save failed with NotFoundError (or, before
    saves checked their tree, published one holding only its root document)."""
    path = str(tmp_path / "ckpt-5")
    kill_at_marker(PAUSED_IN_SAVE, path, 1, "die", marker="PAUSED")
    [killed] = os.listdir(tmp_path)
    with paused_writer(PAUSED_IN_SAVE, path, "2", "go on"):
        [other] = set(os.listdir(tmp_path)) - {killed}
        ck.Checkpoint(v=ck.Variable(np.full(1000, 3.0))).write(path, options=QUIET)
        assert sorted(os.listdir(tmp_path)) == sorted([other, "ckpt-5"])
    assert os.listdir(tmp_path) == ["ckpt-5"]
    assert ck.storage.verify_checkpoint(path) == []
    restored = ck.Variable(np.zeros(1000))
    ck.Checkpoint(v=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.numpy(), np.full(1000, 2.0))  # published last
