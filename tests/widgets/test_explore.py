"""ck.explore targets, ck.diff, statistics, restore-path covering."""

from __future__ import annotations

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.explorer import value_stats
from ckptlab.inspect import covering_paths, name_value, object_value, view_html


def test_explore_a_path_with_a_program_compares_without_writing(saved):
    model, path = saved
    fresh = ck.Module()
    fresh.encoder = ck.layers.Dense(8)
    fresh.encoder(np.ones((1, 5), "float32"))
    before = fresh.encoder.kernel.numpy()
    widget = ck.explore(path, program=ck.Checkpoint(model=fresh))
    assert widget.can_restore
    assert np.array_equal(fresh.encoder.kernel.numpy(), before)
    widget.select(["model/encoder"])
    assert widget.restore_selected().startswith("Restored 2 values")
    assert np.array_equal(fresh.encoder.kernel.numpy(), model.encoder.kernel.numpy())


def test_explore_a_directory_uses_its_latest_checkpoint(saved):
    _, path = saved
    import os

    widget = ck.explore(os.path.dirname(path))
    assert widget.view.source.endswith("ckpt-1")


def test_a_checkpoint_alone_does_not_claim_everything_matched(saved):
    _, path = saved
    html = view_html(ck.explore(path).view)
    assert "everything matched" not in html
    assert "A checkpoint alone, without a program" in html
    assert "ck.explore(path, program=model)" in html


def test_explore_an_eager_status_shows_restored_values(saved):
    _, path = saved
    fresh = ck.Module()
    fresh.encoder = ck.layers.Dense(8)
    status = ck.Checkpoint(model=fresh).restore(path)
    status.expect_partial()
    fresh.encoder(np.ones((1, 5), "float32"))
    widget = ck.explore(status)
    assert widget.view.nodes[widget.view.find(("model", "encoder", "kernel"))].state == "restored"
    assert not widget.can_restore


def test_explore_refuses_other_things_with_a_hint():
    """A ck.InvalidArgumentError (it was a bare TypeError), still a TypeError."""
    for target in (42, None):
        with pytest.raises(ck.InvalidArgumentError, match=r"ck.explore\(ck.Checkpoint\(model="):
            ck.explore(target)


def test_name_based_checkpoints_are_trees_split_on_slash_and_dot(tmp_path):
    a = ck.Variable(np.ones(2), name="model.layers.0.weight")
    b = ck.Variable(np.ones(3), name="dense/kernel")
    path = ck.Saver([a, b]).save(str(tmp_path / "names"))
    view = ck.explore(path).view
    assert view.find(("model", "layers", "0", "weight")) is not None
    assert view.find(("dense", "kernel")) is not None
    assert name_value("a/b.c", state="stored").path == ("a", "b", "c")


def test_slots_sit_under_their_optimizer_with_an_edge_to_the_variable():
    value = object_value("model/w/.OPTIMIZER_SLOT/opt/m", state="stored")
    assert value.path == ("opt", "slots", "m", "model/w")
    assert value.link == ("model", "w") and value.slot and value.synthetic_depth == 1
    assert object_value("a..b/c.Sd", state="stored").path == ("a.b", "c/d")


def test_covering_paths_pick_whole_subtrees_only_when_everything_below_is_chosen():
    """Slots belong to their optimizer: only its path covers them (run_restore_ops(only=))."""
    slot = "m/a/w/.OPTIMIZER_SLOT/o/m"
    known = ["m/a/w", "m/a/b", "m/c/w", slot, "o/iter"]
    assert covering_paths(["m/a/w", "m/a/b", "m/c/w", slot], known) == ["m", slot]
    assert covering_paths(["m/a/w", "m/a/b", "m/c/w"], known) == ["m"]
    assert covering_paths(["o/iter", slot], known) == ["o"]
    assert covering_paths(["o/iter"], known) == ["o/iter"]
    assert covering_paths(["m/a/w", "m/a/b"], known) == ["m/a"]  # the slot is o's, not m/a's
    assert covering_paths(["m/a/w", "m/c/w"], known) == ["m/a/w", "m/c"]
    assert covering_paths(["m/c/w"], known) == ["m/c"]


def test_value_stats_handle_nan_inf_complex_bool_and_empty():
    stats = value_stats(np.array([1.0, -1.0, np.nan, np.inf, -np.inf]))
    assert (stats["nan"], stats["inf"], stats["min"], stats["max"]) == (1, 2, -1.0, 1.0)
    assert value_stats(np.array([3 + 4j]))["max"] == 5.0
    assert value_stats(np.array([True, False]))["mean"] == 0.5
    assert value_stats(np.zeros((0, 3)))["size"] == 0
    assert "histogram" not in value_stats(np.array([np.nan]))


def test_diff_reports_added_removed_changed_with_max_abs_difference(tmp_path):
    a = ck.Checkpoint(w=ck.Variable([1.0, 2.0]), gone=ck.Variable(0), shape=ck.Variable([1.0]))
    pa = a.write(tmp_path / "a")
    b = ck.Checkpoint(w=ck.Variable([1.0, 2.25]), new=ck.Variable(0), shape=ck.Variable([1.0, 2.0]))
    pb = b.write(tmp_path / "b")
    result = ck.diff(pa, pb)
    assert result.summary() == "2 changed, 1 added, 1 removed"
    changed = {e.key.split("/")[0]: e for e in result.changed}
    assert changed["w"].max_abs_diff == 0.25
    assert "shape changed" in changed["shape"].reason
    assert result.to_dict()["entries"]
    assert "max |b-a| = 0.25" in str(result)
    widget = result.widget()
    assert widget.view.kind == "diff"
    assert {n.state for n in widget.view.values()} == {"changed", "added", "removed"}
    widget.focused = widget.view.find(("w",))
    assert widget.details["change"]["max_abs"] == 0.25
    assert widget.details["change"]["rel_l2"] > 0
    assert ck.diff(pa, pa).identical


def test_diff_treats_nans_in_the_same_place_as_equal(tmp_path):
    pa = ck.Checkpoint(w=ck.Variable([np.nan, 1.0, 2.0])).write(tmp_path / "a")
    pb = ck.Checkpoint(w=ck.Variable([np.nan, 1.0, 2.0])).write(tmp_path / "b")
    assert ck.diff(pa, pb).identical
    pc = ck.Checkpoint(w=ck.Variable([np.nan, np.nan, 2.5])).write(tmp_path / "c")
    (entry,) = ck.diff(pa, pc).changed  # a NaN where a number was: the largest change there is
    assert (entry.differing, entry.max_abs_diff) == (2, np.inf)
