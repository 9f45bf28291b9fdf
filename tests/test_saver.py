"""Name-based checkpoints: ck.Saver, Checkpoint.restore by name (docs/semantics.md S76-S78)."""

import os
import re

import numpy as np
import pytest

import ckptlab as ck


def saver_file(ckpt_dir):
    kernel = ck.Variable(np.ones((2, 2), "float32"), name="dense/kernel")
    bias = ck.Variable(np.full(2, 5.0, "float32"), name="dense/bias")
    return ck.Saver([kernel, bias]).save(ckpt_dir / "model.ckpt")


def test_keys_are_variable_names(ckpt_dir):
    """S76: keys equal variable names; no object graph."""
    path = saver_file(ckpt_dir)
    assert ck.list_variables(path) == [("dense/bias", [2]), ("dense/kernel", [2, 2])]
    assert ck.load_checkpoint(path).object_graph is None


def test_checkpoint_restore_matches_by_name(ckpt_dir, ck_log):
    """S77: NameBasedSaverStatus, a warning, values assigned during restore regardless of path."""
    path = saver_file(ckpt_dir)
    holder = ck.Module()
    holder.somewhere = ck.Module()
    holder.somewhere.k = ck.Variable(np.zeros((2, 2), "float32"), name="dense/kernel")
    status = ck.Checkpoint(anything=holder).restore(path)
    assert isinstance(status, ck.NameBasedSaverStatus)
    assert "name-based checkpoint" in ck_log.text
    assert holder.somewhere.k.numpy().sum() == 4
    holder.later = ck.Variable(np.zeros(2, "float32"), name="dense/bias")  # restored on attach
    assert holder.later.numpy().tolist() == [5.0, 5.0]
    status.assert_consumed().assert_existing_objects_matched().assert_nontrivial_match()
    assert status.run_restore_ops() is None and status.initialize_or_restore() is None


def test_unmatched_names_fail_every_assertion(ckpt_dir):
    """S52: all three assertions behave like assert_consumed; save_counter is exempt."""
    path = saver_file(ckpt_dir)
    status = ck.Checkpoint(v=ck.Variable(1.0, name="not_in_ckpt")).restore(path)
    for method in (
        status.assert_consumed,
        status.assert_existing_objects_matched,
        status.assert_nontrivial_match,
    ):
        with pytest.raises(
            AssertionError,
            match=r"Some objects had attributes which were not restored.*\n.*\['not_in_ckpt'\]",
        ):
            method()


def test_wrong_shape_by_name_raises_and_writes_nothing(ckpt_dir):
    """S78 (atomic): a name match with the wrong shape raises from restore; nothing written."""
    path = saver_file(ckpt_dir)
    kernel = ck.Variable(np.zeros((3, 2), "float32"), name="dense/kernel")
    bias = ck.Variable(np.zeros(2, "float32"), name="dense/bias")
    with pytest.raises(ck.RestoreConflictError, match="Received incompatible tensor with shape"):
        ck.Checkpoint(k=kernel, b=bias).restore(path)
    assert bias.numpy().sum() == 0


def test_saver_round_trip_and_errors(ckpt_dir):
    path = saver_file(ckpt_dir)
    kernel = ck.Variable(np.zeros((2, 2), "float32"), name="dense/kernel")
    ck.Saver({"dense/kernel": kernel}).restore(path)
    assert kernel.numpy().sum() == 4
    with pytest.raises(ck.NotFoundError, match="'x' not found"):
        ck.Saver({"x": kernel}).restore(path)
    with pytest.raises(ck.InvalidArgumentError, match="several variables named"):
        ck.Saver([ck.Variable(1.0), ck.Variable(2.0)])


@pytest.mark.parametrize(
    ("var_list", "found"),
    [
        ([1.0], "[0] (float)"),
        ({"a": 1}, "['a'] (int)"),
        ({1: ck.Variable(1.0)}, "[1] (Variable)"),
        ("w", "[0] (str)"),
    ],
)
def test_var_lists_that_are_not_variables_are_refused_naming_the_entry(var_list, found):
    """``Saver([1.0])`` was an AttributeError ('float' object has no attribute 'name')."""
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(f"{found} are not")):
        ck.Saver(var_list)


def test_a_single_variable_is_not_a_var_list():
    with pytest.raises(ck.InvalidArgumentError, match="for `var_list`, got <ck.Variable 'w'"):
        ck.Saver(ck.Variable(1.0, name="w"))  # was: TypeError 'Variable' object is not iterable


def test_save_refuses_a_path_or_options_of_the_wrong_type(ckpt_dir):
    """``save(None)`` was a bare TypeError from os.fspath, ``options={...}`` an AttributeError."""
    saver = ck.Saver([ck.Variable(1.0, name="w")])
    with pytest.raises(ck.InvalidArgumentError, match="Expected a path"):
        saver.save(None)
    with pytest.raises(ck.InvalidArgumentError, match="ck.WriteOptions or None for `options`"):
        saver.save(ckpt_dir / "c", options={"durable": False})
    assert os.listdir(ckpt_dir) == []


def test_default_layer_names_are_unique_per_process(ckpt_dir):
    """S76, S103 (Keras' naming): default Dense names are dense, dense_1, ...: the variables of
    a Sequential have distinct names, so a Saver over them works."""
    model = ck.layers.Sequential([ck.layers.Dense(2), ck.layers.Dense(1)])
    model(np.ones((1, 3), "float32"))
    names = [layer.name for layer in model.layers]
    assert names[0] != names[1] and all(re.fullmatch(r"dense(_[0-9]+)?", n) for n in names)
    variables = [v for layer in model.layers for v in (layer.kernel, layer.bias)]
    path = ck.Saver(variables).save(ckpt_dir / "s")
    assert sorted(k for k, _ in ck.list_variables(path)) == sorted(v.name for v in variables)
    before = [v.numpy() for v in variables]
    for v in variables:
        v.assign(np.zeros(v.shape, v.dtype))
    ck.Saver(variables).restore(path)
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(variables, before, strict=True))
    assert ck.layers.Dense(1, name="dense").name == "dense"  # an explicit name is kept as given


def test_checkpoint_restore_by_name_fills_optimizer_slots_by_their_names(ckpt_dir):
    """Slot variables have no object path of their own: a name-based file fills them by name."""
    var = ck.Variable(np.ones(3, "float32"), name="w")
    optimizer = ck.optimizers.SGD(0.1, momentum=0.9)
    optimizer.apply_gradients([(np.ones(3, "float32"), var)])
    slot = optimizer.get_slot(var, "momentum")
    path = ck.Saver({"w": var, "w/momentum": slot}).save(str(ckpt_dir / "named"))
    slot.assign(np.zeros(3, "float32"))
    status = ck.Checkpoint(model=ck.Module(), v=var, opt=optimizer).restore(path)
    status.expect_partial()
    np.testing.assert_array_equal(slot.numpy(), np.full(3, -0.1, "float32"))
