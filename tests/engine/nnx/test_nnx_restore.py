"""Restoring into a live Flax NNX program: new arrays placed like the old, atomic, partial."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import ckptlab as ck

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")
jnp = jax.numpy

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def assert_resumes_alike(jx, run, restored):
    """The restored ``(model, optimizer)`` equals the run's, and one more step keeps it so."""
    for step in (None, 7):
        if step is not None:
            jx.train(*run, steps=1, seed=step)
            jx.train(*restored, steps=1, seed=step)
        assert [jx.state_bytes(n) for n in restored] == [jx.state_bytes(n) for n in run]


@pytest.fixture
def trained(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model)
    jx.train(model, optimizer, steps=3)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    return model, optimizer, path


def test_training_resumes_bit_exactly_after_restore(trained, jx):
    model, optimizer, path = trained
    fresh = jx.net(seed=11)
    fresh_optimizer = jx.optimizer(fresh)
    ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).read(path).assert_consumed()
    assert_resumes_alike(jx, (model, optimizer), (fresh, fresh_optimizer))


def test_restore_gives_new_arrays_and_never_writes_the_old_ones(trained, jx):
    model, _, path = trained
    fresh = jx.net(seed=11)
    variables = dict(nnx.to_flat_state(nnx.state(fresh)))
    old = {k: v.get_value() if isinstance(v, nnx.Variable) else v for k, v in variables.items()}
    old_bytes = {k: jx.host(v) for k, v in old.items()}
    ck.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    after = dict(nnx.to_flat_state(nnx.state(fresh)))
    for where, before in old.items():
        if isinstance(variables[where], nnx.Variable):
            assert after[where] is variables[where], where  # the same Variable object
            now = after[where].get_value()
        else:
            now = after[where]
        assert now is not before, where  # holding a new array
        assert now.dtype == before.dtype and now.sharding == before.sharding, where
        assert jx.host(before) == old_bytes[where], where  # the old one was never written
    assert jx.state_bytes(fresh) == jx.state_bytes(model)


def test_bfloat16_models_round_trip_bit_exactly_without_a_cast(tmp_path, jx):
    model = jx.net(dtype=jnp.bfloat16)
    model.embed.kernel[0, 0] = jnp.nan
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    dtypes = dict(ck.load_checkpoint(path).get_variable_to_dtype_map())
    assert dtypes["model/embed/kernel" + VALUE] == "bfloat16"
    fresh = jx.net(seed=3, dtype=jnp.bfloat16)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.embed.kernel.get_value().dtype == jnp.bfloat16
    assert jx.state_bytes(fresh) == jx.state_bytes(model)
    with pytest.raises(ck.RestoreConflictError, match="expected dtype float32 does not equal"):
        ck.Checkpoint(model=jx.net(seed=3)).read(path)


def test_an_abstract_model_restores_into_real_arrays(tmp_path, jx):
    model = jx.net(marked=True)
    optimizer = jx.optimizer(model)
    jx.train(model, optimizer, steps=2)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    abstract = nnx.eval_shape(lambda: jx.net(seed=5, marked=True))
    abstract_optimizer = nnx.eval_shape(lambda: jx.optimizer(jx.net(seed=5, marked=True)))
    assert isinstance(abstract.embed.kernel.get_value(), jax.ShapeDtypeStruct)
    ck.Checkpoint(model=abstract, optimizer=abstract_optimizer).read(path).assert_consumed()
    assert isinstance(abstract.embed.kernel.get_value(), jax.Array)
    assert jx.state_bytes(abstract) == jx.state_bytes(model)
    assert jx.state_bytes(abstract_optimizer) == jx.state_bytes(optimizer)
    jx.train(abstract, abstract_optimizer, steps=1, seed=4)  # real arrays: training goes on
    jx.train(model, optimizer, steps=1, seed=4)
    assert jx.state_bytes(abstract) == jx.state_bytes(model)


