"""Matching, deferred restoration, sharing, atomic and partial restore.

Behaviours of docs/semantics.md sections F, I, L and N.
"""

import gc
import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck

KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


def module(**children):
    m = ck.Module()
    for name, value in children.items():
        setattr(m, name, value)
    return m


def test_restore_into_empty_root_then_attach(ckpt_dir):
    """S37-S38: a dependency added after restore is restored when it is attached."""
    path = ck.Checkpoint(
        w=ck.Variable(20.0), child=module(v=ck.Variable(10.0)), empty=module(v=ck.Variable(30.0))
    ).write(ckpt_dir / "c")
    ckpt = ck.Checkpoint()
    status = ckpt.read(path)
    status.assert_existing_objects_matched()
    with pytest.raises(
        AssertionError, match=r"Unresolved object in checkpoint \(root\)\.(w|child|empty)"
    ):
        status.assert_consumed()
    with pytest.raises(AssertionError, match="Nothing to load. No dependencies have been added"):
        status.assert_nontrivial_match()
    ckpt.w = ck.Variable(0.0)  # restored during the attach
    assert ckpt.w.numpy() == 20.0
    ckpt.child = module(v=ck.Variable(0.0))  # a child that already holds v
    assert ckpt.child.v.numpy() == 10.0
    ckpt.empty = ck.Module()  # an empty child, then its variable
    ckpt.empty.v = ck.Variable(0.0)
    assert ckpt.empty.v.numpy() == 30.0
    status.assert_consumed().assert_nontrivial_match()


def test_renamed_attribute_receives_nothing(ckpt_dir):
    """S40: a renamed attribute silently receives nothing; assertions notice."""
    path = ck.Checkpoint(w=ck.Variable(20.0)).write(ckpt_dir / "c")
    ckpt = ck.Checkpoint()
    status = ckpt.read(path)
    ckpt.renamed = ck.Variable(0.0)
    assert ckpt.renamed.numpy() == 0.0
    with pytest.raises(AssertionError, match=r"Found 1 Python objects.*\n  \(root\).renamed"):
        status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="Nothing except the root object matched"):
        status.assert_nontrivial_match()
    status.expect_partial()


def test_restore_on_create_skips_initializer(ckpt_dir):
    """S39: the stored value becomes the initial value; the initializer is never called."""
    layer = ck.layers.Dense(3)
    layer(np.ones((1, 2), "float32"))
    path = ck.Checkpoint(layer=layer).write(ckpt_dir / "c")
    calls = []

    def init(shape, dtype):
        calls.append(shape)
        return np.zeros(shape, dtype)

    fresh = ck.layers.Dense(3, kernel_initializer=init)
    status = ck.Checkpoint(layer=fresh).read(path)
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match=r"\(root\).layer.kernel"):
        status.assert_consumed()
    fresh(np.ones((1, 2), "float32"))
    assert calls == []
    np.testing.assert_array_equal(fresh.kernel.numpy(), layer.kernel.numpy())
    status.assert_consumed()  # assertions are live (G45)


def test_sibling_without_saved_value_is_initialized_once(ckpt_dir):
    """S39: a sibling with no saved value is initialized normally, exactly once."""
    holder = ck.Module()
    holder.kernel = ck.Variable(np.ones((2, 3), "float32"))
    path = ck.Checkpoint(layer=holder).write(ckpt_dir / "c")
    calls = []

    def init(shape, dtype):
        calls.append(shape)
        return np.full(shape, 7, dtype)

    fresh = ck.layers.Dense(3, use_bias=True, kernel_initializer=init)
    ck.Checkpoint(layer=fresh).read(path).expect_partial()
    fresh(np.ones((1, 2), "float32"))
    assert calls == [] and fresh.bias.numpy().tolist() == [0, 0, 0]


def test_most_recent_restore_wins(ckpt_dir):
    """S41: pending restores: the newest wins on creation; existing objects: the last call wins."""
    a = ck.Checkpoint(w=ck.Variable(1.0)).write(ckpt_dir / "a")
    b = ck.Checkpoint(w=ck.Variable(2.0)).write(ckpt_dir / "b")
    ckpt = ck.Checkpoint()
    sa, sb = ckpt.read(a), ckpt.read(b)
    ckpt.w = ck.Variable(0.0)
    assert ckpt.w.numpy() == 2.0
    sa.assert_consumed()
    sb.assert_consumed()
    ckpt.read(b)
    ckpt.read(a)
    assert ckpt.w.numpy() == 1.0


def test_list_elements_match_by_index(ckpt_dir):
    """S42: list elements appended after restore are matched by index."""
    m = module(layers=[ck.Variable(0.0), ck.Variable(1.0), ck.Variable(2.0)])
    path = ck.Checkpoint(m=m).write(ckpt_dir / "c")
    target = module(layers=[])
    status = ck.Checkpoint(m=target).read(path)
    target.layers.append(ck.Variable(-1.0))
    target.layers.append(ck.Variable(-1.0))
    assert [v.numpy() for v in target.layers] == [0.0, 1.0]
    with pytest.raises(
        AssertionError, match=r"Unresolved object in checkpoint \(root\).m.layers.2"
    ):
        status.assert_consumed()
    target.layers.append(ck.Variable(-1.0))
    target.layers.append(ck.Variable(-1.0))
    with pytest.raises(AssertionError, match=r"\(root\).m.layers.3"):
        status.assert_existing_objects_matched()


