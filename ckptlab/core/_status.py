"""Assertion rules of restore statuses, as pure functions of a match report (internal).

Each function returns ``None`` when its assertion holds, or the full failure message.  Unlike
TensorFlow, messages list every problem (grouped), keeping TF's first line so that searching for
TF's wording finds ckptlab's messages too (docs/semantics.md S46-S50).
"""

from __future__ import annotations

from collections.abc import Sequence

from ckptlab.core._report import (
    PENDING_SLOT,
    UNUSED_ATTRIBUTE,
    MatchReport,
    ReportEntry,
    value_unused,
)
from ckptlab.core._text import printable

EXPECT_PARTIAL_HINT = (
    "If this is expected (e.g. loading only a model from a training checkpoint), call "
    "status.expect_partial() to silence the warning, or use status.report() / ck.explore(status) "
    "to see every match."
)


def _lines(entries: Sequence[ReportEntry]) -> list[str]:
    out = []
    for entry in entries:
        spec = entry.program or entry.stored
        shown = f"  {spec.describe()}" if spec else ""
        if entry.state in ("shape_conflict", "dtype_conflict") and entry.program and entry.stored:
            shown = (
                f"  {entry.state.replace('_', ' ')}: program {entry.program.describe()}, "
                f"checkpoint {entry.stored.describe()}"
            )
        if entry.state == "inconsistent":
            shown += f"  [inconsistent: {entry.reason}]"
        out.append(f"  {entry.pretty}{shown}")
    return out


def existing_objects_failure(report: MatchReport) -> str | None:
    """``assert_existing_objects_matched``: every live value-owning object is bound."""
    split = [e for e in report.inconsistent if e.node is None]
    unbound = [*report.missing, *report.conflicts, *split]
    if not unbound:
        return None
    count = len(unbound)
    head = (
        f"Found {count} Python objects that were not bound to checkpointed values, likely due "
        f"to changes in the Python program. Showing all {count} unmatched objects "
        f"(checkpoint: {printable(report.checkpoint)}):"
    )
    return "\n".join([head, *_lines(unbound)])


def consumed_failure(report: MatchReport) -> str | None:
    """``assert_consumed``: the program side matched and every checkpoint value was used."""
    sections: list[str] = []
    program_side = existing_objects_failure(report)
    if program_side:
        sections.append(program_side)
    waiting = report.by_state("checkpoint_only", "pending")
    unresolved = [e for e in waiting if e.reason not in (UNUSED_ATTRIBUTE, PENDING_SLOT)]
    slots = [e for e in waiting if e.reason == PENDING_SLOT]
    unused_attributes = [e for e in report.unused if e.reason == UNUSED_ATTRIBUTE]
    inconsistent = [e for e in report.inconsistent if e.node is not None]
    if unresolved:
        first = unresolved[0]
        listed = [
            f"{line}  [{e.state}]" for line, e in zip(_lines(unresolved), unresolved, strict=True)
        ]
        sections.append(
            f"Unresolved object in checkpoint {first.pretty}: {len(unresolved)} checkpoint "
            f"values were not restored (checkpoint: {printable(report.checkpoint)}):\n"
            + "\n".join(listed)
        )
    if slots:
        sections.append(
            f"Unresolved slot restorations ({len(slots)} optimizer slot values, "
            f"{PENDING_SLOT}):\n" + "\n".join(_lines(slots))
        )
    if unused_attributes:
        listed = [
            f"  {e.pretty} ({printable(e.type_name) or 'object'}): ['VARIABLE_VALUE']"
            for e in unused_attributes
        ]
        sections.append(
            "Unused attributes in these objects (the attributes exist in the checkpoint but were "
            "not restored):\n" + "\n".join(listed)
        )
    if inconsistent:
        sections.append(
            "Inconsistent references when loading the checkpoint into this object graph "
            f"({len(inconsistent)} checkpoint values; the sharing of objects in the program "
            "differs from the checkpoint's):\n" + "\n".join(_lines(inconsistent))
        )
    if not sections:
        return None
    if unresolved or slots or unused_attributes or inconsistent:
        sections.append(EXPECT_PARTIAL_HINT)
    return "\n".join(sections)


def nontrivial_failure(report: MatchReport) -> str | None:
    """``assert_nontrivial_match``: something besides the root was bound."""
    if report.bound_nodes - {0}:
        return None
    unbound = report.missing
    if unbound:
        return "\n".join(
            [
                "Nothing except the root object matched a checkpointed value. Typically this "
                "means that the checkpoint does not match the Python program. The following "
                "objects have no matching checkpointed value (checkpoint: "
                f"{printable(report.checkpoint)}):",
                *_lines(unbound),
            ]
        )
    return (
        "Nothing to load. No dependencies have been added to (root) yet. Attach the objects "
        "(model, optimizer, ...) to the Checkpoint before restoring, or build them afterwards; "
        "deferred restoration fills them in."
    )


def unused_warning(report: MatchReport) -> list[str]:
    """Lines of the warning logged when a status is collected without ``expect_partial()``."""
    unused = [e for e in report.entries if value_unused(e)]
    if not unused:
        return []
    lines = [
        f"Detecting that an object or model or ck.Checkpoint is being deleted with unrestored "
        f"values ({len(unused)} from {printable(report.checkpoint)}). {EXPECT_PARTIAL_HINT}"
    ]
    for entry in unused:
        if entry.reason == UNUSED_ATTRIBUTE:
            lines.append(
                "An attribute in the restored object could not be found in the checkpoint. "
                f"Object: {entry.pretty}, attribute: ['VARIABLE_VALUE']"
            )
        else:
            lines.append(
                f"Value in checkpoint could not be found in the restored object: {entry.pretty}"
            )
    return lines
