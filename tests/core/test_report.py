"""Match reports as data: states, summary line, JSON (docs/semantics.md, Match states)."""

import json

from ckptlab.core import (
    Attribute,
    GraphNode,
    MatchReport,
    ObjectGraph,
    ReportEntry,
    RestoreState,
    ValueSpec,
    build_report,
)
from ckptlab.core._report import value_unused

SPEC = ValueSpec(shape=(2,), dtype="float32")


def entry(path, state, optimizer=False):
    return ReportEntry(
        path=path, pretty=f"(root).{path}", key=path, state=state, stored=SPEC, optimizer=optimizer
    )


def test_summary_line_counts_each_kind():
    report = MatchReport(
        checkpoint="c",
        entries=(
            *(entry(f"m{i}", "restored") for i in range(3)),
            entry("lazy", "bound"),
            entry("later", "pending"),
            entry("x", "program_only"),
            entry("o1", "checkpoint_only", optimizer=True),
            entry("o2", "checkpoint_only", optimizer=True),
            entry("u", "checkpoint_only"),
            entry("s", "shape_conflict"),
        ),
    )
    assert report.summary() == (
        "3 restored, 1 matched but not yet written, 1 pending, 1 missing in checkpoint, "
        "1 unused checkpoint value, 2 unused optimizer values, 1 shape conflict"
    )
    assert [e.path for e in report.matched] == ["m0", "m1", "m2", "lazy"]
    assert [e.path for e in report.bound_not_written] == ["lazy"]


def test_to_dict_is_json_and_str_groups_problems():
    report = MatchReport(
        checkpoint="c", entries=(entry("a", "restored"), entry("b", "dtype_conflict"))
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["counts"]["dtype_conflict"] == 1 and data["entries"][1]["stored"]["shape"] == [2]
    text = str(report)
    assert "dtype_conflict (1):" in text and "(root).b" in text and "(root).a" not in text


KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


def value_node(key):
    return GraphNode(attributes=(Attribute(name="VARIABLE_VALUE", key=key),))


def two_paths(b_target, *prefixes):
    """Root with children a and b, each holding ``v`` (b's is node ``b_target``)."""
    return ObjectGraph(
        nodes=(
            GraphNode(children={"a": 1, "b": 2}),
            GraphNode(children={"v": 3}),
            GraphNode(children={"v": b_target}),
            *(value_node(prefix + KEY) for prefix in prefixes),
        )
    )


def shared_report(program_ids, *, merged=None, inconsistent=None, bound=(0, 1, 2, 3)):
    """Checkpoint: a/v and b/v are one saved object (node 3); program: two objects (3, 4)."""
    graph = two_paths(3, "a/v")
    program = two_paths(4, "a/v", "b/v")
    state = RestoreState(
        bound=frozenset(bound),
        written=frozenset({3}),
        queued=frozenset(),
        conflicts={},
        pending_slots=frozenset(),
        deferred=frozenset(),
        blocked={},
        inconsistent=inconsistent or {},
        merged=merged or {},
        unused_attributes={},
        bound_program_ids=frozenset({10, 11, 12, 13}),
    )
    return build_report(
        checkpoint="c",
        graph=graph,
        stored={"a/v" + KEY: SPEC},
        state=state,
        program_graph=program,
        program_specs=(None, None, None, SPEC, SPEC),
        program_ids=program_ids,
        lazy=False,
    )


def test_inconsistent_on_both_sides_while_the_other_object_is_in_the_program():
    """S59-S60: one saved object, two program objects."""
    report = shared_report((10, 11, 12, 13, 14), inconsistent={3: (13, frozenset({14}))})
    assert [(e.path, e.state, e.node) for e in report.entries] == [
        ("a/v", "inconsistent", 3),
        ("b/v", "inconsistent", None),
    ]
    assert report.entries[0].reason.startswith("restored into (root).a.v, but (root).b.v refers")
    assert "saves this as (root).a.v" in report.entries[1].reason
    assert not value_unused(report.entries[0]) and not value_unused(report.entries[1])
    gone = shared_report((10, 11, 12, 13, 99), inconsistent={3: (13, frozenset({14}))})
    assert [(e.path, e.state) for e in gone.entries] == [
        ("a/v", "restored"),
        ("b/v", "program_only"),
    ]


def test_merged_value_is_inconsistent_and_unused():
    """S61: a saved value not written because its program object took another."""
    report = shared_report((10, 11, 12, 13, 14), merged={3: 1})
    [entry] = report.by_state("inconsistent")
    assert entry.node == 3 and entry.reason.startswith("not written:") and value_unused(entry)
