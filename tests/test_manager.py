"""CheckpointManager on real directories (docs/semantics.md S82-S90)."""

from __future__ import annotations

import errno
import gc
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.core import parse_state
from ckptlab.storage import LocalStore, is_committed

FAST = ck.WriteOptions(durable=False, progress=False)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, hours):
        self.now += hours * 3600.0


def state_of(directory):
    path = os.path.join(directory, "checkpoint")
    with open(path) as handle:
        return parse_state(handle.read(), path)


def names(paths):
    return [os.path.basename(p) for p in paths]


def new_checkpoint(value=0.0):
    return ck.Checkpoint(v=ck.Variable(value))


# -- constructor ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, np.float64(2.0)])
def test_max_to_keep_must_be_positive_or_none(tmp_path, bad):
    """S82, and a float or a string is refused up front (max_to_keep=1.5 was accepted, and
    the second save failed in the sweep after committing its checkpoint)."""
    with pytest.raises(
        ck.InvalidArgumentError,
        match=r"Expected a positive integer or `None` for `max_to_keep`, "
        rf"got {re.escape(repr(bad))} \(\w+\)\. Pass a whole number of at least 1, "
        r"e\.g\. max_to_keep=3",
    ) as caught:
        ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=bad)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
    assert os.listdir(tmp_path) == []


def test_numpy_integers_are_whole_numbers(tmp_path):
    step = ck.Variable(0, dtype="int64")
    manager = ck.CheckpointManager(
        new_checkpoint(), tmp_path, np.int64(2), step_counter=step, checkpoint_interval=np.int32(3)
    )
    assert "max_to_keep=2" in repr(manager)


@pytest.mark.parametrize("bad", [0, -2, 0.5, "5", False])
def test_checkpoint_interval_must_be_a_positive_integer(tmp_path, bad):
    """checkpoint_interval=-2 or 0.5 was silently accepted."""
    step = ck.Variable(0, dtype="int64")
    with pytest.raises(
        ck.InvalidArgumentError,
        match=rf"for `checkpoint_interval`, got {re.escape(repr(bad))} .*None saves at every call",
    ):
        ck.CheckpointManager(
            new_checkpoint(), tmp_path, 1, step_counter=step, checkpoint_interval=bad
        )


@pytest.mark.parametrize("bad", [-1, float("nan"), "2", True])
def test_keep_every_n_hours_must_be_a_non_negative_number(tmp_path, bad):
    with pytest.raises(
        ck.InvalidArgumentError,
        match=r"non-negative number of hours or `None` for `keep_checkpoint_every_n_hours`, "
        rf"got {re.escape(repr(bad))}",
    ):
        ck.CheckpointManager(new_checkpoint(), tmp_path, 1, keep_checkpoint_every_n_hours=bad)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("checkpoint_name", "", "`checkpoint_name` must be a non-empty string without '/'"),
        ("checkpoint_name", "sub/ckpt", "To save into a subdirectory, put it into `directory`"),
        ("checkpoint_name", 3, "`checkpoint_name` must be a non-empty string"),
        ("init_fn", "setup", "`init_fn` must be a callable taking no arguments or None"),
        ("clock", 12.0, "`clock` must be a callable taking no arguments or None, got 12.0"),
    ],
)
def test_other_arguments_are_checked_up_front(tmp_path, argument, value, message):
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(message)):
        ck.CheckpointManager(new_checkpoint(), tmp_path, 1, **{argument: value})
    assert os.listdir(tmp_path) == []


