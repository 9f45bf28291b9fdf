"""The directory lock (local flock and object-store variants) and trash removal."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

import ckptlab as ck
from ckptlab.storage import LocalStore, _directory, resolve
from ckptlab.storage._commit import Staging
from ckptlab.storage._directory import LOCK_FILENAME, DirectoryLock, remove_leftovers

FAST = ck.WriteOptions(durable=False, progress=False)


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lock_record(store, directory):
    """The holder the lock file or object names (``None``: nobody)."""
    try:
        raw = store.read(f"{directory}/{LOCK_FILENAME}")
    except FileNotFoundError:
        return None
    return json.loads(raw) if raw else None


@pytest.mark.parametrize("where", ["local", "object store"])
def test_the_objects_of_one_process_share_the_lock(tmp_path, where):
    """Issue 17 #9: the managers of one process share a directory (TF's managers do)."""
    if where == "local":
        store, directory = LocalStore(), str(tmp_path)
    else:
        store, directory = resolve(f"memory://{tmp_path.name}/locked")
    first, second = DirectoryLock(store, directory), DirectoryLock(store, directory)
    assert first.acquire() is True  # the process did not hold it: leftovers may be removed
    assert first.acquire() is False  # a no-op for the same object
    assert second.acquire() is False  # shared: the process holds it already
    assert first.saving() is second.saving()  # their saves take turns
    first.release()
    first.release()
    assert second.held
    assert lock_record(store, directory)["pid"] == os.getpid()
    second.release()
    assert lock_record(store, directory) is None
    with pytest.raises(RuntimeError, match="not held"):
        second.saving()
    third = DirectoryLock(store, directory)
    assert third.acquire() is True
    third.release()


def open_files():
    """The paths this process has open."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor that listed them
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return paths


class _InterruptedTable(dict):
    """A lock table whose first entry is interrupted (Ctrl-C) as it is recorded."""

    def __setitem__(self, key, value):
        raise KeyboardInterrupt


def _interrupt_after(function):
    def interrupted(*args):
        function(*args)
        raise KeyboardInterrupt

    return interrupted


@pytest.mark.parametrize("moment", ["flock", "record written", "lock table"])
def test_an_interrupted_acquire_leaves_the_lock_free(tmp_path, monkeypatch, moment):
    """QA: Ctrl-C while a manager took the lock (its first save) left the locked descriptor
    open until the process exited: every later manager of this and other processes got
    LockedError blaming another process, even after manager.close()."""
    if moment == "flock":
        monkeypatch.setattr(_directory.fcntl, "flock", _interrupt_after(_directory.fcntl.flock))
    elif moment == "record written":
        monkeypatch.setattr(_directory.os, "pwrite", _interrupt_after(os.pwrite))
    else:
        monkeypatch.setattr(_directory, "_HELD", _InterruptedTable())
    lock = DirectoryLock(LocalStore(), str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    monkeypatch.undo()
    assert not lock.held
    path = str(tmp_path / LOCK_FILENAME)
    assert path not in open_files()
    assert DirectoryLock(LocalStore(), str(tmp_path))._peek_flock() == (False, None)
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), tmp_path, max_to_keep=1)
    assert os.path.basename(manager.save(options=FAST)) == "ckpt-1"
    manager.close()


def test_a_lock_this_process_holds_under_another_path_names_this_process(tmp_path):
    """The LockedError says that this process holds the lock, and how to release it."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    holder = DirectoryLock(LocalStore(), str(tmp_path / "real"))
    holder.acquire()
    with pytest.raises(ck.LockedError) as caught:
        DirectoryLock(LocalStore(), str(tmp_path / "link")).acquire()
    message = str(caught.value)
    assert f"is locked by this process, pid {os.getpid()} on host " in message
    assert "another process" not in message
    assert "manager.close()" in message and "restart" in message
    holder.release()
    again = DirectoryLock(LocalStore(), str(tmp_path / "link"))
    assert again.acquire() is True
    again.release()


