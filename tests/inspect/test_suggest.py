"""Near-miss suggestions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab.core import ValueSpec, near_misses
from ckptlab.explorer._api import source_for
from ckptlab.explorer._sources import StatusSource
from ckptlab.inspect import ViewValue, build_view

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"


def test_renamed_layer_and_underscore_names(mismatch):
    pairs = {
        ("/".join(mismatch.path_of(s.program)), "/".join(mismatch.path_of(s.checkpoint))): s.why
        for s in mismatch.suggestions
    }
    assert "renamed?" in pairs[("model/hidden_renamed", "model/hidden")]
    assert "underscores" in pairs[("model/head/_bias", "model/head/bias")]
    assert all(kind != "suggest" or (a, b) for a, b, kind in mismatch.edges)


def test_unique_same_shape_sibling_is_suggested_but_ambiguous_ones_are_not():
    spec = ValueSpec(shape=(3,), dtype="float32")

    def v(name, state):
        return ViewValue(
            path=("m", name),
            state=state,
            stored=spec if state == "checkpoint_only" else None,
            program=spec if state == "program_only" else None,
        )

    unique = build_view(
        [v("w", "program_only"), v("weights", "checkpoint_only")],
        title="t",
        source="s",
        kind="match",
        summary="",
    )
    assert len(unique.suggestions) == 1
    assert "same shape and dtype" in unique.suggestions[0].why
    ambiguous = build_view(
        [v("w", "program_only"), v("a", "checkpoint_only"), v("b", "checkpoint_only")],
        title="t",
        source="s",
        kind="match",
        summary="",
    )
    assert ambiguous.suggestions == ()


def test_different_structure_is_not_a_rename():
    f = ValueSpec(shape=(2,), dtype="float32")
    g = ValueSpec(shape=(3,), dtype="float32")
    view = build_view(
        [
            ViewValue(path=("m", "new", "k"), state="program_only", program=f),
            ViewValue(path=("m", "old", "k"), state="checkpoint_only", stored=g),
        ],
        title="t",
        source="s",
        kind="match",
        summary="",
    )
    assert not any("renamed" in s.why for s in view.suggestions)


def _pairs(view):
    return {
        (
            view.nodes[s.program].value.restore_path,
            view.nodes[s.checkpoint].value.restore_path,
        ): s.why
        for s in view.suggestions
    }


def f32(*shape):
    return ValueSpec(shape=shape, dtype="float32")


def _value(path, restore_path, state, spec):
    side = {"stored": spec} if state == "checkpoint_only" else {"program": spec}
    return ViewValue(path=path, state=state, key=restore_path, restore_path=restore_path, **side)


def _specs(view):
    stored = {
        v.value.restore_path: v.value.stored for v in view.values() if v.state == "checkpoint_only"
    }
    wanted = {
        v.value.restore_path: v.value.program for v in view.values() if v.state == "program_only"
    }
    return stored, wanted


def torch_into_keras_view():
    """A name-based restore of a torch state_dict into Keras-style variables (no key map)."""
    values = [
        _value(("fc1", "weight"), "fc1.weight", "checkpoint_only", f32(3, 4)),
        _value(("fc1", "bias"), "fc1.bias", "checkpoint_only", f32(3)),
        _value(("bn", "running_mean"), "bn.running_mean", "checkpoint_only", f32(3)),
        _value(("bn", "running_var"), "bn.running_var", "checkpoint_only", f32(3)),
        _value(("fc2", "weight"), "fc2.weight", "checkpoint_only", f32(2, 3)),
        _value(("model", "fc1", "kernel"), "fc1/kernel", "program_only", f32(4, 3)),
        _value(("model", "fc1", "bias"), "fc1/bias", "program_only", f32(3)),
        _value(("model", "bn", "moving_mean"), "bn/moving_mean", "program_only", f32(3)),
        _value(("model", "bn", "moving_variance"), "bn/moving_variance", "program_only", f32(3)),
        _value(("model", "fc2", "kernel"), "fc2/kernel", "program_only", f32(5, 3)),
    ]
    return build_view(values, title="t", source="s", kind="match", summary="")


def test_cross_framework_near_misses_are_suggested():
    pairs = _pairs(torch_into_keras_view())
    assert "transposed" in pairs[("fc1/kernel", "fc1.weight")]
    assert "ck.KeyMap.from_near_misses" in pairs[("fc1/kernel", "fc1.weight")]
    assert "transposed" not in pairs[("fc1/bias", "fc1.bias")]
    assert "'bn.running_mean' ~ 'bn/moving_mean'" in pairs[("bn/moving_mean", "bn.running_mean")]
    assert ("bn/moving_variance", "bn.running_var") in pairs
    assert not any(p == "fc2/kernel" for p, _ in pairs)  # [2, 3] fits neither [5, 3] nor its T


def test_the_explorer_and_near_misses_share_one_rule_table():
    view = torch_into_keras_view()
    expected = {(m.wanted, m.stored) for m in near_misses(*_specs(view))}
    assert set(_pairs(view)) == expected


def test_only_a_trailing_output_index_is_dropped_from_a_name():
    """TF 1's ``kernel:0`` is ``kernel``; ``stage:1`` and ``stage:2`` are different names."""
    spec = ValueSpec(shape=(3, 4), dtype="float32")
    assert near_misses({"dense/kernel:0": spec}, {"dense/kernel": spec})
    assert not near_misses({"stage:1/dense/kernel": spec}, {"stage:2/dense/kernel": spec})
    assert not near_misses({"box/x:alert(5)": spec}, {"box/x:alert(5)_new": spec})