def test_options_of_the_wrong_type_are_refused_before_anything_changes(tmp_path):
    """``options={...}`` was an AttributeError from inside the save (after the lock was taken),
    and restore_or_initialize ignored it when there was nothing to restore."""
    calls = []
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, tmp_path, 1, init_fn=lambda: calls.append(1))
    with pytest.raises(ck.InvalidArgumentError, match="ck.WriteOptions or None for `options`"):
        manager.save(options={"durable": False})
    with pytest.raises(ck.InvalidArgumentError, match="ck.ReadOptions or None for `options`"):
        manager.restore_or_initialize(options=ck.WriteOptions())
    assert calls == [] and ckpt._ck_counter is None and manager.checkpoints == []
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("below", ["", "runs"], ids=["the file", "below the file"])
def test_a_directory_that_is_a_file_is_refused_at_construction(tmp_path, below):
    """QA: a manager on notes.txt was accepted, and its first save blamed a lock file
    notes.txt/.ckptlab.lock that does not exist ("is in the way: remove it")."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    directory = notes / below if below else notes
    with pytest.raises(ck.StorageNotADirectoryError) as caught:
        ck.CheckpointManager(new_checkpoint(), directory, max_to_keep=2)
    assert isinstance(caught.value, NotADirectoryError)
    assert str(caught.value) == (
        f"Cannot use {directory} as a checkpoint directory: {notes} is a file, so nothing can "
        "be created inside it. Choose a path whose parents are directories, or move that file."
    )
    assert notes.read_text() == "mine"
    assert os.listdir(tmp_path) == ["notes.txt"]
    (tmp_path / "runs").mkdir()
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path / "runs" / below, max_to_keep=2)
    (tmp_path / "runs").rmdir()
    (tmp_path / "runs").write_text("a file since")  # then the lock names that file too
    with pytest.raises(ck.StorageNotADirectoryError, match=f"{tmp_path / 'runs'} is a file, so"):
        manager.save(options=FAST)


def test_properties(tmp_path):
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, str(tmp_path), max_to_keep=1)
    assert manager.directory == str(tmp_path)
    assert manager.checkpoint is ckpt
    assert manager.checkpoints == []
    assert manager.latest_checkpoint is None
    assert "max_to_keep=1" in repr(manager)


# -- max_to_keep, state file, recovery ----------------------------------------------------------


def test_max_to_keep_scenario(tmp_path):
    """S84, S85, S26: max_to_keep=2 keeps the two newest."""
    clock = FakeClock()
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=2, clock=clock)
    saved = []
    for _ in range(4):
        clock.advance(0.01)
        saved.append(manager.save(options=FAST))
    assert names(saved) == ["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"]
    assert saved[0] == os.path.join(str(tmp_path), "ckpt-1")
    assert names(manager.checkpoints) == ["ckpt-3", "ckpt-4"]
    assert manager.latest_checkpoint == saved[-1]
    assert not os.path.exists(saved[0])
    assert not os.path.exists(saved[1])
    assert all(is_committed(ck.storage.LocalStore(), p) for p in saved[2:])
    state = state_of(tmp_path)
    assert state.latest == "ckpt-4"
    assert state.all_paths == ("ckpt-3", "ckpt-4")
    assert state.timestamps == (clock.now - 36.0, clock.now)
    assert state.last_preserved == 1_000_000.0 - 1.0  # construction time minus 1 s
    assert ck.latest_checkpoint(tmp_path) == saved[-1]
    # deletes leave nothing behind: no renamed-away trash either
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-3", "ckpt-4"]


def test_max_to_keep_none_keeps_everything(tmp_path):
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=None)
    for _ in range(3):
        manager.save(options=FAST)
    assert names(manager.checkpoints) == ["ckpt-1", "ckpt-2", "ckpt-3"]


def test_recovery_and_trim_at_next_save(tmp_path):
    """S83: recovered list longer than the new max_to_keep is trimmed at the next save."""
    first = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=2)
    for _ in range(4):
        first.save(options=FAST)
    first.close()
    again = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=2)
    assert names(again.checkpoints) == ["ckpt-3", "ckpt-4"]
    assert again.latest_checkpoint == os.path.join(str(tmp_path), "ckpt-4")
    smaller = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)
    assert names(smaller.checkpoints) == ["ckpt-3", "ckpt-4"]
    # a fresh Checkpoint's counter starts at 0, so this save is ckpt-1 again (as in TF)
    smaller.checkpoint.save_counter.assign(4)
    smaller.save(options=FAST)
    assert names(smaller.checkpoints) == ["ckpt-5"]
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-5"]


def test_recovered_timestamps_and_last_preserved(tmp_path):
    """S83: timestamps and the last preserved time come back from the state file."""
    clock = FakeClock()
    first = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3, clock=clock)
    for _ in range(2):
        clock.advance(1)
        first.save(options=FAST)
    first.close()
    before = state_of(tmp_path)
    clock.advance(1)
    again = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3, clock=clock)
    again.checkpoint.save_counter.assign(2)
    again.save(options=FAST)
    after = state_of(tmp_path)
    assert after.timestamps[:2] == before.timestamps
    assert after.last_preserved == before.last_preserved


def test_corrupt_state_file_is_refused_not_ignored(tmp_path):
    """S27 (stricter): an empty state file raises instead of silently starting over."""
    (tmp_path / "checkpoint").write_text("")
    with pytest.raises(ck.CorruptCheckpointError, match="Invalid checkpoint state loaded from"):
        ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)


def _listing_another_runs_checkpoint(store, directory, entry, *, timestamp=True):
    """The state file of ``directory`` with ``entry`` put first, as a hand edit would."""
    from ckptlab.core import format_state

    key = f"{directory}/checkpoint"
    state = parse_state(store.read(key).decode(), key)
    stamps = (state.timestamps[0], *state.timestamps) if timestamp else state.timestamps
    edited = ck.core.CheckpointState(
        latest=state.latest,
        all_paths=(entry, *state.all_paths),
        timestamps=stamps,
        last_preserved=state.last_preserved,
    )
    store.replace(key, format_state(edited).encode(), durable=False)


@pytest.mark.parametrize("where", ["absolute", "relative", "url", "s3"])
def test_a_state_file_entry_outside_the_directory_is_never_deleted(
    tmp_path, caplog, request, where
):
    """A state file edited to list another run's checkpoint (to resume from it) made the next
    save delete that checkpoint: its timestamp made it managed, and retention swept it.  An
    entry outside the directory is not adopted now: a WARNING names it, ``checkpoints`` does
    not list it, no save deletes it, and the next save drops it from the state file."""
    if where == "s3":
        root = request.getfixturevalue("s3_prefix")
    elif where == "url":
        root = f"file://{tmp_path}"
    else:
        root = str(tmp_path)
    other = ck.Checkpoint(w=ck.Variable([9.0])).write(f"{root}/other_run/best", options=FAST)
    run = f"{root}/run"
    with ck.CheckpointManager(new_checkpoint(), run, max_to_keep=2) as manager:
        manager.save(options=FAST)
        manager.save(options=FAST)
    store, key = ck.storage.resolve(run)
    entry = {"relative": "../other_run/best", "url": other}.get(
        where, other.removeprefix("file://")
    )
    _listing_another_runs_checkpoint(store, key, entry)
    caplog.set_level(logging.WARNING, logger="ckptlab")
    with ck.CheckpointManager(new_checkpoint(), run, max_to_keep=2) as manager:
        assert names(manager.checkpoints) == ["ckpt-1", "ckpt-2"]
        manager.restore_or_initialize()
        for _ in range(3):
            manager.save(options=FAST)
        assert names(manager.checkpoints) == ["ckpt-4", "ckpt-5"]
    warnings = [r.getMessage() for r in caplog.records if "outside that directory" in r.message]
    assert len(warnings) == 1 and entry in warnings[0]
    assert ck.list_variables(other) == [("w/.ATTRIBUTES/VARIABLE_VALUE", [1])]
    assert parse_state(store.read(f"{key}/checkpoint").decode(), "").all_paths == (
        "ckpt-4",
        "ckpt-5",
    )


def test_timestamps_that_do_not_match_the_paths_are_refused(tmp_path):
    """Timestamps are paired with paths by position; TensorFlow zips lists of different
    lengths, so a path added by hand without a timestamp took its neighbour's (and the last
    checkpoint lost its own).  The manager refuses such a file, naming it and the fix, both
    when it starts and when the file is edited under a running manager (before writing)."""
    run = tmp_path / "run"
    with ck.CheckpointManager(new_checkpoint(), run, max_to_keep=2) as manager:
        manager.save(options=FAST)
        manager.save(options=FAST)
        _listing_another_runs_checkpoint(LocalStore(), str(run), "ckpt-9", timestamp=False)
        message = re.escape(
            f"Checkpoint state file {run / 'checkpoint'} lists 3 checkpoints "
            "(all_model_checkpoint_paths) but 2 timestamps"
        )
        with pytest.raises(ck.CorruptCheckpointError, match=message):
            manager.save(options=FAST)
        assert sorted(os.listdir(run)) == [".ckptlab.lock", "checkpoint", "ckpt-1", "ckpt-2"]
        assert int(manager.checkpoint.save_counter.numpy()) == 2
    with pytest.raises(ck.CorruptCheckpointError, match="remove every all_model_checkpoint_ti"):
        ck.CheckpointManager(new_checkpoint(), run, max_to_keep=2)


def test_a_huge_state_file_is_refused_unread(tmp_path):
    """A sparse 3 GiB 'checkpoint' file costs no memory: its size alone refuses it."""
    with open(tmp_path / "checkpoint", "wb") as state:
        state.truncate(3 * 2**30)
    with pytest.raises(ck.CorruptCheckpointError, match=r"holds 3221225472 bytes.*fix or delete"):
        ck.latest_checkpoint(tmp_path)


def test_foreign_save_does_not_move_manager_latest(tmp_path):
    """S90."""
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=2)
    path = manager.save(options=FAST)
    other = ck.Checkpoint(x=ck.Variable(1.0)).save(os.path.join(tmp_path, "other"), options=FAST)
    assert ck.latest_checkpoint(tmp_path) == other
    assert manager.latest_checkpoint == path


def test_checkpoints_saved_by_checkpoint_save_are_not_managed(tmp_path):
    """A state file without timestamps (Checkpoint.save) gives an empty managed list (TF)."""
    ck.Checkpoint(x=ck.Variable(1.0)).save(os.path.join(tmp_path, "ckpt"), options=FAST)
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)
    assert manager.checkpoints == []
    assert names([manager.latest_checkpoint]) == ["ckpt-1"]
    manager.checkpoint.save_counter.assign(1)
    manager.save(options=FAST)
    assert os.path.isdir(os.path.join(tmp_path, "ckpt-1"))  # never deleted by the manager


def test_clock_going_back_is_logged_and_deletes_nothing(tmp_path, ck_log):
    clock = FakeClock()
    first = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1, clock=clock)
    clock.advance(1)
    first.save(options=FAST)
    first.close()
    clock.advance(-10)
    again = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1, clock=clock)
    assert "behind the last preserved checkpoint timestamp" in ck_log.text
    again.checkpoint.save_counter.assign(1)
    again.save(options=FAST)
    assert os.path.isdir(os.path.join(tmp_path, "ckpt-1"))


# -- keep_checkpoint_every_n_hours ----------------------------------------------------------------


def test_keep_every_n_hours_scenario(tmp_path):
    """S87: keep_checkpoint_every_n_hours."""
    clock = FakeClock(now=0.0)
    manager = ck.CheckpointManager(
        new_checkpoint(), tmp_path, max_to_keep=2, keep_checkpoint_every_n_hours=1, clock=clock
    )
    for _ in range(8):
        clock.advance(0.4)
        manager.save(options=FAST)
    assert names(manager.checkpoints) == ["ckpt-7", "ckpt-8"]
    on_disk = sorted(n for n in os.listdir(tmp_path) if n.startswith("ckpt-"))
    assert on_disk == ["ckpt-3", "ckpt-6", "ckpt-7", "ckpt-8"]
    state = state_of(tmp_path)
    assert state.all_paths == ("ckpt-7", "ckpt-8")
    assert state.last_preserved == pytest.approx(2.4 * 3600)


# -- checkpoint_interval and step_counter --------------------------------------------------------


def test_checkpoint_interval_scenario(tmp_path):
    """S88: checkpoint_interval."""
    step = ck.Variable(0, dtype="int64")
    manager = ck.CheckpointManager(
        ck.Checkpoint(step=step),
        tmp_path,
        max_to_keep=None,
        step_counter=step,
        checkpoint_interval=5,
    )
    results = []
    for value in range(13):
        step.assign(value)
        results.append(manager.save(options=FAST))
    saved = {value: os.path.basename(r) for value, r in enumerate(results) if r is not None}
    assert saved == {0: "ckpt-1", 5: "ckpt-2", 10: "ckpt-3"}
    step.assign(12)
    manager.save(check_interval=False, options=FAST)  # forced at 12
    assert manager.save(check_interval=False, options=FAST) is None  # same step: never
    step.assign(13)
    assert manager.save(options=FAST) is None
    assert os.path.basename(manager.save(check_interval=False, options=FAST)) == "ckpt-5"


def test_step_counter_must_be_an_integer(tmp_path):
    """Checked at construction (it used to fail at the first save)."""
    with pytest.raises(
        ck.InvalidArgumentError, match="step_counter must be an int or an integer scalar"
    ):
        ck.CheckpointManager(
            new_checkpoint(), tmp_path, 1, step_counter=ck.Variable(1.5), checkpoint_interval=2
        )


def test_a_failed_save_does_not_use_up_its_step(tmp_path):
    """A save refused before writing (a file of the user's at ckpt-1) used to record step 5
    as saved, so the retry after the user removed the file was skipped (returned None)."""
    step = ck.Variable(5, dtype="int64")
    manager = ck.CheckpointManager(
        ck.Checkpoint(step=step), tmp_path, 2, step_counter=step, checkpoint_interval=1
    )
    (tmp_path / "ckpt-1").write_text("the user's file")
    with pytest.raises(ck.StorageExistsError):
        manager.save(options=FAST)
    (tmp_path / "ckpt-1").unlink()
    assert names([manager.save(options=FAST)]) == ["ckpt-1"]
    assert manager.save(options=FAST) is None  # a successful save does use it up (S88)


def test_a_failed_background_save_does_not_use_up_its_step(tmp_path):
    step = ck.Variable(5, dtype="int64")
    manager = ck.CheckpointManager(
        ck.Checkpoint(step=step), tmp_path, 2, step_counter=step, checkpoint_interval=1
    )
    (tmp_path / "ckpt-1").write_text("the user's file")
    with pytest.raises(ck.StorageExistsError):
        manager.save(blocking=False, options=FAST).result()
    assert manager.save(blocking=False, options=FAST).result().endswith("ckpt-2")
    assert manager.save(blocking=False, options=FAST) is None
    manager.close()


def test_a_save_refused_before_writing_leaves_save_counter(tmp_path):
    """As Checkpoint.save does; the manager used to increment it before writing."""
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, tmp_path, 2)
    (tmp_path / "ckpt-1").write_text("the user's file")
    with pytest.raises(ck.StorageExistsError):
        manager.save(options=FAST)
    assert int(ckpt.save_counter.numpy()) == 0
    (tmp_path / "ckpt-1").unlink()
    manager.save(options=FAST)
    restored = new_checkpoint()
    restored.restore(tmp_path / "ckpt-1")
    assert int(restored.save_counter.numpy()) == int(ckpt.save_counter.numpy()) == 1


# -- checkpoint_number --------------------------------------------------------------------------


def test_checkpoint_number_scenario(tmp_path):
    """S84, S86: checkpoint_number."""
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=None, checkpoint_name="model")
    assert os.path.basename(manager.save(checkpoint_number=100, options=FAST)) == "model-100"
    assert int(ckpt.save_counter.numpy()) == 1
    assert os.path.basename(manager.save(options=FAST)) == "model-2"
    number = ck.Variable(500, dtype="int64")
    assert os.path.basename(manager.save(checkpoint_number=number, options=FAST)) == "model-500"
    assert int(number.numpy()) == 500  # read, not incremented
    manager.save(checkpoint_number=100, options=FAST)
    assert names(manager.checkpoints) == ["model-2", "model-500", "model-100"]
    assert int(ckpt.save_counter.numpy()) == 4
    assert state_of(tmp_path).all_paths == ("model-2", "model-500", "model-100")


def test_checkpoint_number_must_be_an_integer(tmp_path):
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, 1)
    with pytest.raises(TypeError, match="checkpoint_number must be an int"):
        manager.save(checkpoint_number=1.5)
    assert not os.path.exists(os.path.join(tmp_path, "checkpoint"))


# -- restore_or_initialize ----------------------------------------------------------------------


def test_restore_or_initialize_empty_directory_calls_init_fn(tmp_path):
    """S89: restore_or_initialize."""
    calls = []
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, 1, init_fn=lambda: calls.append(1))
    assert manager.restore_or_initialize() is None
    assert calls == [1]
    assert manager.restore_status is None
    assert ck.CheckpointManager(new_checkpoint(), tmp_path, 1).restore_or_initialize() is None


def test_restore_or_initialize_restores_latest(tmp_path):
    """S89: restore_or_initialize."""
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=3)
    for value in (5.0, 6.0):
        ckpt.v.assign(value)
        manager.save(options=FAST)
    manager.close()
    calls = []
    fresh = new_checkpoint()
    again = ck.CheckpointManager(fresh, tmp_path, 3, init_fn=lambda: calls.append(1))
    assert again.restore_or_initialize() == os.path.join(str(tmp_path), "ckpt-2")
    assert calls == []
    assert float(fresh.v.numpy()) == 6.0
    assert int(fresh.save_counter.numpy()) == 2
    assert isinstance(again.restore_status, ck.CheckpointLoadStatus)
    again.restore_status.assert_consumed()
    assert os.path.basename(again.save(options=FAST)) == "ckpt-3"


def test_restore_status_can_silence_the_unused_values_warning(tmp_path, ck_log):
    """The status TF throws away (docs/semantics.md S55) is kept as manager.restore_status."""
    full = ck.Checkpoint(v=ck.Variable(1.0), extra=ck.Variable(2.0))
    ck.CheckpointManager(full, tmp_path, 1).save(options=FAST)
    partial = ck.CheckpointManager(new_checkpoint(), tmp_path, 1)
    partial.restore_or_initialize()
    partial.restore_status.expect_partial()
    partial.restore_status = None
    assert "could not be found" not in ck_log.text
    loud = ck.CheckpointManager(new_checkpoint(), tmp_path, 1)
    loud.restore_or_initialize()
    loud.restore_status = None  # dropped without expect_partial(): the warning is logged
    del loud
    gc.collect()
    assert "expect_partial" in ck_log.text


def test_progress_bars_can_be_turned_off_for_save_and_restore(tmp_path, capsys, monkeypatch):
    from ckptlab.storage import ReadOptions, _progress

    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)  # every operation counts as long
    ckpt = ck.Checkpoint(w=ck.Variable(np.zeros((256, 1024), np.float32)))
    with ck.CheckpointManager(ckpt, tmp_path, 1) as manager:
        manager.save(options=ck.WriteOptions(progress=False))
    fresh = ck.CheckpointManager(
        ck.Checkpoint(w=ck.Variable(np.ones((256, 1024), "f4"))), tmp_path, 1
    )
    fresh.restore_or_initialize(options=ReadOptions(progress=False))
    assert capsys.readouterr().err == ""
    assert not fresh.checkpoint.w.numpy().any()  # restored
    fresh.restore_or_initialize()
    assert "verifying ckpt-1" in capsys.readouterr().err  # the default shows them


def test_a_relative_directory_is_resolved_once_at_construction(tmp_path, monkeypatch):
    """QA: a notebook's %cd after creating a manager on "runs" split the run: the checkpoints
    went under the new working directory, the state file, lock and retention stayed in the old
    one, and restore_or_initialize() restored the other run's checkpoint found there."""
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    other_run = ck.Checkpoint(v=ck.Variable(-1.0)).save(elsewhere / "runs" / "ckpt", options=FAST)
    first.mkdir()
    monkeypatch.chdir(first)
    ckpt = new_checkpoint(1.0)
    manager = ck.CheckpointManager(ckpt, "runs", max_to_keep=1)
    assert manager.save(options=FAST) == os.path.join("runs", "ckpt-1")  # the form given (TF's)
    monkeypatch.chdir(elsewhere)
    ckpt.v.assign(2.0)
    saved = manager.save(options=FAST)
    assert saved == str(first / "runs" / "ckpt-2")  # "runs/ckpt-2" would name the other run's
    assert manager.directory == str(first / "runs")
    assert manager.checkpoints == [saved] and manager.latest_checkpoint == saved
    assert sorted(os.listdir(first / "runs")) == [".ckptlab.lock", "checkpoint", "ckpt-2"]
    assert sorted(os.listdir(elsewhere / "runs")) == ["checkpoint", "ckpt-1"]
    assert ck.latest_checkpoint(elsewhere / "runs") == other_run  # the other run is untouched
    ckpt.v.assign(0.0)
    assert manager.restore_or_initialize() == saved
    assert float(ckpt.v.numpy()) == 2.0  # this run's checkpoint, not the other run's -1.0
    monkeypatch.chdir(first)
    assert manager.latest_checkpoint == os.path.join("runs", "ckpt-2")  # back where it was given
    manager.close()


def test_restore_or_initialize_sets_last_step(tmp_path):
    step = ck.Variable(7, dtype="int64")
    ckpt = ck.Checkpoint(step=step)
    manager = ck.CheckpointManager(ckpt, tmp_path, 2, step_counter=step, checkpoint_interval=5)
    manager.save(options=FAST)
    manager.close()
    again = ck.CheckpointManager(ckpt, tmp_path, 2, step_counter=step, checkpoint_interval=5)
    again.restore_or_initialize()
    assert again.save(options=FAST) is None  # step 7 was just restored


# -- lock -----------------------------------------------------------------------------------------


TRY_TO_SAVE = """
    import sys, ckptlab as ck
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(1.0)), sys.argv[1], max_to_keep=9)
    manager.checkpoint.save_counter.assign(100)
    try:
        print(manager.save())
    except ck.LockedError as error:
        print("LockedError:", error)
"""


def run_in_another_process(script, directory):
    """What Python ``script`` prints, run in a child process with ``directory`` as argument."""
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return child.stdout


def save_in_another_process(directory):
    """What a manager of a child process says when it saves into ``directory``."""
    return run_in_another_process(TRY_TO_SAVE, directory)


def test_managers_of_one_process_share_the_directory(tmp_path):
    """Issue 17 #9: re-running the notebook cell that creates a manager while the old one is
    alive (kept by Out[...]): the new one recovers the list and continues, as TF's managers
    do; the managers of this process take turns; another process stays locked out."""
    clock = FakeClock()
    ckpt = new_checkpoint()
    old = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=3, clock=clock)
    for _ in range(2):
        clock.advance(0.01)
        old.save(options=FAST)
    again = ck.Checkpoint(v=ck.Variable(0.0))  # the cell re-run: new objects, same directory
    new = ck.CheckpointManager(again, tmp_path, max_to_keep=3, clock=clock)
    assert new.restore_or_initialize() == os.path.join(tmp_path, "ckpt-2")
    for _ in range(2):
        clock.advance(0.01)
        new.save(options=FAST)
    assert names(new.checkpoints) == ["ckpt-2", "ckpt-3", "ckpt-4"]
    assert not os.path.exists(tmp_path / "ckpt-1")
    clock.advance(0.01)
    assert os.path.basename(old.save(5, options=FAST)) == "ckpt-5"  # its list was stale
    assert names(old.checkpoints) == ["ckpt-3", "ckpt-4", "ckpt-5"]
    assert state_of(tmp_path).all_paths == ("ckpt-3", "ckpt-4", "ckpt-5")
    assert sorted(os.listdir(tmp_path)) == [
        ".ckptlab.lock", "checkpoint", "ckpt-3", "ckpt-4", "ckpt-5"
    ]  # fmt: skip
    message = save_in_another_process(tmp_path)
    assert message.startswith(f"LockedError: Checkpoint directory {tmp_path} is locked by pid ")
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    old.close()
    assert save_in_another_process(tmp_path).startswith("LockedError")  # `new` still holds it
    new.close()
    assert save_in_another_process(tmp_path).strip() == os.path.join(tmp_path, "ckpt-101")


