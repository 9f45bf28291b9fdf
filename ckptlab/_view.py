"""The live program as the core sees it: a ProgramView over trackables (internal)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ckptlab._trackable import Trackable, Variable, children_of
from ckptlab.core import ProgramGraph, ValueSpec, build_graph


class LiveView:
    """Answers the core's questions about live objects.

    ``attached`` are extra children of ``root`` that are not its own dependencies (a
    ``Checkpoint(root, **kwargs)``'s kwargs and its ``save_counter``, SEMANTICS 8 and 20).
    """

    def __init__(self, root: Any, attached: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.attached: Mapping[str, Any] = attached if attached is not None else {}

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """Named dependencies, plus the attached ones for the root."""
        own = children_of(obj)
        if obj is not self.root or not self.attached:
            return own
        names = {name for name, _ in own}
        return [*own, *((n, c) for n, c in self.attached.items() if n not in names)]

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name``."""
        if obj is self.root and name in self.attached:
            return self.attached[name]
        lookup = getattr(obj, "_ck_child", None)
        if lookup is not None:
            found: Any | None = lookup(name)
            return found
        return dict(children_of(obj)).get(name)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """Spec of the owned value."""
        method = getattr(obj, "_ck_value_spec", None)
        spec: ValueSpec | None = method() if method is not None else None
        return spec

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """Slot triples of an optimizer."""
        method = getattr(obj, "_ck_slot_variables", None)
        slots: Sequence[tuple[Any, str, Any]] = method() if method is not None else ()
        return slots

    def can_defer(self, obj: Any) -> bool:
        """Whether restore-on-attach can work for children of ``obj``."""
        return (
            isinstance(obj, Trackable)
            and hasattr(obj, "_ck_children")
            and obj._ck_accepts_dependencies
        )

    def is_optimizer(self, obj: Any) -> bool:
        """Whether ``obj`` is an optimizer."""
        return bool(getattr(obj, "_ck_is_optimizer", False))

    def describe(self, obj: Any) -> tuple[str, str]:
        """Type name and, for variables, the variable name."""
        return type(obj).__name__, obj.name if isinstance(obj, Variable) else ""

    def walk(self) -> ProgramGraph[Any]:
        """Snapshot the program from the root."""
        return build_graph(self.root, self)