def test_values_restored_one_at_a_time_share_the_checkpoints_byte_extents(ckpt_dir, monkeypatch):
    """Each element appended after a restore fetches its own value through a new reader; the
    byte extents of every stored value are computed once for the checkpoint, not per element
    (appending N elements did N * N work)."""
    from ckptlab.core import ValueTable

    m = module(layers=[ck.Variable(float(i)) for i in range(40)])
    path = ck.Checkpoint(m=m).write(ckpt_dir / "c")
    computed = []
    extents = ValueTable.byte_extents

    def counting(table):
        computed.append(table._extents is None)
        return extents(table)

    monkeypatch.setattr(ValueTable, "byte_extents", counting)
    target = module(layers=[])
    status = ck.Checkpoint(m=target).read(path)
    for _ in range(40):
        target.layers.append(ck.Variable(-1.0))
    assert [v.numpy() for v in target.layers] == [float(i) for i in range(40)]
    status.assert_consumed()
    assert len(computed) >= 40 and sum(computed) == 1


def test_list_setitem_and_insert_restore_the_index(ckpt_dir):
    """S38, S42: a trackable put where a plain element was (item, slice, insert) is restored
    for that index, as an append is; a failing restore undoes the change."""
    m = module(
        layers=[ck.Variable(1.0), ck.Variable(2.0), ck.Variable(3.0)], cfg={"k": ck.Variable(4.0)}
    )
    path = ck.Checkpoint(m=m).write(ckpt_dir / "c")
    target = module(layers=[None, None, None], cfg={"k": None})
    status = ck.Checkpoint(m=target).read(path)
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\).m.layers.1"):
        target.layers[1] = ck.Variable([0.0, 0.0])
    assert target.layers == [None, None, None]
    target.layers[1] = ck.Variable(0.0)
    target.layers[0:1] = [ck.Variable(0.0)]
    target.layers.insert(2, ck.Variable(0.0))  # moves only a plain element: still saveable
    target.cfg["k"] = ck.Variable(0.0)
    assert [v.numpy() for v in target.layers[:3]] == [1.0, 2.0, 3.0] and target.layers[3] is None
    assert target.cfg["k"].numpy() == 4.0
    status.assert_consumed()
    ck.Checkpoint(m=target).write(ckpt_dir / "again")


def test_shared_object_restored_into_same_sharing(ckpt_dir):
    """S57-S58: stored once, restored into the same sharing: all assertions pass."""
    v = ck.Variable(5.0)
    path = ck.Checkpoint(a=module(v=v), b=module(v=v)).write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["a/v" + KEY]
    shared = ck.Variable(0.0)
    ck.Checkpoint(a=module(v=shared), b=module(v=shared)).read(path).assert_consumed()
    assert shared.numpy() == 5.0


def states(report, *wanted):
    """``{path: (state, program side?)}`` of the entries in ``wanted`` states."""
    return {e.path: (e.state, e.node is None) for e in report.by_state(*wanted)}


def shared_checkpoint(ckpt_dir):
    v = ck.Variable(5.0)
    return ck.Checkpoint(a=module(v=v), b=module(v=v)).write(ckpt_dir / "c")


def test_shared_object_restored_into_two_objects(ckpt_dir, ck_log):
    """S59: the first path gets the value, the second stays unbound; report(): the saved value
    and the second program object are both inconsistent (docs/semantics.md, Match states)."""
    path = shared_checkpoint(ckpt_dir)
    first, second = ck.Variable(0.0), ck.Variable(0.0)
    status = ck.Checkpoint(a=module(v=first), b=module(v=second)).read(path)
    assert (first.numpy(), second.numpy()) == (5.0, 0.0)
    with pytest.raises(
        AssertionError, match=r"Found 1 Python objects.*\n  \(root\).b.v.*inconsistent"
    ):
        status.assert_existing_objects_matched()
    with pytest.raises(
        AssertionError, match=r"Inconsistent references when loading.*\n  \(root\).a.v"
    ):
        status.assert_consumed()
    assert "Inconsistent references" in ck_log.text
    report = status.report()
    assert states(report, "inconsistent") == {
        "a/v": ("inconsistent", False),
        "b/v": ("inconsistent", True),
    }
    [saved] = [e for e in report.inconsistent if e.node is not None]
    assert saved.reason.startswith("restored into") and "(root).b.v" in saved.reason
    assert report.summary() == "2 inconsistent references"
    status.expect_partial()


def attach_to_shared(ckpt_dir, order):
    """Restore the shared checkpoint into empty a and b, then attach ``v`` to each in ``order``."""
    ckpt = ck.Checkpoint(a=ck.Module(), b=ck.Module())
    status = ckpt.read(shared_checkpoint(ckpt_dir))
    for name in order:
        getattr(ckpt, name).v = ck.Variable(0.0)
    return ckpt, status


def test_shared_object_restored_into_two_objects_deferred(ckpt_dir, ck_log):
    """S60: the same on the deferred path (a warning); sharing again in the program resolves it
    (the report is live)."""
    ckpt, status = attach_to_shared(ckpt_dir, "ab")
    assert (ckpt.a.v.numpy(), ckpt.b.v.numpy()) == (5.0, 0.0)
    assert "Inconsistent references" in ck_log.text
    assert states(status.report(), "inconsistent") == {
        "a/v": ("inconsistent", False),
        "b/v": ("inconsistent", True),
    }
    ckpt.b.v = ckpt.a.v
    assert status.report().inconsistent == ()
    status.assert_consumed()


