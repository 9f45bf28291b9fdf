"""Keras 3 programs through ckptlab, for the backend named by ``KERAS_BACKEND``.

Run by ``test_keras.py`` in one process per backend (``KERAS_BACKEND=jax pytest
tests/engine/keras/keras_cases.py`` runs them by hand).  Every comparison is bit-exact against
Keras' own ``get_weights()`` and optimizer variables.
"""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.engine import Program, value_names

if "KERAS_BACKEND" not in os.environ:  # collected by the suite's own process: see test_keras.py
    pytest.skip("run through test_keras.py (one process per backend)", allow_module_level=True)

# Keras' own Variable.__array__ predates numpy 2's copy keyword (get_weights() warns)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
BACKEND = keras.backend.backend()
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
X = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
Y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")


def sequential(seed=0, units=4, optimizer=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(units),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3, seed=1),
            keras.layers.Dense(2),
        ]
    )
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), loss="mse")
    return model


class Block(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)
        self.norm = keras.layers.LayerNormalization()
        self.drop = keras.layers.Dropout(0.25, seed=3)

    def call(self, x, training=False):
        return self.drop(self.norm(self.dense(x)), training=training)


class Net(keras.Model):
    """A subclassed model: a list of blocks, a nested Sequential, a variable of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [Block(6), Block(6)]
        self.head = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
        self.scale = keras.Variable(np.full((2,), 0.5, "float32"), name="scale")

    def call(self, x, training=False):
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(x) * self.scale


def net(seed=0, built=True):
    keras.utils.set_random_seed(seed)
    model = Net()
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss="mse")
    if built:
        model(X[:1])
    return model


def host(variable):
    value = variable.value
    if BACKEND == "torch":
        value = value.detach().cpu()
    array = np.asarray(value)
    return (str(array.dtype), array.shape, array.tobytes())


def weights(model):
    """Keras' own view of the model: ``get_weights()`` as bytes."""
    return [(str(w.dtype), w.shape, w.tobytes()) for w in model.get_weights()]


def optimizer_state(optimizer):
    return [host(v) for v in optimizer.variables]


def trained(tmp_path, build=sequential, steps=2):
    model = build()
    model.fit(X, Y, epochs=steps, batch_size=4, verbose=0)
    path = ck.Checkpoint(model=model, optimizer=model.optimizer).write(tmp_path / "c")
    return model, path