def test_underscore_names_in_an_object_graph_are_near_misses():
    spec = ValueSpec(shape=(4, 3), dtype="float32")
    view = build_view(
        [
            _value(("model", "dense", "_kernel"), "model/dense/_kernel", "checkpoint_only", spec),
            _value(("model", "dense", "kernel"), "model/dense/kernel", "program_only", spec),
        ],
        title="t",
        source="s",
        kind="match",
        summary="",
    )
    assert _pairs(view) == {
        ("model/dense/kernel", "model/dense/_kernel"): (
            "same name up to underscores and case: 'kernel' vs '_kernel'"
        )
    }


def test_a_torch_restore_into_dense_layers_suggests_the_mapping():
    model = ck.Module()
    model.fc1 = ck.layers.Dense(3, name="fc1")
    model.fc2 = ck.layers.Dense(2, name="fc2")
    model.fc2(model.fc1(np.zeros((1, 4), np.float32)))
    status = ck.Checkpoint(model=model).restore(str(FIXTURES / "torch" / "model.safetensors"))
    view = StatusSource(status.expect_partial()).view()
    pairs = _pairs(view)
    assert "transposed" in pairs[("fc1/kernel", "fc1.weight")]
    assert "transposed" in pairs[("fc2/kernel", "fc2.weight")]
    assert ("fc2/bias", "fc2.bias") in pairs
    key_map = ck.KeyMap.from_near_misses(near_misses(*_specs(view)))
    path = str(FIXTURES / "torch" / "model.safetensors")
    ck.Checkpoint(model=model).restore(path, key_map=key_map).expect_partial()
    weight = ck.load_checkpoint(path).get_tensor("fc1.weight")
    np.testing.assert_array_equal(model.fc1.kernel.numpy(), weight.T)


def test_a_renamed_layer_in_a_lazy_restore_is_suggested(tmp_path):
    """The saved layer's values wait (pending) for an object the program never creates."""

    def build(hidden):
        model = ck.Module()
        setattr(model, hidden, ck.layers.Dense(3))
        getattr(model, hidden)(np.ones((1, 2), "float32"))
        return model

    path = ck.Checkpoint(model=build("hidden")).write(str(tmp_path / "ckpt"))
    status = ck.Checkpoint(model=build("hidden_renamed")).restore(path, lazy=True)
    view = StatusSource(status.expect_partial()).view()
    assert view.counts()["pending"] == 2
    [suggestion] = view.suggestions
    assert view.path_of(suggestion.program) == ("model", "hidden_renamed")
    assert view.path_of(suggestion.checkpoint) == ("model", "hidden")
    assert "renamed?" in suggestion.why


