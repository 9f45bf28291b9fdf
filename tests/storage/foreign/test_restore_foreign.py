"""Restoring foreign checkpoints into ckptlab objects: object graphs, names, key maps."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import Any

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage._layout import numpy_dtype

GRAPHS = ["tf2_module", "tf2_sharded", "tf2_keras_adam", "tf2_keras3", "tf2_keras3_model_only"]


def build_program(fixture: dict[str, Any], rename: dict[str, str] | None = None) -> dict[str, Any]:
    """ckptlab objects with the same graph as a TF2 fixture: Modules and zero Variables."""
    nodes, tensors = fixture["object_graph"], fixture["tensors"]
    objects: dict[int, Any] = {}

    def make(node_id: int) -> Any:
        if node_id in objects:
            return objects[node_id]
        node = nodes[node_id]
        attributes = {a["name"]: a["checkpoint_key"] for a in node["attributes"]}
        if "VARIABLE_VALUE" in attributes:
            spec = tensors[attributes["VARIABLE_VALUE"]]
            dtype = numpy_dtype(spec["dtype"])
            obj = objects[node_id] = ck.Variable(np.zeros(spec["shape"], dtype), dtype=dtype)
            return obj
        obj = objects[node_id] = ck.Module()
        for name, child in node["children"]:
            setattr(obj, (rename or {}).get(name, name), make(child))
        return obj

    return {name: make(child) for name, child in nodes[0]["children"]}


@pytest.mark.parametrize("name", GRAPHS)
def test_tf2_checkpoint_restores_into_equivalent_objects(fixtures_dir, manifest, name):
    fixture = manifest[name]
    children = build_program(fixture)
    checkpoint = ck.Checkpoint(**{k: v for k, v in children.items() if k != "save_counter"})
    path = str(fixtures_dir / fixture["prefix"])
    restore = checkpoint.restore if "save_counter" in children else checkpoint.read
    status = restore(path)
    status.assert_consumed()
    reader = ck.load_checkpoint(path)
    stored = {
        key: hashlib.sha256(reader.get_tensor(key).tobytes()).hexdigest()
        for key in reader.get_variable_to_shape_map()
    }
    assert set(stored.values()) <= {t.get("sha256") for t in fixture["tensors"].values()}
    assert status.report().summary() == f"{len(stored)} matched"


def test_tf2_module_values_land_in_the_shared_variable(fixtures_dir, manifest):
    net = build_program(manifest["tf2_module"])["net"]
    ck.Checkpoint(net=net).restore(str(fixtures_dir / "tf2_module" / "ckpt-1")).assert_consumed()
    assert net.shared is net.encoder.shared is net.heads.cls.shared
    np.testing.assert_array_equal(net.shared.numpy(), [1.0, 1.5, 2.0])
    assert net.step.numpy() == 42
    assert float(getattr(net.heads, "weird.key/x").numpy()) == 7.5


def test_keras3_kernel_edges_restore_through_a_key_map(fixtures_dir, manifest):
    fixture = manifest["tf2_keras3_model_only"]
    program = build_program(fixture, rename={"_kernel": "kernel"})
    path = str(fixtures_dir / fixture["prefix"])
    checkpoint = ck.Checkpoint(**program)
    with pytest.raises(AssertionError):
        checkpoint.read(path).expect_partial().assert_consumed()
    checkpoint = ck.Checkpoint(**build_program(fixture, rename={"_kernel": "kernel"}))
    checkpoint.read(path, key_map=ck.KeyMap({"^_kernel$": "kernel"})).assert_consumed()


def _torch_program() -> tuple[ck.Module, dict[str, ck.Variable]]:
    shapes = {
        "scale_bf16": ((3,), "bfloat16"),
        "fc1.weight": ((3, 4), "float32"),
        "fc1.bias": ((3,), "float32"),
        "bn.weight": ((3,), "float32"),
        "bn.bias": ((3,), "float32"),
        "bn.running_mean": ((3,), "float32"),
        "bn.running_var": ((3,), "float32"),
        "bn.num_batches_tracked": ((), "int64"),
        "fc2.weight": ((2, 3), "float32"),
        "fc2.bias": ((2,), "float32"),
    }
    model = ck.Module()
    variables = {}
    for index, (name, (shape, dtype)) in enumerate(shapes.items()):
        variable = ck.Variable(np.zeros(shape, numpy_dtype(dtype)), name=name)
        setattr(model, f"v{index}", variable)
        variables[name] = variable
    return model, variables


@pytest.mark.parametrize("file", ["state_dict.pt", "state_dict_legacy.pt", "model.safetensors"])
def test_torch_and_safetensors_restore_by_name(fixtures_dir, manifest, file):
    model, variables = _torch_program()
    status = ck.Checkpoint(model=model).restore(str(fixtures_dir / "torch" / file))
    assert isinstance(status, ck.NameBasedSaverStatus)
    status.assert_consumed()
    for name, variable in variables.items():
        digest = hashlib.sha256(variable.numpy().tobytes()).hexdigest()
        assert digest == manifest["torch_state_dict"]["tensors"][name]["sha256"]


def test_tf1_saver_restores_by_name(fixtures_dir, manifest):
    tensors = manifest["tf1_saver"]["tensors"]
    model = ck.Module()
    for index, (name, spec) in enumerate(sorted(tensors.items())):
        dtype = numpy_dtype(spec["dtype"])
        setattr(model, f"v{index}", ck.Variable(np.zeros(spec["shape"], dtype), name=name))
    status = ck.Checkpoint(model=model).restore(str(fixtures_dir / "tf1_saver" / "model.ckpt-1"))
    status.assert_consumed()


def test_torch_linear_weights_restore_into_dense_kernels_transposed(fixtures_dir):
    model = ck.Module()
    model.fc1 = ck.layers.Dense(3, name="fc1")
    model.fc2 = ck.layers.Dense(2, name="fc2")
    model.fc2(model.fc1(np.zeros((1, 4))))
    key_map = ck.KeyMap({r"\.weight$": "/kernel", r"\.bias$": "/bias"}, transpose=["kernel$"])
    path = str(fixtures_dir / "torch" / "state_dict.pt")
    reader = ck.load_checkpoint(path)
    ck.Checkpoint(model=model).restore(path, key_map=key_map).expect_partial()
    np.testing.assert_array_equal(model.fc1.kernel.numpy(), reader.get_tensor("fc1.weight").T)
    np.testing.assert_array_equal(model.fc2.bias.numpy(), reader.get_tensor("fc2.bias"))


def test_near_misses_suggest_the_torch_to_dense_mapping(fixtures_dir):
    model = ck.Module()
    model.fc1 = ck.layers.Dense(3, name="fc1", use_bias=True)
    model.fc1(np.zeros((1, 4), np.float32))
    source = ck.load_checkpoint(str(fixtures_dir / "torch" / "model.safetensors"))
    stored = {
        k: ck.core.ValueSpec(shape=tuple(s), dtype=source.get_variable_to_dtype_map()[k].name)
        for k, s in source.get_variable_to_shape_map().items()
    }
    wanted = {
        v.name: ck.core.ValueSpec(shape=v.shape, dtype=v.dtype.name)
        for v in (model.fc1.kernel, model.fc1.bias)
    }
    misses = ck.near_misses(stored, wanted)
    assert [(m.stored, m.wanted, m.transpose) for m in misses] == [
        ("fc1.bias", "fc1/bias", False),
        ("fc1.weight", "fc1/kernel", True),
    ]
    key_map = ck.KeyMap.from_near_misses(misses)
    path = str(fixtures_dir / "torch" / "model.safetensors")
    ck.Checkpoint(model=model).restore(path, key_map=key_map).expect_partial()
    np.testing.assert_array_equal(model.fc1.kernel.numpy(), source.get_tensor("fc1.weight").T)


@pytest.mark.parametrize(
    "pairs",
    [[("b", "a"), ("a", "b")], [("a", "b"), ("b", "c")]],
    ids=["swapped", "shifted"],
)
def test_a_key_map_from_near_misses_renames_each_name_once(tmp_path, pairs):
    """Accepted suggestions that chain (a layer inserted in front shifts every name by one) or
    swap: each stored name goes to its own pair's name, not on through the next pair."""
    path = ck.Saver({"a": ck.Variable(1.0), "b": ck.Variable(2.0)}).save(str(tmp_path / "c"))
    misses = [ck.NearMiss(stored=s, wanted=w, reason="") for s, w in pairs]
    key_map = ck.KeyMap.from_near_misses(misses)
    wanted = {w: ck.Variable(0.0, name=w) for _, w in pairs}
    ck.Checkpoint(**{f"v{w}": v for w, v in wanted.items()}).restore(path, key_map=key_map)
    saved = {"a": 1.0, "b": 2.0}
    assert {w: float(wanted[w].numpy()) for _, w in pairs} == {w: saved[s] for s, w in pairs}
    assert key_map.rename("a") == dict(pairs)["a"]