@pytest.mark.parametrize("build", [sequential, net])
def test_training_resumes_bit_exactly_after_restore(tmp_path, build):
    model, path = trained(tmp_path, build)
    fresh = build(seed=9)
    fresh.optimizer.build(fresh.trainable_variables)
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    status.assert_consumed()
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)
    model.train_on_batch(X, Y)
    fresh.train_on_batch(X, Y)  # dropout too: its seed state was restored
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_keys_follow_keras_tracking_and_its_file_layout(tmp_path):
    model, path = trained(tmp_path, net)
    keys = {k for k, _ in ck.list_variables(path)}
    for key in (
        "model/blocks/block/dense/kernel",
        "model/blocks/block_1/norm/gamma",
        "model/blocks/block/drop/seed_generator/state",
        "model/head/layers/dense_1/bias",
        "model/scale",
        "optimizer/iterations",
        "optimizer/learning_rate",
        "model/blocks/block/dense/kernel/.OPTIMIZER_SLOT/optimizer/momentum",
        "model/blocks/block/dense/kernel/.OPTIMIZER_SLOT/optimizer/velocity",
    ):
        assert key + VALUE in keys, key
    assert not [k for k in keys if "torch_params" in k or "/_tracker/" in k]

    # every value of Keras' own weights file has a name that is its path in that file
    model.save_weights(tmp_path / "m.weights.h5")
    program = Program(model).walk()
    by_name = {name: node for node, names in value_names(program).items() for name in names}
    with h5py.File(tmp_path / "m.weights.h5") as file:
        datasets = []

        def collect(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets.append(name)

        file.visititems(collect)
        assert len(datasets) > 20
        for name in datasets:
            assert name in by_name, name
            read = ck.engine.require_adapter(program.objects[by_name[name]]).read
            assert read(program.objects[by_name[name]]).tobytes() == file[name][()].tobytes()


def test_iterations_and_learning_rate_are_values(tmp_path):
    _, path = trained(tmp_path, steps=3)
    reader = ck.load_checkpoint(path)
    assert int(reader.get_tensor("optimizer/iterations" + VALUE)) == 6
    assert reader.get_tensor("optimizer/learning_rate" + VALUE) == np.float32(1e-2)


def test_a_model_and_optimizer_that_are_not_built_take_their_values_when_they_build(tmp_path):
    model, path = trained(tmp_path, net)
    fresh = net(seed=5, built=False)
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    pending = {e.path for e in status.report().pending}
    assert "model/blocks/block/dense/kernel" in pending
    with pytest.raises(AssertionError):
        status.assert_consumed()
    model.train_on_batch(X, Y)
    fresh.train_on_batch(X, Y)  # builds the model, then the optimizer: both restore
    status.assert_consumed()
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_an_optimizer_that_is_not_built_takes_its_slots_when_it_builds(tmp_path):
    model, path = trained(tmp_path)
    fresh = sequential(seed=4)
    assert not fresh.optimizer.built
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    assert weights(fresh) == weights(model)
    fresh.optimizer.build(fresh.trainable_variables)
    status.assert_consumed()
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_every_conflict_is_reported_at_once_and_nothing_is_written(tmp_path):
    _, path = trained(tmp_path)
    wider = sequential(seed=2, units=5)
    wider.optimizer.build(wider.trainable_variables)
    before = (weights(wider), optimizer_state(wider.optimizer))
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(model=wider, optimizer=wider.optimizer).read(path)
    message = str(caught.value)
    for where in (
        "(root).model.layers.dense.kernel",
        "(root).model.layers.batch_normalization.moving_mean",
        "(root).model.layers.dense_1.kernel",
    ):
        assert where in message
    assert "momentum" in message  # the slots of the wider variables too
    assert (weights(wider), optimizer_state(wider.optimizer)) == before


def test_lazy_restore_writes_only_the_selected_layers(tmp_path):
    model, path = trained(tmp_path)
    fresh = sequential(seed=3)
    untouched = weights(fresh)
    status = ck.Checkpoint(model=fresh).read(path, lazy=True)
    assert weights(fresh) == untouched
    status.run_restore_ops(only=["model/layers/dense"])
    now, expected = weights(fresh), weights(model)
    assert now[:2] == expected[:2] and now[2:] == untouched[2:]
    status.expect_partial()


def test_assertions_name_what_is_missing_and_unused(tmp_path):
    _, path = trained(tmp_path)
    keras.utils.set_random_seed(0)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    other.compile(optimizer="adam", loss="mse")
    status = ck.Checkpoint(model=other).read(path)
    with pytest.raises(AssertionError, match="batch_normalization"):
        status.assert_consumed()
    status.assert_existing_objects_matched()
    extra = sequential(seed=1)
    extra.extra = keras.layers.Dense(3)
    extra.extra.build((None, 2))
    with pytest.raises(AssertionError, match="extra"):
        ck.Checkpoint(model=extra).read(path).assert_existing_objects_matched()


def test_an_optimizer_without_such_slots_leaves_them_unused(tmp_path):
    _, path = trained(tmp_path)
    plain = sequential(seed=1, optimizer=keras.optimizers.SGD(1e-2))
    plain.optimizer.build(plain.trainable_variables)
    status = ck.Checkpoint(model=plain, optimizer=plain.optimizer).read(path)
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="momentum"):
        status.assert_consumed()


def test_values_are_copied_in_not_shared(tmp_path):
    _, path = trained(tmp_path)
    first, second = sequential(seed=5), sequential(seed=6)
    kernel = first.layers[0].kernel
    if BACKEND == "torch":
        memory = kernel.value.data_ptr()
    ck.Checkpoint(model=first).read(path).expect_partial()
    ck.Checkpoint(model=second).read(path).expect_partial()
    assert weights(first) == weights(second)
    if BACKEND == "torch":
        assert kernel.value.data_ptr() == memory  # in place, the same tensor
    else:
        assert kernel.value.unsafe_buffer_pointer() != (
            second.layers[0].kernel.value.unsafe_buffer_pointer()
        )
    first.train_on_batch(X, Y)  # on JAX the step donates the buffers it updates
    assert weights(first) != weights(second)
    ck.Checkpoint(model=first).read(path).expect_partial()
    assert weights(first) == weights(second)


