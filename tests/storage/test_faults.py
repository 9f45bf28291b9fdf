"""Storage faults are typed ckptlab errors that keep their builtin class and name the path.

Issue 17 #11 and #12.  Permission faults are real: the writer runs in a child process that file
permissions apply to (``run_unprivileged``: as root it drops the capabilities that bypass them).
"""

from __future__ import annotations

import doctest
import errno
import json
import logging
import os
import pathlib
import signal
import socket
import threading
import uuid

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import _faults
from ckptlab.storage._faults import noting_failure

FAST = ck.WriteOptions(durable=False, progress=False)


def test_a_save_below_a_file_raises_its_own_error(tmp_path):
    """``save("notes.txt/ckpt")`` used to raise the NotADirectoryError of its clean-up."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    with pytest.raises(ck.StorageNotADirectoryError) as caught:
        ckpt.save(notes / "ckpt", options=FAST)
    assert isinstance(caught.value, NotADirectoryError)
    assert str(caught.value) == (
        f"Cannot write a checkpoint at {notes}/ckpt-1: {notes} is a file, so nothing can be "
        "created inside it. Choose a path whose parents are directories, or move that file."
    )
    assert caught.value.__context__ is None
    assert not getattr(caught.value, "__notes__", None)
    assert notes.read_text() == "mine"
    assert int(ckpt.save_counter.numpy()) == 0


@pytest.mark.parametrize(
    "call",
    [
        "save",
        "save blocking=False",
        "write",
        "restore",
        "list_variables",
        "latest_checkpoint",
        "CheckpointManager",
    ],
)
def test_a_path_with_a_nul_character_is_refused_before_anything_happens(tmp_path, caplog, call):
    """save/write/restore/list_variables raised a bare ``ValueError: embedded null byte`` (save
    and write also logged a failed clean-up), latest_checkpoint returned None, and a manager
    was created on such a directory."""
    caplog.set_level(logging.DEBUG, logger="ckptlab")
    bad = f"{tmp_path}/run\x00/ckpt"
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    calls = {
        "save": lambda: ckpt.save(bad, options=FAST),
        "save blocking=False": lambda: ckpt.save(bad, options=FAST, blocking=False),
        "write": lambda: ckpt.write(pathlib.Path(bad), options=FAST),
        "restore": lambda: ckpt.restore(bad),
        "list_variables": lambda: ck.list_variables(bad),
        "latest_checkpoint": lambda: ck.latest_checkpoint(bad),
        "CheckpointManager": lambda: ck.CheckpointManager(ckpt, bad, max_to_keep=1),
    }
    with pytest.raises(ck.InvalidArgumentError) as caught:
        calls[call]()
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        f"The path {bad!r} contains a NUL character ('\\x00'), which no file system or object "
        "store accepts in a path; nothing was read or written. Remove it (it often comes from a "
        "C string or a fixed-size buffer decoded with its padding: text.rstrip('\\x00'))."
    )
    assert "\\x00" in str(caught.value)  # shown escaped
    assert os.listdir(tmp_path) == []
    assert int(ckpt.save_counter.numpy()) == 0
    assert caplog.records == []


def test_a_path_that_is_not_a_string_is_refused(tmp_path):
    with pytest.raises(ck.InvalidArgumentError, match=r"Expected a path .* got 3 \(int\)"):
        ck.Checkpoint().write(3)
    with pytest.raises(ck.InvalidArgumentError, match=r"got b'.*' \(bytes\).*path\.decode\(\)"):
        ck.Checkpoint().save(os.fsencode(tmp_path / "ckpt"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("what", ["file", "directory"])
def test_write_over_something_that_is_not_a_checkpoint_is_refused(tmp_path, what):
    """A regular file gets the refusal a directory that is not a checkpoint gets."""
    target = tmp_path / "c3"
    if what == "file":
        target.write_text("mine")
        found = "it is a file"
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        found = "it is a directory holding ['notes.txt']"
    with pytest.raises(ck.StorageExistsError) as caught:
        ck.Checkpoint(v=ck.Variable(1.0)).write(target, options=FAST)
    assert isinstance(caught.value, FileExistsError)
    assert str(caught.value) == (
        f"Refusing to write a checkpoint at {target}: {found}, which ckptlab did not write. "
        "Choose another path or remove it yourself."
    )
    assert sorted(os.listdir(tmp_path)) == ["c3"]  # nothing written, nothing left behind


REPLACE_READ_ONLY = """
    import os, sys, ckptlab as ck
    target, locked = sys.argv[1], sys.argv[2]
    os.chmod(locked, 0o555)
    try:
        ck.Checkpoint(v=ck.Variable(2.0)).write(target)
    except ck.StorageError as error:
        print(type(error).__name__, isinstance(error, PermissionError), error)
    finally:
        os.chmod(locked, 0o755)
