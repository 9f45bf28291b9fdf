"""Lazy restore: graph-mode run_restore_ops / initialize_or_restore (docs/semantics.md S99-S101)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ckptlab as ck


def saved(ckpt_dir):
    model = ck.Module()
    model.encoder = ck.Module()
    model.encoder.w = ck.Variable([1.0, 2.0])
    model.head = ck.Module()
    model.head.w = ck.Variable([3.0])
    return ck.Checkpoint(model=model, step=ck.Variable(7)).write(ckpt_dir / "c")


def program(head_shape=(1,)):
    model = ck.Module()
    model.encoder = ck.Module()
    model.encoder.w = ck.Variable([0.0, 0.0])
    model.head = ck.Module()
    model.head.w = ck.Variable(np.zeros(head_shape))
    return model


def test_nothing_written_until_run_restore_ops(ckpt_dir):
    """S99: matching happens at restore; values change only on run_restore_ops; assertions are
    binding-based so they already pass."""
    path = saved(ckpt_dir)
    model, step = program(), ck.Variable(0)
    status = ck.Checkpoint(model=model, step=step).read(path, lazy=True)
    assert model.encoder.w.numpy().tolist() == [0.0, 0.0]
    status.assert_consumed()
    report = status.report()
    assert {e.state for e in report.entries} == {"bound"}
    assert report.summary() == "3 matched but not yet written"
    status.run_restore_ops()
    assert model.encoder.w.numpy().tolist() == [1.0, 2.0] and int(step.numpy()) == 7
    assert {e.state for e in status.report().entries} == {"restored"}


def test_objects_attached_later_queue_new_ops(ckpt_dir):
    """S100: an object attached after the first run_restore_ops waits for the next call."""
    path = saved(ckpt_dir)
    ckpt = ck.Checkpoint(model=program())
    status = ckpt.read(path, lazy=True)
    status.run_restore_ops()
    ckpt.step = ck.Variable(0)
    assert int(ckpt.step.numpy()) == 0
    status.run_restore_ops()
    assert int(ckpt.step.numpy()) == 7
    status.assert_consumed()


def test_initialize_or_restore(ckpt_dir):
    """S101: restores queued values; unmatched variables keep their initial values."""
    path = saved(ckpt_dir)
    model, extra = program(), ck.Variable(3.0)
    ckpt = ck.Checkpoint(model=model, step=ck.Variable(0), extra=extra)
    ckpt.restore(path, lazy=True).initialize_or_restore()
    assert model.head.w.numpy().tolist() == [3.0] and extra.numpy() == 3.0


def test_conflicts_recorded_not_raised(ckpt_dir):
    """Lazy mode: a lazy restore never raises on conflicts; they are in report()."""
    path = saved(ckpt_dir)
    model = program(head_shape=(2,))
    status = ck.Checkpoint(model=model, step=ck.Variable(0)).read(path, lazy=True)
    conflict = status.report().conflicts
    assert [(e.path, e.state) for e in conflict] == [("model/head/w", "shape_conflict")]
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\).model.head.w") as raised:
        status.run_restore_ops()
    assert "run_restore_ops(only=[...]) with conflict-free paths" in str(raised.value)
    assert "restore lazily" not in str(raised.value)  # it is lazy already
    assert model.encoder.w.numpy().tolist() == [0.0, 0.0]  # nothing written
    with pytest.raises(AssertionError, match="shape conflict"):
        status.assert_existing_objects_matched()


def test_only_restores_a_conflict_free_subgraph(ckpt_dir):
    """run_restore_ops(only=...): partial-subgraph restore even when other parts conflict."""
    path = saved(ckpt_dir)
    model = program(head_shape=(2,))
    step = ck.Variable(0)
    status = ck.Checkpoint(model=model, step=step).read(path, lazy=True)
    status.run_restore_ops(only=["model/encoder"])
    assert model.encoder.w.numpy().tolist() == [1.0, 2.0]
    assert int(step.numpy()) == 0 and model.head.w.numpy().tolist() == [0.0, 0.0]
    states = {e.path: e.state for e in status.report().entries}
    assert states == {
        "model/encoder/w": "restored",
        "model/head/w": "shape_conflict",
        "step": "bound",
    }
    status.run_restore_ops(only=["step"])
    assert int(step.numpy()) == 7
    with pytest.raises(ck.RestoreConflictError):
        status.run_restore_ops(only=["model"])


def test_only_with_unknown_path(ckpt_dir):
    """An unknown path is a typed error naming what exists."""
    path = saved(ckpt_dir)
    status = ck.Checkpoint(model=program(), step=ck.Variable(0)).read(path, lazy=True)
    with pytest.raises(ck.UnknownPathError, match=r"\['modle/encoder'\].*'model'"):
        status.run_restore_ops(only=["modle/encoder"])


def test_lazy_restore_on_create_uses_initializer_then_queue(ckpt_dir):
    """Lazy mode writes nothing at creation: layers initialize, the value waits in the queue."""
    layer = ck.layers.Dense(2, kernel_initializer="ones")
    layer(np.ones((1, 3), "float32"))
    path = ck.Checkpoint(layer=layer).write(ckpt_dir / "c")
    fresh = ck.layers.Dense(2, kernel_initializer="zeros")
    status = ck.Checkpoint(layer=fresh).read(path, lazy=True)
    fresh(np.ones((1, 3), "float32"))
    assert fresh.kernel.numpy().sum() == 0
    status.run_restore_ops()
    assert fresh.kernel.numpy().sum() == 6


def test_run_restore_ops_after_a_newer_restore_writes_and_says_so(ckpt_dir):
    """S41, S99: run_restore_ops() is an assignment, so the latest one wins; report() tells the
    truth before (bound) and after (restored)."""
    older_path = ck.Checkpoint(w=ck.Variable(1.0)).write(ckpt_dir / "a")
    newer_path = ck.Checkpoint(w=ck.Variable(2.0)).write(ckpt_dir / "b")
    ckpt = ck.Checkpoint(w=ck.Variable(0.0))
    older = ckpt.read(older_path, lazy=True)
    newer = ckpt.read(newer_path)
    assert ckpt.w.numpy() == 2.0
    assert [e.state for e in older.report().entries] == ["bound"]
    older.run_restore_ops()
    assert ckpt.w.numpy() == 1.0
    assert [e.state for e in older.report().entries] == ["restored"]
    assert [e.state for e in newer.report().entries] == ["restored"]


def test_waiting_lazy_and_eager_restores_on_one_attach(ckpt_dir):
    """S41: on attach the eager restore writes and the lazy one queues (bound, not restored)."""
    older_path = ck.Checkpoint(w=ck.Variable(1.0)).write(ckpt_dir / "a")
    newer_path = ck.Checkpoint(w=ck.Variable(2.0)).write(ckpt_dir / "b")
    ckpt = ck.Checkpoint()
    older = ckpt.read(older_path, lazy=True)
    newer = ckpt.read(newer_path)
    ckpt.w = ck.Variable(0.0)
    assert ckpt.w.numpy() == 2.0
    assert [e.state for e in older.report().entries] == ["bound"]
    assert [e.state for e in newer.report().entries] == ["restored"]


def test_queued_slot_written_into_a_slot_created_meanwhile(ckpt_dir):
    """S68, S99: a slot queued lazily and created by training before run_restore_ops() is
    written in place (the same slot object) with the stored value."""
    holder, optimizer = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    holder.w = ck.Variable([1.0, 2.0])
    optimizer.apply_gradients([(np.array([1.0, 1.0]), holder.w)])
    saved = optimizer.get_slot(holder.w, "momentum").numpy()
    path = ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / "c")
    model, fresh = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    model.w = ck.Variable([0.0, 0.0])
    status = ck.Checkpoint(model=model, optimizer=fresh).read(path, lazy=True)
    fresh.apply_gradients([(np.array([5.0, 5.0]), model.w)])
    slot = fresh.get_slot(model.w, "momentum")
    status.run_restore_ops()
    assert fresh.get_slot(model.w, "momentum") is slot
    np.testing.assert_array_equal(slot.numpy(), saved)


def test_only_treats_slots_as_the_optimizers(ckpt_dir):
    """S17, run_restore_ops(only=...): a slot belongs to its optimizer (TF's object graph):
    the optimizer's path writes it, its variable's path does not, its own key prefix does."""
    holder, optimizer = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    holder.w = ck.Variable([1.0, 2.0])
    optimizer.apply_gradients([(np.array([1.0, 1.0]), holder.w)])
    saved = optimizer.get_slot(holder.w, "momentum").numpy()
    path = ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / "c")
    slot_path = "model/w/.OPTIMIZER_SLOT/optimizer/momentum"
    for only, slot_written in ((["model"], False), (["optimizer"], True), ([slot_path], True)):
        model, fresh = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
        model.w = ck.Variable([0.0, 0.0])
        fresh.apply_gradients([(np.zeros(2), model.w)])
        status = ck.Checkpoint(model=model, optimizer=fresh).read(path, lazy=True)
        status.run_restore_ops(only=only)
        slot = fresh.get_slot(model.w, "momentum").numpy()
        assert np.array_equal(slot, saved) is slot_written, only
        states = {e.path: e.state for e in status.report().entries}
        assert states[slot_path] == ("restored" if slot_written else "bound")


NAMES = ["model", "w", "dense", "optimizer", "m", "a/b", ".OPTIMIZER_SLOT"]


@settings(max_examples=300, deadline=None)
@given(
    paths=st.lists(
        st.tuples(
            st.lists(st.sampled_from(NAMES), max_size=3),
            st.none()
            | st.tuples(st.lists(st.sampled_from(NAMES), max_size=2), st.sampled_from(NAMES)),
        ),
        max_size=8,
    ),
    prefixes=st.lists(
        st.lists(st.sampled_from([*NAMES, "a", "b"]), max_size=4).map("/".join), max_size=5
    ),
)
def test_a_selection_of_paths_is_what_comparing_with_every_prefix_gives(paths, prefixes):
    """run_restore_ops(only=...) answers from the paths above a value (a path's depth of work
    each) exactly what comparing the value with every selected prefix answers."""
    from ckptlab.core import NodePath, object_prefix
    from ckptlab.engine._coordinator import _Selection

    def under(path, chosen):
        return any(not p or path == p or path.startswith(p + "/") for p in chosen)

    def by_comparing(path):
        if path.slot is None:
            return under(path.prefix, prefixes)
        own = [p for p in prefixes if "/.OPTIMIZER_SLOT" in f"/{p}"]
        return under(object_prefix(path.slot[0]), prefixes) or under(path.prefix, own)

    selection = _Selection(prefixes)
    for names, slot in paths:
        path = NodePath(path=tuple(names), slot=None if slot is None else (tuple(slot[0]), slot[1]))
        assert selection(path) == by_comparing(path), (path.prefix, prefixes)


def test_a_selection_of_thousands_of_paths_restores_what_it_names(tmp_path):
    """The explorer passes every selected value's path; half of 2,000 values are restored."""
    saved = ck.Module()
    saved.values = [ck.Variable(np.full(2, i, np.float32)) for i in range(2000)]
    path = ck.Checkpoint(model=saved).write(tmp_path / "c")
    target = ck.Module()
    target.values = [ck.Variable(np.zeros(2, np.float32)) for _ in range(2000)]
    status = ck.Checkpoint(model=target).read(path, lazy=True)
    status.run_restore_ops(only=[f"model/values/{i}" for i in range(0, 2000, 2)])
    assert [v.numpy()[0] for v in target.values[:6]] == [0, 0, 2, 0, 4, 0]
    assert target.values[1999].numpy()[0] == 0 and target.values[1998].numpy()[0] == 1998


def test_only_takes_tuples_of_local_names_and_a_child_named_empty(tmp_path):
    """A child called "" is 'model/dct/' (not its parent 'model/dct'); tuples give local names
    as they are; anything else is refused before anything is written."""

    def build(fill: float) -> ck.Module:
        model = ck.Module()
        model.dct = {"": ck.Variable(np.full(2, fill)), "a/b": ck.Variable(np.full(2, fill))}
        model.other = ck.Variable(np.full(2, fill))
        return model

    path = ck.Checkpoint(model=build(1.0)).write(tmp_path / "c")
    model = build(0.0)
    status = ck.Checkpoint(model=model).read(path, lazy=True)
    for bad in (None, 123, ("model", 4)):
        with pytest.raises(ck.UnknownPathError, match="which is not a path"):
            status.run_restore_ops(only=[bad])
    status.run_restore_ops(only=["model/dct/"])
    assert [model.dct[""].numpy()[0], model.dct["a/b"].numpy()[0]] == [1.0, 0.0]
    status.run_restore_ops(only=[("model", "dct", "a/b")])
    assert model.dct["a/b"].numpy()[0] == 1.0 and model.other.numpy()[0] == 0.0
    status.run_restore_ops(only=["/model/"])  # slashes around a path are dropped
    assert model.other.numpy()[0] == 1.0