def test_a_renamed_nnx_layer_in_an_orbax_file_is_suggested_and_its_rename_works(tmp_path):
    """Orbax ends each leaf in ``/value`` (``enc/kernel/value``), which the program's paths do
    not spell (``encoder/kernel``): the subtrees compare by the names restore matches."""
    nnx = pytest.importorskip("flax.nnx")
    ocp = pytest.importorskip("orbax.checkpoint")

    class Net(nnx.Module):
        def __init__(self, encoder, rngs):
            setattr(self, encoder, nnx.Linear(3, 4, rngs=rngs))
            self.head = nnx.Linear(4, 2, rngs=rngs)

    saved = Net("enc", nnx.Rngs(0))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "orbax", nnx.state(saved))
    checkpointer.wait_until_finished()
    fresh = Net("encoder", nnx.Rngs(1))
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "orbax", lazy=True).expect_partial()
    for source in (source_for(status), source_for(tmp_path / "orbax", program=fresh)):
        view = source.view()  # ck.explore(status), ck.explore(path, program=fresh)
        [suggestion] = view.suggestions
        assert view.path_of(suggestion.program) == ("encoder",)
        assert view.path_of(suggestion.checkpoint) == ("enc",)
        assert "renamed?" in suggestion.why
    key_map = ck.KeyMap({"^enc/": "encoder/"})  # the rename, on the stored names
    status = ck.Checkpoint(root=fresh).restore(tmp_path / "orbax", key_map=key_map)
    status.assert_consumed()
    np.testing.assert_array_equal(fresh.encoder.kernel[...], saved.enc.kernel[...])


@settings(max_examples=300, deadline=None)
@given(
    program=st.tuples(st.text("ab_1", max_size=6), st.integers(0, 2)),
    candidates=st.lists(st.tuples(st.text("ab_1", max_size=6), st.integers(0, 2)), min_size=1),
)
def test_the_closest_renamed_object_is_the_one_comparing_every_pair_picks(program, candidates):
    """Pruning with difflib's cheap upper bounds picks what comparing every candidate in full
    picks: the first of the same parent first, then of the highest name ratio."""
    import difflib
    from types import SimpleNamespace

    from ckptlab.inspect._suggest import _closest

    nodes = [SimpleNamespace(name=n, parent=p) for n, p in [program, *candidates]]
    view = SimpleNamespace(nodes=nodes)

    def closeness(c):
        a, b = nodes[0], nodes[c]
        return a.parent == b.parent, difflib.SequenceMatcher(None, a.name, b.name).ratio()

    ids = list(range(1, len(nodes)))
    assert _closest(view, 0, ids) == max(ids, key=closeness)


def test_a_model_of_many_renamed_layers_pairs_each_layer_with_its_own(tmp_path):
    """1,000 layers saved as ``layer<i>`` and restored as ``block<i>``: the explorer suggests
    ``block<i>`` ~ ``layer<i>`` (capped at the first 200)."""
    from ckptlab.inspect import suggest_matches

    def model(prefix):
        root = ck.Module()
        for i in range(1000):
            layer = ck.Module()
            layer.w = ck.Variable(np.zeros(2, np.float32))
            setattr(root, f"{prefix}{i}", layer)
        return root

    path = ck.Checkpoint(model=model("layer")).write(tmp_path / "c")
    status = ck.Checkpoint(model=model("block")).read(path, lazy=True).expect_partial()
    view = StatusSource(status).view()
    found = suggest_matches(view)
    assert len(found) == 200
    for suggestion in found:
        program, checkpoint = view.nodes[suggestion.program], view.nodes[suggestion.checkpoint]
        assert program.name.removeprefix("block") == checkpoint.name.removeprefix("layer")


@pytest.mark.parametrize("extra", ["checkpoint", "program"])
def test_a_prefix_more_or_less_pairs_the_objects_below_it(extra):
    """``backbone.0.weight`` stored for a model's ``0.weight`` (a file saved from a wrapper),
    or the reverse: each object pairs with the one a level of names below the prefix."""
    spec = ValueSpec(shape=(3,), dtype="float32")
    values = []
    for side, state in (("checkpoint", "checkpoint_only"), ("program", "program_only")):
        prefix = ("backbone",) if side == extra else ()
        for layer in ("0", "2"):
            for name in ("weight", "bias"):
                values.append(
                    ViewValue(
                        path=(*prefix, layer, name),
                        state=state,
                        stored=spec if side == "checkpoint" else None,
                        program=spec if side == "program" else None,
                    )
                )
    view = build_view(values, title="t", source="s", kind="match", summary="")
    pairs = {
        ("/".join(view.path_of(s.program)), "/".join(view.path_of(s.checkpoint))): s.why
        for s in view.suggestions
    }
    if extra == "checkpoint":
        assert set(pairs) == {("0", "backbone/0"), ("2", "backbone/2")}
        assert "renamed? 'backbone/0'" in pairs["0", "backbone/0"]
    else:
        assert set(pairs) == {("backbone/0", "0"), ("backbone/2", "2")}
    assert all("a level of names more or less" in why for why in pairs.values())
