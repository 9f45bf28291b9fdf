"""Where values sit in the explorer's tree: the placement rules (internal, pure).

A value's display path comes from its object path (escaped local names joined by ``/``), from a
graph path, or, for name-based checkpoints, from its name split on ``/`` and ``.``.  Optimizer
slots are placed under their optimizer (``<optimizer>/slots/<slot>/<variable path>``), so the
model's tree stays readable and hiding the optimizer hides them in one go.  The TypeScript port
(``labextension/src/lab/checkpoint.ts``) follows the same rules; fixtures written by Python keep
the two in step.

:func:`covering_paths` turns a selection of values back into the fewest object paths that
``run_restore_ops(only=...)`` takes to restore exactly those values.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from ckptlab.core import OPTIMIZER_SLOT, NodePath, ValueSpec, ancestor_paths, unescape_local_name
from ckptlab.errors import CkptlabError
from ckptlab.inspect._graphview import ViewValue

__all__ = [
    "SLOTS_GROUP",
    "covering_paths",
    "name_path",
    "name_value",
    "object_value",
    "path_value",
]

SLOTS_GROUP = "slots"


def _unescape(segment: str) -> str:
    if "." not in segment:  # the common case, and the fast one
        return segment
    try:
        return unescape_local_name(segment)
    except CkptlabError:
        return segment


def object_value(
    prefix: str,
    *,
    state: str,
    key: str = "",
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    optimizer: bool = False,
    reason: str = "",
) -> ViewValue:
    """A value at escaped object path ``prefix``; optimizer slots are placed under their optimizer.

    Examples
    --------
    >>> object_value("m/w/.OPTIMIZER_SLOT/opt/m", state="stored").path
    ('opt', 'slots', 'm', 'm/w')
    """
    segments = prefix.split("/") if prefix else []
    if OPTIMIZER_SLOT in segments:
        at = segments.index(OPTIMIZER_SLOT)
        variable = tuple(_unescape(s) for s in segments[:at])
        owner = tuple(_unescape(s) for s in segments[at + 1 : -1])
        slot = _unescape(segments[-1]) if len(segments) > at + 1 else "?"
        return ViewValue(
            path=(*owner, SLOTS_GROUP, slot, "/".join(variable)),
            state=state,
            key=key,
            restore_path=prefix,
            stored=stored,
            program=program,
            optimizer=True,
            slot=True,
            synthetic_depth=len(owner),
            link=variable,
            reason=reason,
        )
    return ViewValue(
        path=tuple(_unescape(s) for s in segments),
        state=state,
        key=key,
        restore_path=prefix,
        stored=stored,
        program=program,
        optimizer=optimizer,
        reason=reason,
    )


def path_value(
    path: NodePath,
    *,
    state: str,
    key: str,
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    optimizer: bool = False,
) -> ViewValue:
    """Like :func:`object_value` from a graph path (no escaping round trip: fast for 100k)."""
    if path.slot is not None:
        return object_value(path.prefix, state=state, key=key, stored=stored, program=program)
    return ViewValue(
        path=path.path,
        state=state,
        key=key,
        restore_path=None,
        stored=stored,
        program=program,
        optimizer=optimizer,
    )


def name_value(
    key: str,
    *,
    state: str,
    stored: ValueSpec | None = None,
    program: ValueSpec | None = None,
    reason: str = "",
) -> ViewValue:
    """A value of a name-based checkpoint: its name split on ``/`` and ``.`` into a tree.

    Examples
    --------
    >>> name_value("model.layers.0.weight", state="stored").path
    ('model', 'layers', '0', 'weight')
    """
    return ViewValue(
        path=name_path(key),
        state=state,
        key=key,
        restore_path=key,
        stored=stored,
        program=program,
        reason=reason,
    )


def name_path(key: str) -> tuple[str, ...]:
    """Where a name-based checkpoint's value sits: its name split on ``/`` and ``.``.

    Examples
    --------
    >>> name_path("enc/kernel/value"), name_path("model.layers.0.weight")
    (('enc', 'kernel', 'value'), ('model', 'layers', '0', 'weight'))
    """
    return tuple(p for p in re.split(r"[/.]", key) if p) or (key,)


def covering_paths(chosen: Iterable[str], known: Iterable[str]) -> list[str]:
    """The fewest object paths whose subtrees hold exactly the ``chosen`` values among ``known``.

    An optimizer slot (``model/w/.OPTIMIZER_SLOT/opt/m``) belongs to its optimizer, as for
    ``run_restore_ops(only=...)``: only the optimizer's path (or the slot's own) covers it.

    Examples
    --------
    >>> covering_paths(["m/a/w", "m/a/b"], ["m/a/w", "m/a/b", "m/c/w"])
    ['m/a']
    >>> covering_paths(["opt/iter", "m/w/.OPTIMIZER_SLOT/opt/m"], ["m/w", "opt/iter"])
    ['opt']
    """
    placed: dict[str, str] = {}

    def place(path: str) -> str:
        """A slot sits below its optimizer, as one opaque name (mapped back at the end)."""
        segments = path.split("/")
        if OPTIMIZER_SLOT not in segments:
            return path
        owner = "/".join(segments[segments.index(OPTIMIZER_SLOT) + 1 : -1])
        opaque = "\x01" + path.replace("/", "\x02")
        below = f"{owner}/{opaque}" if owner else opaque
        placed[below] = path
        return below

    picked = sorted({place(p) for p in chosen})
    universe = sorted({place(p) for p in known} | set(picked))
    picked_set, universe_set = set(picked), set(universe)

    def count(items: list[str], members: set[str], prefix: str) -> int:
        below = bisect.bisect_left(items, prefix + "0") - bisect.bisect_left(items, prefix + "/")
        return below + (prefix in members)

    result: set[str] = set()
    for path in picked:
        segments = path.split("/")
        for end in range(1, len(segments) + 1):
            if segments[end - 1].startswith("."):
                result.add(path)
                break
            prefix = "/".join(segments[:end])
            if prefix in result:
                break
            if count(universe, universe_set, prefix) == count(picked, picked_set, prefix):
                result.add(prefix)
                break
        else:
            result.add(path)
    return sorted(placed.get(p, p) for p in result if result.isdisjoint(ancestor_paths(p)))
