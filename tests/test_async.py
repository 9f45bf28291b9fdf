"""Non-blocking saves: snapshot at call time, one in flight, errors never silent, crash safety."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.core import parse_state
from ckptlab.storage import LocalStore, _stream, is_committed

FAST = ck.WriteOptions(durable=False, progress=False)


def read_values(path, **variables):
    ckpt = ck.Checkpoint(**variables)
    ckpt.read(path).assert_existing_objects_matched()
    return {name: v.numpy() for name, v in variables.items()}


class Gate:
    """Blocks the background writer inside ``LocalStore.rename`` (the publish step) until opened."""

    def __init__(self, monkeypatch):
        self.reached = threading.Event()
        self.opened = threading.Event()
        original = LocalStore.rename

        def rename(store, source, target, *, durable):
            self.reached.set()
            assert self.opened.wait(30)
            original(store, source, target, durable=durable)

        monkeypatch.setattr(LocalStore, "rename", rename)


def test_mutation_after_return_does_not_change_saved_values(tmp_path, monkeypatch):
    """Values are copied when save(blocking=False) returns; the training loop may go on."""
    w = ck.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    b = ck.Variable(np.zeros(3, "float32"))
    ckpt = ck.Checkpoint(w=w, b=b)
    gate = Gate(monkeypatch)
    handle = ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    w.assign(w.numpy() * 100)  # mutated in place while the writer is still busy
    b.assign_add(1.0)
    assert gate.reached.wait(30)
    assert not handle.done()
    gate.opened.set()
    path = handle.result()
    assert path == os.fspath(tmp_path / "ckpt-1")
    saved = read_values(
        path, w=ck.Variable(np.ones((2, 3), "float32")), b=ck.Variable(np.ones(3, "float32"))
    )
    np.testing.assert_array_equal(saved["w"], np.arange(6, dtype="float32").reshape(2, 3))
    np.testing.assert_array_equal(saved["b"], np.zeros(3, "float32"))
    assert int(ckpt.save_counter.numpy()) == 1


def test_state_file_moves_only_after_commit(tmp_path, monkeypatch):
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    first = ckpt.save(tmp_path / "ckpt", options=FAST)
    gate = Gate(monkeypatch)
    handle = ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    assert gate.reached.wait(30)
    assert ck.latest_checkpoint(tmp_path) == first
    assert not os.path.exists(tmp_path / "ckpt-2")
    gate.opened.set()
    second = handle.result()
    assert ck.latest_checkpoint(tmp_path) == second


def test_manager_lists_a_checkpoint_only_once_committed(tmp_path, monkeypatch):
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=1)
    first = manager.save(options=FAST)
    gate = Gate(monkeypatch)
    handle = manager.save(blocking=False, options=FAST)
    assert isinstance(handle, ck.SaveHandle)
    assert gate.reached.wait(30)
    assert manager.latest_checkpoint == first
    assert manager.checkpoints == [first]
    assert os.path.isdir(first)  # retention waits for the new checkpoint's commit
    gate.opened.set()
    second = handle.result()
    assert manager.checkpoints == [second]
    assert manager.latest_checkpoint == second
    assert not os.path.exists(first)


def test_a_relative_prefix_is_resolved_when_the_save_is_called(tmp_path, monkeypatch):
    """QA: save("runs/ckpt", blocking=False) then os.chdir (a notebook's %cd) while it wrote:
    the checkpoint went under the old working directory and the state file, naming it, under
    the new one, so neither directory's latest_checkpoint found it."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    monkeypatch.chdir(old)
    gate = Gate(monkeypatch)
    handle = ck.Checkpoint(v=ck.Variable(1.0)).save("runs/ckpt", blocking=False, options=FAST)
    assert gate.reached.wait(30)
    monkeypatch.chdir(new)
    gate.opened.set()
    assert handle.result() == os.path.join("runs", "ckpt-1")  # the form given
    assert sorted(os.listdir(old / "runs")) == ["checkpoint", "ckpt-1"]
    assert ck.latest_checkpoint(old / "runs") == str(old / "runs" / "ckpt-1")
    assert not os.path.exists(new / "runs")


@pytest.mark.parametrize(
    ("call", "path", "latest"),
    [
        (lambda ckpt, prefix: ckpt.save(prefix / "ckpt", options=FAST), "ckpt-2", "ckpt-2"),
        (lambda ckpt, prefix: ckpt.write(prefix / "plain", options=FAST), "plain", "ckpt-1"),
    ],
    ids=["save", "write"],
)
def test_the_next_save_or_write_waits_for_the_previous_save(
    tmp_path, monkeypatch, call, path, latest
):
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    gate = Gate(monkeypatch)
    handle = ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    assert gate.reached.wait(30)
    threading.Timer(0.2, gate.opened.set).start()
    assert os.path.basename(call(ckpt, tmp_path)) == path  # blocks until the first is done
    assert handle.done()
    assert parse_state((tmp_path / "checkpoint").read_text(), "checkpoint").latest == latest


def _make_save_fail(tmp_path):
    """A non-ckptlab directory where ckpt-1 must go: publishing refuses to replace it."""
    (tmp_path / "ckpt-1").mkdir()
    (tmp_path / "ckpt-1" / "notes.txt").write_text("mine")


def test_error_surfaces_on_the_handle(tmp_path):
    _make_save_fail(tmp_path)
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    handle = ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    with pytest.raises(ck.CkptlabError, match="ckpt-1"):
        handle.result()
    assert isinstance(handle.exception(), ck.CkptlabError)
    assert "failed" in repr(handle)
    # seen through the handle: the next save goes ahead (and takes the next number)
    assert os.path.basename(ckpt.save(tmp_path / "ckpt", options=FAST)) == "ckpt-2"
    assert (tmp_path / "ckpt-1" / "notes.txt").read_text() == "mine"


def test_unseen_error_surfaces_on_the_next_call(tmp_path):
    _make_save_fail(tmp_path)
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    with pytest.raises(
        ck.CkptlabError, match=r"previous asynchronous save to .*ckpt-1 failed"
    ) as info:
        ckpt.save(tmp_path / "ckpt", options=FAST)
    assert isinstance(info.value.__cause__, ck.CkptlabError)
    assert not os.path.exists(tmp_path / "checkpoint")  # this call saved nothing
    assert os.path.basename(ckpt.save(tmp_path / "ckpt", options=FAST)) == "ckpt-2"


def test_unseen_error_surfaces_on_the_next_manager_call(tmp_path):
    _make_save_fail(tmp_path)
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), tmp_path, max_to_keep=2)
    manager.save(blocking=False, options=FAST)
    with pytest.raises(ck.CkptlabError, match="previous asynchronous save"):
        manager.save(options=FAST)
    assert manager.checkpoints == []
    assert manager.latest_checkpoint is None