def test_key_map_collisions_are_refused(fixtures_dir):
    path = str(fixtures_dir / "torch" / "state_dict.pt")
    with pytest.raises(ValueError, match="renames both"):
        ck.Checkpoint(m=ck.Module()).restore(path, key_map=ck.KeyMap({r".*": "x"}))


def test_tf2_module_restores_into_lists_and_dicts(fixtures_dir):
    shared = ck.Variable(np.zeros(3, np.float32))

    def block(shape: tuple[int, ...]) -> ck.Module:
        module = ck.Module()
        module.w = ck.Variable(np.zeros(shape, np.float32))
        module.shared = shared
        return module

    net = ck.Module()
    net.shared = shared
    net.encoder = block((2, 3))
    net.layers = [block((3, 3)), ck.Variable(np.zeros(4, np.float32))]
    net.heads = {"cls": block((3, 2)), "weird.key/x": ck.Variable(np.float32(0))}
    net.step = ck.Variable(0, dtype=np.int64)
    checkpoint = ck.Checkpoint(net=net)
    checkpoint.restore(str(fixtures_dir / "tf2_module" / "ckpt-1")).assert_consumed()
    np.testing.assert_array_equal(net.layers[1].numpy(), [10.0, 11.0, 12.0, 13.0])
    assert float(net.heads["weird.key/x"].numpy()) == 7.5
    assert int(checkpoint.save_counter.numpy()) == 1


