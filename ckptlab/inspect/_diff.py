"""Differences between two checkpoints, as data, and their graph view (internal, pure).

Reading and comparing the values is the facade's job (``ck.diff``); this module holds the
result and places it in a view: ``added`` (only in b), ``removed`` (only in a), ``changed``
(different shape, dtype or values, with the largest absolute difference) and ``unchanged``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ckptlab.core import ValueSpec, is_floating, printable
from ckptlab.inspect._graphview import GraphView, ViewValue, build_view

DiffState = Literal["added", "removed", "changed", "unchanged"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffEntry:
    """One key present in either checkpoint."""

    key: str
    path: tuple[str, ...]
    """Display path (names unescaped)."""
    state: DiffState
    a: ValueSpec | None = None
    b: ValueSpec | None = None
    max_abs_diff: float | None = None
    """Largest ``|b - a|`` over the elements, for changed values of the same shape and dtype
    (``inf`` where a NaN faces a number)."""
    differing: int | None = None
    """How many elements differ (values of the same shape and dtype that were compared)."""
    reason: str = ""
    delta_squares: float | None = None
    """``||b - a||²`` (values of the same shape and dtype that were compared)."""
    base_squares: float | None = None
    """``||a||²`` (likewise)."""
    optimizer: bool = False
    """An optimizer's value (a slot or step counter), not the model's."""

    @property
    def rel_l2(self) -> float | None:
        """Relative L2 change ``||b - a|| / ||a||`` (``None`` when the values were not compared)."""
        if self.delta_squares is None or self.base_squares is None:
            return None
        return _relative(self.delta_squares, self.base_squares)

    @property
    def module(self) -> str:
        """The display path of the object holding this value (``""`` at the root)."""
        return "/".join(self.path[:-1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "key": self.key,
            "path": "/".join(self.path),
            "state": self.state,
            "a": None if self.a is None else {"shape": list(self.a.shape), "dtype": self.a.dtype},
            "b": None if self.b is None else {"shape": list(self.b.shape), "dtype": self.b.dtype},
            "max_abs_diff": self.max_abs_diff,
            "differing": self.differing,
            "rel_l2": self.rel_l2,
            "reason": self.reason,
            "optimizer": self.optimizer,
        }


def _relative(delta: float, base: float) -> float:
    if delta == 0:
        return 0.0
    return math.inf if base == 0 else math.sqrt(delta / base)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleChange:
    """How the values held by one object changed, together (its direct values only)."""

    module: str
    values: int
    changed: int
    rel_l2: float | None
    """``sqrt(sum ||b - a||²) / sqrt(sum ||a||²)`` over the compared values."""
    max_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "module": self.module,
            "values": self.values,
            "changed": self.changed,
            "rel_l2": self.rel_l2,
            "max_abs_diff": self.max_abs_diff,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointDiff:
    """How checkpoint ``b`` differs from checkpoint ``a``.

    Examples
    --------
    >>> d = CheckpointDiff(a="a", b="b", entries=(DiffEntry(key="w", path=("w",), state="added"),))
    >>> d.summary(), [e.key for e in d.added]
    ('1 added', ['w'])
    """

    a: str
    b: str
    entries: tuple[DiffEntry, ...]

    def _of(self, state: DiffState) -> tuple[DiffEntry, ...]:
        return tuple(e for e in self.entries if e.state == state)

    @property
    def added(self) -> tuple[DiffEntry, ...]:
        """Keys only in ``b``."""
        return self._of("added")

    @property
    def removed(self) -> tuple[DiffEntry, ...]:
        """Keys only in ``a``."""
        return self._of("removed")

    @property
    def changed(self) -> tuple[DiffEntry, ...]:
        """Keys in both whose shape, dtype or values differ."""
        return self._of("changed")

    @property
    def unchanged(self) -> tuple[DiffEntry, ...]:
        """Keys in both with equal values (NaNs at the same places count as equal)."""
        return self._of("unchanged")

    @property
    def identical(self) -> bool:
        """Whether nothing was added, removed or changed."""
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        """One line such as ``2 changed, 1 added, 40 unchanged``."""
        parts = [
            f"{len(group)} {name}"
            for name, group in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
                ("unchanged", self.unchanged),
            )
            if group
        ]
        return ", ".join(parts) if parts else "both empty"

    def most_changed(self, n: int | None = None) -> list[DiffEntry]:
        """Measured values, largest relative L2 change first (the top ``n``, or all).

        Only floating-point values are ranked: counters and bytes are compared exactly
        (``changed``) but not measured (docs/explorer.md).
        """
        compared = [e for e in self.entries if _measured(e)]
        compared.sort(key=lambda e: (-(e.rel_l2 or 0.0), e.key))
        return compared[:n] if n is not None else compared

    def modules(self) -> list[ModuleChange]:
        """Per module (the object holding the values): its change, most changed first."""
        groups: dict[str, list[DiffEntry]] = {}
        for entry in self.entries:
            groups.setdefault(entry.module, []).append(entry)
        out = []
        for module, entries in groups.items():
            compared = [e for e in entries if _measured(e)]
            delta = sum(e.delta_squares or 0.0 for e in compared)
            base = sum(e.base_squares or 0.0 for e in compared)
            diffs = [e.max_abs_diff for e in compared if e.max_abs_diff is not None]
            out.append(
                ModuleChange(
                    module=module,
                    values=len(entries),
                    changed=sum(1 for e in entries if e.state != "unchanged"),
                    rel_l2=_relative(delta, base) if compared else None,
                    max_abs_diff=max(diffs) if diffs else (0.0 if compared else None),
                )
            )
        out.sort(key=lambda m: (-(m.rel_l2 or 0.0), -m.changed, m.module))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: every entry, and the per-module changes (most changed first)."""
        return {
            "a": self.a,
            "b": self.b,
            "summary": self.summary(),
            "entries": [e.to_dict() for e in self.entries],
            "modules": [m.to_dict() for m in self.modules()],
        }

    def __str__(self) -> str:
        lines = [printable(f"diff {self.a} -> {self.b}: {self.summary()}")]
        for entry in self.entries:
            if entry.state != "unchanged":
                extra = (
                    f"  max |b-a| = {entry.max_abs_diff:.6g}"
                    if entry.max_abs_diff is not None
                    else ""
                )
                line = f"  {entry.state:9} {printable(entry.key)}{extra}  {printable(entry.reason)}"
                lines.append(line.rstrip())
        return "\n".join(lines)