def test_numbers_restore_into_an_abstract_model_as_the_saved_numbers(tmp_path):
    """``nnx.eval_shape`` turns a Python number into a weakly typed 0-d struct of JAX's own
    dtype (float32, int32): it takes the number saved as float64/int64 (docs/jax.md)."""

    class Run(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.temperature = nnx.data(1.5)
            self.steps = nnx.data(3)
            self.phase = nnx.data(1 + 2j)
            self.gain = nnx.Variable(0.5)  # a Variable holding a Python number
            self.bias = nnx.Param(jnp.asarray(0.25))  # a weakly typed array, saved float32

    model = Run()
    model.temperature, model.steps, model.phase = 0.1 + 0.2, 2**40, 3 - 1j
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    abstract = nnx.eval_shape(Run)
    assert abstract.temperature.dtype == jnp.float32 and abstract.temperature.weak_type
    ck.Checkpoint(model=abstract).read(path).assert_consumed()
    for name in ("temperature", "steps", "phase"):
        restored, saved = getattr(abstract, name), getattr(model, name)
        assert type(restored) is type(saved) and restored == saved, name
    assert type(abstract.gain.get_value()) is float and abstract.gain.get_value() == 0.5
    bias = abstract.bias.get_value()
    assert isinstance(bias, jax.Array) and bias.dtype == jnp.float32 and bias == 0.25

    numpy_scalar = nnx.eval_shape(Run)  # not weakly typed: a float32 array stays a float32
    numpy_scalar.temperature = nnx.data(jax.ShapeDtypeStruct((), jnp.float32))
    with pytest.raises(ck.RestoreConflictError, match="temperature.*float32.*float64"):
        ck.Checkpoint(model=numpy_scalar).read(path)
    assert isinstance(numpy_scalar.steps, jax.ShapeDtypeStruct)  # nothing was written
    other_kind = nnx.eval_shape(Run)  # a weak float takes a float, not an int
    other_kind.steps = nnx.data(jax.ShapeDtypeStruct((), jnp.float32, weak_type=True))
    with pytest.raises(ck.RestoreConflictError, match="steps.*float32 or float64.*int64"):
        ck.Checkpoint(model=other_kind).read(path)


def test_an_array_eval_shape_made_static_is_reported_not_restored(trained, jx):
    _, _, path = trained
    abstract = nnx.eval_shape(lambda: jx.net(seed=5))  # `scale` is a plain array attribute
    status = ck.Checkpoint(model=abstract).read(path)
    status.assert_existing_objects_matched()
    (lost,) = [e for e in status.report().unused if e.path.startswith("model/") and not e.optimizer]
    assert lost.path == "model/scale" and "cannot take dependencies" in lost.reason
    status.expect_partial()


def test_every_conflict_is_reported_at_once_and_nothing_is_written(trained, jx):
    _, _, path = trained
    changed = jx.net(sizes=(3, 9, 2), seed=2)
    changed.calls = jx.Counter(jnp.zeros((), jnp.int16))
    optimizer = jx.optimizer(changed)
    before = (jx.state_bytes(changed), jx.state_bytes(optimizer))
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(model=changed, optimizer=optimizer).read(path)
    message = str(caught.value)
    for where in ("(root).model.embed.kernel", "(root).model.bn.mean", "(root).model.calls"):
        assert where in message
    assert ".OPTIMIZER_SLOT/optimizer/mu" in message  # the slots of the wider layers too
    assert "int16" in message and "int32" in message  # a dtype conflict, never a cast
    assert (jx.state_bytes(changed), jx.state_bytes(optimizer)) == before


def test_lazy_restore_writes_only_the_selected_subtree(trained, jx):
    model, _, path = trained
    fresh = jx.net(seed=4)
    untouched = jx.state_bytes(fresh)
    status = ck.Checkpoint(model=fresh).read(path, lazy=True)
    model_entries = [e for e in status.report().entries if not e.optimizer]
    assert {e.state for e in model_entries if e.path.startswith("model/")} == {"bound"}
    assert jx.state_bytes(fresh) == untouched
    status.run_restore_ops(only=["model/blocks"])
    now, expected = jx.state_bytes(fresh), jx.state_bytes(model)
    for key, value in now.items():
        assert value == (expected[key] if key.startswith("['blocks']") else untouched[key]), key
    status.run_restore_ops()
    assert jx.state_bytes(fresh) == expected


def test_a_conflict_elsewhere_does_not_stop_a_clean_subtree(trained, jx):
    model, _, path = trained
    changed = jx.net(sizes=(3, 8, 5), seed=4)  # the head is wider
    status = ck.Checkpoint(model=changed).read(path, lazy=True)
    with pytest.raises(ck.RestoreConflictError, match="model.heads.main.kernel"):
        status.run_restore_ops()
    status.run_restore_ops(only=["model/embed", "model/blocks"])
    assert changed.embed.kernel.get_value().tobytes() == model.embed.kernel.get_value().tobytes()


def test_assertions_list_what_is_missing_and_unused(trained, jx):
    _, _, path = trained
    smaller = jx.net(seed=1)
    del smaller.heads["main"]
    smaller.extra = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    status = ck.Checkpoint(model=smaller).read(path)
    with pytest.raises(AssertionError, match="heads"):
        status.assert_consumed()
    with pytest.raises(AssertionError, match="extra"):
        status.assert_existing_objects_matched()
    report = status.report()
    assert {e.path for e in report.missing} == {"model/extra/kernel", "model/extra/bias"}
    status.expect_partial()


def test_an_optimizer_without_a_slot_leaves_the_stored_slot_unused(trained, jx):
    model, _, path = trained
    fresh = jx.net(seed=2)
    plain_sgd = jx.optimizer(fresh, optax.sgd(1e-2))  # no per-parameter state
    status = ck.Checkpoint(model=fresh, optimizer=plain_sgd).read(path)
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match=r"optimizer's state 'mu' for \(root\)\.model"):
        status.assert_consumed()
    assert jx.state_bytes(fresh) == jx.state_bytes(model)


