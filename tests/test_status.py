"""Status objects: assertions, chaining, warnings, report (docs/semantics.md S43-S53, S54-S55)."""

import gc
import logging

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.core import STATES


def saved_with(ckpt_dir, **values):
    return ck.Checkpoint(**{k: ck.Variable(v) for k, v in values.items()}).write(ckpt_dir / "c")


def test_chaining_and_return_values(ckpt_dir):
    """S43-S44: three assert_* and expect_partial return the status; the other two return None."""
    path = saved_with(ckpt_dir, a=1.0)
    status = ck.Checkpoint(a=ck.Variable(0.0)).read(path)
    assert isinstance(status, ck.CheckpointLoadStatus)
    chained = (
        status.assert_consumed()
        .assert_existing_objects_matched()
        .assert_nontrivial_match()
        .expect_partial()
    )
    assert chained is status
    assert status.run_restore_ops() is None
    assert status.initialize_or_restore() is None


def test_extra_value_in_checkpoint(ckpt_dir):
    """S47a: an extra value in the checkpoint fails only assert_consumed."""
    path = saved_with(ckpt_dir, a=1.0, extra=2.0)
    status = ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial()
    status.assert_existing_objects_matched().assert_nontrivial_match()
    with pytest.raises(AssertionError, match=r"Unresolved object in checkpoint \(root\).extra"):
        status.assert_consumed()


def test_extra_objects_in_program_lists_all(ckpt_dir):
    """S46 (ckptlab lists all, not 10 of N): 11 extras are all named."""
    path = saved_with(ckpt_dir, a=1.0)
    extras = {f"x{i:02d}": ck.Variable(float(i)) for i in range(11)}
    status = ck.Checkpoint(a=ck.Variable(0.0), **extras).read(path)
    with pytest.raises(AssertionError, match="Found 11 Python objects") as info:
        status.assert_existing_objects_matched()
    assert all(f"(root).x{i:02d}" in str(info.value) for i in range(11))
    with pytest.raises(AssertionError, match="Found 11 Python objects"):
        status.assert_consumed()
    status.assert_nontrivial_match()
    assert extras["x03"].numpy() == 3.0  # extras keep their initial values


def test_consumed_lists_every_unresolved_value(ckpt_dir):
    """S47-S48 (stricter): the first line names the first node; every value is listed."""
    path = saved_with(ckpt_dir, a=1.0, extra1=1.0, extra2=2.0, extra3=3.0)
    status = ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial()
    with pytest.raises(AssertionError) as info:
        status.assert_consumed()
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Unresolved object in checkpoint (root).extra1: 3 checkpoint values")
    assert [line.split()[0] for line in lines[1:4]] == [
        "(root).extra1",
        "(root).extra2",
        "(root).extra3",
    ]
    assert "expect_partial()" in lines[-1]


def test_unused_attributes(ckpt_dir, ck_log):
    """S47c, S54: a saved value where the program holds a container."""
    path = saved_with(ckpt_dir, x=1.0)
    status = ck.Checkpoint(x=ck.Module()).read(path)
    status.assert_existing_objects_matched().assert_nontrivial_match()
    with pytest.raises(
        AssertionError,
        match=r"Unused attributes in these objects .*\n  \(root\).x \(Module\): "
        r"\['VARIABLE_VALUE'\]",
    ):
        status.assert_consumed()
    del status
    gc.collect()
    assert (
        "An attribute in the restored object could not be found in the checkpoint. Object: (root).x"
        in ck_log.text
    )


def test_saved_container_restored_into_variable_passes(ckpt_dir):
    """S47c, inverse case (saved container, program variable): all pass, value kept."""
    path = ck.Checkpoint(x=ck.Module()).write(ckpt_dir / "c")
    target = ck.Variable(5.0)
    ck.Checkpoint(x=target).read(path).assert_consumed()
    assert target.numpy() == 5.0


def test_child_below_a_variable_is_unused_not_pending(ckpt_dir):
    """S47a: a saved child whose program parent is a Variable can never be restored: it is
    checkpoint-only with the reason, not pending forever."""
    holder = ck.Module()
    holder.v = ck.Variable(1.0)
    path = ck.Checkpoint(x=holder).write(ckpt_dir / "c")
    status = ck.Checkpoint(x=ck.Variable(5.0)).read(path).expect_partial()
    [entry] = status.report().entries
    assert (entry.path, entry.state) == ("x/v", "checkpoint_only")
    assert entry.reason.startswith("its parent in the program is a Variable, which cannot take")
    with pytest.raises(AssertionError, match=r"Unresolved object in checkpoint \(root\).x.v"):
        status.assert_consumed()


