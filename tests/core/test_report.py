"""Match reports as data: states, summary line, JSON (DESIGN.md §4)."""

import json

from ckptlab.core import MatchReport, ReportEntry, ValueSpec

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
        "4 matched, 1 not yet written, 1 pending, 1 missing in checkpoint, "
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
