"""Near-miss suggestions: program-only and checkpoint-only values that probably belong together.

Three rules, strongest first (internal, pure):

1. a renamed object: a subtree whose values are all missing from the checkpoint has the same
   structure, shapes and dtypes as a subtree whose values are all unused (``hidden`` vs
   ``hidden_renamed``);
2. the same name up to underscores and case, under the same parent (``kernel`` vs ``_kernel``);
3. the only unused value under the same parent with the same shape and dtype.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckptlab.inspect._graphview import GraphView, Suggestion, ViewNode

Signature = tuple[tuple[tuple[str, ...], str, tuple[int | None, ...]], ...]
MAX_SUGGESTIONS = 200


def _side(node: ViewNode) -> str | None:
    if node.state == "program_only":
        return "program"
    if node.state == "checkpoint_only":
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

    found: list[Suggestion] = []
    covered: set[int] = set()
    for program, checkpoint in _renamed_objects(view):
        found.append(
            Suggestion(
                program=program,
                checkpoint=checkpoint,
                why=f"renamed? '{view.nodes[checkpoint].name}' in the checkpoint has the same "
                "structure, shapes and dtypes",
            )
        )
        covered.update(view.subtree(program))
        covered.update(view.subtree(checkpoint))
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
    for checkpoint in groups["checkpoint"]:
        signatures.setdefault(_signature(view, checkpoint), []).append(checkpoint)
    pairs = []
    for program in groups["program"]:
        candidates = signatures.get(_signature(view, program), [])
        if candidates:
            best = max(candidates, key=lambda c: _closeness(view, program, c))
            pairs.append((program, best))
    return pairs


def _merge(own: str | None, child: str | None, mixed: list[bool], node_id: int) -> str | None:
    if child is None:
        return own
    if own is None or own == child:
        return child
    mixed[node_id] = True
    return None


def _signature(view: GraphView, root: int) -> Signature:
    items = []
    base = len(view.path_of(root))
    for node_id in view.subtree(root):
        spec = _spec(view.nodes[node_id])
        if spec is not None:
            items.append((view.path_of(node_id)[base:], *spec))
    return tuple(sorted(items))


def _closeness(view: GraphView, program: int, checkpoint: int) -> tuple[bool, float]:
    a, b = view.nodes[program], view.nodes[checkpoint]
    return a.parent == b.parent, difflib.SequenceMatcher(None, a.name, b.name).ratio()


def _sibling_values(view: GraphView, covered: set[int]) -> list[tuple[int, int, str]]:
    by_parent: dict[int, dict[str, list[int]]] = {}
    for node in view.values():
        side = _side(node)
        if side is not None and node.id not in covered:
            by_parent.setdefault(node.parent, {}).setdefault(side, []).append(node.id)
    out = []
    for sides in by_parent.values():
        unused = list(sides.get("checkpoint", []))
        for program in sides.get("program", []):
            pair = _pick(view, program, unused)
            if pair is not None:
                unused.remove(pair[0])
                out.append((program, *pair))
    return out


def _pick(view: GraphView, program: int, unused: list[int]) -> tuple[int, str] | None:
    name = view.nodes[program].name
    spec = _spec(view.nodes[program])
    for candidate in unused:
        other = view.nodes[candidate].name
        if _normal(other) == _normal(name):
            return candidate, f"same name up to underscores and case: '{name}' vs '{other}'"
    same_spec = [c for c in unused if _spec(view.nodes[c]) == spec]
    if len(same_spec) == 1:
        other = view.nodes[same_spec[0]].name
        return same_spec[0], f"the only unused value here with the same shape and dtype ('{other}')"
    return None
