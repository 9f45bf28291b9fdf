"""The graph view: tree placement, states, flags, JSON, compression."""

from __future__ import annotations

import gzip
import json

from ckptlab.core import ValueSpec
from ckptlab.inspect import (
    OPTIMIZER,
    SLOT,
    SYNTHETIC,
    VIEW_STATES,
    ViewValue,
    build_view,
)


def view_of(*values, **kwargs):
    return build_view(values, title="t", source="s", kind="match", summary="", **kwargs)


def test_tree_is_built_from_paths_parents_first(mismatch):
    for node in mismatch.nodes[1:]:
        assert 0 <= node.parent < node.id
    assert mismatch.path_of(mismatch.find(("model", "encoder", "kernel"))) == (
        "model",
        "encoder",
        "kernel",
    )
    assert mismatch.find(("model", "nope")) is None


def test_counts_cover_every_state(mismatch):
    counts = mismatch.counts()
    assert counts == {
        "restored": 1,
        "bound": 2,
        "pending": 1,
        "checkpoint_only": 3,
        "program_only": 3,
        "shape_conflict": 1,
        "dtype_conflict": 1,
    }
    assert list(counts) == [s for s in VIEW_STATES if s in counts]


def test_optimizer_flags_propagate_to_groups_and_slots_are_synthetic(mismatch):
    optimizer = mismatch.find(("optimizer",))
    slots = mismatch.find(("optimizer", "slots"))
    leaf = mismatch.find(("optimizer", "slots", "m", "model/encoder/kernel"))
    assert mismatch.nodes[optimizer].flags & OPTIMIZER
    assert mismatch.nodes[slots].flags & SYNTHETIC
    assert not mismatch.nodes[optimizer].flags & SYNTHETIC
    assert mismatch.nodes[leaf].flags & SLOT
    assert not mismatch.nodes[mismatch.find(("model",))].flags & OPTIMIZER
    kernel = mismatch.find(("model", "encoder", "kernel"))
    assert (leaf, kernel, "slot") in mismatch.edges


def test_two_values_on_one_path_are_both_kept():
    view = view_of(
        ViewValue(path=("a", "b"), state="stored", key="a.b"),
        ViewValue(path=("a", "b"), state="stored", key="a/b"),
    )
    assert sum(1 for _ in view.values()) == 2


def test_a_node_can_hold_a_value_and_children():
    view = view_of(
        ViewValue(path=("a",), state="stored", key="a"),
        ViewValue(path=("a", "b"), state="stored", key="a.b"),
    )
    a = view.find(("a",))
    assert view.nodes[a].state == "stored" and view.children[a]


def test_json_is_columnar_with_deduplicated_specs(mismatch):
    data = mismatch.to_json()
    assert data["format"] == "ckptlab.graph" and data["version"] == 1
    columns = data["nodes"]
    assert {len(c) for c in columns.values()} == {len(mismatch.nodes)}
    kernel = mismatch.find(("model", "encoder", "kernel"))
    stored = data["specs"][columns["stored"][kernel]]
    assert stored == ["float32", [5, 8], 4]
    assert columns["stored"][kernel] == columns["program"][kernel]
    assert data["states"][columns["state"][kernel]] == "restored"
    assert len(data["specs"]) == len({(d, tuple(s)) for d, s, _ in data["specs"]})


def test_compressed_bytes_round_trip(mismatch):
    assert json.loads(gzip.decompress(mismatch.to_bytes())) == json.loads(
        json.dumps(mismatch.to_json())
    )


def test_state_codes_and_same_shape(mismatch):
    codes = mismatch.state_codes()
    assert len(codes) == len(mismatch.nodes)
    assert codes[0] == 255
    kernel = mismatch.find(("model", "encoder", "kernel"))
    assert VIEW_STATES[codes[kernel]] == "restored"
    assert mismatch.same_shape(mismatch)
    assert not mismatch.same_shape(view_of(ViewValue(path=("x",), state="stored")))


def test_100k_values_stay_small_on_the_wire():
    spec = ValueSpec(shape=(64, 64), dtype="float32")
    values = [
        ViewValue(path=("model", f"block_{b}", f"layer_{i}", leaf), state="bound", stored=spec)
        for b in range(100)
        for i in range(250)
        for leaf in ("kernel", "bias", "gamma", "beta")
    ]
    view = view_of(*values, suggest=False)
    assert sum(1 for _ in view.values()) == 100_000
    assert len(view.to_bytes()) < 2_000_000