def test_a_manager_merges_what_another_manager_saved_since_it_was_created(tmp_path):
    """Issue 17 #8, one process: the stale manager keeps the other's checkpoints listed and
    applies max_to_keep to the merged list (TF would list only its own and orphan them)."""
    clock = FakeClock()
    stale = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3, clock=clock)
    with ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3, clock=clock) as other:
        for _ in range(5):
            clock.advance(0.01)
            other.save(options=FAST)
    assert stale.checkpoints == []
    stale.checkpoint.save_counter.assign(5)
    clock.advance(0.01)
    stale.save(options=FAST)
    assert names(stale.checkpoints) == ["ckpt-4", "ckpt-5", "ckpt-6"]
    assert state_of(tmp_path).all_paths == ("ckpt-4", "ckpt-5", "ckpt-6")
    assert sorted(os.listdir(tmp_path)) == [
        ".ckptlab.lock", "checkpoint", "ckpt-4", "ckpt-5", "ckpt-6"
    ]  # fmt: skip


SAVE_TWICE = """
    import sys, ckptlab as ck
    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    with ck.CheckpointManager(ckpt, sys.argv[1], max_to_keep=3) as manager:
        manager.restore_or_initialize()
        print(manager.save(), manager.save())
"""


def test_a_manager_merges_what_another_process_saved_since_it_was_created(tmp_path):
    """Issue 17 #8, two processes: ckpt-4 and ckpt-5 of the other process stay listed, the
    checkpoints it deleted are not listed again, and max_to_keep holds over the merged list."""
    with ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3) as first:
        for _ in range(3):
            first.save(options=FAST)
    stale = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3)
    assert names(stale.checkpoints) == ["ckpt-1", "ckpt-2", "ckpt-3"]
    saved = run_in_another_process(SAVE_TWICE, tmp_path)
    assert names(saved.split()) == ["ckpt-4", "ckpt-5"]
    assert state_of(tmp_path).all_paths == ("ckpt-3", "ckpt-4", "ckpt-5")
    stale.save(6, options=FAST)
    assert names(stale.checkpoints) == ["ckpt-4", "ckpt-5", "ckpt-6"]
    assert state_of(tmp_path).all_paths == ("ckpt-4", "ckpt-5", "ckpt-6")
    assert sorted(os.listdir(tmp_path)) == [
        ".ckptlab.lock", "checkpoint", "ckpt-4", "ckpt-5", "ckpt-6"
    ]  # fmt: skip
    stale.close()


