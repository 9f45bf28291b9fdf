"""ck.diff and ck.explore(a, compare=b): values compared, per value and per module."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ckptlab as ck


@pytest.fixture
def two(tmp_path):
    """Checkpoints a and b: encoder moved a lot, head a little, one value added, one removed."""
    model = ck.Module()
    model.encoder = ck.Variable(np.ones(4, "float32"))
    model.head = ck.Module()
    model.head.w = ck.Variable(np.full(2, 10.0, "float32"))
    model.head.gone = ck.Variable(np.zeros(1, "float32"))
    a = ck.Checkpoint(model=model).write(tmp_path / "a")
    model.encoder.assign(np.full(4, 3.0, "float32"))
    model.head.w.assign(np.array([10.0, 11.0], "float32"))
    del model.head.gone
    model.head.new = ck.Variable(np.zeros(1, "float32"))
    b = ck.Checkpoint(model=model).write(tmp_path / "b")
    return a, b


def test_relative_l2_per_value_and_module_most_changed_first(two):
    a, b = two
    result = ck.diff(a, b)
    encoder = next(e for e in result.entries if e.path[-1] == "encoder")
    assert encoder.rel_l2 == pytest.approx(2.0)  # ||2,2,2,2|| / ||1,1,1,1||
    assert [e.path[-1] for e in result.most_changed()][:2] == ["encoder", "w"]
    modules = {m.module: m for m in result.modules()}
    assert modules["model/head"].rel_l2 == pytest.approx(1 / math.sqrt(200))
    assert modules["model/head"].changed == 3  # w changed, gone removed, new added
    data = result.to_dict()
    assert data["modules"][0]["module"] == "model"
    assert {e["path"] for e in data["entries"]} >= {"model/encoder", "model/head/new"}


def test_explore_compare_colours_by_change_with_a_histogram_overlay(two):
    a, b = two
    widget = ck.explore(a, compare=b)
    view = widget.view
    assert view.kind == "diff"
    change = view.to_json()["nodes"]["change"]
    encoder = view.find(("model", "encoder"))
    assert change[encoder][0] == pytest.approx(2.0) and change[encoder][1] == pytest.approx(16.0)
    widget.focused = encoder
    overlay = widget.details["change"]
    assert overlay["a"]["edges"] == overlay["b"]["edges"]
    assert sum(overlay["a"]["counts"]) == sum(overlay["b"]["counts"]) == 4


def test_compare_needs_two_paths(two):
    a, _ = two
    with pytest.raises(ck.InvalidArgumentError, match="two paths"):  # a TypeError too
        ck.explore(a, compare=42)


def test_a_training_comparison_ranks_the_model_and_starts_with_the_optimizer_hidden(tmp_path):
    """Adam's moments start at zero: shown, they would top every ranking of change."""
    model = ck.Module()
    model.dense = ck.layers.Dense(3)
    model.dense(np.ones((1, 2), "float32"))
    optimizer = ck.optimizers.Adam(0.1)
    checkpoint = ck.Checkpoint(model=model, optimizer=optimizer)
    paths = []
    for _ in range(2):
        grads = [(np.ones(v.shape, "float32"), v) for v in (model.dense.kernel, model.dense.bias)]
        optimizer.apply_gradients(grads)
        paths.append(checkpoint.write(tmp_path / f"c{len(paths)}"))
    result = ck.diff(*paths)
    flagged = {e.key for e in result.entries if e.optimizer}
    assert flagged and all(".OPTIMIZER_SLOT" in k or k.startswith("optimizer/") for k in flagged)
    kernel = next(e for e in result.entries if e.key.startswith("model/dense/kernel/.ATTR"))
    assert not kernel.optimizer
    assert {e["key"] for e in result.to_dict()["entries"] if e["optimizer"]} == flagged
    view = ck.explore(paths[0], compare=paths[1]).view
    assert view.options["hide_optimizer"] is True
    slot = next(n for n in view.values() if n.value is not None and n.value.optimizer)
    assert view.nodes[slot.parent].flags & 1  # the optimizer flag the browser hides by