FORK_WHILE_LOCKED = """
    import json, os, sys, ckptlab as ck
    from ckptlab.storage import LocalStore
    from ckptlab.storage._directory import DirectoryLock
    lock = DirectoryLock(LocalStore(), sys.argv[1])
    lock.acquire()
    child = os.fork()
    if child == 0:  # a fork inherits the parent's objects, not its lock
        lock.release()
        try:
            DirectoryLock(LocalStore(), sys.argv[1]).acquire()
            os._exit(1)
        except ck.LockedError as error:
            os._exit(0 if f"locked by pid {os.getppid()}" in str(error) else 2)
    _, status = os.waitpid(child, 0)
    record = json.loads(open(os.path.join(sys.argv[1], ".ckptlab.lock")).read())
    print(os.waitstatus_to_exitcode(status), record["pid"] == os.getpid())
"""


def test_a_forked_child_does_not_share_its_parents_lock(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_WHILE_LOCKED), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout == "0 True\n"  # refused, naming the parent; the parent's record intact


def test_other_process_holds_the_lock_then_dies(tmp_path, ck_log, manager_in_another_process):
    """A second process is refused, naming the holder (pid, host); after kill -9 it takes over."""
    with manager_in_another_process(tmp_path) as child:
        manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(2.0)), tmp_path, max_to_keep=1)
        pattern = rf"locked by pid {child.pid} on host {socket.gethostname()}"
        with pytest.raises(ck.LockedError, match=pattern):
            manager.save()
        assert manager.checkpoints == [os.path.join(tmp_path, "ckpt-1")]  # the child's save
    manager.checkpoint.save_counter.assign(1)
    assert os.path.basename(manager.save()) == "ckpt-2"
    assert manager.checkpoints == [os.path.join(tmp_path, "ckpt-2")]
    assert f"left by pid {child.pid}" in ck_log.text
    assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == os.getpid()


def test_object_store_lock_this_process_left_behind_is_taken_over(tmp_path, ck_log):
    """A lock object naming this process that no DirectoryLock of it holds is stale."""
    store, directory = resolve(f"memory://{tmp_path.name}/mine")
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": "earlier", "token": "x"}
    store.write(f"{directory}/{LOCK_FILENAME}", [json.dumps(mine).encode()], durable=False)
    lock = DirectoryLock(store, directory)
    assert lock.acquire() is True
    assert f"left by pid {os.getpid()}, which no longer holds it" in ck_log.text
    assert lock_record(store, directory)["token"] != "x"
    lock.release()


def test_object_store_lock_left_by_a_dead_process_is_taken_over(tmp_path, ck_log):
    store, directory = resolve(f"memory://{tmp_path.name}/stale")
    pid = dead_pid()
    stale = {"pid": pid, "host": socket.gethostname(), "since": "earlier", "token": "old"}
    store.write(f"{directory}/{LOCK_FILENAME}", [json.dumps(stale).encode()], durable=False)
    lock = DirectoryLock(store, directory)
    lock.acquire()
    assert f"left by pid {pid}" in ck_log.text
    assert json.loads(store.read(f"{directory}/{LOCK_FILENAME}"))["pid"] == os.getpid()
    lock.release()


def test_object_store_lock_of_a_live_or_remote_holder_is_respected(tmp_path):
    store, directory = resolve(f"memory://{tmp_path.name}/remote")
    remote = {"pid": dead_pid(), "host": "another-host", "since": "earlier", "token": "x"}
    store.write(f"{directory}/{LOCK_FILENAME}", [json.dumps(remote).encode()], durable=False)
    with pytest.raises(ck.LockedError, match="on host another-host") as info:
        DirectoryLock(store, directory).acquire()
    message = str(info.value)
    assert f"crashed), delete memory://{tmp_path.name}/remote/{LOCK_FILENAME}" in message


def test_unreadable_lock_file_is_reported_as_unknown(tmp_path):
    store, directory = resolve(f"memory://{tmp_path.name}/garbage")
    store.write(f"{directory}/{LOCK_FILENAME}", [b"\xff"], durable=False)
    with pytest.raises(ck.LockedError, match="an unknown holder"):
        DirectoryLock(store, directory).acquire()