def test_an_optimizer_of_a_submodule_keeps_the_slots_of_that_submodule(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model.blocks, optax.adam(1e-2))  # fine-tune the blocks only
    grads = jax.tree.map(jnp.ones_like, nnx.state(model.blocks, nnx.Param))
    optimizer.update(model.blocks, grads)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    slots = {k.split("/.OPTIMIZER_SLOT")[0] for k, _ in ck.list_variables(path) if "SLOT" in k}
    assert slots == {
        "model/blocks/" + "/".join(map(str, p))
        for p, _ in nnx.to_flat_state(nnx.state(model.blocks, nnx.Param))
    }
    fresh = jx.net(seed=1)
    fresh_optimizer = jx.optimizer(fresh.blocks, optax.adam(1e-2))
    ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).read(path).assert_consumed()
    assert jx.state_bytes(fresh_optimizer) == jx.state_bytes(optimizer)


def _masked_adam():
    """Adam on the kernels only: the other parameters' state is a ``MaskedNode``."""
    return optax.masked(optax.adam(1e-2), lambda p: jax.tree.map(lambda x: x.ndim > 1, p))


def _frozen_embed():
    """Adam everywhere but ``embed``, which ``set_to_zero`` freezes (no state for it)."""

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "frozen" if "embed" in jax.tree_util.keystr(p) else "train", params
        )

    return optax.multi_transform({"train": optax.adam(1e-2), "frozen": optax.set_to_zero()}, labels)


@pytest.mark.parametrize("tx", [_masked_adam, _frozen_embed], ids=["masked", "multi_transform"])
def test_masked_optimizer_state_saves_without_its_placeholders_and_resumes_bit_exactly(
    tmp_path, jx, tx
):
    """optax.masked and optax.multi_transform keep a ``MaskedNode`` (no value) for each
    parameter they do not update: those have no slot; the others do, and training resumes."""
    model = jx.net()
    optimizer = jx.optimizer(model, tx())
    jx.train(model, optimizer, steps=2)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    slots = {k.split("/.OPTIMIZER_SLOT")[0] for k, _ in ck.list_variables(path) if "SLOT" in k}
    params = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    if tx is _masked_adam:
        updated = {p for p in params if p.endswith("kernel")}
    else:
        updated = {p for p in params if not p.startswith("embed/")}
    assert slots == {f"model/{p}" for p in updated}

    fresh = jx.net(seed=3)
    fresh_optimizer = jx.optimizer(fresh, tx())
    status = ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).read(path)
    status.assert_consumed()
    status.assert_existing_objects_matched()
    assert_resumes_alike(jx, (model, optimizer), (fresh, fresh_optimizer))


def test_the_explorer_on_a_live_model_restores_the_selection(trained, jx):
    pytest.importorskip("anywidget")
    model, _, path = trained
    fresh = jx.net(seed=6)
    widget = ck.explore(path, program=ck.Checkpoint(model=fresh))
    assert widget.can_restore
    widget.select(["model/embed"])
    assert widget.restore_selected().startswith("Restored 2 values")
    assert fresh.embed.kernel.get_value().tobytes() == model.embed.kernel.get_value().tobytes()
    assert fresh.bn.mean.get_value().tobytes() != model.bn.mean.get_value().tobytes()

    status = ck.Checkpoint(model=jx.net(seed=7)).read(path)
    status.expect_partial()
    view = ck.explore(status).view
    assert view.nodes[view.find(("model", "drop", "rngs", "key"))].state == "restored"