def test_locked_error_is_a_runtime_error():
    assert issubclass(ck.LockedError, RuntimeError)


def test_lock_file_names_the_holder(tmp_path):
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, 2)
    manager.save(options=FAST)
    import json

    holder = json.loads((tmp_path / ".ckptlab.lock").read_text())
    assert holder["pid"] == os.getpid()
    assert holder["host"] == socket.gethostname()
    manager.close()
    assert (tmp_path / ".ckptlab.lock").read_text() == ""


def test_a_directory_deleted_under_an_open_manager_is_locked_again(
    tmp_path, ck_log, manager_in_another_process
):
    """QA: rm -rf of the run directory while a notebook's manager was open: the manager kept
    its flock on the deleted lock file, so a manager of another process locked the new one and
    both saved into the directory; and the manager kept listing the deleted ckpt-2."""
    directory = tmp_path / "runs"
    manager = ck.CheckpointManager(new_checkpoint(), directory, max_to_keep=2)
    manager.save(options=FAST)
    manager.save(options=FAST)
    shutil.rmtree(directory)
    assert os.path.basename(manager.save(options=FAST)) == "ckpt-3"
    assert "was deleted or replaced while this process held it" in ck_log.text
    assert names(manager.checkpoints) == ["ckpt-3"]  # the deleted ckpt-2 is not listed again
    assert state_of(directory).all_paths == ("ckpt-3",)
    assert save_in_another_process(directory).startswith("LockedError")
    shutil.rmtree(directory)
    with manager_in_another_process(directory) as child:  # it locks the new directory first
        with pytest.raises(ck.LockedError, match=f"locked by pid {child.pid} "):
            manager.save(options=FAST)
    assert os.path.basename(manager.save(options=FAST)) == "ckpt-4"  # its holder is gone
    assert names(manager.checkpoints) == ["ckpt-1", "ckpt-4"]  # the other process's ckpt-1
    manager.close()
    assert save_in_another_process(directory).strip() == os.path.join(directory, "ckpt-101")


