"""ExplorerWidget: traits and commands, through a recording comm (no kernel, no browser)."""

from __future__ import annotations

import gc
import gzip
import json
import weakref

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.inspect import MIME_TYPE, VIEW_STATES, ViewValue, build_view
from ckptlab.widgets import ExplorerWidget


def opened(widget):
    """The comm_open message: what the browser receives first."""
    kind, data, buffers = widget.comm.messages[0] if widget.comm.messages else (None, {}, [])
    return kind, data, buffers


def test_graph_is_sent_once_as_a_compressed_buffer(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    graph = json.loads(gzip.decompress(widget.graph))
    assert graph["format"] == "ckptlab.graph"
    assert graph["can_restore"] is True
    assert widget.summary == status.report().summary()
    assert len(widget.states) == len(graph["nodes"]["parent"])
    widget.selected = [1]
    widget.search = "kernel"
    widget.expanded = [0, 1]
    later = [m for m in widget.comm.messages[1:] if m[0] == "comm_msg"]
    assert later
    for _, data, buffers in later:
        assert "graph" not in data.get("state", {})
        assert sum(len(b) for b in buffers) < 1000


def test_focus_loads_details_with_statistics_of_that_value_only(lazy, monkeypatch):
    model, _, status = lazy
    widget = ck.explore(status)
    reads = []
    source = status._coordinator.source
    original = source.read
    monkeypatch.setattr(source, "read", lambda key, out=None: reads.append(key) or original(key))
    kernel = widget.view.find(("model", "encoder", "kernel"))
    widget.focused = kernel
    details = widget.details
    assert reads == ["model/encoder/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert details["key"] == reads[0]
    assert details["checksum"] == "verified (crc32c)"
    expected = model.encoder.kernel.numpy()
    assert details["stats"]["min"] == pytest.approx(float(expected.min()))
    assert details["stats"]["std"] == pytest.approx(float(expected.std()))
    assert sum(details["stats"]["histogram"]["counts"]) == expected.size
    widget.focused = widget.view.find(("model",))
    assert "stats" not in widget.details


def test_details_of_a_value_the_checkpoint_lacks_say_so_without_a_stored_key(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    missing = widget.view.find(("model", "hidden_renamed", "kernel"))
    widget.focused = missing
    details = widget.details
    assert details["state"] == "program_only"
    # the pane stops waiting: an explicit answer instead of statistics
    assert "stats" not in details
    assert details["no_stats"] == "not in the checkpoint: no stored value"
    # the key it would be saved under, never shown as a key the checkpoint holds
    assert "key" not in details
    assert details["expected_key"] == "model/hidden_renamed/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_restore_selected_writes_only_the_selection_and_updates_states(lazy):
    model, fresh, status = lazy
    widget = ck.explore(status)
    widget.select(["model/encoder"])
    message = widget.restore_selected()
    # the 2 values below it; its variables' slots belong to the optimizer (not selected)
    assert message == "Restored 2 values: run_restore_ops(only=['model/encoder'])"
    slots = [e.state for e in status.report().entries if "encoder/kernel/.OPTIMIZER" in e.path]
    assert slots and set(slots) == {"bound"}
    assert np.array_equal(fresh.encoder.kernel.numpy(), model.encoder.kernel.numpy())
    assert not np.array_equal(fresh.head.kernel.numpy()[:, :1], model.head.kernel.numpy())
    kernel = widget.view.find(("model", "encoder", "kernel"))
    assert VIEW_STATES[widget.states[kernel]] == "restored"
    head = widget.view.find(("model", "head", "kernel"))
    assert VIEW_STATES[widget.states[head]] == "shape_conflict"


def test_restore_message_from_the_front_end_and_conflict_errors(lazy):
    _, _, status = lazy
    widget = ck.explore(status)
    head = widget.view.find(("model", "head"))
    widget._on_message(widget, {"type": "restore", "nodes": [head]}, [])
    assert widget.message == (
        "Nothing restored: no selected value is waiting to be written; "
        "skipped 2 conflicting (shape or dtype differs)."
    )
    assert widget.selected == [head]
    widget._on_message(widget, {"type": "restore", "nodes": [0]}, [])  # the rest restores
    assert widget.message.startswith("Restored 8 values")
    assert widget.message.endswith("(skipped 6 conflicting, 6 pending)")


def test_engine_is_sent_on_request(lazy):
    widget = ck.explore(lazy[2])
    widget.comm.messages.clear()
    widget._on_message(widget, {"type": "need-engine"}, [])
    _, data, buffers = widget.comm.messages[-1]
    assert data["content"]["type"] == "engine"
    assert len(buffers) == 1


def test_svg_export_round_trip(lazy, tmp_path):
    widget = ck.explore(lazy[2])
    with pytest.raises(ValueError, match="Export SVG"):
        widget.export_svg(tmp_path / "x.svg")
    widget._on_message(widget, {"type": "svg", "svg": "<svg/>"}, [])
    assert widget.export_svg(tmp_path / "x.svg").read_text() == "<svg/>"


def test_select_and_expand_by_path(lazy):
    widget = ck.explore(lazy[2])
    widget.expand(["model/encoder"])
    encoder = widget.view.find(("model", "encoder"))
    assert {0, widget.view.find(("model",)), encoder} <= set(widget.expanded)
    with pytest.raises(KeyError, match="No node at 'model/nope'"):
        widget.select(["model/nope"])


def test_mimebundle_has_widget_graph_html_and_text(lazy):
    widget = ck.explore(lazy[2])
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data[MIME_TYPE]["format"] == "ckptlab.graph"
    assert "shape_conflict" in data["text/html"]
    assert data["text/plain"].startswith("CheckpointLoadStatus")


def test_to_dot_of_the_whole_graph_and_the_visible_part(lazy):
    widget = ck.explore(lazy[2])
    assert widget.to_dot().count("label=") == len(widget.view.nodes)
    widget.expanded = [0]
    assert widget.to_dot(visible_only=True).count("label=") == 1 + len(widget.view.children[0])
    assert widget.to_graphviz().source == widget.to_dot()


def test_first_message_stays_under_2_mb_for_100k_values(tmp_path):
    model = ck.Module()
    model.blocks = [ck.Module() for _ in range(400)]
    for block in model.blocks:
        for i in range(250):
            setattr(block, f"w{i}", ck.Variable(np.zeros(1, "float32")))
    path = ck.Checkpoint(model=model).write(tmp_path / "big")
    widget = ck.explore(path)
    kind, data, buffers = opened(widget)
    assert kind == "comm_open"
    size = len(json.dumps(data)) + sum(len(b) for b in buffers)
    assert widget.summary.startswith("100000 values")
    assert size < 2_000_000, size


def test_program_alone_and_checkpoint_alone_cannot_restore(lazy, saved):
    _, fresh, _ = lazy
    program = ck.explore(ck.Checkpoint(model=fresh))
    assert program.summary.endswith("(not saved yet)") and not program.can_restore
    program.focused = program.view.find(("model", "encoder", "kernel"))
    assert program.details["stats"]["size"] == 40
    stored = ck.explore(saved[1])
    assert not stored.can_restore
    stored.select(["model"])
    with pytest.raises(ValueError, match="checkpoint alone"):
        stored.restore_selected()


def test_widget_class_is_exported():
    assert ExplorerWidget.__module__ == "ckptlab.widgets._explorer"


def test_refresh_resends_the_graph_only_when_the_tree_changed(lazy):
    _, fresh, status = lazy
    widget = ck.explore(status)
    graph = widget.graph
    widget.refresh()
    assert widget.graph is graph or widget.graph == graph
    fresh.extra = ck.Variable(np.zeros(2, "float32"))  # a new program-only value
    widget.refresh()
    assert widget.graph != graph
    assert widget.view.find(("model", "extra")) is not None
    assert len(widget.states) == len(widget.view.nodes)


class ReorderingSource:
    """An explorer source whose tree gains a value that sorts before the others."""

    def __init__(self):
        self.values = [
            ViewValue(path=("model", "encoder", "kernel"), state="bound"),
            ViewValue(path=("model", "head", "kernel"), state="bound"),
        ]

    def view(self):
        return build_view(self.values, title="t", source="s", kind="match", summary="")

    def details(self, view, node_id):
        return {"path": "/".join(view.path_of(node_id))}

    def restore(self, view, node_ids):
        raise AssertionError("not used")

    def watch(self, callback):
        pass

    def recheck(self, view):
        return False


def test_a_changed_tree_keeps_selection_expansion_and_focus_on_the_same_paths():
    source = ReorderingSource()
    widget = ExplorerWidget(source)
    head = ("model", "head", "kernel")
    widget.select(["model/head/kernel"])
    widget.expand(["model/head"])
    widget.focused = widget.view.find(head)
    before = widget.focused
    source.values.insert(0, ViewValue(path=("extra",), state="program_only"))
    widget.refresh()
    assert widget.view.find(head) != before  # node ids moved
    assert [widget.view.path_of(i) for i in widget.selected] == [head]
    assert widget.view.path_of(widget.focused) == head
    assert widget.details == {"path": "model/head/kernel"}
    assert {widget.view.path_of(i) for i in widget.expanded} == {
        (),
        ("model",),
        ("model", "head"),
    }


def test_a_closed_explorer_and_its_checkpoint_are_freed(saved):
    """Nothing global keeps an explorer (anywidget's file watcher used to hold every one)."""
    widget = ck.explore(saved[1])
    held = weakref.ref(widget), weakref.ref(widget._source.stored)
    widget.close()
    del widget
    gc.collect()
    assert [ref() for ref in held] == [None, None]


def test_restore_selected_holds_back_the_slots_of_a_parameter_with_a_conflicting_slot(tmp_path):
    """A parameter's optimizer state is one unit: Adam given ``step`` without ``exp_avg`` (whose
    shape conflicts) would fail on its next step."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    saved = torch.nn.ModuleDict({"enc": torch.nn.Linear(4, 3), "aux": torch.nn.Linear(2, 5)})
    optimizer = torch.optim.Adam(saved.parameters())
    sum(layer(torch.ones(1, layer.in_features)).sum() for layer in saved.values()).backward()
    optimizer.step()
    path = ck.Checkpoint(model=saved, optimizer=optimizer).write(tmp_path / "ckpt")
    model = torch.nn.ModuleDict({"enc": torch.nn.Linear(4, 3), "aux": torch.nn.Linear(2, 7)})
    fresh = torch.optim.Adam(model.parameters())
    status = ck.Checkpoint(model=model, optimizer=fresh).read(path, lazy=True)
    widget = ck.explore(status)
    widget.select(["optimizer"])
    message = widget.restore_selected()
    assert "held back (optimizer state of a parameter with a conflicting slot)" in message
    assert {id(p): sorted(s) for p, s in fresh.state.items()} == {
        id(p): ["exp_avg", "exp_avg_sq", "step"] for p in model["enc"].parameters()
    }
    sum(layer(torch.ones(1, layer.in_features)).sum() for layer in model.values()).backward()
    fresh.step()  # the held-back parameters start fresh