def test_inconsistent_reason_names_where_the_value_went(ckpt_dir):
    """S60: the second path attached first takes the value; the report says so."""
    ckpt, status = attach_to_shared(ckpt_dir, "ba")
    assert (ckpt.a.v.numpy(), ckpt.b.v.numpy()) == (0.0, 5.0)
    saved, program = status.report().inconsistent
    assert (saved.path, program.path) == ("a/v", "a/v")
    assert saved.reason.startswith("restored into (root).b.v, but (root).a.v refers")
    status.expect_partial()


def test_shared_container_restored_into_two_containers(ckpt_dir):
    """S59: the shared saved object is a module: everything below the second program object is
    inconsistent; the values below the first are restored."""
    inner = module(v=ck.Variable(5.0))
    path = ck.Checkpoint(a=inner, b=inner).write(ckpt_dir / "c")
    status = ck.Checkpoint(a=module(v=ck.Variable(0.0)), b=module(v=ck.Variable(0.0))).read(path)
    report = status.report()
    assert states(report, "restored", "inconsistent") == {
        "a/v": ("restored", False),
        "b/v": ("inconsistent", True),
    }
    assert "saves this below (root).a," in report.inconsistent[0].reason
    with pytest.raises(AssertionError, match=r"Found 1 Python objects.*\n  \(root\).b.v  "):
        status.assert_existing_objects_matched()


def saved_distinct(ckpt_dir):
    return ck.Checkpoint(a=module(v=ck.Variable(1.0)), b=module(v=ck.Variable(2.0))).write(
        ckpt_dir / "c"
    )


def test_saved_distinct_restored_shared(ckpt_dir, ck_log):
    """S61 (stricter: every checkpoint value must be used): the shared object takes the value found
    first; the other saved value is inconsistent (not written), so assert_consumed fails and
    the warning at collection names it."""
    path = saved_distinct(ckpt_dir)
    shared = ck.Variable(0.0)
    status = ck.Checkpoint(a=module(v=shared), b=module(v=shared)).read(path)
    assert shared.numpy() == 1.0
    status.assert_existing_objects_matched().assert_nontrivial_match()
    report = status.report()
    assert states(report, "restored", "inconsistent") == {
        "a/v": ("restored", False),
        "b/v": ("inconsistent", False),
    }
    assert report.inconsistent[0].reason.startswith("not written") and "(root).a.v" in (
        report.inconsistent[0].reason
    )
    with pytest.raises(AssertionError, match=r"Inconsistent references.*\n  \(root\).b.v"):
        status.assert_consumed()
    del status, report
    gc.collect()
    assert "could not be found in the restored object: (root).b.v" in ck_log.text
    assert "(root).a.v" not in ck_log.text


def test_saved_distinct_restored_shared_deferred(ckpt_dir):
    """S61 on the deferred path: the first value found wins too (it is not overwritten)."""
    path = saved_distinct(ckpt_dir)
    ckpt = ck.Checkpoint(a=ck.Module(), b=ck.Module())
    status = ckpt.read(path)
    shared = ck.Variable(0.0)
    ckpt.a.v = shared
    ckpt.b.v = shared
    assert shared.numpy() == 1.0
    assert states(status.report(), "inconsistent") == {"b/v": ("inconsistent", False)}
    status.expect_partial()


def test_cycles_save_and_deferred_restore(ckpt_dir):
    """S62: cycles save once per object under the shortest path; deferred restore works."""
    a, b = ck.Module(), ck.Module()
    a.partner, b.partner, a.me = b, a, a
    a.v, b.v = ck.Variable(1.0), ck.Variable(2.0)
    path = ck.Checkpoint(a=a).write(ckpt_dir / "c")
    assert [k for k, _ in ck.list_variables(path)] == ["a/partner/v" + KEY, "a/v" + KEY]
    assert len(ck.load_checkpoint(path).object_graph) == 5
    ckpt = ck.Checkpoint(a=ck.Module())
    status = ckpt.read(path)
    ckpt.a.partner = ck.Module()
    ckpt.a.partner.partner = ckpt.a
    ckpt.a.me = ckpt.a
    ckpt.a.v, ckpt.a.partner.v = ck.Variable(0.0), ck.Variable(0.0)
    assert (ckpt.a.v.numpy(), ckpt.a.partner.v.numpy()) == (1.0, 2.0)
    status.assert_consumed()


def test_conflicts_found_before_anything_is_written(ckpt_dir):
    """S72, S75 (stricter): one RestoreConflictError lists all conflicts; nothing is modified."""
    path = ck.Checkpoint(
        a=ck.Variable(1.0),
        b=ck.Variable([1.0, 2.0]),
        c=ck.Variable(np.float32(3)),
        m=module(d=ck.Variable(4.0)),
    ).write(ckpt_dir / "c")
    a, b, c, d = ck.Variable(0.0), ck.Variable([0.0, 0.0, 0.0]), ck.Variable(0.0), ck.Variable(0.0)
    with pytest.raises(ck.RestoreConflictError) as info:
        ck.Checkpoint(a=a, b=b, c=c, m=module(d=d)).read(path)
    message = str(info.value)
    assert (
        "Received incompatible tensor with shape (2,) when attempting to restore variable "
        "with shape (3,)" in message
    )
    assert "expected dtype float64 does not equal original dtype float32" in message
    assert "(root).b" in message and "(root).c" in message and "nothing was written" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert len(info.value.conflicts) == 2
    assert [v.numpy() for v in (a, c, d)] == [0.0, 0.0, 0.0]