def test_a_damaged_value_fails_the_restore_before_anything_is_written(trained, jx):
    _, _, path = trained
    model = jx.net(sizes=(3, 512, 2))  # a kernel large enough to be stored on its own
    path = ck.Checkpoint(model=model).write(os.path.join(os.path.dirname(path), "big"))
    data = [p for p in pathlib.Path(path).rglob("*") if p.is_file() and p.stat().st_size > 4096]
    blob = bytearray(data[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a value's byte (a shard's index sits at its end)
    data[0].write_bytes(bytes(blob))
    fresh = jx.net(sizes=(3, 512, 2), seed=8)
    before = jx.state_bytes(fresh)
    with pytest.raises(ck.CorruptCheckpointError):
        ck.Checkpoint(model=fresh).read(path)
    assert jx.state_bytes(fresh) == before


def test_sharded_arrays_keep_their_sharding_and_abstract_ones_take_theirs(tmp_path):
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from flax import nnx
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        import ckptlab as ck

        mesh = Mesh(np.array(jax.devices()), ("model",))
        sharding = NamedSharding(mesh, P(None, "model"))

        def build(seed):
            layer = nnx.Linear(4, 8, rngs=nnx.Rngs(seed))
            layer.kernel.set_value(jax.device_put(layer.kernel.get_value(), sharding))
            return layer

        model = build(0)
        path = ck.Checkpoint(model=model).write(PATH)
        fresh = build(1)
        ck.Checkpoint(model=fresh).read(path).assert_consumed()
        kernel = fresh.kernel.get_value()
        assert kernel.sharding == sharding, kernel.sharding
        assert len(kernel.addressable_shards) == 2
        np.testing.assert_array_equal(kernel, model.kernel.get_value())

        abstract = nnx.eval_shape(lambda: nnx.Linear(4, 8, rngs=nnx.Rngs(0)))
        shape = abstract.kernel.get_value()
        abstract.kernel.set_value(jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding))
        ck.Checkpoint(model=abstract).read(path).assert_consumed()
        assert abstract.kernel.get_value().sharding == sharding
        assert abstract.bias.get_value().sharding.device_set == {jax.devices()[0]}
        print("ok")
        """
    ).replace("PATH", repr(str(tmp_path / "sharded")))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_rng_keys_created_under_an_explicit_mesh_restore(tmp_path):
    """Flax's sharded recipe builds models under ``jax.set_mesh``: a scalar key then reports the
    rank-1 sharding of its data (``P(None,)``), which a restored key must not be put with."""

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.linear = nnx.Linear(2, 3, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

    with jax.set_mesh(jax.make_mesh((1,), ("model",))):
        model, fresh = Net(nnx.Rngs(0, dropout=1)), Net(nnx.Rngs(5, dropout=9))
    path = ck.Checkpoint(model=model).write(tmp_path / "ckpt")
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    keys = [fresh.dropout.rngs.key.get_value(), model.dropout.rngs.key.get_value()]
    assert (jax.random.key_data(keys[0]) == jax.random.key_data(keys[1])).all()
    assert keys[0].sharding == keys[1].sharding
    assert (fresh.linear.kernel.get_value() == model.linear.kernel.get_value()).all()


def test_a_manager_saves_nnx_programs_in_the_background(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model)
    manager = ck.CheckpointManager(
        ck.Checkpoint(model=model, optimizer=optimizer), tmp_path / "runs", max_to_keep=2
    )
    for step in range(3):
        jx.train(model, optimizer, steps=1, seed=step)
        handle = manager.save(blocking=False)
        expected = (jx.state_bytes(model), jx.state_bytes(optimizer))
    jx.train(model, optimizer, steps=1, seed=9)  # the jitted step donates while the save runs
    handle.result()
    assert [p.rsplit("-", 1)[1] for p in manager.checkpoints] == ["2", "3"]

    fresh = jx.net(seed=4)
    fresh_optimizer = jx.optimizer(fresh)
    restarted = ck.CheckpointManager(
        ck.Checkpoint(model=fresh, optimizer=fresh_optimizer), tmp_path / "runs", max_to_keep=2
    )
    assert restarted.restore_or_initialize().endswith("ckpt-3")
    assert (jx.state_bytes(fresh), jx.state_bytes(fresh_optimizer)) == expected