def test_the_explorer_on_a_live_model_restores_the_selection(tmp_path):
    pytest.importorskip("anywidget")
    model, path = trained(tmp_path)
    fresh = sequential(seed=7)
    widget = ck.explore(path, program=ck.Checkpoint(model=fresh))
    widget.select(["model/layers/dense_1"])
    assert widget.restore_selected().startswith("Restored 2 values")
    assert weights(fresh)[-2:] == weights(model)[-2:]
    assert weights(fresh)[:2] != weights(model)[:2]


@pytest.mark.parametrize("kind", ["weights.h5", "keras"])
def test_restore_by_name_from_keras_weight_files(tmp_path, kind):
    model, _ = trained(tmp_path)
    path = tmp_path / f"m.{kind}"
    model.save_weights(path) if kind == "weights.h5" else model.save(path)
    fresh = sequential(seed=8)
    fresh.optimizer.build(fresh.trainable_variables)
    status = ck.Checkpoint(root=fresh).restore(path)
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)
    # Keras' files hold no dropout RNG state: the status says what the file lacked
    assert {e.path for e in status.report().missing} == {"layers/dropout/seed_generator/state"}
    with pytest.raises(AssertionError, match="seed_generator"):
        status.assert_existing_objects_matched()
    status.expect_partial()

    # the training-checkpoint form names the model's values model/...: the file has them at
    # its top level, and the assertion says which restore fits
    keyword = sequential(seed=9)
    keyword.optimizer.build(keyword.trainable_variables)
    status = ck.Checkpoint(model=keyword, optimizer=keyword.optimizer).restore(path)
    with pytest.raises(AssertionError, match=r"without the leading 'model/'.*root=<your model>"):
        status.assert_consumed()

    wider = sequential(seed=8, units=5)
    wider.optimizer.build(wider.trainable_variables)
    before = weights(wider)
    with pytest.raises(ck.RestoreConflictError, match="'layers/dense/vars/0'"):
        ck.Checkpoint(root=wider).restore(path)
    assert weights(wider) == before


class Renamable(keras.Model):
    """A subclassed model whose first layer is the attribute ``encoder`` names."""

    def __init__(self, encoder="enc", **kwargs):
        super().__init__(**kwargs)
        self.encoder_name = encoder
        setattr(self, encoder, keras.layers.Dense(4))
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(getattr(self, self.encoder_name)(x))

    def get_config(self):
        return {**super().get_config(), "encoder": self.encoder_name}


@pytest.mark.parametrize("kind", ["weights.h5", "keras"])
def test_a_renamed_layer_in_keras_weight_files_is_suggested_and_its_rename_works(tmp_path, kind):
    """Keras' files number a layer's variables (``enc/vars/0``), which the program's paths do
    not spell (``encoder/kernel``): the subtrees compare by the names restore matches."""
    from ckptlab.explorer._api import source_for

    saved = Renamable("enc")
    saved(X)
    path = tmp_path / f"m.{kind}"
    saved.save_weights(path) if kind == "weights.h5" else saved.save(path)
    fresh = Renamable("encoder")
    fresh(X)
    status = ck.Checkpoint(root=fresh).restore(path, lazy=True).expect_partial()
    for source in (source_for(status), source_for(path, program=fresh)):
        view = source.view()  # ck.explore(status), ck.explore(path, program=fresh)
        [suggestion] = view.suggestions
        assert view.path_of(suggestion.program) == ("encoder",)
        assert view.path_of(suggestion.checkpoint) == ("enc",)
        assert "renamed?" in suggestion.why
    key_map = ck.KeyMap({"^enc/": "encoder/"})  # the rename, on the stored names
    ck.Checkpoint(root=fresh).restore(path, key_map=key_map).assert_consumed()
    assert weights(fresh) == weights(saved)


def test_ckptlab_keeps_no_model_alive(tmp_path):
    model, path = trained(tmp_path, net)
    fresh = net(seed=5, built=False)  # restores wait for its build: hooks on its layers
    ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path).expect_partial()
    alive = [weakref.ref(o) for o in (model, model.optimizer, fresh, fresh.optimizer)]
    del model, fresh
    gc.collect()
    assert [ref() for ref in alive] == [None] * 4