def _damage_save_counter(path):
    """Flip a byte of ``data/int64/0``, which holds a checkpoint's only int64 value: its counter."""
    shard = Path(path) / "data" / "int64" / "0"
    raw = bytearray(shard.read_bytes())
    raw[0] ^= 0xFF
    shard.write_bytes(raw)


@pytest.mark.parametrize("with_root", [False, True], ids=["kwargs", "root"])
def test_a_damaged_save_counter_fails_the_restore_before_anything_is_written(ckpt_dir, with_root):
    """S35 (stricter): restore() reads the stored save_counter with every other value, before
    writing any.  It created the counter after the read had written the rest, so a damaged
    counter raised with w already restored (and the failed restore stayed armed for objects
    attached later); now nothing is written, created or left waiting."""
    saved = ck.Checkpoint(w=ck.Variable([1.0, 2.0]), m=module(v=ck.Variable(5.0)))
    path = saved.save(ckpt_dir / "ckpt")
    _damage_save_counter(path)
    w, m = ck.Variable([0.0, 0.0]), module()  # m.v comes later
    ckpt = ck.Checkpoint(root=module(w=w, m=m)) if with_root else ck.Checkpoint(w=w, m=m)
    with pytest.raises(ck.CorruptCheckpointError, match="save_counter"):
        ckpt.restore(path)
    assert w.numpy().tolist() == [0.0, 0.0]
    assert ckpt._ck_counter is None  # not created either
    m.v = ck.Variable(0.0)  # the failed restore waits for nothing
    assert m.v.numpy() == 0.0
    empty = ck.Checkpoint()  # everything comes later: nothing may wait for it
    with pytest.raises(ck.CorruptCheckpointError, match="save_counter"):
        empty.restore(path)
    empty.w = ck.Variable([0.0, 0.0])
    assert empty.w.numpy().tolist() == [0.0, 0.0] and empty._ck_counter is None


def test_a_damaged_save_counter_fails_a_lazy_restore_when_it_runs(ckpt_dir):
    """S99-S101: a lazy restore reads nothing until run_restore_ops(), which then checks the
    counter with every other value before writing any; the rest can still be restored."""
    path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).save(ckpt_dir / "ckpt")
    _damage_save_counter(path)
    w = ck.Variable([0.0, 0.0])
    ckpt = ck.Checkpoint(w=w)
    status = ckpt.restore(path, lazy=True)
    with pytest.raises(ck.CorruptCheckpointError, match="save_counter"):
        status.run_restore_ops()
    assert w.numpy().tolist() == [0.0, 0.0] and int(ckpt.save_counter.numpy()) == 0
    status.run_restore_ops(only=["w"])
    assert w.numpy().tolist() == [1.0, 2.0] and int(ckpt.save_counter.numpy()) == 0
    status.expect_partial()


def test_conflict_on_attach_undoes_the_attach(ckpt_dir):
    """S72: a variable attached later with the wrong shape: the attach raises and is undone."""
    path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(ckpt_dir / "c")
    ckpt = ck.Checkpoint()
    ckpt.read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="shape"):
        ckpt.w = ck.Variable([0.0, 0.0, 0.0])
    assert not hasattr(ckpt, "w")
    ckpt.w = ck.Variable([0.0, 0.0])  # the restore is still armed
    assert ckpt.w.numpy().tolist() == [1.0, 2.0]


def test_attach_with_several_waiting_restores_is_all_or_nothing(ckpt_dir):
    """S72, S41 (stricter): the newest restore fits, an older one conflicts: the attach raises,
    is undone, nothing is written and no restore stays bound to the detached object."""
    older_path = ck.Checkpoint(w=ck.Variable([1.0, 2.0, 3.0])).write(ckpt_dir / "old")
    newer_path = ck.Checkpoint(w=ck.Variable([1.0, 2.0])).write(ckpt_dir / "new")
    ckpt = ck.Checkpoint()
    older, newer = ckpt.read(older_path), ckpt.read(newer_path)
    target = ck.Variable([0.0, 0.0])
    with pytest.raises(ck.RestoreConflictError, match="shape"):
        ckpt.w = target
    assert not hasattr(ckpt, "w") and target.numpy().tolist() == [0.0, 0.0]
    for status in (older, newer):
        assert [e.state for e in status.report().entries] == ["pending"]
        status.expect_partial()


def test_newest_waiting_restore_wins_for_slots_created_on_attach(ckpt_dir):
    """S41, S68: two restores wait for a variable; the newest creates its slot, the older one's
    slot value does not overwrite it."""
    paths = []
    for value in (1.0, 2.0):
        holder, optimizer = ck.Module(), ck.optimizers.SGD(1.0, momentum=0.5)
        holder.w = ck.Variable([0.0])
        optimizer.apply_gradients([(np.array([value]), holder.w)])
        paths.append(ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / str(value)))
    model, optimizer = ck.Module(), ck.optimizers.SGD(1.0, momentum=0.5)
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer)
    ckpt.read(paths[0]).expect_partial()
    ckpt.read(paths[1]).assert_nontrivial_match()
    model.w = ck.Variable([9.0])
    assert model.w.numpy().tolist() == [-2.0]
    assert optimizer.get_slot(model.w, "momentum").numpy().tolist() == [-2.0]


def test_conflict_on_create_raises_before_creating(ckpt_dir):
    """S73: restore-on-create with the wrong shape fails inside creation; nothing is created."""
    layer = ck.layers.Dense(3)
    layer(np.ones((1, 2), "float32"))
    path = ck.Checkpoint(layer=layer).write(ckpt_dir / "c")
    fresh = ck.layers.Dense(3)
    ck.Checkpoint(layer=fresh).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="shape"):
        fresh(np.ones((1, 5), "float32"))
    assert "kernel" not in vars(fresh)