def test_plain_save_next_to_a_manager_of_this_process_is_allowed(tmp_path):
    """S90 needs it; the manager writes its whole list back at its next save."""
    clock = FakeClock()
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3, clock=clock)
    manager.save(options=FAST)
    clock.advance(1)
    other = ck.Checkpoint(x=ck.Variable(1.0)).save(tmp_path / "other", options=FAST)
    assert ck.latest_checkpoint(tmp_path) == other
    assert state_of(tmp_path).timestamps == ()
    manager.save(options=FAST)
    state = state_of(tmp_path)
    assert state.all_paths == ("ckpt-1", "ckpt-2")
    assert state.timestamps == (clock.now - 3600.0, clock.now)


def test_saves_recording_at_once_in_one_directory_lose_nothing(tmp_path, monkeypatch):
    """The manager's background save replaces the state file while a plain save does: each
    writes its own hidden ``.checkpoint.tmp-*`` and renames it.  Before, the plain save removed
    every such file as a killed writer's leftover, the manager's among them, so that save
    failed after its commit and deleted ckpt-1.  The state file names the save recorded last
    (here ckpt-1, though the plain save finished first), as in TF."""
    held, opened = threading.Event(), threading.Event()
    original = os.replace

    def replace(source, target):
        if os.path.basename(source).startswith(".checkpoint.tmp-") and not held.is_set():
            held.set()  # the first state-file write waits until the plain save is done
            assert opened.wait(30)
        original(source, target)

    monkeypatch.setattr(os, "replace", replace)
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3)
    handle = manager.save(blocking=False, options=FAST)
    assert held.wait(30)
    ema = ck.Checkpoint(w=ck.Variable(np.ones(3, "float32"))).save(tmp_path / "ema", options=FAST)
    assert ck.latest_checkpoint(tmp_path) == ema
    opened.set()
    assert handle.result(timeout=30) == os.fspath(tmp_path / "ckpt-1")
    assert is_committed(LocalStore(), handle.path) and is_committed(LocalStore(), ema)
    assert ck.latest_checkpoint(tmp_path) == handle.path
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


# -- a save that fails after its checkpoint is committed --------------------------------------