def test_consumed_names_a_slot_still_waiting(ckpt_dir):
    """S47b: a slot value waiting for its variable fails assert_consumed, named as a slot."""
    holder, optimizer = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    holder.w = ck.Variable([1.0])
    optimizer.apply_gradients([(np.array([1.0]), holder.w)])
    path = ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / "c")
    model = ck.Module()
    status = ck.Checkpoint(model=model, optimizer=ck.optimizers.SGD(0.1, momentum=0.9)).read(path)
    status.expect_partial()
    with pytest.raises(AssertionError) as info:
        status.assert_consumed()
    message = str(info.value)
    assert "Unresolved slot restorations" in message
    assert "(root).optimizer's state 'momentum' for (root).model.w" in message
    assert "restored when the optimizer's variable is bound" in message
    model.w = ck.Variable([0.0])
    status.assert_consumed()


def test_nontrivial_match_cases(ckpt_dir):
    """S49: assert_nontrivial_match fails only when nothing but the root matched."""
    path = saved_with(ckpt_dir, a=1.0, b=2.0)
    disjoint = ck.Checkpoint(z=ck.Variable(0.0)).read(path).expect_partial()
    with pytest.raises(AssertionError, match="Nothing except the root object matched"):
        disjoint.assert_nontrivial_match()
    empty = ck.Checkpoint().read(path).expect_partial()
    empty.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="Nothing to load. No dependencies have been added"):
        empty.assert_nontrivial_match()
    ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial().assert_nontrivial_match()
    restored = ck.Checkpoint().restore(path).expect_partial()  # the new counter is unbound
    with pytest.raises(
        AssertionError, match=r"Nothing except the root object matched.*\n  \(root\).save_counter"
    ):
        restored.assert_nontrivial_match()


def test_expect_partial_changes_no_assertion(ckpt_dir):
    """S51: expect_partial only silences the warning."""
    path = saved_with(ckpt_dir, a=1.0, extra=2.0)
    status = ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial()
    with pytest.raises(AssertionError):
        status.assert_consumed()


def test_warning_at_collection_lists_every_unused_value(ckpt_dir, ck_log):
    """S54-S55: collected without expect_partial(): one header, one line per unused value."""
    path = ck.Checkpoint(
        a=ck.Variable(1.0), extra=ck.Variable(2.0), nested=[ck.Variable(3.0)]
    ).write(ckpt_dir / "c")
    status = ck.Checkpoint(a=ck.Variable(0.0)).read(path)
    assert ck_log.records == []  # nothing at restore time
    del status
    gc.collect()
    messages = [r.getMessage() for r in ck_log.records if r.levelno == logging.WARNING]
    start = next(i for i, m in enumerate(messages) if str(ckpt_dir) in m)
    messages = messages[start : start + 3]
    assert (
        "being deleted with unrestored values" in messages[0] and "expect_partial()" in messages[0]
    )
    assert messages[1:] == [
        "Value in checkpoint could not be found in the restored object: (root).extra",
        "Value in checkpoint could not be found in the restored object: (root).nested.0",
    ]


def test_no_warning_with_expect_partial_or_program_extras(ckpt_dir, ck_log):
    """S53, S54: expect_partial() silences it; program-side extras never warn."""
    path = saved_with(ckpt_dir, a=1.0, extra=2.0)
    ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial()
    ck.Checkpoint(a=ck.Variable(0.0), b=ck.Variable(1.0), extra=ck.Variable(0.0)).read(path)
    gc.collect()
    assert ck_log.records == []


def test_report_is_a_frozen_snapshot(ckpt_dir):
    """report(): every state by path; later changes do not alter an earlier report."""
    path = saved_with(ckpt_dir, a=1.0, gone=2.0)
    ckpt = ck.Checkpoint(a=ck.Variable(0.0), new=ck.Variable(0.0))
    status = ckpt.read(path)
    before = status.report()
    assert {e.path: e.state for e in before.entries} == {
        "a": "restored",
        "gone": "pending",
        "new": "program_only",
    }
    ckpt.gone = ck.Variable(0.0)
    after = status.report()
    assert {e.path: e.state for e in after.entries}["gone"] == "restored"
    assert {e.path: e.state for e in before.entries}["gone"] == "pending"
    data = before.to_dict()
    assert set(data["counts"]) == set(STATES) and data["entries"][0]["path"] == "a"
    assert before.summary() == "1 matched, 1 pending, 1 missing in checkpoint"
    status.expect_partial()


def test_failed_restore_logs_no_unused_value_warnings(ckpt_dir, ck_log):
    """A restore that raised returned no status: its collection must not warn about values."""
    path = ck.Checkpoint(a=ck.Variable([1.0, 2.0, 3.0]), b=ck.Variable(1.0)).write(ckpt_dir / "c")
    with pytest.raises(ck.RestoreConflictError):
        ck.Checkpoint(a=ck.Variable([0.0] * 4)).read(path)
    gc.collect()
    assert not [r for r in ck_log.records if "unrestored values" in r.getMessage()]
