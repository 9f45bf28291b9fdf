"""``ckptlab diff A B``: which values were added, removed, reshaped or changed, and by how much."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ckptlab.cli._common import EXIT_OK, EXIT_PROBLEMS, Output, open_target
from ckptlab.cli._style import describe_shape
from ckptlab.core import StoredValue, printable

if TYPE_CHECKING:
    from ckptlab.storage import StoredCheckpoint

MARKS = {"removed": "-", "added": "+", "spec": "!", "changed": "~"}
BATCH_BYTES = 64 * 2**20
"""Bytes read from each checkpoint at a time while comparing values."""


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``diff`` on the ``commands`` subparsers object."""
    parser = commands.add_parser(
        "diff",
        parents=parents,
        help="compare two checkpoints (structure and values)",
        description="Compare two checkpoints key by key: values only in A (-), only in B (+), "
        "with a different shape or dtype (!), or with different contents (~, with the maximum "
        "absolute difference). Exit status 0 when they are equal, 1 when they differ.",
    )
    parser.add_argument("a", help="first checkpoint (or checkpoint directory)")
    parser.add_argument("b", help="second checkpoint (or checkpoint directory)")
    parser.add_argument(
        "--atol",
        type=float,
        default=0.0,
        help="treat values whose maximum absolute difference is at most ATOL as equal (default 0)",
    )
    parser.add_argument(
        "--structure-only",
        action="store_true",
        help="compare keys, shapes and dtypes; read no values",
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Difference:
    """One key that differs between A and B."""

    key: str
    kind: str
    """``removed`` (only in A), ``added`` (only in B), ``spec`` (shape/dtype) or ``changed``."""
    a: StoredValue | None
    b: StoredValue | None
    differing: int = 0
    """Number of elements that differ (``changed`` only)."""
    max_abs_diff: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain data (non-finite differences as strings, so the JSON stays strict)."""
        out: dict[str, Any] = {"key": self.key, "kind": self.kind}
        for side, value in (("a", self.a), ("b", self.b)):
            if value is not None:
                out[side] = {"shape": list(value.shape), "dtype": value.dtype}
        if self.kind == "changed":
            out["differing_elements"] = self.differing
            diff = self.max_abs_diff
            out["max_abs_diff"] = diff if math.isfinite(diff) else str(diff)
        return out


def compare(
    a: StoredCheckpoint, b: StoredCheckpoint, *, atol: float, read: bool
) -> tuple[list[Difference], int]:
    """Every difference between two checkpoints, and the number of keys found equal.

    Values of one shape and dtype are read a batch at a time and compared as ``ck.diff``
    compares them (:func:`ckptlab.explorer.difference`: NaNs at the same places equal,
    integers exactly).
    """
    from ckptlab.explorer import difference  # numpy: not for ``ckptlab --version``

    values_a, values_b = a.document.values, b.document.values
    found: list[Difference] = []
    same: list[str] = []
    for key in sorted(set(values_a) | set(values_b)):
        va, vb = values_a.get(key), values_b.get(key)
        if va is None or vb is None:
            found.append(Difference(key, "removed" if vb is None else "added", va, vb))
        elif va.shape != vb.shape or va.dtype != vb.dtype:
            found.append(Difference(key, "spec", va, vb))
        else:
            same.append(key)
    if not read:
        return found, len(same)
    changed: dict[str, Difference] = {}
    for batch in a.batches(same, BATCH_BYTES):
        read_a, read_b = a.read_many(batch), b.read_many(batch)
        for key in batch:
            differing, largest, _ = difference(read_a.pop(key), read_b.pop(key))
            if differing and not largest <= atol:
                changed[key] = Difference(
                    key, "changed", values_a[key], values_b[key], differing, largest
                )
    found += changed.values()
    found.sort(key=lambda d: d.key)
    return found, len(same) - len(changed)


def run(args: argparse.Namespace, out: Output) -> int:
    """Compare ``args.a`` and ``args.b``."""
    a, _ = open_target(args.a)
    b, _ = open_target(args.b)
    found, equal = compare(a, b, atol=args.atol, read=not args.structure_only)
    counts = {kind: sum(d.kind == kind for d in found) for kind in MARKS}
    if out.json:
        out.emit_json(
            {
                "a": a.display_path,
                "b": b.display_path,
                "equal": not found,
                "equal_values": equal,
                "values_compared": not args.structure_only,
                "counts": counts,
                "differences": [d.to_json() for d in found],
            }
        )
        return EXIT_PROBLEMS if found else EXIT_OK
    style = out.style
    out.line(style.bold(f"--- {printable(a.display_path)}"))
    out.line(style.bold(f"+++ {printable(b.display_path)}"))
    for found_one in found:
        out.line(_describe(found_one, out))
    out.line(_summary(equal, counts, out, values_compared=not args.structure_only))
    return EXIT_PROBLEMS if found else EXIT_OK


def _summary(equal: int, counts: dict[str, int], out: Output, *, values_compared: bool) -> str:
    """The last line: ``identical``/``differ``, or without values ``same structure``/``differ``."""
    changes = (
        f"{counts['spec']} reshaped or retyped, {counts['added']} added, "
        f"{counts['removed']} removed"
    )
    same = not any(counts.values())
    if values_compared:
        verdict = "identical" if same else "differ"
        summary = f"{equal} equal, {counts['changed']} changed, {changes}"
    else:  # nothing says the values are equal
        verdict = "same structure" if same else "structure differs"
        summary = f"{equal} with the same shape and dtype, {changes} (values not compared)"
    line = f"{verdict}: {summary}"
    return out.style.green(line) if same else out.style.yellow(line)


def _spec(value: StoredValue | None) -> str:
    return "" if value is None else f"{describe_shape(value.shape)} {value.dtype}"


def _describe(difference: Difference, out: Output) -> str:
    style = out.style
    mark = MARKS[difference.kind]
    key = printable(difference.key)
    if difference.kind == "removed":
        return style.red(f"{mark} {key}  {_spec(difference.a)}")
    if difference.kind == "added":
        return style.green(f"{mark} {key}  {_spec(difference.b)}")
    if difference.kind == "spec":
        return style.yellow(f"{mark} {key}  {_spec(difference.a)} -> {_spec(difference.b)}")
    assert difference.a is not None
    total = difference.a.size
    detail = (
        f"max |a-b| = {difference.max_abs_diff:.6g} "
        f"({difference.differing} of {total} elements differ)"
    )
    return f"{style.yellow(mark + ' ' + key)}  {style.cyan(_spec(difference.a))}  {detail}"