def test_slots_go_to_the_longest_variable_path_their_name_starts_with():
    """Keras names a slot ``<path with _ for />_<slot>``; a path that is a prefix of another
    (``dense`` and ``dense_1``) must not take the other's slots.  Looking up each ``_`` of a
    name once gives what comparing with every path gives."""
    import itertools
    import types

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ckptlab.engine._keras import _slot_variables

    part = st.text("ab_1", min_size=1, max_size=3)

    def reference(optimizer):
        paths = {}  # variables of one path: the n-th slot of a name is the n-th variable's
        for v in optimizer._trainable_variables:
            paths.setdefault(v.path.replace("/", "_") + "_", []).append(v)
        prefixes = sorted(paths.items(), key=lambda item: -len(item[0]))
        found, seen = {}, {}
        for variable in optimizer.variables:
            for prefix, refs in prefixes:
                if variable.name.startswith(prefix) and len(variable.name) > len(prefix):
                    nth = seen[variable.name] = seen.get(variable.name, -1) + 1
                    ref = refs[min(nth, len(refs) - 1)]
                    found[id(ref), variable.name[len(prefix) :]] = variable
                    break
        return found

    @settings(max_examples=300, deadline=None)
    @given(
        paths=st.lists(st.lists(part, min_size=1, max_size=3).map("/".join), max_size=6),
        slots=st.lists(st.tuples(st.integers(0, 5), part), max_size=10),
        strays=st.lists(part, max_size=3),
    )
    def check(paths, slots, strays):
        refs = [types.SimpleNamespace(path=p) for p in paths]
        names = [f"{refs[i].path.replace('/', '_')}_{slot}" for i, slot in slots if i < len(refs)]
        variables = [types.SimpleNamespace(name=n) for n in itertools.chain(names, strays)]
        optimizer = types.SimpleNamespace(
            built=True, _trainable_variables=refs, variables=variables
        )
        assert _slot_variables(optimizer) == reference(optimizer)

    check()