def _safetensors(path, arrays: dict[str, np.ndarray]) -> str:
    header, data = {}, b""
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array, "<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return str(path)


@pytest.fixture
def conv_file(tmp_path) -> tuple[str, np.ndarray]:
    weight = np.arange(8 * 3 * 5 * 5, dtype=np.float32).reshape(8, 3, 5, 5)  # [out, in, h, w]
    return _safetensors(tmp_path / "conv.safetensors", {"conv.weight": weight}), weight


def test_a_transpose_pattern_refuses_values_of_rank_three_or_more(conv_file, tmp_path):
    path, _ = conv_file
    key_map = ck.KeyMap({r"\.weight$": "/kernel"}, transpose=["kernel$"])
    target = ck.Variable(np.zeros((5, 5, 3, 8), np.float32), name="conv/kernel")
    with pytest.raises(ck.RestoreConflictError) as caught:
        ck.Checkpoint(m=target).restore(path, key_map=key_map)
    message = str(caught.value)
    assert (
        "'conv/kernel'" in message and "[8, 3, 5, 5]" in message and "conv.safetensors" in message
    )
    assert "transpose={'kernel$': (2, 3, 1, 0)}" in message
    assert not target.numpy().any()
    with pytest.raises(ck.RestoreConflictError, match="2-D values only"):
        ck.convert(path, tmp_path / "converted", key_map=key_map)


def test_explicit_axes_turn_a_torch_conv_weight_into_a_keras_kernel(conv_file):
    path, weight = conv_file
    key_map = ck.KeyMap({r"\.weight$": "/kernel"}, transpose={"conv/kernel$": (2, 3, 1, 0)})
    target = ck.Variable(np.zeros((5, 5, 3, 8), np.float32), name="conv/kernel")
    ck.Checkpoint(m=target).restore(path, key_map=key_map).assert_consumed()
    np.testing.assert_array_equal(target.numpy(), weight.transpose(2, 3, 1, 0))
    assert "(2, 3, 1, 0)" in repr(key_map)


def test_axes_must_fit_the_rank_and_be_a_permutation(conv_file):
    path, _ = conv_file
    key_map = ck.KeyMap({r"\.weight$": "/kernel"}, transpose={"kernel$": (1, 0)})
    with pytest.raises(ck.RestoreConflictError, match="axes \\(1, 0\\) are for 2-D values"):
        ck.Checkpoint(m=ck.Module()).restore(path, key_map=key_map)
    with pytest.raises(ValueError, match="permutation"):
        ck.KeyMap(transpose={"kernel$": (0, 0, 1)})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ck.KeyMap({"a": 1}), "for `rules`, got {'a': 1} (dict)"),
        (lambda: ck.KeyMap("^a$"), "for `rules`, got '^a$' (str)"),
        (lambda: ck.KeyMap([("a", "b", "c")]), "(pattern, replacement) pairs, all str"),
        (lambda: ck.KeyMap(transpose=[1]), "for `transpose`, got [1] (list)"),
        (lambda: ck.KeyMap(transpose=3), "for `transpose`, got 3 (int)"),
        (lambda: ck.KeyMap(transpose={"k$": "xy"}), "axes must be a permutation"),
        (lambda: ck.KeyMap({"(": "x"}), "is not a valid regular expression"),
        (lambda: ck.KeyMap.from_near_misses([("a", "b")]), "got ('a', 'b') (tuple)"),
        (lambda: ck.KeyMap.from_near_misses(None), "for `misses`, got None"),
    ],
)
def test_wrong_key_map_arguments_are_typed_errors(make, message):
    """``KeyMap({'a': 1})`` was a TypeError from inside ``re``, ``from_near_misses([('a', 'b')])``
    an AttributeError; each is an InvalidArgumentError saying what was expected."""
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(message)):
        make()