@pytest.mark.parametrize("failing", ["state file", "eviction note"])
def test_a_save_that_cannot_be_recorded_deletes_its_checkpoint(tmp_path, no_space, failing):
    """Issue 17 #10: a full disk while writing the state file (or the note that ckpt-1 is being
    evicted) after ckpt-3 was committed: ckpt-3 goes, nothing else changes, the error names
    the paths; before, ckpt-3 stayed on disk, never listed and never deleted."""
    clock = FakeClock()
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=2, clock=clock)
    for _ in range(2):
        clock.advance(0.01)
        manager.save(options=FAST)
    before = state_of(tmp_path)
    if failing == "state file":
        no_space(lambda name: name.startswith(".checkpoint.tmp-"))
    else:
        no_space(lambda name: name.endswith(".evicted"))
    clock.advance(0.01)
    with pytest.raises(ck.StorageError) as caught:
        manager.save(options=FAST)
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert message.startswith(
        f"{tmp_path / 'ckpt-3'} was written, but recording it in {tmp_path / 'checkpoint'} "
        "failed, so it was deleted"
    )
    assert "No space left on device" in message
    assert "Free some space" in message
    assert state_of(tmp_path) == before
    assert names(manager.checkpoints) == ["ckpt-1", "ckpt-2"]
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-1", "ckpt-2"]


def test_a_clock_that_fails_after_the_commit_removes_the_checkpoint(tmp_path):
    """The timestamp is taken after the commit: a clock that raises there used to leave
    ckpt-2 committed, never listed and never deleted."""
    clock = FakeClock()
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=2, clock=clock)
    manager.save(options=FAST)
    before = state_of(tmp_path)
    calls = []

    def broken_clock():
        calls.append(1)
        if len(calls) > 1:  # the first call merges the state file, before the write
            raise RuntimeError("clock broke")
        return clock.now + 1

    manager._clock = broken_clock
    with pytest.raises(RuntimeError, match="clock broke") as caught:
        manager.save(options=FAST)
    assert f"{tmp_path / 'ckpt-2'}: it was deleted" in caught.value.__notes__[0]
    assert state_of(tmp_path) == before
    assert names(manager.checkpoints) == ["ckpt-1"]
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-1"]


def test_a_resave_that_cannot_be_recorded_keeps_the_listed_checkpoint(tmp_path, no_space):
    """Re-saving a listed number: the new ckpt-2 replaced the old one and stays listed."""
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=3)
    manager.save(options=FAST)
    manager.save(options=FAST)
    manager.checkpoint.v.assign(7.0)
    no_space(lambda name: name.startswith(".checkpoint.tmp-"))
    with pytest.raises(ck.StorageError, match="failed, so it was kept: the state file lists it"):
        manager.save(2, options=FAST)
    assert state_of(tmp_path).all_paths == ("ckpt-1", "ckpt-2")
    restored = new_checkpoint()
    restored.restore(tmp_path / "ckpt-2").assert_consumed()
    assert float(restored.v.numpy()) == 7.0


def test_a_failed_delete_after_the_state_file_is_left_to_the_next_manager(
    tmp_path, ck_log, monkeypatch
):
    """Retention deletes after the state file was written: a failure is logged, the save
    stands, and the noted checkpoint is removed by the next manager."""
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)
    manager.save(options=FAST)
    rename = os.rename

    def refuse_to_move_ckpt_1(source, target):
        if os.path.basename(source) == "ckpt-1":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), source)
        rename(source, target)

    monkeypatch.setattr(os, "rename", refuse_to_move_ckpt_1)
    assert os.path.basename(manager.save(options=FAST)) == "ckpt-2"
    monkeypatch.undo()
    assert (
        f"Saved {tmp_path / 'ckpt-2'}, but deleting {tmp_path / 'ckpt-1'} (beyond max_to_keep) "
        f"failed: Could not rename {tmp_path / 'ckpt-1'}: Permission denied"
    ) in ck_log.text
    assert names(manager.checkpoints) == ["ckpt-2"]
    assert (tmp_path / ".ckpt-1.evicted").exists()
    manager.close()
    again = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)
    again.save(3, options=FAST)  # removes the noted ckpt-1 first, then ckpt-2 by retention
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-3"]


@pytest.mark.parametrize("moment", ["before the rename", "deleting the renamed bytes"])
def test_a_delete_interrupted_by_ctrl_c_is_finished_by_the_managers_next_save(
    tmp_path, monkeypatch, moment
):
    """QA: Ctrl-C during a retention delete left the evicted checkpoint (or its renamed-away
    bytes, .ckpt-1.old-<uuid>) and its note .ckpt-1.evicted; the same manager's later saves
    never removed them, so every such interrupt leaked a checkpoint's size until a new
    manager's first save."""
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, max_to_keep=1)
    manager.save(options=FAST)
    rename, delete_tree = LocalStore.rename, LocalStore.delete_tree

    def interrupted_rename(store, source, target, *, durable):
        if ".ckpt-1.old-" in target:
            raise KeyboardInterrupt
        rename(store, source, target, durable=durable)

    def interrupted_delete(store, key):
        if ".ckpt-1.old-" in key:
            raise KeyboardInterrupt
        delete_tree(store, key)

    if moment == "before the rename":
        monkeypatch.setattr(LocalStore, "rename", interrupted_rename)
    else:
        monkeypatch.setattr(LocalStore, "delete_tree", interrupted_delete)
    with pytest.raises(KeyboardInterrupt):
        manager.save(options=FAST)
    monkeypatch.undo()
    assert ".ckpt-1.evicted" in os.listdir(tmp_path)
    assert state_of(tmp_path).all_paths == ("ckpt-2",)
    manager.save(options=FAST)
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-3"]
    manager.close()


def test_logs_nothing_in_the_normal_case(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="ckptlab")
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, 1)
    manager.save(options=FAST)
    manager.save(options=FAST)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_values_round_trip(tmp_path, trained_model):
    model, optimizer = trained_model()
    manager = ck.CheckpointManager(ck.Checkpoint(model=model, optimizer=optimizer), tmp_path, 1)
    path = manager.save(options=FAST)
    restored_model, restored_optimizer = trained_model(seed=1)
    ck.Checkpoint(model=restored_model, optimizer=restored_optimizer).restore(
        path
    ).assert_consumed()
    for a, b in zip(model.layers, restored_model.layers, strict=True):
        np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())


# -- crash safety of retention deletes ------------------------------------------------------------

KILLED_DURING_DELETE = """
    import os, sys, time, numpy as np, ckptlab as ck
    from ckptlab.storage import LocalStore
    ckpt = ck.Checkpoint(v=ck.Variable(np.arange(1000.0)), w=ck.Variable(np.ones((300, 300))))
    manager = ck.CheckpointManager(ckpt, sys.argv[1], max_to_keep=1)
    manager.save()
    ckpt.v.assign(ckpt.v.numpy() + 1)
    original = LocalStore.delete_tree
    def delete_half_then_crash(store, key):
        if ".old-" not in key:
            return original(store, key)
        files = sorted(os.path.join(r, f) for r, _, fs in os.walk(key) for f in fs)
        for name in files[: len(files) // 2]:
            os.unlink(name)
        print("KILL ME", flush=True)
        time.sleep(600)
    LocalStore.delete_tree = delete_half_then_crash
    manager.save()
"""