"""


@pytest.mark.parametrize("locked", ["the directory", "the checkpoint"])
def test_write_over_a_read_only_checkpoint_leaves_nothing_behind(
    tmp_path, run_unprivileged, locked
):
    """The old checkpoint could not be deleted after the new one replaced it: this used to
    leave a hidden ``.c3.tmp-*`` tree holding it.  Now the write is refused up front, and the
    old checkpoint stays as it was."""
    target = tmp_path / "c3"
    ck.Checkpoint(v=ck.Variable(1.0)).write(target, options=FAST)
    directory = tmp_path if locked == "the directory" else target
    done = run_unprivileged(REPLACE_READ_ONLY, target, directory)
    assert done.stderr == ""
    if locked == "the checkpoint":
        assert done.stdout == (
            f"StoragePermissionError True Cannot replace the checkpoint at {target}: {target} is "
            "not writable, so the old checkpoint could not be deleted. Make it writable (chmod -R "
            f"u+w {target}) or write somewhere else.\n"
        )
    else:
        assert done.stdout == (
            f"StoragePermissionError True Cannot write a checkpoint at {target}: {tmp_path} is "
            "not writable. Check its permissions, or write somewhere else.\n"
        )
    assert sorted(os.listdir(tmp_path)) == ["c3"]
    restored = ck.Checkpoint(v=ck.Variable(0.0))
    restored.read(target).assert_consumed()
    assert float(restored.v.numpy()) == 1.0


READ_UNREADABLE = """
    import sys, ckptlab as ck
    try:
        ck.load_checkpoint(sys.argv[1]).get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE")
    except ck.StorageError as error:
        print(type(error).__name__, isinstance(error, PermissionError), error)
"""


def test_reading_an_unreadable_file_names_it(tmp_path, run_unprivileged):
    path = ck.Checkpoint(v=ck.Variable(np.arange(4.0))).write(tmp_path / "c", options=FAST)
    chunk = next(p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.parent.name == "c")
    chunk.chmod(0)
    done = run_unprivileged(READ_UNREADABLE, path)
    assert done.stdout.startswith(
        f"StoragePermissionError True Could not read {chunk}: Permission denied."
    ), done.stdout + done.stderr


LATEST_OF = """
    import sys, ckptlab as ck
    for call in (ck.latest_checkpoint, lambda d: ck.CheckpointManager(ck.Checkpoint(), d, 1)):
        try:
            print(call(sys.argv[1]))
        except ck.StorageError as error:
            print(type(error).__name__, isinstance(error, PermissionError), error)