def test_plain_save_into_a_directory_another_process_manages_is_refused(
    tmp_path, manager_in_another_process
):
    """Checkpoint.save would replace the state file the other process's manager keeps."""
    with manager_in_another_process(tmp_path) as child:
        before = (tmp_path / "checkpoint").read_bytes()
        ckpt = ck.Checkpoint(v=ck.Variable(2.0))
        pattern = (
            rf"{tmp_path} is locked by pid {child.pid} on host {socket.gethostname()} .*"
            r"Checkpoint.save would replace the state file .* Save into another directory"
        )
        for blocking in (True, False):
            with pytest.raises(ck.LockedError, match=pattern):
                ckpt.save(tmp_path / "ckpt", blocking=blocking, options=FAST)
        assert (tmp_path / "checkpoint").read_bytes() == before  # the manager's list stands
        assert sorted(n for n in os.listdir(tmp_path) if not n.startswith(".")) == [
            "checkpoint",
            "ckpt-1",
        ]
        assert int(ckpt.save_counter.numpy()) == 0  # the failed call changed nothing
        ckpt.write(tmp_path / "plain", options=FAST)  # write() leaves the state file alone
    # the holder died: its flock went with it, so a plain save goes ahead
    ckpt.save_counter.assign(1)
    assert os.path.basename(ckpt.save(tmp_path / "ckpt", options=FAST)) == "ckpt-2"


def test_plain_save_on_an_object_store_respects_a_live_remote_lock(tmp_path):
    directory = f"memory://{tmp_path.name}/runs"
    store, key = ck.storage.resolve(directory)
    record = {"pid": 1, "host": "another-host", "since": "earlier", "token": "x"}
    store.write(f"{key}/.ckptlab.lock", [json.dumps(record).encode()], durable=False)
    ckpt = ck.Checkpoint(v=ck.Variable(0.0))
    with pytest.raises(ck.LockedError, match="locked by pid 1 on host another-host"):
        ckpt.save(f"{directory}/ckpt", options=FAST)
    assert not store.exists(f"{key}/checkpoint")
    assert not store.is_dir(f"{key}/ckpt-1")
    record["host"] = socket.gethostname()  # a dead process of this host: stale, ignored
    record["pid"] = dead_pid()
    store.write(f"{key}/.ckptlab.lock", [json.dumps(record).encode()], durable=False)
    assert ckpt.save(f"{directory}/ckpt", options=FAST) == f"{directory}/ckpt-1"


def test_remove_leftovers_deletes_only_what_interrupted_saves_and_deletes_left(tmp_path):
    tmp = "0123456789abcdef" * 2
    for name in (
        ".ckpt-1.old-abc",  # retracted: renamed away, then the delete was interrupted
        f".ckpt-2.tmp-{tmp}",  # an interrupted write
        f".other-2.tmp-{tmp}",  # another prefix's: not this manager's
        ".ckpt-notes",
        "ckpt-3",
        "checkpoint",
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "zarr.json").write_text("{}")
    live = Staging(LocalStore(), str(tmp_path / "ckpt-4"))  # a save writing ckpt-4 now
    removed = remove_leftovers(LocalStore(), str(tmp_path), "ckpt", listed={"ckpt-3"})
    assert sorted(removed) == [".ckpt-1.old-abc", f".ckpt-2.tmp-{tmp}"]
    assert sorted(os.listdir(tmp_path)) == [
        os.path.basename(live.path),
        ".ckpt-notes",
        f".other-2.tmp-{tmp}",
        "checkpoint",
        "ckpt-3",
    ]
    live.close()  # as if its writer died: then it goes
    assert remove_leftovers(LocalStore(), str(tmp_path), "ckpt", listed={"ckpt-3"}) == [
        os.path.basename(live.path)
    ]