def test_kill_during_retention_delete(tmp_path, kill_at_marker):
    """kill -9 halfway through deleting an evicted checkpoint: nothing valid-looking is partial."""
    kill_at_marker(KILLED_DURING_DELETE, tmp_path)
    state = state_of(tmp_path)
    assert state.latest == "ckpt-2"
    assert state.all_paths == ("ckpt-2",)
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith(".")) == [
        "checkpoint",
        "ckpt-2",
    ]
    trash = [n for n in os.listdir(tmp_path) if n.startswith(".ckpt-1.old-")]
    assert len(trash) == 1  # the half-deleted tree was renamed away before its bytes went
    with pytest.raises(ck.NotFoundError):
        ck.load_checkpoint(os.path.join(tmp_path, "ckpt-1"))
    fresh = ck.Checkpoint(v=ck.Variable(np.zeros(1000)), w=ck.Variable(np.zeros((300, 300))))
    manager = ck.CheckpointManager(fresh, tmp_path, max_to_keep=1)
    assert manager.restore_or_initialize() == os.path.join(tmp_path, "ckpt-2")
    manager.restore_status.assert_consumed()
    np.testing.assert_array_equal(fresh.v.numpy(), np.arange(1000.0) + 1)
    manager.save(options=FAST)  # the next save clears the trash
    assert not [n for n in os.listdir(tmp_path) if ".old-" in n]


KILLED_BEFORE_RENAMING_AWAY = """
    import sys, time, numpy as np, ckptlab as ck
    from ckptlab.storage import LocalStore
    directory = sys.argv[1]
    ck.Checkpoint(x=ck.Variable(1.0)).save(directory + "/mine")  # not the manager's
    now = [1_000_000.0]
    ckpt = ck.Checkpoint(v=ck.Variable(np.arange(1000.0)))
    manager = ck.CheckpointManager(
        ckpt, directory, 1, keep_checkpoint_every_n_hours=1, clock=lambda: now[0]
    )
    for hours in (2, 0.1):  # ckpt-1, then ckpt-2: ckpt-1 is evicted but preserved (kept)
        now[0] += hours * 3600
        manager.save()
    original = LocalStore.rename
    def crash_before_renaming_away(store, source, target, *, durable):
        if ".old-" in target:
            print("KILL ME", flush=True)
            time.sleep(600)
        original(store, source, target, durable=durable)
    LocalStore.rename = crash_before_renaming_away
    now[0] += 0.1 * 3600
    manager.save()  # ckpt-3: the state file drops ckpt-2, then the kill
"""


@pytest.mark.parametrize("rewritten", [False, True])
def test_kill_between_the_state_file_and_the_delete(tmp_path, kill_at_marker, rewritten):
    """The evicted checkpoint is complete but unlisted; the next manager removes exactly it."""
    kill_at_marker(KILLED_BEFORE_RENAMING_AWAY, tmp_path)
    state = state_of(tmp_path)
    assert state.all_paths == ("ckpt-3",)
    store = ck.storage.LocalStore()
    assert all(is_committed(store, os.path.join(tmp_path, n)) for n in ("ckpt-1", "ckpt-2"))
    assert os.path.exists(tmp_path / ".ckpt-2.evicted")
    if rewritten:  # someone wrote a checkpoint there since: it is not the one noted
        ck.Checkpoint(v=ck.Variable(np.zeros(1000))).write(tmp_path / "ckpt-2", options=FAST)
    fresh = ck.Checkpoint(v=ck.Variable(np.zeros(1000)))
    manager = ck.CheckpointManager(fresh, tmp_path, 1, keep_checkpoint_every_n_hours=1)
    assert manager.restore_or_initialize() == os.path.join(tmp_path, "ckpt-3")
    manager.save(options=FAST)
    kept = {"ckpt-1", "mine-1", "checkpoint", "ckpt-4"} | ({"ckpt-2"} if rewritten else set())
    assert set(os.listdir(tmp_path)) - {"ckpt-3", ".ckptlab.lock"} == kept
    for name in kept - {"checkpoint"}:  # the preserved and the unmanaged one are intact
        assert is_committed(store, os.path.join(tmp_path, name)), name


KILLED_WRITING_A_NUMBER = """
    import sys, time, numpy as np, ckptlab as ck
    from ckptlab.storage import LocalStore
    manager = ck.CheckpointManager(ck.Checkpoint(v=ck.Variable(np.arange(9.0))), sys.argv[1], 2)
    manager.save()
    original = LocalStore.write_many
    def crash_while_writing(store, items, *, durable):
        original(store, items[:1], durable=durable)
        print("KILL ME", flush=True)
        time.sleep(600)
    LocalStore.write_many = crash_while_writing
    manager.save(checkpoint_number=100)
"""


def test_an_interrupted_write_is_cleaned_up_by_the_next_manager(tmp_path, kill_at_marker):
    """kill -9 while writing ckpt-100, a number nobody saves again: the next manager cleans."""
    kill_at_marker(KILLED_WRITING_A_NUMBER, tmp_path)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".ckpt-100.tmp-")]
    manager = ck.CheckpointManager(new_checkpoint(), tmp_path, 2)
    manager.save(options=FAST)
    assert sorted(os.listdir(tmp_path)) == [".ckptlab.lock", "checkpoint", "ckpt-1"]