def test_a_build_that_conflicts_creates_none_of_its_variables(ckpt_dir):
    """S73 (stricter): a layer's build checks every value waiting for its variables before it
    creates any: a kernel that fits and a bias that does not leave no kernel, nothing written,
    and both still pending; the error lists every conflict."""
    saved = module(
        kernel=ck.Variable(np.ones((3, 2), "float32")), bias=ck.Variable(np.ones(5, "float32"))
    )
    path = ck.Checkpoint(layer=saved).write(ckpt_dir / "c")
    layer = ck.layers.Dense(2, kernel_initializer="zeros")
    status = ck.Checkpoint(layer=layer).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="1 conflict") as error:
        layer.build(3)
    assert "(root).layer.bias" in str(error.value) and "layer.kernel" not in str(error.value)
    assert not layer.built and layer._ck_children() == []
    assert "kernel" not in vars(layer) and "bias" not in vars(layer)
    assert status.report().summary() == "2 pending"
    wider = ck.layers.Dense(4)
    ck.Checkpoint(layer=wider).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="2 conflict") as error:
        wider.build(3)
    assert "(root).layer.kernel" in str(error.value) and "(root).layer.bias" in str(error.value)


def test_a_build_is_all_or_nothing_for_every_waiting_restore(ckpt_dir):
    """S73 (stricter): the same when the conflict comes from an older restore, or a name-based
    one, that a build's attach fires."""
    fits = module(
        kernel=ck.Variable(np.ones((3, 2), "float32")), bias=ck.Variable(np.ones(2, "float32"))
    )
    wrong_bias = module(
        kernel=ck.Variable(np.ones((3, 2), "float32")), bias=ck.Variable(np.ones(5, "float32"))
    )
    older = ck.Checkpoint(layer=wrong_bias).write(ckpt_dir / "older")
    newer = ck.Checkpoint(layer=fits).write(ckpt_dir / "newer")
    layer = ck.layers.Dense(2)
    ckpt = ck.Checkpoint(layer=layer)
    ckpt.read(older).expect_partial()
    ckpt.read(newer).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\)\.layer\.bias"):
        layer.build(3)
    assert not layer.built and layer._ck_children() == []
    by_name = ck.Saver({"named/kernel": wrong_bias.kernel, "named/bias": wrong_bias.bias}).save(
        str(ckpt_dir / "names")
    )
    named = ck.layers.Dense(2, name="named")
    ck.Checkpoint(layer=named).read(by_name)
    with pytest.raises(ck.RestoreConflictError, match="named/bias"):
        named.build(3)
    assert not named.built and named._ck_children() == []


@pytest.mark.parametrize(
    ("saved", "target"),
    [
        ("float32", "float64"),
        ("float32", "float16"),
        ("float32", "int32"),
        ("int32", "int64"),
        ("int32", "float32"),
    ],
)
def test_no_dtype_casting(ckpt_dir, saved, target):
    """S75: no casting in any direction."""
    path = ck.Checkpoint(f=ck.Variable(np.zeros(2, saved))).write(ckpt_dir / "c")
    with pytest.raises(
        ck.RestoreConflictError,
        match=f"expected dtype {target} does not equal original dtype {saved}",
    ):
        ck.Checkpoint(f=ck.Variable(np.ones(2, target))).read(path)


def test_unknown_shape_accepts_any_saved_shape(ckpt_dir):
    """S74: a variable declared with None dims accepts any saved shape."""
    path = ck.Checkpoint(v=ck.Variable(np.arange(6.0).reshape(2, 3))).write(ckpt_dir / "c")
    target = ck.Variable(np.zeros((1, 3)), shape=(None, 3))
    ck.Checkpoint(v=target).read(path).assert_consumed()
    assert target.shape == (2, 3)


def test_partial_restore_with_stand_ins(ckpt_dir):
    """S79-S80: a Checkpoint rooted at a sub-object matches nothing; stand-ins rebuild the path."""
    model = module(l1=module(bias=ck.Variable(3.0), kernel=ck.Variable(1.0)))
    path = ck.Checkpoint(model=model, step=ck.Variable(7)).write(ckpt_dir / "c")
    sub = module(bias=ck.Variable(0.0))
    status = ck.Checkpoint(root=sub).read(path)
    assert sub.bias.numpy() == 0.0
    for method in (status.assert_consumed, status.assert_existing_objects_matched):
        with pytest.raises(AssertionError):
            method()
    with pytest.raises(AssertionError, match="Nothing except the root object matched"):
        status.assert_nontrivial_match()
    status.expect_partial()
    bias = ck.Variable(0.0)
    status = ck.Checkpoint(model=ck.Checkpoint(l1=ck.Checkpoint(bias=bias))).read(path)
    assert bias.numpy() == 3.0
    status.assert_existing_objects_matched().assert_nontrivial_match().expect_partial()
    with pytest.raises(AssertionError, match=r"\(root\).step"):
        status.assert_consumed()


def test_subobject_root_round_trip(ckpt_dir):
    """S81: a checkpoint written from a sub-object root restores into another model's sub-object."""
    path = ck.Checkpoint(root=module(w=ck.Variable(4.0))).write(ckpt_dir / "c")
    other = module(w=ck.Variable(0.0))
    ck.Checkpoint(root=other).read(path).assert_consumed()
    assert other.w.numpy() == 4.0


