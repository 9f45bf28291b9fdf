"""The explorer's wire contract: states, dtypes, flags, messages and node details (internal, pure).

Python and the browser read the same tables.  This module is their one source:
``labextension/src/core/wire.ts`` is generated from it (:func:`typescript`), and
``tests/inspect/test_wire.py`` fails when the committed file differs from what this module writes
(regenerate with ``python scripts/wire_ts.py``).

Messages are the widget's custom messages (``model.send`` in the browser, ``widget.send`` in the
kernel); :class:`NodeDetails` is the ``details`` trait (what the details pane shows of one node).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Literal, TypedDict

from ckptlab.core import FOREIGN_ITEMSIZE, ITEMSIZE

ProblemKind = Literal["conflict", "renamed", "missing", "unused", "pending", "changed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateInfo:
    """How one view state reads everywhere: legend, tooltips, group summaries, problem list."""

    name: str
    one: str
    """Short label for one value (``"shape conflict"``)."""
    many: str
    """Short label for several (``"shape conflicts"``)."""
    explain: str
    """What the state means and what to do (the legend's tooltip)."""
    problem: ProblemKind | None = None
    """Problem-list group; ``None`` for states that need no attention."""


STATE_TABLE: tuple[StateInfo, ...] = (
    StateInfo(
        name="restored",
        one="restored",
        many="restored",
        explain="restored: the checkpoint's value was written into the program",
    ),
    StateInfo(
        name="bound",
        one="not yet written",
        many="not yet written",
        explain="not yet written: lazy restore; run_restore_ops() writes it",
    ),
    StateInfo(
        name="pending",
        one="pending",
        many="pending",
        explain="pending: stored, waiting for the program to create this object; "
        "it is restored when attached",
        problem="pending",
    ),
    StateInfo(
        name="checkpoint_only",
        one="unused",
        many="unused",
        explain="unused: in the checkpoint, but nothing in the program matched it",
        problem="unused",
    ),
    StateInfo(
        name="program_only",
        one="missing",
        many="missing",
        explain="missing: in the program, not in the checkpoint; it keeps its initial value",
        problem="missing",
    ),
    StateInfo(
        name="shape_conflict",
        one="shape conflict",
        many="shape conflicts",
        explain="shape conflict: the program's shape differs from the checkpoint's; "
        "restoring it writes nothing",
        problem="conflict",
    ),
    StateInfo(
        name="dtype_conflict",
        one="dtype conflict",
        many="dtype conflicts",
        explain="dtype conflict: same shape, different dtype; ckptlab never casts",
        problem="conflict",
    ),
    StateInfo(
        name="inconsistent",
        one="inconsistent",
        many="inconsistent",
        explain="inconsistent: two references in the checkpoint to one object resolved to "
        "different program objects",
        problem="conflict",
    ),
    StateInfo(
        name="stored",
        one="stored",
        many="stored",
        explain="stored: a value in the checkpoint (nothing to compare it with)",
    ),
    StateInfo(
        name="program",
        one="in the program",
        many="in the program",
        explain="in the program: a value the program holds (not saved yet)",
    ),
    StateInfo(
        name="added",
        one="added",
        many="added",
        explain="added: only in b",
        problem="changed",
    ),
    StateInfo(
        name="removed",
        one="removed",
        many="removed",
        explain="removed: only in a",
        problem="changed",
    ),
    StateInfo(
        name="changed",
        one="changed",
        many="changed",
        explain="changed: shape, dtype or values differ between a and b",
        problem="changed",
    ),
    StateInfo(
        name="unchanged",
        one="unchanged",
        many="unchanged",
        explain="unchanged: equal in a and b (NaNs at the same places count as equal)",
    ),
)
"""Every view state in legend order; indices in the graph JSON refer to this order."""

VIEW_STATES: tuple[str, ...] = tuple(s.name for s in STATE_TABLE)
PROBLEM_STATES = frozenset(s.name for s in STATE_TABLE if s.problem is not None)
PROBLEM_GROUPS: tuple[tuple[ProblemKind, str], ...] = (
    ("conflict", "Conflicts"),
    ("renamed", "Renamed?"),
    ("missing", "Missing in checkpoint"),
    ("unused", "Unused checkpoint values"),
    ("pending", "Pending"),
    ("changed", "Changed"),
)
"""The problem list's groups, in the order shown, with their headings."""
NO_PROBLEMS: dict[str, str] = {
    "match": "No problems: everything matched.",
    "checkpoint": "A checkpoint alone, without a program: nothing was matched. "
    "To compare it with one: ck.explore(path, program=model).",
    "program": "A program alone, without a checkpoint: nothing was matched. "
    "To compare it with one: ck.explore(path, program=model).",
    "diff": "No differences: every value is equal in a and b.",
}
"""What an empty problem list says, per view kind (only a match view had something to match)."""
DTYPE_ITEMSIZE: dict[str, int] = {**ITEMSIZE, **FOREIGN_ITEMSIZE}
"""Bytes per element of every dtype a checkpoint can hold (0: variable size)."""

OPTIMIZER = 1
"""Node flag: the node belongs to an optimizer (hideable)."""
SLOT = 2
"""Node flag: the value is an optimizer slot."""
SYNTHETIC = 4
"""Node flag: a grouping node with no object behind it (e.g. an optimizer's ``slots``)."""
NO_STATE = 255
"""State byte of a node without a value (the ``states`` trait)."""

# -- messages (browser -> kernel) ---------------------------------------------------------------


class RestoreMessage(TypedDict):
    """Restore the values under these nodes (``run_restore_ops(only=...)``)."""

    type: Literal["restore"]
    nodes: list[int]


class SvgMessage(TypedDict):
    """The SVG the browser drew ("Export SVG")."""

    type: Literal["svg"]
    svg: str


class NeedEngineMessage(TypedDict):
    """Send the Graphviz WebAssembly module (once per page)."""

    type: Literal["need-engine"]


class CompareValuesMessage(TypedDict):
    """Compare every bound program value with its stored value (colours by change)."""

    type: Literal["compare-values"]


class NeedTimelineMessage(TypedDict):
    """Compute the training run's statistics (lazily, with progress)."""

    type: Literal["need-timeline"]


class PickMessage(TypedDict):
    """Compare checkpoints ``a`` and ``b`` of the timeline (indices into its points)."""

    type: Literal["pick"]
    a: int
    b: int


# -- messages (kernel -> browser) ---------------------------------------------------------------


class EngineMessage(TypedDict):
    """Reply to ``need-engine``; the module's bytes are the first buffer."""

    type: Literal["engine"]
    ok: bool


BROWSER_MESSAGES = (
    RestoreMessage,
    SvgMessage,
    NeedEngineMessage,
    CompareValuesMessage,
    NeedTimelineMessage,
    PickMessage,
)
KERNEL_MESSAGES = (EngineMessage,)

# -- node details (the ``details`` trait) -------------------------------------------------------


class Histogram(TypedDict):
    """Counts over ``len(counts) + 1`` bin edges."""

    counts: list[int]
    edges: list[float]


class Stats(TypedDict, total=False):
    """Statistics of one value (finite elements; complex by magnitude)."""

    size: int
    min: float
    max: float
    mean: float
    std: float
    nan: int
    inf: int
    zeros: int
    nbytes: int
    error: str
    histogram: Histogram


class _Difference(TypedDict):
    max_abs: float
    """Largest ``|b - a|`` over the elements."""
    rel_l2: float
    """``||b - a|| / ||a||`` (``inf`` when ``a`` is all zeros and ``b`` is not)."""


class Change(_Difference, total=False):
    """How a value changed from ``a`` (stored, or the older checkpoint) to ``b``."""

    a: Histogram
    """Distribution of ``a`` over the same bin edges as ``b`` (the histogram overlay)."""
    b: Histogram


class SuggestionInfo(TypedDict):
    """A likely match between a program-only and a checkpoint-only node."""

    program: int
    checkpoint: int
    why: str


class NodeDetails(TypedDict, total=False):
    """What the details pane shows of one node (read lazily: that value only)."""

    node: int
    path: str
    key: str
    expected_key: str
    """For a value the checkpoint does not have: the key it would be stored under (not ``key``)."""
    state: str
    reason: str
    restore_path: str | None
    suggestions: list[SuggestionInfo]
    stats: Stats
    no_stats: str
    """Why a value has no statistics (``"not in the checkpoint: no stored value"``), so the
    pane shows that instead of waiting for them."""
    checksum: str
    change: Change
    error: str


class TimelinePoint(TypedDict):
    """One checkpoint of a training run."""

    path: str
    step: int | None
    time: float | None
    nbytes: int | None
    values: int | None
    weight_norm: float | None
    update_ratio: float | None
    """``||w_i - w_{i-1}|| / ||w_{i-1}||`` over every value both hold (``None`` for the first,
    an unreadable one, and one after an unreadable one)."""
    error: str | None
    """Why the checkpoint cannot be read (being written, damaged), else ``None``; an unreadable
    checkpoint has no size, count, norm or update."""


class ModuleSeries(TypedDict):
    """Per-module series over the run (one entry per point, ``None`` where absent)."""

    module: str
    weight_norm: list[float | None]
    update_ratio: list[float | None]


class TimelineData(TypedDict):
    """The ``timeline`` trait: the run's points, per-module series, and what is compared."""

    points: list[TimelinePoint]
    modules: list[ModuleSeries]
    a: int
    b: int


# -- TypeScript -------------------------------------------------------------------------------

_TS_HEADER = """\
// GENERATED by `python scripts/wire_ts.py` from ckptlab/inspect/_wire.py: do not edit.
// The explorer's wire contract shared by Python and TypeScript (tests/inspect/test_wire.py
// checks that this file is what Python writes today). DOM-free.
"""


def _ts_type(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is list:
        inner = _ts_type(args[0])
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_ts_type(a) for a in args)
    if annotation is type(None):
        return "null"
    if annotation in (int, float):
        return "number"
    if annotation is str:
        return "string"
    if annotation is bool:
        return "boolean"
    if isinstance(annotation, type) and typing.is_typeddict(annotation):
        return f"I{annotation.__name__}"
    raise TypeError(f"no TypeScript type for {annotation!r}")


def _ts_interface(cls: type) -> str:
    hints = typing.get_type_hints(cls, include_extras=True)
    optional: frozenset[str] = getattr(cls, "__optional_keys__", frozenset())
    lines = [f"/** {(cls.__doc__ or '').strip().splitlines()[0]} */"]
    lines.append(f"export interface I{cls.__name__} {{")
    for name, annotation in hints.items():
        mark = "?" if name in optional else ""
        lines.append(f"  {name}{mark}: {_ts_type(annotation)};")
    lines.append("}")
    return "\n".join(lines)


def typescript() -> str:
    """The TypeScript module ``labextension/src/core/wire.ts`` (generated, never edited).

    Examples
    --------
    >>> "export const VIEW_STATES" in typescript()
    True
    """
    states = [
        {"name": s.name, "one": s.one, "many": s.many, "explain": s.explain, "problem": s.problem}
        for s in STATE_TABLE
    ]
    dump = json.dumps
    parts = [
        _TS_HEADER,
        "export interface IStateInfo {\n  name: string;\n  one: string;\n  many: string;\n"
        "  explain: string;\n  problem: ProblemKind | null;\n}",
        f"export type ProblemKind = {_ts_type(ProblemKind)};",
        f"export const STATE_TABLE: readonly IStateInfo[] = {dump(states, indent=2)};",
        f"export const VIEW_STATES: readonly string[] = {dump(list(VIEW_STATES))};",
        "export const PROBLEM_STATES: ReadonlySet<string> = new Set("
        f"{dump(sorted(PROBLEM_STATES))});",
        "export const PROBLEM_GROUPS: readonly [ProblemKind, string][] = "
        f"{dump([list(g) for g in PROBLEM_GROUPS])};",
        "export const NO_PROBLEMS: Readonly<Record<string, string>> = "
        f"{dump(NO_PROBLEMS, indent=2)};",
        "export const DTYPE_ITEMSIZE: Readonly<Record<string, number>> = "
        f"{dump(DTYPE_ITEMSIZE, indent=2)};",
        f"export const FLAG_OPTIMIZER = {OPTIMIZER};",
        f"export const FLAG_SLOT = {SLOT};",
        f"export const FLAG_SYNTHETIC = {SYNTHETIC};",
        f"export const NO_STATE = {NO_STATE};",
    ]
    for cls in (
        *BROWSER_MESSAGES,
        *KERNEL_MESSAGES,
        Histogram,
        Stats,
        Change,
        SuggestionInfo,
        NodeDetails,
        TimelinePoint,
        ModuleSeries,
        TimelineData,
    ):
        parts.append(_ts_interface(cls))
    names = " | ".join(f"I{c.__name__}" for c in BROWSER_MESSAGES)
    parts.append(f"/** Every message the browser sends. */\nexport type BrowserMessage = {names};")
    return "\n\n".join(parts) + "\n"