CRASH_LOOP = """
    import sys, numpy as np, ckptlab as ck
    step = ck.Variable(0, dtype="int64")
    ckpt = ck.Checkpoint(step=step, w=ck.Variable(np.zeros((200, 500))))
    manager = ck.CheckpointManager(ckpt, sys.argv[1], max_to_keep=2)
    manager.restore_or_initialize()
    while True:
        step.assign_add(1)
        ckpt.w.assign(np.full((200, 500), float(step.numpy())))
        manager.save(blocking=bool(int(step.numpy()) % 2))
        print("saved", int(step.numpy()), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_crash_loop_never_exposes_a_partial_checkpoint(tmp_path, seed):
    """kill -9 at random moments of a save/retention loop (blocking and not): invariants hold."""
    rng = np.random.default_rng(seed)
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CRASH_LOOP), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(int(rng.integers(1, 4))):
            child.stdout.readline()
        time.sleep(float(rng.uniform(0, 0.05)))
        child.kill()
        child.wait()
        child.stdout.close()
        _check_directory(tmp_path)


def _check_directory(directory):
    store = ck.storage.LocalStore()
    state = state_of(directory)
    assert is_committed(store, os.path.join(directory, state.latest))
    for name in state.all_paths:
        assert is_committed(store, os.path.join(directory, name))
    for name in os.listdir(directory):  # every visible checkpoint directory is complete
        if name.startswith("ckpt-"):
            assert is_committed(store, os.path.join(directory, name)), name
    step = ck.Variable(0, dtype="int64")
    w = ck.Variable(np.zeros((200, 500)))
    ck.Checkpoint(step=step, w=w).restore(ck.latest_checkpoint(directory)).assert_consumed()
    np.testing.assert_array_equal(w.numpy(), float(step.numpy()))


def test_manager_on_an_object_store(tmp_path):
    """fsspec URLs: retention deletes the commit object first; the lock is a create-only object."""
    directory = f"memory://{tmp_path.name}/runs"
    ckpt = new_checkpoint()
    manager = ck.CheckpointManager(ckpt, directory, max_to_keep=2)
    paths = [manager.save(options=FAST) for _ in range(3)]
    assert paths[0] == f"{directory}/ckpt-1"
    assert manager.checkpoints == paths[1:]
    assert ck.latest_checkpoint(directory) == paths[-1]
    store, key = ck.storage.resolve(directory)
    assert not store.exists(f"{key}/ckpt-1/zarr.json")
    shared = ck.CheckpointManager(new_checkpoint(), directory, 2)  # this process: shares the lock
    assert shared.save(4, options=FAST) == f"{directory}/ckpt-4"
    assert shared.checkpoints == [paths[-1], f"{directory}/ckpt-4"]
    shared.close()
    assert store.exists(f"{key}/.ckptlab.lock")  # `manager` still holds it
    manager.close()
    assert not store.exists(f"{key}/.ckptlab.lock")
    again = ck.CheckpointManager(new_checkpoint(5.0), directory, max_to_keep=2)
    assert again.restore_or_initialize() == f"{directory}/ckpt-4"
    assert float(again.checkpoint.v.numpy()) == 0.0


def _framework_model(kind: str):
    """A tiny model of each framework whose objects cannot all restore a child added later."""
    if kind == "nnx":
        nnx = pytest.importorskip("flax.nnx")
        return nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    if kind == "torch":
        torch = pytest.importorskip("torch")
        return torch.nn.Linear(3, 2)
    module = ck.Module()
    module.w = ck.Variable(np.zeros(3, np.float32))
    return module


@pytest.mark.parametrize("kind", ["native", "torch", "nnx"])
def test_a_resumed_run_with_a_framework_root_continues_the_numbering(tmp_path, kind):
    """With root= a model, save_counter is a child the Checkpoint adds to it: a resumed run
    restores it (NNX cannot restore children attached later) and never overwrites ckpt-1."""
    manager = ck.CheckpointManager(ck.Checkpoint(root=_framework_model(kind)), tmp_path, 5)
    for _ in range(3):
        manager.save()
    resumed_checkpoint = ck.Checkpoint(root=_framework_model(kind))
    resumed = ck.CheckpointManager(resumed_checkpoint, tmp_path, 5)
    assert resumed.restore_or_initialize() == str(tmp_path / "ckpt-3")
    assert int(resumed_checkpoint.save_counter.numpy()) == 3
    assert resumed.save() == str(tmp_path / "ckpt-4")
    assert [os.path.basename(p) for p in resumed.checkpoints] == [f"ckpt-{i}" for i in (1, 2, 3, 4)]
    status = ck.Checkpoint(root=_framework_model(kind)).restore(tmp_path / "ckpt-4")
    status.assert_consumed()


TF_MANAGED_STATE = b"""\
model_checkpoint_path: "ckpt-2"
all_model_checkpoint_paths: "ckpt-1"
all_model_checkpoint_paths: "ckpt-2"
all_model_checkpoint_timestamps: 999000.5
all_model_checkpoint_timestamps: 999060.25
last_preserved_timestamp: 998000.0
"""
"""What tf.train.CheckpointManager(max_to_keep=2) writes after saving ckpt-1 and ckpt-2."""


@pytest.mark.parametrize("where", ["local", "object store"])
def test_evicting_a_tensorflow_checkpoint_deletes_its_files(tmp_path, where, tensorflow_bundle):
    """Resuming a directory TF's manager wrote: TF's checkpoints beyond max_to_keep are deleted
    as TF deletes them, their .index and data files and nothing else (they stayed, unlisted)."""
    base = str(tmp_path) if where == "local" else f"memory://{tmp_path.name}"
    directory = f"{base}/runs[1]"  # fsspec's rm takes "[1]" as a pattern
    store, key = ck.storage.resolve(directory)
    _, twin = ck.storage.resolve(f"{base}/runs1")
    for prefix in (f"{key}/ckpt-1", f"{key}/ckpt-2", f"{key}/ckpt-10", f"{twin}/ckpt-1"):
        tensorflow_bundle(store, prefix)
    store.write(f"{key}/checkpoint", [TF_MANAGED_STATE], durable=False)
    manager = ck.CheckpointManager(new_checkpoint(), directory, max_to_keep=2, clock=FakeClock())
    assert names(manager.checkpoints) == ["ckpt-1", "ckpt-2"]
    manager.save(3, options=FAST)
    assert not store.exists(f"{key}/ckpt-1.index")
    manager.save(4, options=FAST)
    manager.close()
    assert names(manager.checkpoints) == ["ckpt-3", "ckpt-4"]
    assert [n for n in store.list_dir(key) if n != ".ckptlab.lock"] == [
        "checkpoint",
        "ckpt-10.data-00000-of-00001",  # not a file of ckpt-1's
        "ckpt-10.index",
        "ckpt-3",
        "ckpt-4",
    ]
    assert store.list_dir(twin) == ["ckpt-1.data-00000-of-00001", "ckpt-1.index"]


def test_retention_on_an_object_store_deletes_only_its_own_checkpoints(tmp_path):
    """A manager in ``runs/run*`` evicts its own checkpoints, not ``runs/runA``'s (fsspec globs)."""
    base = f"memory://{tmp_path.name}/runs"
    other = ck.CheckpointManager(new_checkpoint(42.0), f"{base}/runA", max_to_keep=None)
    theirs = [other.save(options=FAST) for _ in range(2)]
    other.close()
    manager = ck.CheckpointManager(new_checkpoint(), f"{base}/run*", max_to_keep=1)
    for _ in range(3):
        manager.save(options=FAST)
    manager.close()
    assert ck.latest_checkpoint(f"{base}/runA") == theirs[-1]
    for path in theirs:
        ckpt = new_checkpoint(0.0)
        ckpt.read(path).assert_existing_objects_matched()
        assert float(ckpt.v.numpy()) == 42.0


def test_ctrl_c_after_the_commit_takes_effect_once_the_state_file_lists_it(tmp_path, sigint_raises):
    """Ctrl-C arriving between a save's commit and its state-file write is held until the state
    file lists the checkpoint: it left a committed checkpoint nothing listed (its number used
    up, so no later save replaced it)."""
    interrupt_on = []

    def clock() -> float:  # the manager reads it before the commit, then to record the save
        interrupt_on.append(len(interrupt_on))
        if len(interrupt_on) == 3:  # the second save's record
            signal.raise_signal(signal.SIGINT)
        return 1_000.0 + len(interrupt_on)

    ckpt = ck.Checkpoint(v=ck.Variable(1.0))
    manager = ck.CheckpointManager(ckpt, tmp_path, max_to_keep=5, clock=clock)
    interrupt_on.clear()
    manager.save()
    with pytest.raises(KeyboardInterrupt):
        manager.save()
    assert [os.path.basename(p) for p in manager.checkpoints] == ["ckpt-1", "ckpt-2"]
    assert ck.latest_checkpoint(tmp_path).endswith("ckpt-2")
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-1", "ckpt-2"]
    manager.close()
