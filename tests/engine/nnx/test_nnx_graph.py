"""A Flax NNX program's object graph: NNX's own paths as keys, shared objects once, every kind."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest

import ckptlab as ck

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")
jnp = jax.numpy

VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def keys_of(path, prefix="model/"):
    return {k for k, _ in ck.list_variables(path) if k.startswith(prefix) and "OPTIMIZER" not in k}


def state_keys(node, prefix="model/"):
    flat = nnx.to_flat_state(nnx.state(node))
    return {prefix + "/".join(map(str, path)) + VALUE for path, _ in flat}


def test_keys_are_the_paths_of_nnx_state_for_every_kind_of_variable(tmp_path, jx):
    model = jx.net()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    assert keys_of(path) == state_keys(model)
    kinds = {
        "embed/kernel": "Param",
        "bn/mean": "BatchStat",
        "drop/rngs/key": "RngKey",
        "drop/rngs/count": "RngCount",
        "calls": "Counter",
        "blocks/1/norm/scale": "Param",
        "heads/main/bias": "Param",
        "scale": "Array",
        "offsets/1": "Array",
    }
    graph = ck.load_checkpoint(path).object_graph
    for where, kind in kinds.items():
        node = graph.nodes[0]
        for name in ["model", *where.split("/")]:
            node = graph.nodes[node.children[name]]
        assert node.type_name == kind, where


def test_values_are_what_nnx_state_holds_readable_without_jax(tmp_path, jx):
    model = jx.net()
    jx.train(model, jx.optimizer(model), steps=1)
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    reader = ck.load_checkpoint(path)
    for where, leaf in nnx.to_flat_state(nnx.state(model)):
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        stored = reader.get_tensor("model/" + "/".join(map(str, where)) + VALUE)
        expected = np.asarray(value)
        assert stored.dtype == expected.dtype and stored.shape == expected.shape, where
        assert stored.tobytes() == expected.tobytes(), where


def test_rng_keys_are_stored_as_key_data_and_come_back_as_keys(tmp_path, jx):
    model = jx.net(seed=3)
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    stored = ck.load_checkpoint(path).get_tensor("model/drop/rngs/key" + VALUE)
    key = model.drop.rngs.key.get_value()
    np.testing.assert_array_equal(stored, jax.random.key_data(key))
    assert stored.dtype == np.uint32

    fresh = jx.net(seed=4)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    restored = fresh.drop.rngs.key.get_value()
    assert restored.dtype == key.dtype and jax.random.key_impl(restored) == jax.random.key_impl(key)
    x = jnp.ones((4, 8))
    fresh.train(), model.train()
    np.testing.assert_array_equal(fresh.drop(x), model.drop(x))  # the same dropout mask


def test_shared_variables_and_modules_are_one_object_with_two_edges(tmp_path):
    class Tied(nnx.Module):
        def __init__(self, seed):
            rngs = nnx.Rngs(seed)
            self.encoder = nnx.Linear(4, 4, rngs=rngs)
            self.decoder = self.encoder  # a shared module
            self.embedding = nnx.Param(jax.random.normal(rngs(), (6, 4)))
            self.unembedding = self.embedding  # a shared variable

    model = Tied(0)
    assert len(nnx.find_duplicates(model)) == 2
    path = ck.Checkpoint(model=model).write(tmp_path / "tied")
    assert keys_of(path) == state_keys(model)  # each once, under NNX's first path
    graph = ck.load_checkpoint(path).object_graph
    top = graph.nodes[graph.nodes[0].children["model"]]
    assert top.children["encoder"] == top.children["decoder"]
    assert top.children["embedding"] == top.children["unembedding"]

    fresh = Tied(1)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.decoder is fresh.encoder and fresh.unembedding is fresh.embedding
    np.testing.assert_array_equal(fresh.embedding.get_value(), model.embedding.get_value())


def test_optimizer_state_is_slots_of_the_parameters_and_counts_are_values(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model, optax.adam(1e-3))
    jx.train(model, optimizer)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    keys = {k for k, _ in ck.list_variables(path)}
    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    for param_path, _ in params:
        where = "model/" + "/".join(map(str, param_path))
        for slot in ("mu", "nu"):
            assert f"{where}/.OPTIMIZER_SLOT/optimizer/{slot}{VALUE}" in keys
    slots = [k for k in keys if ".OPTIMIZER_SLOT" in k]
    assert len(slots) == 2 * len(params)  # batch statistics and RNG state have none
    assert {"optimizer/step" + VALUE, "optimizer/opt_state/0/count" + VALUE} <= keys
    assert int(ck.load_checkpoint(path).get_tensor("optimizer/step" + VALUE)) == 2


def test_chained_transformations_with_the_same_state_name_keep_their_paths(tmp_path, jx):
    model = jx.net()
    tx = optax.chain(optax.scale_by_adam(), optax.scale_by_adam(b1=0.5), optax.scale(-1e-3))
    optimizer = jx.optimizer(model, tx)
    jx.train(model, optimizer, steps=1)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    slots = {k.split("/optimizer/")[1] for k, _ in ck.list_variables(path) if "SLOT" in k}
    assert slots == {f"{name}{VALUE}" for name in ("0..mu", "0..nu", "1..mu", "1..nu")}


def test_an_optimizer_without_its_model_saves_no_slots(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model)
    path = ck.Checkpoint(optimizer=optimizer).write(tmp_path / "c")
    assert not [k for k, _ in ck.list_variables(path) if "SLOT" in k]  # TF's rule: no variable,
    assert "optimizer/step" + VALUE in {k for k, _ in ck.list_variables(path)}  # no slot


def test_an_optimizer_whose_state_fits_two_modules_is_refused_with_the_fix(tmp_path, jx):
    model, ema = jx.net(), jx.net(seed=1)
    optimizer = jx.optimizer(model)
    with pytest.raises(ValueError, match=r"fits 2 modules.*ck.Checkpoint\(train="):
        ck.Checkpoint(model=model, ema=ema, optimizer=optimizer).write(tmp_path / "a")
    train = ck.Checkpoint(model=model, optimizer=optimizer)
    path = ck.Checkpoint(train=train, ema=ema).write(tmp_path / "b")
    assert any(k.startswith("train/model/") and "SLOT" in k for k, _ in ck.list_variables(path))


def test_a_model_alone_with_its_optimizer_inside_a_module(tmp_path, jx):
    class TrainState(nnx.Module):
        def __init__(self):
            self.model = jx.net()
            self.optimizer = jx.optimizer(self.model)

    state = TrainState()
    jx.train(state.model, state.optimizer, steps=1)
    path = ck.Checkpoint(root=state).write(tmp_path / "c")
    assert "model/embed/kernel/.OPTIMIZER_SLOT/optimizer/mu" + VALUE in {
        k for k, _ in ck.list_variables(path)
    }
    fresh = TrainState()
    ck.Checkpoint(root=fresh).read(path).assert_consumed()
    assert jx.state_bytes(fresh) == jx.state_bytes(state)


def test_what_cannot_be_saved_is_refused_by_name(tmp_path, jx):
    abstract = nnx.eval_shape(lambda: jx.net())
    with pytest.raises(ck.NotSaveableError, match="abstract"):
        ck.Checkpoint(model=abstract).write(tmp_path / "a")
    assert not (tmp_path / "a").exists()

    model = jx.net()
    model.fp8 = nnx.Variable(jnp.zeros(2, jnp.float8_e4m3fn))
    with pytest.raises(ck.NotSaveableError, match="float8_e4m3fn"):
        ck.Checkpoint(model=model).write(tmp_path / "b")

    model = jx.net()
    model.sown = nnx.Intermediate((jnp.ones(2),))
    with pytest.raises(ck.NotSaveableError, match=r"nnx.pop\(model, nnx.Intermediate\)"):
        ck.Checkpoint(model=model).write(tmp_path / "c")

    model = jx.net()
    kernel = model.embed.kernel.get_value()
    kernel.delete()  # what a donated buffer looks like when its Variable was not updated
    with pytest.raises(ck.NotSaveableError, match="donated"):
        ck.Checkpoint(model=model).write(tmp_path / "d")


def test_saving_an_nnx_program_imports_no_other_framework(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from flax import nnx
        import ckptlab as ck
        model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        path = ck.Checkpoint(model=model).write({str(tmp_path / "c")!r})
        ck.Checkpoint(model=nnx.Linear(2, 2, rngs=nnx.Rngs(1))).read(path).assert_consumed()
        print(sorted(m for m in ("torch", "keras", "tensorflow") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ckptlab_keeps_no_model_alive(tmp_path, jx):
    model = jx.net()
    optimizer = jx.optimizer(model)
    path = ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "c")
    fresh, fresh_optimizer = jx.net(seed=1), jx.optimizer(jx.net(seed=1))
    ck.Checkpoint(model=fresh, optimizer=fresh_optimizer).read(path).expect_partial()
    alive = [weakref.ref(o) for o in (model, optimizer, fresh, fresh_optimizer)]
    del model, optimizer, fresh, fresh_optimizer
    gc.collect()
    assert [ref() for ref in alive] == [None] * 4


def test_a_child_is_found_without_listing_its_siblings_and_is_the_same_object(jx):
    """Every node of a model and its optimizer state (modules, nnx.List, nnx.Dict, tuples,
    optax's named tuples, dicts): the direct lookup gives exactly what NNX's node dict holds."""
    from ckptlab.engine._nnx import _child, _node_dict

    model = jx.net()
    opt = jx.optimizer(model)
    jx.train(model, opt, steps=1)
    seen, stack, checked = set(), [model, opt], 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for key, value in _node_dict(node).items():
            assert _child(node, key) is value, (type(node).__name__, key)
            checked += 1
            stack.append(value)
    assert checked > 100


def test_numbers_bools_and_strings_marked_as_data_are_saved_and_restored_exactly(tmp_path):
    """They are leaves of nnx.state: a save never drops them (docs/jax.md)."""

    class Run(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.temperature = nnx.data(1.5)
            self.steps = nnx.data(3)
            self.warm = nnx.data(False)
            self.scale = nnx.data(np.float32(2.0))
            self.tag = nnx.data("run-a")
            self.note = nnx.Variable("é")  # a Variable holding a string, too
            self.width = 4  # static: code, not state

    model = Run()
    model.temperature, model.steps, model.warm = 0.1 + 0.2, 2**40, True
    model.scale, model.tag, model.note = np.float32(0.7), "run-b ✓", nnx.Variable("ü")
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    assert keys_of(path) == state_keys(model)
    reader = ck.load_checkpoint(path)
    assert reader.get_tensor("model/temperature" + VALUE).dtype == np.float64
    assert reader.get_tensor("model/steps" + VALUE).dtype == np.int64
    assert json.loads(bytes(reader.get_tensor("model/tag" + VALUE))) == "run-b ✓"

    fresh = Run()
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    for name in ("temperature", "steps", "warm", "scale", "tag"):
        restored, saved = getattr(fresh, name), getattr(model, name)
        assert type(restored) is type(saved) and restored == saved, name
    assert fresh.note.get_value() == "ü"


def test_other_objects_marked_as_data_are_refused_naming_the_path(tmp_path):
    class Holder(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.config = nnx.data(object())

    with pytest.raises(ck.NotSaveableError, match=r"Holder\.config .*nnx\.data"):
        ck.Checkpoint(model=Holder()).write(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_a_shared_variable_is_keyed_by_its_shortest_path_and_restores_through_either(tmp_path):
    """TF's rule, the same for every framework: the breadth-first (shortest) path names a
    shared value, which may differ from the first path nnx.state lists (docs/jax.md)."""

    class Aliased(nnx.Module):
        def __init__(self, value):
            self.w = nnx.Param(jnp.full(4, value))
            self.d = nnx.Dict({"x": self.w})

    model = Aliased(1.0)
    assert [p for p, _ in nnx.to_flat_state(nnx.state(model))] == [("d", "x")]
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    assert keys_of(path) == {"model/w" + VALUE}
    fresh = Aliased(0.0)
    ck.Checkpoint(model=fresh).read(path).assert_consumed()
    assert fresh.d["x"] is fresh.w
    np.testing.assert_array_equal(fresh.w.get_value(), model.w.get_value())


def test_an_optimizer_of_one_of_several_alike_submodules_is_refused_naming_them(tmp_path):
    class Tower(nnx.Module):
        def __init__(self, seed):
            rngs = nnx.Rngs(seed)
            self.enc = nnx.Linear(3, 3, rngs=rngs)
            self.mid = nnx.Linear(3, 3, rngs=rngs)
            self.dec = nnx.Linear(3, 3, rngs=rngs)

    model = Tower(0)
    optimizer = nnx.Optimizer(model.mid, optax.adam(1e-2), wrt=nnx.Param)
    grads = jax.tree.map(jnp.ones_like, nnx.state(model.mid, nnx.Param))
    optimizer.update(model.mid, grads)
    with pytest.raises(ValueError, match=r"model/dec \(Linear\).*model/mid.*finetune="):
        ck.Checkpoint(model=model, optimizer=optimizer).write(tmp_path / "a")
    grouped = ck.Checkpoint(model=model, finetune=ck.Checkpoint(mid=model.mid, optimizer=optimizer))
    path = grouped.write(tmp_path / "b")
    slots = {k.split("/.OPTIMIZER_SLOT")[0] for k, _ in ck.list_variables(path) if "SLOT" in k}
    assert {s.split("/", 1)[1] for s in slots} == {"mid/bias", "mid/kernel"}  # mid's, once