def _measured(entry: DiffEntry) -> bool:
    """Whether an entry's change is measured (heat, module totals, the ranking).

    Only floating-point values compared element by element (same shape and dtype): weights,
    not counters.  Integers and bytes (step counters, Python state) are compared exactly but
    not measured.
    """
    spec = entry.b or entry.a
    return (
        entry.delta_squares is not None
        and entry.base_squares is not None
        and spec is not None
        and is_floating(spec.dtype)
    )


def diff_view(diff: CheckpointDiff) -> GraphView:
    """A graph view of ``diff`` coloured by diff state."""
    values = [
        ViewValue(
            path=e.path,
            state=e.state,
            key=e.key,
            stored=e.b,
            program=e.a,
            reason=e.reason,
            optimizer=e.optimizer,
            change=(e.max_abs_diff or 0.0, e.delta_squares or 0.0, e.base_squares or 0.0)
            if _measured(e)
            else None,
        )
        for e in diff.entries
    ]
    return build_view(
        values,
        title="ckptlab diff",
        source=f"{diff.a} -> {diff.b}",
        kind="diff",
        summary=diff.summary(),
        suggest=False,
        # The model's weights are what a comparison is for: optimizer state (moments that
        # start at zero, step counters) would top every ranking, so it starts hidden.
        options={"hide_optimizer": any(not e.optimizer for e in diff.entries)},
    )
