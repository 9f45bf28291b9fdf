"""Near-miss suggestions."""

from __future__ import annotations

from ckptlab.core import ValueSpec
from ckptlab.inspect import ViewValue, build_view


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