def test_a_key_map_renames_and_transposes_a_ckptlab_checkpoint(tmp_path):
    """A layer renamed since the save (the explorer's suggestion), applied with a key map."""
    saved = ck.Module()
    saved.enc = ck.Module()
    saved.enc.w = ck.Variable(np.arange(6.0).reshape(2, 3))
    saved.enc.b = ck.Variable(np.ones(2))
    path = ck.Checkpoint(model=saved).write(tmp_path / "ckpt")
    key_map = ck.KeyMap({"^enc$": "encoder"}, transpose=["encoder/w$"])

    def renamed() -> ck.Module:
        model = ck.Module()
        model.encoder = ck.Module()
        model.encoder.w = ck.Variable(np.zeros((3, 2)))
        model.encoder.b = ck.Variable(np.zeros(2))
        return model

    eager = renamed()
    ck.Checkpoint(model=eager).read(path, key_map=key_map).assert_consumed()
    np.testing.assert_array_equal(eager.encoder.w.numpy(), saved.enc.w.numpy().T)
    np.testing.assert_array_equal(eager.encoder.b.numpy(), saved.enc.b.numpy())
    lazy = renamed()
    status = ck.Checkpoint(model=lazy).read(path, key_map=key_map, lazy=True)
    status.run_restore_ops(only=["model/encoder/b"])
    np.testing.assert_array_equal(lazy.encoder.b.numpy(), saved.enc.b.numpy())
    assert not lazy.encoder.w.numpy().any()
    (Path(path) / "data" / "float64" / "0").write_bytes(b"\0" * 64)  # damaged: nothing written
    damaged = renamed()
    with pytest.raises(ck.CorruptCheckpointError):
        ck.Checkpoint(model=damaged).read(path, key_map=key_map)
    assert not damaged.encoder.w.numpy().any() and not damaged.encoder.b.numpy().any()


@pytest.mark.parametrize(
    "key_map", [ck.KeyMap(renames={"a": "b"}), ck.KeyMap({"^a$": "b"})], ids=["renames", "rule"]
)
def test_a_key_map_renaming_two_edges_onto_one_name_is_a_typed_error(tmp_path, key_map):
    """Two sibling edges renamed onto one name: an InvalidArgumentError naming both edges and
    their parent (it was a bare ValueError), as the same mistake on a name-based file; nothing
    is written."""
    saved = module(a=ck.Variable(np.ones(2)), b=ck.Variable(np.full(2, 2.0)))
    path = ck.Checkpoint(model=saved).save(tmp_path / "c")
    model = module(a=ck.Variable(np.zeros(2)), b=ck.Variable(np.zeros(2)))
    with pytest.raises(ck.InvalidArgumentError, match=r"'a' and 'b' of 'model' to 'b'"):
        ck.Checkpoint(model=model).restore(path, key_map=key_map)
    assert not model.a.numpy().any() and not model.b.numpy().any()


def test_a_key_map_from_near_misses_of_object_paths_restores_them(tmp_path):
    """ck.near_misses on an object-based restore's report pairs whole object paths; the key map
    ck.KeyMap.from_near_misses builds renames the edge whose path matches (it renamed single
    edge names only, so the whole-path key never matched and the kernel stayed unwritten)."""
    weight = np.arange(6.0).reshape(2, 3)
    path = ck.Checkpoint(model=module(dense=module(weight=ck.Variable(weight)))).save(
        tmp_path / "c"
    )

    def program() -> ck.Module:
        return module(dense=module(kernel=ck.Variable(np.zeros((3, 2)))))

    report = ck.Checkpoint(model=program()).restore(path).report()
    misses = ck.near_misses(
        {e.path: e.stored for e in report.entries if e.state == "pending"},
        {e.path: e.program for e in report.entries if e.state == "program_only"},
    )
    assert [(m.stored, m.wanted) for m in misses] == [("model/dense/weight", "model/dense/kernel")]
    model = program()
    key_map = ck.KeyMap.from_near_misses(misses)
    ck.Checkpoint(model=model).restore(path, key_map=key_map).assert_consumed()
    np.testing.assert_array_equal(model.dense.kernel.numpy(), weight.T)
    other = module(weight=ck.Variable(np.zeros((2, 3))))  # another edge named weight: kept
    ck.Checkpoint(model=other).restore(path, key_map=key_map).expect_partial()
    assert not other.weight.numpy().any()


def test_a_whole_path_rename_to_another_parent_is_refused(tmp_path):
    """A whole-path rename renames the last edge; one moving it under another parent is an
    InvalidArgumentError naming both paths, and nothing is written."""
    path = ck.Checkpoint(model=module(enc=module(w=ck.Variable(np.ones(2))))).save(tmp_path / "c")
    model = module(encoder=module(w=ck.Variable(np.zeros(2))))
    key_map = ck.KeyMap(renames={"model/enc/w": "model/encoder/w"})
    with pytest.raises(ck.InvalidArgumentError, match="'model/enc/w' to 'model/encoder/w'"):
        ck.Checkpoint(model=model).restore(path, key_map=key_map)
    assert not model.encoder.w.numpy().any()