def test_an_eviction_note_removes_exactly_the_checkpoint_it_noted(tmp_path):
    """Complete but unlisted: deleted only with a note whose checksum matches its zarr.json."""
    store = LocalStore()
    paths = {
        n: ck.Checkpoint(v=ck.Variable(float(i))).write(tmp_path / n, options=FAST)
        for i, n in enumerate(["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4", "ckpt-5"])
    }
    for name in ("ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"):
        _directory.note_eviction(store, paths[name])
    ck.Checkpoint(v=ck.Variable(9.0)).write(tmp_path / "ckpt-2", options=FAST)  # written anew
    (tmp_path / ".ckpt-4.evicted").write_text("")  # a note whose bytes were lost
    removed = remove_leftovers(store, str(tmp_path), "ckpt", listed={"ckpt-3"})
    assert removed == ["ckpt-1"]
    # ckpt-2 was written again since, ckpt-3 is listed, ckpt-4's note is unreadable, ckpt-5
    # has no note: all kept; every note is gone
    assert sorted(os.listdir(tmp_path)) == ["ckpt-2", "ckpt-3", "ckpt-4", "ckpt-5"]


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_an_eviction_note_removes_exactly_the_tensorflow_bundle_it_noted(
    tmp_path, where, request, tensorflow_bundle
):
    """A TF bundle a manager took over is noted by its .index; the next manager deletes it, or
    the data files a delete interrupted after the index left, and no other file (no globbing)."""
    base = {"local": str(tmp_path), "memory": f"memory://{tmp_path.name}"}.get(where)
    base = base or request.getfixturevalue("s3_prefix")
    store, key = resolve(f"{base}/runs[1]")
    _, twin = resolve(f"{base}/runs1")
    for prefix in [f"{key}/ckpt-{n}" for n in (1, 2, 3, 4, 10)] + [f"{twin}/ckpt-1"]:
        tensorflow_bundle(store, prefix)
    for n in (1, 2, 3, 4):
        _directory.note_eviction(store, f"{key}/ckpt-{n}")
    store.write(f"{key}/ckpt-2.index", [b"written anew"], durable=False)  # not the one noted
    store.delete_tree(f"{key}/ckpt-4.index")  # a delete interrupted after the index went
    removed = remove_leftovers(store, key, "ckpt", listed={"ckpt-3"})
    data = ".data-00000-of-00001"
    assert removed == ["ckpt-1.index", f"ckpt-1{data}", f"ckpt-4{data}"]
    kept = [f"ckpt-{n}{suffix}" for n in (10, 2, 3) for suffix in (data, ".index")]
    assert store.list_dir(key) == kept  # every note is gone too
    assert store.list_dir(twin) == [f"ckpt-1{data}", "ckpt-1.index"]


def test_remove_leftovers_on_an_object_store(tmp_path):
    store, directory = resolve(f"memory://{tmp_path.name}/runs")
    for name in ("ckpt-1", "ckpt-7", "ckpt-8", "notes-1"):
        store.write(f"{directory}/{name}/values/0/c/0", [b"bytes"], durable=False)
    store.write(f"{directory}/ckpt-8/notes.txt", [b"not ckptlab's"], durable=False)
    path = ck.Checkpoint(v=ck.Variable(1.0)).write(f"memory://{tmp_path.name}/runs/ckpt-9")
    removed = remove_leftovers(store, directory, "ckpt", listed=set())
    assert sorted(removed) == ["ckpt-1", "ckpt-7"]  # no commit object, only ckptlab's arrays
    assert store.list_dir(directory) == ["ckpt-8", "ckpt-9", "notes-1"]
    assert ck.list_variables(path)


S3_MANAGER_SAVED_ONCE = textwrap.dedent("""
    import sys, ckptlab as ck
    directory, endpoint, bucket = sys.argv[1:]
    ck.storage.set_storage_options(
        f"s3://{bucket}", endpoint_url=endpoint, key="testing", secret="testing"
    )
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), directory, 1)
    manager.save()
""")
"""A child's first lines: a manager on S3 that saved ckpt-1 (argv: URL, endpoint, bucket)."""