"""


@pytest.mark.parametrize("mode", [0o600, 0o000])
def test_latest_checkpoint_of_a_directory_it_may_not_enter_is_refused(
    tmp_path, run_unprivileged, mode
):
    """QA: ck.latest_checkpoint returned None ("nothing saved yet") for a directory this
    process may not enter (another user's run), so restore_or_initialize() started from
    scratch, while an unreadable state file raised StoragePermissionError."""
    directory = tmp_path / "run"
    ck.Checkpoint(v=ck.Variable(1.0)).save(directory / "ckpt", options=FAST)
    directory.chmod(mode)
    try:
        done = run_unprivileged(LATEST_OF, directory)
    finally:
        directory.chmod(0o755)
    state_file = directory / "checkpoint"
    expected = f"StoragePermissionError True Could not inspect {state_file}: Permission denied."
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    assert all(line.startswith(expected) for line in lines), done.stdout


def test_latest_checkpoint_when_the_state_file_is_a_directory(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    with pytest.raises(ck.StorageIsADirectoryError) as caught:
        ck.latest_checkpoint(tmp_path)
    assert isinstance(caught.value, IsADirectoryError)
    assert str(caught.value) == (
        f"{tmp_path / 'checkpoint'} is a directory, but it is where the state file of the "
        f"checkpoint directory {tmp_path} belongs (a file naming the latest checkpoint). "
        "Rename or remove that directory."
    )


def test_the_not_found_hint_keeps_the_scheme(s3_prefix):
    """A missing s3://bkt/run/ckpt-99 suggests ck.latest_checkpoint('s3://bkt/run')."""
    ck.Checkpoint(v=ck.Variable(1.0)).save(f"{s3_prefix}/ckpt", options=FAST)
    with pytest.raises(ck.NotFoundError) as caught:
        ck.Checkpoint(v=ck.Variable(1.0)).restore(f"{s3_prefix}/ckpt-99")
    assert f"ck.latest_checkpoint('{s3_prefix}') names the newest one" in str(caught.value)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_set_storage_options_routes_a_prefix_to_its_endpoint(s3_server, s3_prefix):
    """``ck.set_storage_options``: the longest matching prefix wins; an unreachable endpoint
    (a botocore error, not an OSError) is a ck.StorageError naming the URL and the fix."""
    unreachable = {
        "endpoint_url": f"http://127.0.0.1:{closed_port()}",
        **s3_server.storage_options,
    }
    unreachable["endpoint_url"] = f"http://127.0.0.1:{closed_port()}"
    unreachable["config_kwargs"] = {"retries": {"max_attempts": 1}}
    ck.set_storage_options(s3_prefix, **unreachable)
    try:
        with pytest.raises(ck.StorageError) as caught:
            ck.latest_checkpoint(s3_prefix)
        message = str(caught.value)
        assert message.startswith(f"Could not inspect {s3_prefix}/checkpoint: ")
        assert "EndpointConnectionError" in message
        assert "ck.set_storage_options(url_prefix, endpoint_url=" in message
        assert type(caught.value.__cause__).__module__.startswith("botocore")
    finally:
        ck.set_storage_options(s3_prefix, **s3_server.storage_options)
    path = ck.Checkpoint(v=ck.Variable(3.0)).save(f"{s3_prefix}/ckpt", options=FAST)
    assert ck.latest_checkpoint(s3_prefix) == path
    ck.set_storage_options(s3_prefix)  # forgotten: the bucket's options apply again
    assert ck.latest_checkpoint(s3_prefix) == path


@pytest.mark.parametrize("prefix", [None, "bucket"])
def test_set_storage_options_refuses_what_is_not_a_url_prefix(prefix):
    """``set_storage_options(None)`` was a bare TypeError, a prefix without a scheme a bare
    ValueError."""
    with pytest.raises(ck.InvalidArgumentError, match="URL prefix.*s3://bucket"):
        ck.set_storage_options(prefix, endpoint_url="http://127.0.0.1:9000")
    assert ck.storage.storage_options_for("bucket") == {}


def test_a_failed_clean_up_is_noted_on_the_error_it_follows(ck_log):
    error = ValueError("the save failed")

    def clean_up():
        raise ck.StoragePermissionError("Could not delete /x/.c.tmp-1: Permission denied.")

    noting_failure(error, "deleting /x/.c.tmp-1", clean_up)
    assert error.__notes__ == [
        "Cleaning up afterwards also failed: deleting /x/.c.tmp-1: Could not delete "
        "/x/.c.tmp-1: Permission denied."
    ]
    assert "Could not clean up after a failed operation" in ck_log.text


@pytest.mark.parametrize(
    ("code", "builtin", "advice"),
    [
        (errno.ENOSPC, OSError, "Free some space"),
        (errno.EROFS, OSError, "mounted read-only"),
        (errno.EACCES, PermissionError, "Check the permissions of /d/c"),
        (errno.EISDIR, IsADirectoryError, "/d/c is a directory where a file belongs"),
    ],
)
def test_storage_errors_keep_errno_and_builtin_class(code, builtin, advice):
    original = builtin(code, os.strerror(code))
    translated = _faults.storage_error(original, "write", "/d/c")
    assert isinstance(translated, ck.StorageError)
    assert isinstance(translated, builtin)
    assert translated.errno == code
    assert str(translated).startswith(f"Could not write /d/c: {os.strerror(code)}.")
    assert advice in str(translated)
    assert json.dumps(str(translated))  # plain text


def test_docstring_examples_run():
    assert doctest.testmod(_faults).failed == 0


def interrupt_when(event):
    """Ctrl-C (SIGINT to the main thread) once ``event`` is set."""

    def interrupt():
        if event.wait(10):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()


@pytest.mark.parametrize("ending", ["an upload refused", "Ctrl-C"])
def test_a_failed_s3_save_leaves_no_upload_behind_to_damage_its_retry(
    network, caplog, ending, sigint_raises
):
    """One upload of ckpt-2 is held up on the network when the save fails (another upload is
    refused, or the user presses Ctrl-C); the retry (the same number: 'a failed save uses up
    nothing') commits.  The first attempt's upload must not be running any more: it went on in
    the background, landed on the retry's data when the network let it through, and the latest
    checkpoint was damaged."""
    ckpt = ck.Checkpoint(
        a=ck.Variable(np.full(1000, 1.0, np.float32)), b=ck.Variable(np.full(1000, 1.0))
    )
    with ck.CheckpointManager(ckpt, network.prefix, max_to_keep=3) as manager:
        manager.save(options=FAST)
        ckpt.a.assign(np.full(1000, 2.0, np.float32))
        ckpt.b.assign(np.full(1000, 2.0))
        held = network.hold("PUT", "/ckpt-2/data/float32/0")
        if ending == "Ctrl-C":
            interrupt_when(held.arrived)
            failure = KeyboardInterrupt
        else:
            network.refuse("PUT", "/ckpt-2/data/float64/0", after=held)
            failure = ck.StoragePermissionError
        with pytest.raises(failure):
            manager.save(options=FAST)
        ckpt.a.assign(np.full(1000, 3.0, np.float32))
        ckpt.b.assign(np.full(1000, 3.0))
        path = manager.save(options=FAST)
        assert path == f"{network.prefix}/ckpt-2" == ck.latest_checkpoint(network.prefix)
        held.release()  # the first attempt's upload, were it still waiting, would land now
        held.finished.wait(3)
    assert ck.storage.verify_checkpoint(path) == []
    fresh = ck.Checkpoint(a=ck.Variable(np.zeros(1000, np.float32)), b=ck.Variable(np.zeros(1000)))
    fresh.restore(path).assert_consumed()
    assert (fresh.a.numpy() == 3.0).all() and (fresh.b.numpy() == 3.0).all()
    assert not [r for r in caplog.records if r.name == "asyncio"]  # "exception never retrieved"


def test_a_failed_save_to_an_object_store_names_the_checkpoint(s3_server, network):
    """docs/manager.md: the message names the path and says what to do.  A save or write to a
    bucket that does not exist, or whose upload is refused, said "Could not write the store"
    (a failed upload of many objects named none of them): it names the checkpoint's URL."""
    bucket = f"s3://ckptlab-missing-{uuid.uuid4().hex[:8]}"
    ck.set_storage_options(bucket, **s3_server.storage_options)
    ckpt = ck.Checkpoint(w=ck.Variable(np.ones(3, np.float32)))
    try:
        for call, target, written in (("save", "run/ckpt", "run/ckpt-1"), ("write", "w", "w")):
            with pytest.raises(ck.NotFoundError) as caught:
                getattr(ckpt, call)(f"{bucket}/{target}", options=FAST)
            assert str(caught.value) == (
                f"Could not write {bucket}/{written}: FileNotFoundError: The specified bucket "
                "does not exist. Check that the bucket exists and that the URL names it right "
                "(create the bucket first), or use another URL."
            )
        store, key = ck.storage.resolve(f"{bucket}/run")
        with pytest.raises(ck.NotFoundError, match=f"^Could not write {bucket}/run: "):
            store.write_many([(f"{key}/a", [b"1"]), (f"{key}/b", [b"2"])], durable=False)
    finally:
        ck.set_storage_options(bucket)
    assert int(ckpt.save_counter.numpy()) == 0
    network.refuse("PUT", "/ckpt-1/data/float32/0")
    with pytest.raises(ck.StoragePermissionError) as caught:
        ckpt.save(f"{network.prefix}/ckpt", options=FAST)
    assert str(caught.value).startswith(
        f"Could not write {network.prefix}/ckpt-1: PermissionError: Access Denied. Check the "
        f"permissions of {network.prefix}/ckpt-1 and of the directories above it (for a URL: "
        "the credentials)"
    )
    assert caught.value.filename == f"{network.prefix}/ckpt-1"
    assert ck.latest_checkpoint(network.prefix) is None
    store, key = ck.storage.resolve(f"{network.prefix}/ckpt-1")
    assert store.list_dir(key) == []  # what it wrote in place is deleted, as an export's is


def test_a_failed_save_removes_the_parent_directories_it_created(tmp_path, no_space):
    no_space(lambda file: file == "0")  # a data shard, inside the staging copy
    checkpoint = ck.Checkpoint(a=ck.Variable(np.ones(10, np.float32)))
    with pytest.raises(ck.StorageError, match="No space left on device"):
        checkpoint.write(tmp_path / "new" / "sub" / "ckpt")
    assert list(tmp_path.iterdir()) == []