LAST_SAVE_FAILS = """
    import os, sys, numpy as np, ckptlab as ck
    directory, retrieve = sys.argv[1], sys.argv[2] == "retrieve"
    os.mkdir(os.path.join(directory, "ckpt-1"))  # not a checkpoint: the write refuses it
    open(os.path.join(directory, "ckpt-1", "notes.txt"), "w").write("mine")
    ckpt = ck.Checkpoint(v=ck.Variable(np.arange(3.0)))
    handle = ckpt.save(os.path.join(directory, "ckpt"), blocking=False)
    if retrieve:
        print("retrieved", type(handle.exception()).__name__, flush=True)
    print("end of script", flush=True)
"""


def run_last_save_fails(directory, mode):
    directory.mkdir()
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LAST_SAVE_FAILS), str(directory), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_failed_last_save_is_logged_at_exit_unless_retrieved(tmp_path):
    """The last save(blocking=False) fails and nothing follows: stderr says so at exit."""
    done = run_last_save_fails(tmp_path / "ignored", "ignore")
    assert done.stdout == "end of script\n"
    assert done.returncode == 0  # an atexit hook cannot change the status; it logs instead
    path = tmp_path / "ignored" / "ckpt-1"
    assert f"The asynchronous save to {path} failed and its error was never retrieved" in (
        done.stderr
    )
    assert "StorageExistsError: Refusing to write a checkpoint at" in done.stderr
    assert "handle.result()" in done.stderr
    assert done.stderr.count("never retrieved") == 1
    seen = run_last_save_fails(tmp_path / "seen", "retrieve")
    assert seen.stdout == "retrieved StorageExistsError\nend of script\n"
    assert seen.returncode == 0
    assert seen.stderr == ""  # the caller saw the error: nothing more to say