def test_a_key_map_rename_naming_nothing_is_an_unknown_path_error(tmp_path):
    """An exact ``renames`` key naming nothing in the checkpoint (a typo) was ignored: the
    restore wrote nothing under the wanted name and said nothing. Now an UnknownPathError
    names the checkpoint, every such key and the closest stored names, before anything is
    read or written; the keys that do name something (edge, whole path, stored name) pass."""
    objects = ck.Checkpoint(model=module(dense=module(weight=ck.Variable(np.ones(2))))).save(
        tmp_path / "objects"
    )
    names = ck.Saver({"fc.weight": ck.Variable(np.ones(2))}).save(str(tmp_path / "names"))
    typo = ck.KeyMap(renames={"model/dense/wieght": "model/dense/kernel", "dense": "dense"})
    model = module(dense=module(kernel=ck.Variable(np.zeros(2))))
    with pytest.raises(ck.UnknownPathError) as raised:
        ck.Checkpoint(model=model).restore(objects, key_map=typo)
    message = str(raised.value)
    assert objects in message and "'model/dense/wieght'" in message
    assert "'dense'," not in message.split("closest")[0]  # an edge name names something
    assert "'model/dense/weight'" in message.split("closest")[1] and "remove" in message
    assert not model.dense.kernel.numpy().any()
    kernel = ck.Variable(np.zeros(2), name="fc.kernel")
    with pytest.raises(ck.UnknownPathError, match=r"\['fc\.wieght', 'bias'\].*'fc\.weight'"):
        ck.Checkpoint(k=kernel).restore(
            names, key_map=ck.KeyMap(renames={"fc.wieght": "fc.kernel", "bias": "b"})
        )
    with pytest.raises(ck.UnknownPathError, match="fc.wieght"):
        ck.convert(names, tmp_path / "out", key_map=ck.KeyMap(renames={"fc.wieght": "x"}))
    assert not kernel.numpy().any() and not (tmp_path / "out").exists()
    whole = ck.KeyMap(renames={"model/dense/weight": "model/dense/kernel", "dense": "dense"})
    ck.Checkpoint(model=model).restore(objects, key_map=whole).assert_consumed()
    ck.Checkpoint(k=kernel).restore(names, key_map=ck.KeyMap(renames={"fc.weight": "fc.kernel"}))
    assert model.dense.kernel.numpy().all() and kernel.numpy().all()


def test_a_key_map_transpose_given_as_one_string_is_one_pattern(tmp_path):
    """``transpose="kernel$"`` is one pattern, as ``run_restore_ops(only="model")`` is one path.

    It was iterated per character, and the pattern ``$`` then transposed every 2-D value: a
    square embedding came back transposed and ``assert_consumed`` passed.
    """
    square = np.arange(9.0).reshape(3, 3)
    path = ck.Checkpoint(kernel=ck.Variable(square), embedding=ck.Variable(square * 10)).save(
        tmp_path / "ckpt"
    )
    key_map = ck.KeyMap(transpose="kernel$")
    assert repr(key_map) == "ck.KeyMap({}, transpose=['kernel$'])"
    kernel, embedding = ck.Variable(np.zeros((3, 3))), ck.Variable(np.zeros((3, 3)))
    ck.Checkpoint(kernel=kernel, embedding=embedding).restore(path, key_map=key_map)
    np.testing.assert_array_equal(kernel.numpy(), square.T)
    np.testing.assert_array_equal(embedding.numpy(), square * 10)


@pytest.mark.parametrize("change", ["deleted", "written again"])
@pytest.mark.parametrize("lazy", [False, True])
def test_a_waiting_restore_whose_checkpoint_went_away_says_so(ckpt_dir, change, lazy):
    """Values kept for objects not created yet (or queued by a lazy restore) are read from the
    checkpoint restore() opened: if it was deleted or written again since, that is what the
    error says (a NotFoundError), not that the checkpoint is damaged."""
    path = ck.Checkpoint(head=module(w=ck.Variable(np.ones(4, "float32")))).write(ckpt_dir / "c")
    root = ck.Module()
    status = ck.Checkpoint(head=root).read(path, lazy=lazy)
    if change == "deleted":
        shutil.rmtree(path)
    else:
        ck.Checkpoint(head=module(w=ck.Variable(np.full(4, 2.0, "float32")))).write(path)

    def create_and_run() -> None:  # eager: creating reads; lazy: running does
        root.w = ck.Variable(np.zeros(4, "float32"))
        status.run_restore_ops()

    with pytest.raises(ck.NotFoundError, match=f"the checkpoint was {change} \\("):
        create_and_run()
    if change == "written again":
        assert ck.storage.verify_checkpoint(path) == []  # not damaged: another checkpoint


def _training_checkpoints(ckpt_dir, count, **more):
    """``count`` checkpoints of one run: a model and an optimizer with slots (and ``more``)."""
    model, optimizer = module(w=ck.Variable(np.zeros(2))), ck.optimizers.SGD(1.0, momentum=0.5)
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer, **more)
    paths = []
    for step in range(count):
        optimizer.apply_gradients([(np.full(2, step + 1.0), model.w)])
        paths.append(ckpt.write(ckpt_dir / f"ckpt-{step}"))
    return paths


def test_restoring_in_a_loop_keeps_one_restore_waiting(ckpt_dir):
    """S41: an evaluation loop restores a run's checkpoints into a model without its optimizer.
    Each restore leaves the optimizer waiting; an older restore of a checkpoint laid out alike
    whose status is gone stops waiting (nothing could tell it apart from the newer one), so
    the loop does not keep every restore alive. The optimizer attached afterwards gets the
    newest checkpoint's slots."""
    paths = _training_checkpoints(ckpt_dir, 4)
    model = module(w=ck.Variable(np.zeros(2)))
    ckpt = ck.Checkpoint(model=model)
    coordinators = []
    for path in paths:
        status = ckpt.restore(path).expect_partial()
        coordinators.append(weakref.ref(status._coordinator))
        del status
    gc.collect()
    assert [ref() is not None for ref in coordinators] == [False, False, False, True]
    optimizer = ck.optimizers.SGD(1.0, momentum=0.5)
    ckpt.optimizer = optimizer
    newest = ck.load_checkpoint(paths[-1])
    slot = "model/w/.OPTIMIZER_SLOT/optimizer/momentum/.ATTRIBUTES/VARIABLE_VALUE"
    assert optimizer.get_slot(model.w, "momentum").numpy().tolist() == (
        newest.get_tensor(slot).tolist()
    )


