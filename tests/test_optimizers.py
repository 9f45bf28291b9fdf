"""Optimizer slots: keys, deferred slot restoration, training (docs/semantics.md S67-S71)."""

import numpy as np
import pytest

import ckptlab as ck

KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


def test_slot_key_layout_and_graph(ckpt_dir, trained_model):
    """S17: slot keys and (original, slot, slot node) triples on the optimizer node."""
    model, optimizer = trained_model(units=(2,))
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(ckpt_dir / "c")
    keys = [k for k, _ in ck.list_variables(path)]
    assert "model/layers/0/kernel/.OPTIMIZER_SLOT/optimizer/m" + KEY in keys
    assert "optimizer/iter" + KEY in keys
    graph = ck.load_checkpoint(path).object_graph
    opt_node = graph.children(0)["optimizer"]
    slots = graph.nodes[opt_node].slot_variables
    assert sorted(name for _, name, _ in slots) == ["m", "m", "v", "v"]
    kernel = graph.children(
        graph.children(graph.children(graph.children(0)["model"])["layers"])["0"]
    )["kernel"]
    assert kernel in {original for original, _, _ in slots}


def test_slots_restored_as_soon_as_variable_and_optimizer_bound(ckpt_dir):
    """S67-S68: the variable attached after restore gets its slot immediately (v1 behaviour)."""
    w = ck.Variable([1.0, 2.0])
    optimizer = ck.optimizers.SGD(0.1, momentum=0.9)
    holder = ck.Module()
    holder.w = w
    optimizer.apply_gradients([(np.array([1.0, 1.0]), w)])
    saved_momentum = optimizer.get_slot(w, "momentum").numpy()
    path = ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / "c")

    model, fresh_opt = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    status = ck.Checkpoint(model=model, optimizer=fresh_opt).read(path)
    with pytest.raises(AssertionError, match=r"\(root\).model.w"):
        status.assert_consumed()
    assert [e.state for e in status.report().entries if "OPTIMIZER_SLOT" in e.path] == ["pending"]
    model.w = ck.Variable([0.0, 0.0])
    np.testing.assert_array_equal(fresh_opt.get_slot(model.w, "momentum").numpy(), saved_momentum)
    status.assert_consumed()


def test_training_continues_from_restored_state(ckpt_dir, trained_model):
    """S69: iterations and slots carry on from the saved values."""
    model, optimizer = trained_model()
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(ckpt_dir / "c")
    fresh_model, fresh_opt = trained_model(seed=1)
    ck.Checkpoint(model=fresh_model, optimizer=fresh_opt).read(path).assert_consumed()
    assert int(fresh_opt.iterations.numpy()) == 1
    grads = [
        (np.zeros(v.shape), v) for layer in fresh_model.layers for v in (layer.kernel, layer.bias)
    ]
    before = fresh_opt.get_slot(fresh_model.layers[0].kernel, "m").numpy()
    fresh_opt.apply_gradients(grads)
    np.testing.assert_allclose(
        fresh_opt.get_slot(fresh_model.layers[0].kernel, "m").numpy(), 0.9 * before
    )
    assert int(fresh_opt.iterations.numpy()) == 2


def test_model_only_program_restoring_training_checkpoint(ckpt_dir, trained_model):
    """S70: existing_objects_matched passes, consumed fails on the optimizer values."""
    model, optimizer = trained_model()
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(ckpt_dir / "c")
    fresh, _ = trained_model(seed=2)
    status = ck.Checkpoint(model=fresh).read(path).expect_partial()
    status.assert_existing_objects_matched()
    with pytest.raises(
        AssertionError, match=r"Unresolved object in checkpoint \(root\).optimizer.iter"
    ):
        status.assert_consumed()
    unused = status.report().unused
    assert unused and all(e.optimizer for e in unused)
    assert status.report().summary() == "4 matched, 9 unused optimizer values"


def test_get_slot_errors_and_names():
    optimizer = ck.optimizers.Adam()
    assert optimizer.get_slot_names() == ["m", "v"]
    assert ck.optimizers.SGD().get_slot_names() == []
    with pytest.raises(KeyError, match="No slot 'm'"):
        optimizer.get_slot(ck.Variable(1.0), "m")


def test_skip_slot_variables(ckpt_dir, trained_model):
    """S71: skip_slot_variables excludes slots from restoration and from every check."""
    model, optimizer = trained_model()
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(ckpt_dir / "c")
    fresh_model, fresh_opt = trained_model(seed=3)
    slot = fresh_opt.get_slot(fresh_model.layers[0].kernel, "m").numpy()
    status = ck.Checkpoint(model=fresh_model, optimizer=fresh_opt).read(
        path, skip_slot_variables=True
    )
    status.assert_consumed()
    np.testing.assert_array_equal(
        fresh_opt.get_slot(fresh_model.layers[0].kernel, "m").numpy(), slot
    )
    np.testing.assert_array_equal(
        fresh_model.layers[0].kernel.numpy(), model.layers[0].kernel.numpy()
    )
    assert not any("OPTIMIZER_SLOT" in e.path for e in status.report().entries)


def saved_momentum_checkpoint(ckpt_dir):
    holder, optimizer = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    holder.w = ck.Variable([1.0, 2.0])
    optimizer.apply_gradients([(np.array([1.0, 1.0]), holder.w)])
    return ck.Checkpoint(model=holder, optimizer=optimizer).write(ckpt_dir / "c")


def test_slot_created_by_restore_has_the_restored_spec(ckpt_dir):
    """S68: a slot created by a restore declares the restored shape (no stale (None,) spec)."""
    path = saved_momentum_checkpoint(ckpt_dir)
    model, optimizer = ck.Module(), ck.optimizers.SGD(0.1, momentum=0.9)
    model.w = ck.Variable([0.0, 0.0])
    ck.Checkpoint(model=model, optimizer=optimizer).read(path).assert_consumed()
    slot = optimizer.get_slot(model.w, "momentum")
    assert slot._ck_value_spec() == ck.core.ValueSpec(shape=(2,), dtype="float64")
    with pytest.raises(ck.AssignmentError):
        slot.assign(np.zeros(3))
    other = ck.Checkpoint(model=model, optimizer=optimizer).read(
        ck.Checkpoint(model=model).write(ckpt_dir / "model_only")
    )
    [slot_entry] = [e for e in other.report().missing if "OPTIMIZER_SLOT" in e.path]
    assert slot_entry.program.describe() == "(2,) float64"  # was "(?,) float64"


@pytest.mark.parametrize(
    "optimizer",
    [ck.optimizers.SGD(), ck.optimizers.SGD(momentum=0.9), ck.optimizers.Adam()],
    ids=["sgd", "momentum", "adam"],
)
def test_optimizer_children_are_only_what_tf_saves(ckpt_dir, optimizer):
    """S17, S69: an optimizer node's children are its variables (iter), never slot_names."""
    w = ck.Variable([1.0])
    optimizer.apply_gradients([(np.array([1.0]), w)])
    path = ck.Checkpoint(w=w, optimizer=optimizer).write(ckpt_dir / "c")
    graph = ck.load_checkpoint(path).object_graph
    assert list(graph.children(graph.children(0)["optimizer"])) == ["iter"]
    assert optimizer.get_slot_names() == list(optimizer.slot_names)