def test_an_unseen_failure_is_logged_when_the_handle_is_collected(tmp_path, ck_log):
    _make_save_fail(tmp_path)
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    handle = ckpt.save(tmp_path / "ckpt", blocking=False, options=FAST)
    assert handle.wait(30)
    assert ck_log.records == []  # not yet: the caller may still ask the handle
    del handle, ckpt  # the Checkpoint held the handle as its save in flight
    gc.collect()
    errors = [r for r in ck_log.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert f"save to {tmp_path / 'ckpt-1'} failed" in errors[0].getMessage()
    assert isinstance(errors[0].exc_info[1], ck.CkptlabError)
    ck_log.clear()
    seen = ck.Checkpoint(v=ck.Variable(1.0)).save(tmp_path / "ckpt", blocking=False, options=FAST)
    assert isinstance(seen.exception(30), ck.CkptlabError)
    del seen
    gc.collect()
    assert ck_log.records == []


def test_handle_result_timeout(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    handle = ck.Checkpoint(v=ck.Variable(1.0)).save(tmp_path / "c", blocking=False, options=FAST)
    assert gate.reached.wait(30)
    with pytest.raises(TimeoutError, match="did not finish within 0.01 s"):
        handle.result(timeout=0.01)
    assert "running" in repr(handle)
    gate.opened.set()
    assert handle.result(timeout=30).endswith("c-1")


def test_interpreter_exit_waits_for_an_in_flight_save(tmp_path):
    """The script ends while its last save(blocking=False) writes: exit waits, the save commits.

    The value is as large as a transfer whose checksums go to the helper thread
    (``OFFLOAD_BYTES``): Python refuses new work to ``concurrent.futures`` executors before it
    joins the writer thread, so with such a helper these saves failed and wrote nothing."""
    count = _stream.OFFLOAD_BYTES // 8
    script = """
        import sys, numpy as np, ckptlab as ck
        ckpt = ck.Checkpoint(v=ck.Variable(np.arange(int(sys.argv[2]), dtype="float64")))
        ckpt.save(sys.argv[1] + "/ckpt", blocking=False)
        print("returned", flush=True)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path), str(count)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "returned\n"
    path = ck.latest_checkpoint(tmp_path)
    assert path == os.fspath(tmp_path / "ckpt-1")
    saved = read_values(path, v=ck.Variable(np.zeros(count)))
    np.testing.assert_array_equal(saved["v"], np.arange(count, dtype="float64"))


KILLED_DURING_ASYNC_SAVE = """
    import sys, time, numpy as np, ckptlab as ck
    from ckptlab.storage import LocalStore
    directory, where = sys.argv[1], sys.argv[2]
    ckpt = ck.Checkpoint(v=ck.Variable(np.arange(300_000, dtype="float32")))
    manager = ck.CheckpointManager(ckpt, directory, max_to_keep=1)
    manager.save()
    ckpt.v.assign(ckpt.v.numpy() * -1)
    original = getattr(LocalStore, where)
    def crash_here(*args, **kwargs):
        print("KILL ME", flush=True)
        time.sleep(600)
    setattr(LocalStore, where, crash_here)
    manager.save(blocking=False)
    time.sleep(600)
"""


@pytest.mark.parametrize("where", ["write_many", "rename", "replace"])
def test_kill_during_async_save_keeps_the_previous_checkpoint(tmp_path, kill_at_marker, where):
    """kill -9 while the background thread writes chunks / publishes / writes the state file."""
    kill_at_marker(KILLED_DURING_ASYNC_SAVE, tmp_path, where)
    first = os.fspath(tmp_path / "ckpt-1")
    assert ck.latest_checkpoint(tmp_path) == first
    saved = read_values(first, v=ck.Variable(np.zeros(300_000, "float32")))
    np.testing.assert_array_equal(saved["v"], np.arange(300_000, dtype="float32"))
    state = parse_state((tmp_path / "checkpoint").read_text(), "checkpoint")
    assert state.all_paths == ("ckpt-1",)
    visible = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
    if where == "replace":  # killed after ckpt-2 was committed, before the state file moved
        assert visible == ["checkpoint", "ckpt-1", "ckpt-2"]
        assert is_committed(LocalStore(), os.fspath(tmp_path / "ckpt-2"))
    else:
        assert visible == ["checkpoint", "ckpt-1"]
    # a new manager resumes from ckpt-1 and cleans up on its next save
    fresh = ck.Checkpoint(v=ck.Variable(np.zeros(300_000, "float32")))
    manager = ck.CheckpointManager(fresh, tmp_path, max_to_keep=1)
    assert manager.restore_or_initialize() == first
    manager.save(options=FAST)
    assert [os.path.basename(p) for p in manager.checkpoints] == ["ckpt-2"]


def test_staging_buffers_are_reused_then_freed_by_a_blocking_save(tmp_path):
    """Repeated non-blocking saves copy into the same buffers; a blocking save frees them."""
    w = ck.Variable(np.arange(4.0))
    ckpt = ck.Checkpoint(w=w)
    first = ckpt.save(tmp_path / "c", blocking=False, options=FAST).result()
    staging = dict(ckpt._ck_staging)
    w.assign(np.arange(4.0) * 2)
    second = ckpt.save(tmp_path / "c", blocking=False, options=FAST).result()
    assert all(ckpt._ck_staging[key] is buffer for key, buffer in staging.items())
    np.testing.assert_array_equal(
        read_values(first, w=ck.Variable(np.zeros(4)))["w"], np.arange(4.0)
    )
    np.testing.assert_array_equal(
        read_values(second, w=ck.Variable(np.zeros(4)))["w"], np.arange(4.0) * 2
    )
    ckpt.save(tmp_path / "c", options=FAST)
    assert ckpt._ck_staging is None


def test_manager_close_frees_the_staging_buffers(tmp_path):
    ckpt = ck.Checkpoint(v=ck.Variable(np.arange(3.0)))
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=1)
    handle = manager.save(blocking=False, options=FAST)
    assert ckpt._ck_staging is not None
    manager.close()
    assert handle.done()
    assert ckpt._ck_staging is None


def test_handles_and_managers_alive_at_interpreter_exit_print_nothing(tmp_path):
    """Finalizers that run late in interpreter shutdown (module globals already gone; importing
    jax changes the teardown order so that they are) stay silent."""
    pytest.importorskip("jax")
    child = textwrap.dedent(
        f"""
        import numpy as np
        import ckptlab as ck
        import jax
        v = ck.Variable(np.zeros(3, np.float32))
        mgr = ck.CheckpointManager(ck.Checkpoint(v=v), {str(tmp_path)!r}, max_to_keep=2)
        handles = [mgr.save(blocking=False) for _ in range(3)]
        for h in handles:
            h.result()
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Exception ignored" not in done.stderr, done.stderr[-2000:]