def test_a_restore_whose_status_is_kept_or_laid_out_differently_keeps_waiting(ckpt_dir):
    """Only a restore nobody can observe is dropped, and only for a newer one that writes all
    it would: a kept status still sees its values restored on attach (S41), and a checkpoint
    laid out differently still gives what the newer one lacks."""
    first, second = _training_checkpoints(ckpt_dir, 2)
    (other,) = _training_checkpoints(ckpt_dir / "more", 1, extra=ck.Variable(1.0))
    ckpt = ck.Checkpoint(model=module(w=ck.Variable(np.zeros(2))))
    kept = ckpt.restore(first).expect_partial()
    dropped = weakref.ref(ckpt.restore(other).expect_partial()._coordinator)
    ckpt.restore(second).expect_partial()
    gc.collect()
    assert dropped() is not None  # it holds a value the newer one lacks
    ckpt.optimizer = ck.optimizers.SGD(1.0, momentum=0.5)
    assert "optimizer" in {e.path.split("/")[0] for e in kept.report().matched}


def test_a_superseded_restore_does_not_warn_about_values_the_newer_one_restores(ckpt_dir, caplog):
    """S41, S54: an older restore dropped for a newer one laid out alike leaves the values it
    waited for to the newer one, so it does not log them as unrestored when it goes."""

    def save(value):
        model = module(a=module(w=ck.Variable(np.full(3, value, np.float32))))
        return ck.Checkpoint(model=model).save(ckpt_dir / f"c{value}")

    older, newer = save(1.0), save(2.0)
    model = module()
    ck.Checkpoint(model=model).restore(older)
    gc.collect()
    ck.Checkpoint(model=model).restore(newer)
    gc.collect()
    model.a = module(w=ck.Variable(np.zeros(3, np.float32)))
    gc.collect()
    assert model.a.w.numpy().tolist() == [2.0] * 3
    assert not [r for r in caplog.records if "unrestored values" in r.getMessage()]


def test_name_based_restores_in_a_loop_keep_one_restore_armed(ckpt_dir):
    """The same for name-based checkpoints: each restore stays armed on every module for
    objects attached later (S77); an older one of the same names whose status is gone
    stops."""
    paths = [
        ck.Saver({"dense/w": ck.Variable(float(step))}).save(str(ckpt_dir / f"n{step}"))
        for step in range(3)
    ]
    model = module(dense=module(w=ck.Variable(0.0, name="dense/w")))
    restores = []
    for path in paths:
        status = ck.Checkpoint(model=model).restore(path)
        restores.append(weakref.ref(status._restore))
        del status
    gc.collect()
    assert [ref() is not None for ref in restores] == [False, False, True]
    assert float(model.dense.w.numpy()) == 2.0


def test_a_key_map_from_near_misses_moves_optimizer_slots_with_their_variable(tmp_path):
    """An object-based report pairs slot paths too; from_near_misses renames the variable only
    (a slot follows it, transposed with it), so the slot pairs are no UnknownPathError."""
    weight = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    model = module(dense=module(weight=ck.Variable(weight)))
    optimizer = ck.optimizers.Adam(0.1)
    optimizer.apply_gradients([(weight + 1, model.dense.weight)])
    path = ck.Checkpoint(model=model, opt=optimizer).save(tmp_path / "c")

    def program() -> tuple[ck.Module, ck.optimizers.Adam]:
        kernel = ck.Variable(np.zeros((3, 2), np.float32))
        new = ck.optimizers.Adam(0.1)
        new.apply_gradients([(np.ones((3, 2), np.float32), kernel)])
        return module(dense=module(kernel=kernel)), new

    first_model, first_optimizer = program()
    report = ck.Checkpoint(model=first_model, opt=first_optimizer).restore(path).report()
    misses = ck.near_misses(
        {e.path: e.stored for e in report.entries if e.state == "pending"},
        {e.path: e.program for e in report.entries if e.state == "program_only"},
    )
    assert len(misses) == 3  # the variable and its two slots
    key_map = ck.KeyMap.from_near_misses(misses)
    assert key_map.renames == {"model/dense/weight": "model/dense/kernel"}
    new_model, new_optimizer = program()
    ck.Checkpoint(model=new_model, opt=new_optimizer).restore(
        path, key_map=key_map
    ).assert_consumed()
    np.testing.assert_array_equal(new_model.dense.kernel.numpy(), model.dense.weight.numpy().T)
    for slot in ("m", "v"):
        np.testing.assert_array_equal(
            new_optimizer._ck_find_slot(new_model.dense.kernel, slot).numpy(),
            optimizer._ck_find_slot(model.dense.weight, slot).numpy().T,
        )
    slot_rename = ck.KeyMap(renames={misses[1].stored: misses[1].wanted})
    with pytest.raises(ck.UnknownPathError, match="slot value follows its variable"):
        ck.Checkpoint(model=program()[0]).restore(path, key_map=slot_rename)