def small(seed=0, optimizer=None, units=2, dtype=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, dtype=dtype)])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_a_loss_scale_optimizer_resumes_bit_exactly_in_a_fresh_compiled_model(tmp_path):
    """Its step counter and loss scale exist only once built, and the slots it lists are
    created by the optimizer it wraps: compile, restore, fit, assert_consumed (docs/keras.md)."""

    def build(seed):
        lso = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2))
        return small(seed, lso, dtype="mixed_float16")

    model = build(0)
    model.fit(X, Y[:, :2], epochs=3, batch_size=4, verbose=0, shuffle=False)
    assert int(model.optimizer.step_counter.numpy()) == 6
    path = ck.Checkpoint(model=model, optimizer=model.optimizer).write(tmp_path / "c")
    fresh = build(9)
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    with pytest.raises(AssertionError, match="step_counter"):
        status.assert_consumed()  # waits for the optimizer's build
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    fresh.fit(X, Y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    status.assert_consumed()
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_variables_an_optimizer_creates_in_build_are_restored_when_it_builds(tmp_path):
    """Adafactor's factored accumulators are optimizer variables, not per-variable slots."""
    model = small(0, keras.optimizers.Adafactor(1e-2), units=3)
    model.fit(X, Y[:, :1].repeat(3, 1), epochs=2, batch_size=4, verbose=0)
    path = ck.Checkpoint(model=model, optimizer=model.optimizer).write(tmp_path / "c")
    assert "optimizer/kernel" + VALUE in {k for k, _ in ck.list_variables(path)}
    fresh = small(7, keras.optimizers.Adafactor(1e-2), units=3)
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    assert {"optimizer/kernel", "optimizer/kernel_1"} <= {e.path for e in status.report().pending}
    fresh.optimizer.build(fresh.trainable_variables)
    status.assert_consumed()
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_state_kept_for_an_optimizer_that_builds_without_it_becomes_unused(tmp_path):
    """Adam's slots and Adafactor's accumulators, kept for an SGD that is not built yet, are
    pending until it builds and then reported unused, as when SGD was built first."""
    adam = small(0)
    adam.fit(X, Y, epochs=2, batch_size=4, verbose=0)
    factored = small(0, keras.optimizers.Adafactor(1e-2))
    factored.fit(X, Y, epochs=2, batch_size=4, verbose=0)
    for source, stays in ((adam, "momentum"), (factored, "optimizer/kernel")):
        path = ck.Checkpoint(model=source, optimizer=source.optimizer).write(tmp_path / stays)
        plain = small(1, keras.optimizers.SGD(0.1))
        status = ck.Checkpoint(model=plain, optimizer=plain.optimizer).read(path)
        assert stays in str([e.path for e in status.report().pending])
        plain.optimizer.build(plain.trainable_variables)
        report = status.report()
        assert not report.pending
        unused = [e.path for e in report.by_state("checkpoint_only")]
        # Adam: momentum and velocity of two variables; Adafactor: 4 accumulators, 2 velocities
        assert len(unused) == (4 if stays == "momentum" else 6)
        assert stays in str(unused)
        status.assert_existing_objects_matched()
        with pytest.raises(AssertionError, match=stays):
            status.assert_consumed()
        status.expect_partial()


class Wide(keras.Model):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(units)

    def call(self, x):
        return self.a(x)


def test_a_conflict_found_when_a_layer_builds_is_raised_reported_and_writes_nothing(tmp_path):
    keras.utils.set_random_seed(0)
    saved = Wide(8)
    saved(X)
    path = ck.Checkpoint(model=saved).write(tmp_path / "c")
    keras.utils.set_random_seed(1)
    twin = Wide(6)
    twin(X)  # the same random initial values, never restored
    keras.utils.set_random_seed(1)
    narrow = Wide(6)
    status = ck.Checkpoint(model=narrow).read(path)
    # Keras builds a subclassed model by tracing it and swallows errors there: the layer's
    # next call raises the conflict
    with pytest.raises(ck.RestoreConflictError, match=r"\(root\).model.a.kernel"):
        narrow(X)
    assert weights(narrow) == weights(twin)
    report = status.report()
    paths = [e.path for e in report.entries]
    assert sorted(paths) == ["model/a/bias", "model/a/kernel"]
    assert {e.path for e in report.conflicts} == {"model/a/bias", "model/a/kernel"}
    for check in (status.assert_consumed, status.assert_existing_objects_matched):
        with pytest.raises(AssertionError, match="model.a.kernel"):
            check()
    narrow(X)  # raised once: the layer works (with its own values) afterwards

    # built outside a trace, the layer's build raises at once
    layer = keras.layers.Dense(8, dtype="bfloat16")
    status = ck.Checkpoint(model=ck.Checkpoint(a=layer)).read(path).expect_partial()
    with pytest.raises(ck.RestoreConflictError, match="expected dtype bfloat16"):
        layer.build((None, 3))
    assert {e.state for e in status.report().conflicts} == {"dtype_conflict"}


def test_a_restored_normalization_layer_computes_with_the_restored_statistics(tmp_path):
    """As after Keras' own load_weights: finalize_state() runs once the variables are in."""
    data = (np.random.default_rng(3).normal(size=(16, 3)) * 3 + 1).astype("float32")

    class Counting(keras.layers.Normalization):
        calls = 0

        def finalize_state(self):
            type(self).calls += 1
            super().finalize_state()

    def build(adapt, with_input=True):
        layer = Counting()
        if adapt:
            layer.adapt(data)
        return keras.Sequential([*([keras.Input((3,))] if with_input else []), layer])

    model = build(adapt=True)
    expected = np.asarray(model(data)).tobytes()
    path = ck.Checkpoint(model=model).write(tmp_path / "c")
    model.save_weights(tmp_path / "m.weights.h5")
    by_keras = build(adapt=False)
    by_keras.load_weights(tmp_path / "m.weights.h5")
    assert np.asarray(by_keras(data)).tobytes() == expected
    for built in (True, False):
        fresh = build(adapt=False, with_input=built)
        Counting.calls = 0
        ck.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
        assert Counting.calls == (1 if built else 0)
        assert np.asarray(fresh(data)).tobytes() == expected


class Linear(keras.layers.Layer):
    """The Keras guide's layer: ``add_weight`` without a name (Keras names it ``variable_N``)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), initializer="random_normal")
        self.b = self.add_weight(shape=(4,), initializer="random_normal")

    def call(self, x):
        return x @ self.w + self.b


def test_variables_keras_names_automatically_are_named_by_their_position(tmp_path):
    """``variable``, ``variable_1`` count every variable of the process: a second model would
    match nothing.  Such variables (a layer's unnamed weights, Nadam's ``_u_product``) are
    named ``vars_<i>``, their index in Keras' own files (docs/keras.md)."""

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((3,)), Linear(), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Nadam(1e-2), loss="mse")
        model.optimizer.build(model.trainable_variables)
        return model

    model = build(0)
    model.fit(X, Y, epochs=2, batch_size=4, verbose=0)
    path = ck.Checkpoint(model=model, optimizer=model.optimizer).write(tmp_path / "c")
    u_product = next(
        i for i, v in enumerate(model.optimizer.variables) if v is model.optimizer._u_product
    )
    keys = {k for k, _ in ck.list_variables(path)}
    for key in ("model/layers/linear/vars_0", "model/layers/linear/vars_1"):
        assert key + VALUE in keys, key
    assert f"optimizer/vars_{u_product}" + VALUE in keys
    fresh = build(9)
    assert fresh.optimizer._u_product.name != model.optimizer._u_product.name
    status = ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path)
    status.assert_consumed()
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)
    model.train_on_batch(X, Y)
    fresh.train_on_batch(X, Y)
    assert weights(fresh) == weights(model)


