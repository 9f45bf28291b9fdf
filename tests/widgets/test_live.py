"""The explorer follows its status: restores from code, other widgets, attached objects."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.inspect import VIEW_STATES
from ckptlab.widgets._explorer import _after_cell


def state_of(widget, path):
    node = widget.view.find(tuple(path.split("/")))
    return VIEW_STATES[widget.states[node]] if widget.states[node] != 255 else None


def test_run_restore_ops_from_code_repaints_the_widget(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    assert state_of(widget, "model/encoder/kernel") == "bound"
    status.run_restore_ops(only=["model/encoder"])
    assert state_of(widget, "model/encoder/kernel") == "restored"
    assert "restored" in widget.summary
    assert "restored" in widget.fallback["text/plain"] or widget.fallback["text/html"]


def test_a_restore_in_one_widget_repaints_another_on_the_same_status(lazy):
    _, _, status = lazy
    first, second = ck.explore(status), ck.explore(status)
    first.select(["model/encoder"])
    first.restore_selected()
    assert state_of(second, "model/encoder/bias") == "restored"
    assert second.states == first.states


def test_objects_attached_later_show_after_the_cell(lazy):
    _, fresh, status = lazy
    widget = ck.explore(status)
    fresh.extra = ck.Variable(np.zeros(3, "float32"))
    assert widget.view.find(("model", "extra")) is None
    _after_cell()  # what IPython's post_run_cell runs
    assert state_of(widget, "model/extra") == "program_only"


def test_a_closed_and_dropped_widget_is_not_kept_by_its_status(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    widget.close()
    del widget
    gc.collect()
    status.run_restore_ops(only=["model/encoder"])  # a listener of a freed widget is skipped


def test_compare_values_colours_matched_values_by_change(lazy):
    saved, fresh, status = lazy
    status.run_restore_ops(only=["model/encoder"])
    fresh.encoder.kernel.assign(fresh.encoder.kernel.numpy() + 0.5)  # trained on since
    widget = ck.explore(status)
    widget.compare_values()
    kernel = widget.view.nodes[widget.view.find(("model", "encoder", "kernel"))].value
    bias = widget.view.nodes[widget.view.find(("model", "encoder", "bias"))].value
    assert kernel.change[0] == pytest.approx(0.5) and kernel.change[1] > 0
    assert bias.change == (0.0, 0.0, bias.change[2])
    assert "change" in widget.view.to_json()["nodes"]
    widget.focused = widget.view.find(("model", "encoder", "kernel"))
    change = widget.details["change"]
    assert change["max_abs"] == pytest.approx(0.5) and change["rel_l2"] > 0
    assert (
        sum(change["a"]["counts"])
        == sum(change["b"]["counts"])
        == saved.encoder.kernel.numpy().size
    )


def test_the_first_view_hides_optimizer_values_when_the_program_has_no_optimizer(saved):
    model, path = saved
    without = ck.explore(ck.Checkpoint(model=model).read(path, lazy=True))
    assert without.view.options["hide_optimizer"] is True
    status = ck.Checkpoint(model=model, optimizer=ck.optimizers.Adam(0.1)).read(path, lazy=True)
    status.expect_partial()
    with_optimizer = ck.explore(status)
    assert with_optimizer.view.options["hide_optimizer"] is False


def test_restore_selected_skips_conflicts_in_the_selection(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    widget.select(["model"])  # holds the head's shape conflicts
    message = widget.restore_selected()
    assert "skipped" in message and "conflicting" in message
    assert state_of(widget, "model/encoder/kernel") == "restored"
    assert state_of(widget, "model/head/kernel") == "shape_conflict"
