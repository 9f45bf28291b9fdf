"""Near-miss suggestions: program-only and checkpoint-only values that probably belong together.

Checkpoint-only here means unused or pending (a stored value waiting for an object the program
has not created: after a rename it waits forever).

Four rules, strongest first (internal, pure):

1. a renamed object: a subtree whose values are all missing from the checkpoint has the same
   structure, shapes and dtypes as a subtree whose values are all unused (``hidden`` vs
   ``hidden_renamed``).  In a name-based restore the program's structure is also spelled by
   the names restore matches (the report's ``names``: an NNX kernel's ``kernel/value`` in an
   Orbax file, a Keras kernel's ``vars/0``), so files spelling it so compare too;
2. names that differ only by framework conventions, by :func:`ckptlab.core.near_misses` itself
   (one rule table for both): ``fc1.weight`` ~ ``fc1/kernel`` transposed, ``running_mean`` ~
   ``moving_mean``, ``_kernel`` ~ ``kernel``, shapes and dtypes fitting.  Names are what restore
   matches: variable names and stored names in a name-based restore, object paths otherwise;
3. the same name up to underscores and case, under the same parent (``kernel`` vs ``_kernel``),
   whatever the shapes;
4. the only unused value under the same parent with the same shape and dtype.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from ckptlab.core import ValueSpec, near_misses
from ckptlab.inspect._placement import name_path

if TYPE_CHECKING:
    from ckptlab.inspect._graphview import GraphView, Suggestion, ViewNode

Signature = tuple[tuple[tuple[str, ...], str, tuple[int | None, ...]], ...]
MAX_SUGGESTIONS = 200


CHECKPOINT_SIDE = frozenset({"checkpoint_only", "pending"})
"""Stored values nothing in the program took: unused, or (a lazy or deferred restore) waiting
for an object the program may never create under that name, the usual sign of a rename."""


def _side(node: ViewNode) -> str | None:
    if node.state == "program_only":
        return "program"
    if node.state in CHECKPOINT_SIDE:
        return "checkpoint"
    return None


def _spec(node: ViewNode) -> tuple[str, tuple[int | None, ...]] | None:
    value = node.value
    spec = None if value is None else (value.program or value.stored)
    return None if spec is None else (spec.dtype, spec.shape)


def _normal(name: str) -> str:
    return name.strip("_").replace("_", "").lower()


def suggest_matches(view: GraphView) -> tuple[Suggestion, ...]:
    """Likely program-only ↔ checkpoint-only pairs (values or whole objects), strongest first."""
    from ckptlab.inspect._graphview import Suggestion

    sides = set(view.counts())
    if "program_only" not in sides or not sides & CHECKPOINT_SIDE:
        return ()  # every rule pairs one of each
    found: list[Suggestion] = []
    covered: set[int] = set()
    for program, checkpoint in _renamed_objects(view):
        at = view.path_of(checkpoint)
        moved = len(at) != len(view.path_of(program))
        found.append(
            Suggestion(
                program=program,
                checkpoint=checkpoint,
                why=f"renamed? '{'/'.join(at) if moved else at[-1]}' in the checkpoint has the "
                "same structure, shapes and dtypes"
                + (" (a level of names more or less: a prefix such as 'model.')" if moved else ""),
            )
        )
        covered.update(view.subtree(program))
        covered.update(view.subtree(checkpoint))
    for program, checkpoint, why in _convention_pairs(view, covered):
        found.append(Suggestion(program=program, checkpoint=checkpoint, why=why))
        covered.update((program, checkpoint))
    for program, checkpoint, why in _sibling_values(view, covered):
        found.append(Suggestion(program=program, checkpoint=checkpoint, why=why))
    return tuple(found[:MAX_SUGGESTIONS])


def _renamed_objects(view: GraphView) -> list[tuple[int, int]]:
    count = len(view.nodes)
    side: list[str | None] = [None] * count
    mixed = [False] * count
    for node in reversed(view.nodes):
        own = _side(node) if node.value is not None else None
        if node.value is not None and own is None:
            mixed[node.id] = True
        for child in view.children[node.id]:
            mixed[node.id] |= mixed[child]
            own = _merge(own, side[child], mixed, node.id)
        side[node.id] = own
    groups: dict[str, list[int]] = {"program": [], "checkpoint": []}
    for node in view.nodes:
        parent_side = side[node.parent] if node.parent >= 0 and not mixed[node.parent] else None
        this = side[node.id]
        if (
            node.id
            and view.children[node.id]
            and not mixed[node.id]
            and this
            and parent_side is None
        ):
            groups[this].append(node.id)
    signatures: dict[Signature, list[int]] = {}
    for checkpoint in _with_levels(view, groups["checkpoint"]):
        signatures.setdefault(_signature(view, checkpoint), []).append(checkpoint)
    pairs = []
    for program in _with_levels(view, groups["program"]):
        found = (signatures.get(s, ()) for s in _spellings(view, program))
        candidates = list(dict.fromkeys(c for group in found for c in group))
        if candidates:
            pairs.append((program, _closest(view, program, candidates)))
            if len(pairs) == MAX_SUGGESTIONS:  # renamed objects come first: the rest is unseen
                break
    return pairs


def _with_levels(view: GraphView, groups: list[int]) -> list[int]:
    """The groups, then the objects a level of names below each (a prefix more or less).

    Below a group that is one name deep (``backbone`` of ``backbone.0.weight``, or
    ``state_dict/model`` of a Lightning file) are the objects the other side may hold without
    that prefix (``0``, ``2``); with it, a file saved from a wrapper pairs with its model.
    """
    below = []
    for group in groups:
        node = group
        while len(view.children[node]) == 1 and view.children[view.children[node][0]]:
            node = view.children[node][0]
        below += [c for c in view.children[node] if view.children[c]]
    return [*groups, *below]


def _merge(own: str | None, child: str | None, mixed: list[bool], node_id: int) -> str | None:
    if child is None:
        return own
    if own is None or own == child:
        return child
    mixed[node_id] = True
    return None


def _signature(view: GraphView, root: int, spelling: int | None = None) -> Signature:
    """Relative paths, dtypes and shapes of the values below ``root``.

    ``spelling`` ``i``: a value's path is its ``i``-th name where it has one below ``root``'s
    path (a name spelled from elsewhere says nothing about this subtree's structure).
    """
    items = []
    base = view.path_of(root)
    depth = len(base)
    for node_id in view.subtree(root):
        node = view.nodes[node_id]
        spec = _spec(node)
        if spec is None:
            continue
        path = view.path_of(node_id)
        names = node.value.names if node.value is not None else ()
        if spelling is not None and spelling < len(names):
            spelled = name_path(names[spelling])
            path = spelled if spelled[:depth] == base else path
        items.append((path[depth:], *spec))
    return tuple(sorted(items))


def _spellings(view: GraphView, root: int) -> list[Signature]:
    """The program subtree's signature by its paths, then by each position of its names.

    A framework's adapter names every value alike (``[<path>, <path>/value]`` for NNX), so the
    values' ``i``-th names spell the subtree as one file convention does.
    """
    count = max(
        (len(v.names) for v in (view.nodes[i].value for i in view.subtree(root)) if v), default=0
    )
    return [_signature(view, root), *(_signature(view, root, i) for i in range(count))]


def _closest(view: GraphView, program: int, candidates: list[int]) -> int:
    """The candidate under the same parent first, then with the most similar name.

    Ratios are computed only where the cheap upper bounds (``real_quick_ratio``,
    ``quick_ratio``) can beat the best so far: a model of 1,000 renamed layers compared every
    pair in full (6.6 s in the explorer).
    """
    node = view.nodes[program]
    matcher = difflib.SequenceMatcher(None, node.name)
    best, best_key = candidates[0], (False, -1.0)
    for candidate in candidates:
        other = view.nodes[candidate]
        same_parent = other.parent == node.parent
        if same_parent < best_key[0]:
            continue
        matcher.set_seq2(other.name)
        floor = best_key[1] if same_parent == best_key[0] else -1.0
        if matcher.real_quick_ratio() <= floor or matcher.quick_ratio() <= floor:
            continue
        key = (same_parent, matcher.ratio())
        if key > best_key:
            best, best_key = candidate, key
    return best


def _convention_pairs(view: GraphView, covered: set[int]) -> list[tuple[int, int, str]]:
    """Pairs :func:`ckptlab.core.near_misses` finds among the values not yet suggested."""
    ids: dict[str, dict[str, int]] = {"program": {}, "checkpoint": {}}
    specs: dict[str, dict[str, ValueSpec]] = {"program": {}, "checkpoint": {}}
    for node in view.values():
        side = _side(node)
        value = node.value
        if side is None or value is None or node.id in covered:
            continue
        spec = value.program if side == "program" else value.stored
        name = value.restore_path or "/".join(view.path_of(node.id))
        if spec is not None and name not in ids[side]:
            ids[side][name], specs[side][name] = node.id, spec
    out = []
    for miss in near_misses(specs["checkpoint"], specs["program"]):
        program, checkpoint = ids["program"][miss.wanted], ids["checkpoint"][miss.stored]
        a, b = view.nodes[program], view.nodes[checkpoint]
        if a.parent == b.parent and _normal(a.name) == _normal(b.name):
            why = f"same name up to underscores and case: '{a.name}' vs '{b.name}'"
        else:
            why = f"naming convention: {miss.reason} (ck.KeyMap.from_near_misses maps it)"
        out.append((program, checkpoint, why))
    return out


def _sibling_values(view: GraphView, covered: set[int]) -> list[tuple[int, int, str]]:
    by_parent: dict[int, dict[str, list[int]]] = {}
    for node in view.values():
        side = _side(node)
        if side is not None and node.id not in covered:
            by_parent.setdefault(node.parent, {}).setdefault(side, []).append(node.id)
    out = []
    for sides in by_parent.values():
        unused = _Unused(view, sides.get("checkpoint", []))
        for program in sides.get("program", []):
            pair = unused.pick(program)
            if pair is not None:
                out.append((program, *pair))
    return out


class _Unused:
    """A parent's unused values, by normalised name and by spec, in order (ordered sets).

    Each program value takes the first with its name up to underscores and case, else the
    only one left with its shape and dtype; a taken one leaves both indexes.  Dicts, not
    scans: a parent of 4,000 renamed values compared every pair (16 s).
    """

    def __init__(self, view: GraphView, unused: list[int]) -> None:
        self.view = view
        self.by_name: dict[str, dict[int, None]] = {}
        self.by_spec: dict[tuple[str, tuple[int | None, ...]] | None, dict[int, None]] = {}
        for node in unused:
            self.by_name.setdefault(_normal(view.nodes[node].name), {})[node] = None
            self.by_spec.setdefault(_spec(view.nodes[node]), {})[node] = None

    def pick(self, program: int) -> tuple[int, str] | None:
        nodes = self.view.nodes
        name = nodes[program].name
        named = self.by_name.get(_normal(name))
        if named:
            found = next(iter(named))
            why = f"same name up to underscores and case: '{name}' vs '{nodes[found].name}'"
        else:
            alike = self.by_spec.get(_spec(nodes[program]), {})
            if len(alike) != 1:
                return None
            found = next(iter(alike))
            other = nodes[found].name
            why = f"the only unused value here with the same shape and dtype ('{other}')"

        del self.by_name[_normal(nodes[found].name)][found]
        del self.by_spec[_spec(nodes[found])][found]
        return found, why