def test_manager_on_s3_locks_and_releases_at_interpreter_exit(s3_server, s3_prefix):
    """S3 (moto): a lock object would outlive its process; it is deleted at exit without close()."""
    script = S3_MANAGER_SAVED_ONCE + "manager.save()\nprint(manager.checkpoints, flush=True)\n"
    directory = f"{s3_prefix}/runs"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            directory,
            s3_server.endpoint,
            s3_server.bucket,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == repr([f"{directory}/ckpt-2"])
    store, key = resolve(directory)
    assert not store.exists(f"{key}/{LOCK_FILENAME}")
    assert not store.exists(f"{key}/ckpt-1/zarr.json")
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(0.0)), directory, 1)
    assert manager.restore_or_initialize() == f"{directory}/ckpt-2"
    assert float(manager.checkpoint.v.numpy()) == 1.0


KILLED_MID_DELETE_ON_S3 = S3_MANAGER_SAVED_ONCE + textwrap.dedent("""
    import time
    from ckptlab.storage import FsspecStore
    original = FsspecStore.delete_tree
    def crash_after_the_commit_object(store, key):
        original(store, key)
        if key.endswith("ckpt-1/zarr.json"):
            print("KILL ME", flush=True)
            time.sleep(600)
    FsspecStore.delete_tree = crash_after_the_commit_object
    manager.save()  # evicts ckpt-1: its commit object goes first, then the kill
""")


def test_kill_mid_delete_on_s3_leaves_a_prefix_the_next_manager_removes(
    s3_server, s3_prefix, kill_at_marker
):
    """Object stores: a delete killed after the commit object went leaves an uncommitted prefix."""
    directory = f"{s3_prefix}/runs"
    kill_at_marker(KILLED_MID_DELETE_ON_S3, directory, s3_server.endpoint, s3_server.bucket)
    store, key = resolve(directory)
    assert not store.exists(f"{key}/ckpt-1/zarr.json")
    assert store.list_dir(f"{key}/ckpt-1")  # its arrays are still there
    with ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(0.0)), directory, 1) as manager:
        assert manager.restore_or_initialize() == f"{directory}/ckpt-2"
        manager.save(options=FAST)  # takes over the dead process's lock, then cleans up
        assert store.list_dir(key) == [LOCK_FILENAME, "checkpoint", "ckpt-3"]


def test_a_manager_finalized_inside_a_lock_operation_does_not_deadlock(tmp_path):
    # A garbage collection can run a forgotten manager's __del__ on a thread that is inside a
    # lock operation (holding the process's lock table); CI once hung there.
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), tmp_path, max_to_keep=1)
    manager.save()
    where = LocalStore().display(os.path.join(str(tmp_path), LOCK_FILENAME))
    assert where in _directory._HELD
    with _directory._HELD_LOCK:
        manager.__del__()  # what the collector does; returns at once
    assert where in _directory._HELD  # released at the process's next lock operation:
    DirectoryLock(LocalStore(), str(tmp_path)).check_plain_save()
    assert where not in _directory._HELD
    other = DirectoryLock(LocalStore(), str(tmp_path))
    assert other.acquire() is True  # this process took it afresh
    other.release()


def test_where_directories_cannot_be_locked_saves_work_and_leftovers_go(tmp_path, monkeypatch):
    """Linux's NFS client by default emulates flock with a write lock, which a descriptor
    opened read-only (every directory's) cannot take: EBADF. Saves there must still work, and
    what an interrupted save left must still be removed (unlocked, as before locks existed)."""
    import errno
    import fcntl

    from ckptlab.storage import _kv

    real_flock = fcntl.flock

    def nfs_flock(fd: int, operation: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        real_flock(fd, operation)

    monkeypatch.setattr(_kv.fcntl, "flock", nfs_flock)
    tmp = "0123456789abcdef" * 2
    (tmp_path / f".ckpt-2.tmp-{tmp}").mkdir()  # what a killed save left
    (tmp_path / f".checkpoint.tmp-{tmp}").write_text("{}")  # a killed state-file write's
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), str(tmp_path), max_to_keep=2)
    saved = manager.save(options=FAST)
    manager.save(options=FAST)
    assert ck.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/ckpt-2"
    assert os.path.basename(saved) == "ckpt-1"
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