def test_a_value_that_diverged_is_the_most_changed(tmp_path):
    """A value that became NaN or infinite changed infinitely (relative L2 and ranking),
    never 0 because its distance has no finite part."""

    def write(path, **values):
        model = ck.Module()
        for name, value in values.items():
            setattr(model, name, ck.Variable(np.array(value)))
        return ck.Checkpoint(model=model).write(path)

    a = write(tmp_path / "a", diverged=[1.0, 2.0], exploded=[1.0, 2.0], tiny=[1.0, 2.0])
    b = write(tmp_path / "b", diverged=[1.0, np.nan], exploded=[1.0, np.inf], tiny=[1.0, 2.5])
    result = ck.diff(a, b)
    rel = {e.path[-1]: e.rel_l2 for e in result.entries}
    assert rel["diverged"] == rel["exploded"] == math.inf and 0 < rel["tiny"] < 1
    assert [e.path[-1] for e in result.most_changed()][-1] == "tiny"
    assert {m.module: m.rel_l2 for m in result.modules()}["model"] == math.inf


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (np.array([-128], np.int8), np.array([127], np.int8), (1, 255.0)),
        (np.array([2**64 - 1], np.uint64), np.array([0], np.uint64), (1, float(2**64 - 1))),
        (np.array([True, False]), np.array([False, False]), (1, 1.0)),
        (np.array([3], np.int8), np.array([250], np.uint8), (1, 247.0)),
        (np.array([1.0, np.nan]), np.array([1.0, np.nan]), (0, 0.0)),
        (np.array([1.0, 2.0]), np.array([np.nan, 2.0]), (1, math.inf)),
        (np.array([1 + 1j]), np.array([1 + 2j]), (1, 1.0)),
    ],
)
def test_values_differ_by_their_exact_distance(a, b, expected):
    """Integer distances are computed without overflow or float64 rounding first."""
    from ckptlab.explorer import difference

    differing, largest, _ = difference(a, b)
    assert (differing, largest) == expected


def test_counters_and_python_state_are_compared_but_not_measured(tmp_path):
    """Module totals are about weights: a step counter or a bytes blob changing must not
    outweigh (or dilute) the weights' relative change."""
    weights = ck.Variable(np.ones(4, np.float32))
    step = ck.Variable(np.array(1, np.int64))
    blob = ck.Variable(np.frombuffer(b'{"lr": 0.1}', np.uint8).copy())
    ckpt = ck.Checkpoint(model=ck.Module(), state=ck.Module())
    ckpt.model.w, ckpt.state.step, ckpt.state.blob = weights, step, blob
    first = ckpt.write(tmp_path / "a")
    weights.assign(np.full(4, 2.0, np.float32))
    step.assign(np.array(1000, np.int64))
    blob.assign(np.frombuffer(b'{"lr": 0.2}', np.uint8).copy())
    second = ckpt.write(tmp_path / "b")
    diff = ck.diff(first, second)
    modules = {m.module: m for m in diff.modules()}
    assert modules["model"].rel_l2 == pytest.approx(1.0)
    assert modules["state"].rel_l2 is None and modules["state"].changed == 2
    assert diff.modules()[0].module == "model"
    # the ranking too: the step moved by 999x, yet only the weights are ranked
    assert [e.key for e in diff.most_changed()] == ["model/w/.ATTRIBUTES/VARIABLE_VALUE"]
    assert {e.key for e in diff.changed} >= {"state/step/.ATTRIBUTES/VARIABLE_VALUE"}
    changed = {v.key: v.change for v in (n.value for n in diff.widget().view.nodes) if v}
    assert changed["model/w/.ATTRIBUTES/VARIABLE_VALUE"] is not None
    assert changed["state/step/.ATTRIBUTES/VARIABLE_VALUE"] is None