class Twins(keras.Model):
    """Two sibling layers with one explicit name: their variables have the same ``path``."""

    def __init__(self):
        super().__init__()
        self.enc = keras.layers.Dense(3, name="proj")
        self.dec = keras.layers.Dense(3, name="proj")

    def call(self, x):
        return self.dec(self.enc(x))


def test_slots_of_layers_with_the_same_name_stay_with_their_own_variable(tmp_path):
    """Keras creates a slot per variable, in variable order: the same slot name for two
    variables of one path is the first's, then the second's."""

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = Twins()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        model(X[:1])
        model.optimizer.build(model.trainable_variables)
        return model

    model = build(0)
    model.fit(X, Y[:, :1].repeat(3, 1), epochs=2, batch_size=4, verbose=0)
    path = ck.Checkpoint(model=model, optimizer=model.optimizer).write(tmp_path / "c")
    reader = ck.load_checkpoint(path)
    optimizer = model.optimizer
    for layer in ("enc", "dec"):
        index = optimizer._get_variable_index(getattr(model, layer).kernel)
        key = f"model/{layer}/kernel/.OPTIMIZER_SLOT/optimizer/momentum" + VALUE
        assert reader.get_tensor(key).tobytes() == host(optimizer._momentums[index])[2], layer
    optimizer_keys = {
        k.split("/.")[0] for k, _ in ck.list_variables(path) if k.startswith("optimizer/")
    }
    assert optimizer_keys == {"optimizer/iterations", "optimizer/learning_rate"}
    fresh = build(9)
    ck.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(path).assert_consumed()
    assert weights(fresh) == weights(model)
    assert optimizer_state(fresh.optimizer) == optimizer_state(model.optimizer)


def test_saving_during_fit_names_keras_detached_state_and_its_fix(tmp_path):
    """Keras' JAX trainer keeps the state apart from the variables while ``fit`` runs: a save
    from a callback says to call ``jax_state_sync()`` and writes nothing; after it, it saves.
    The torch backend updates the variables in place: the save works."""
    model = small(0)
    model.fit(X, Y, batch_size=4, verbose=0)
    checkpoint = ck.Checkpoint(model=model, optimizer=model.optimizer)
    outcomes = []

    class Save(keras.callbacks.Callback):
        def __init__(self, sync):
            super().__init__()
            self.sync = sync

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                if self.sync:
                    self.model.jax_state_sync() if BACKEND == "jax" else None
                target = tmp_path / f"sync_{self.sync}"
                try:
                    outcomes.append(checkpoint.write(target))
                except ck.NotSaveableError as error:
                    outcomes.append(error)

    model.fit(X, Y, batch_size=4, verbose=0, callbacks=[Save(sync=False)])
    model.fit(X, Y, batch_size=4, verbose=0, callbacks=[Save(sync=True)])
    if BACKEND == "jax":
        message = str(outcomes[0])
        assert "jax_state_sync()" in message and "optimizer.iterations" in message, message
        assert "traced" not in message, message
        assert not (tmp_path / "sync_False").exists()
    else:
        assert outcomes[0] == str(tmp_path / "sync_False")
    assert outcomes[1] == str(tmp_path / "sync_True")