@pytest.mark.parametrize(
    ("stored", "found"),
    [(None, "for `stored`, got None (NoneType)"), ({"a": (3,)}, "got {'a': (3,)} (dict)")],
)
def test_near_misses_refuses_what_is_not_names_and_value_specs(stored, found):
    """``ck.near_misses(None, None)`` was an AttributeError from inside."""
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(found)):
        ck.near_misses(stored, {})


def test_vectors_selected_by_a_transpose_pattern_are_kept_as_they_are():
    key_map = ck.KeyMap(transpose=["weight$"])
    assert key_map.axes_for("bn.weight", (3,)) is None
    assert key_map.axes_for("fc.weight", (3, 4)) == (1, 0)
    assert key_map.axes_for("fc.bias", (3,)) is None


def test_object_based_values_are_transposed_by_path(fixtures_dir):
    path = str(fixtures_dir / "tf2_module" / "ckpt-1")
    reader = ck.load_checkpoint(path)
    encoder = ck.Module()
    encoder.w = ck.Variable(np.zeros((3, 2), np.float32))
    net = ck.Module()
    net.encoder = encoder
    ck.Checkpoint(net=net).read(path, key_map=ck.KeyMap(transpose=["encoder/w$"])).expect_partial()
    expected = reader.get_tensor("net/encoder/w/.ATTRIBUTES/VARIABLE_VALUE").T
    np.testing.assert_array_equal(encoder.w.numpy(), expected)


LEGACY_ADAM_HYPERPARAMETERS = ["beta_1", "beta_2", "decay", "learning_rate"]


def test_legacy_adam_slots_restore_into_dense_layers_and_adam(fixtures_dir, manifest):
    """tf_keras Sequential + legacy Adam -> ck.layers.Dense + ck.optimizers.Adam.

    ckptlab's Sequential tracks ``layers/0``; tf_keras tracks each layer twice, as
    ``layer_with_weights-0`` and ``layer-0`` (one node): a Module with those names is the
    equivalent structure.  TF's legacy Adam also saves its hyper-parameters as variables;
    ckptlab's Adam keeps them as floats, so those four values stay unmatched (documented).
    """
    fixture = manifest["tf2_keras_legacy_adam"]
    hidden, out = ck.layers.Dense(3, name="hidden"), ck.layers.Dense(2, name="out")
    ck.layers.Sequential([hidden, out])(np.zeros((1, 4), np.float32))
    model = ck.Module()
    for index, layer in enumerate((hidden, out)):
        setattr(model, f"layer_with_weights-{index}", layer)
        setattr(model, f"layer-{index}", layer)
    optimizer = ck.optimizers.Adam(learning_rate=0.01)
    status = ck.Checkpoint(model=model, optimizer=optimizer).read(
        str(fixtures_dir / fixture["prefix"])
    )
    status.assert_existing_objects_matched()
    digests = {k: v["sha256"] for k, v in fixture["tensors"].items() if "sha256" in v}

    def digest(variable: ck.Variable) -> str:
        return hashlib.sha256(variable.numpy().tobytes()).hexdigest()

    for index, layer in enumerate((hidden, out)):
        for name in ("kernel", "bias"):
            variable = getattr(layer, name)
            prefix = f"model/layer_with_weights-{index}/{name}"
            assert digest(variable) == digests[f"{prefix}/.ATTRIBUTES/VARIABLE_VALUE"]
            for slot in ("m", "v"):
                key = f"{prefix}/.OPTIMIZER_SLOT/optimizer/{slot}/.ATTRIBUTES/VARIABLE_VALUE"
                assert digest(optimizer.get_slot(variable, slot)) == digests[key]
    assert digest(optimizer.iterations) == digests["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]
    unmatched = [e.path for e in status.report().entries if e.state not in ("restored", "bound")]
    assert unmatched == [f"optimizer/{name}" for name in LEGACY_ADAM_HYPERPARAMETERS]
    with pytest.raises(AssertionError, match="optimizer.learning_rate"):
        status.assert_consumed()
    status.expect_partial()
