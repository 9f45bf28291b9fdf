"""The live program as the core sees it: objects of any framework, through their adapters.

:class:`Program` implements the core's :class:`~ckptlab.core.ProgramView` by asking each
object's adapter (:mod:`ckptlab.engine._adapter`), so one program may mix frameworks: a
``ck.Checkpoint`` holding a torch model, its optimizer and a ``ck.Variable`` step counter.
Wrappers (``torch.compile``, ``DataParallel``) are replaced by what they wrap wherever they
appear, so a wrapped model has the bare model's graph and keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ckptlab.core import NodeInfo, ProgramGraph, ValueSpec, Visit, build_graph
from ckptlab.engine._adapter import Adapter, none_wrap, require_adapter, unwrapped
from ckptlab.errors import NotSaveableError

__all__ = ["Program", "program_values"]


class Program:
    """Answers the core's questions about live objects, from ``root``.

    ``attached`` are extra children of ``root`` that are not its own dependencies (a
    ``Checkpoint(root, **kwargs)``'s kwargs and its ``save_counter``, docs/semantics.md S8
    and S20).
    """

    def __init__(self, root: Any, attached: Mapping[str, Any] | None = None) -> None:
        self.root = unwrapped(root)
        self.attached: Mapping[str, Any] = attached if attached is not None else {}

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """Named dependencies (wrappers replaced), plus the attached ones for the root."""
        return self._children(obj, require_adapter(obj))

    def _children(self, obj: Any, adapter: Adapter) -> Sequence[tuple[str, Any]]:
        return self._unwrapped(obj, adapter.children(obj))

    def _unwrapped(self, obj: Any, found: Sequence[tuple[str, Any]]) -> Sequence[tuple[str, Any]]:
        """``obj``'s dependencies ``found``, wrappers replaced, plus the attached for the root."""
        own = list(found) if none_wrap(found) else [(name, unwrapped(c)) for name, c in found]
        if obj is not self.root or not self.attached:
            return own
        names = {name for name, _ in own}
        extra = [(n, unwrapped(c)) for n, c in self.attached.items()]
        return [*own, *((n, c) for n, c in extra if n not in names)]

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name`` (wrappers replaced)."""
        found = self.attached.get(name) if obj is self.root else None
        if found is None:
            found = require_adapter(obj).child(obj, name)
        return None if found is None else unwrapped(found)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """Spec of the owned value."""
        return require_adapter(obj).value_spec(obj)

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """Slot triples of an optimizer.

        An adapter whose optimizers do not hold their variables (optax state is keyed by
        paths below a model the optimizer never references) defines ``slots_in(obj,
        program)`` and finds the model in this program.
        """
        return self._slots(obj, require_adapter(obj))

    def _slots(self, obj: Any, adapter: Adapter) -> Sequence[tuple[Any, str, Any]]:
        among = getattr(adapter, "slots_in", None)
        if among is not None:
            found: Sequence[tuple[Any, str, Any]] = among(obj, self)
            return found
        return adapter.slots(obj)

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """The spec a slot that does not exist yet must have (the optimizer's adapter says)."""
        adapter = require_adapter(optimizer)
        return adapter.slot_spec(optimizer, variable, slot, stored, saved_variable)

    def can_defer(self, obj: Any) -> bool:
        """Whether restore-on-attach can work for children of ``obj``."""
        return require_adapter(obj).can_defer(obj)

    def is_optimizer(self, obj: Any) -> bool:
        """Whether ``obj`` is an optimizer."""
        return require_adapter(obj).is_optimizer(obj)

    def describe(self, obj: Any) -> tuple[str, str]:
        """Type name and, where values have names, the value's name."""
        return require_adapter(obj).describe(obj)

    def node_info(self, obj: Any) -> NodeInfo:
        """What the walk records of every object, from one adapter lookup."""
        return self._info(obj, require_adapter(obj))

    def _info(self, obj: Any, adapter: Adapter) -> NodeInfo:
        type_name, full_name = adapter.describe(obj)
        return adapter.value_spec(obj), type_name, full_name, adapter.is_optimizer(obj)

    def visit(self, obj: Any) -> Visit[Any]:
        """Children, slots and node info, from one adapter lookup (the walk's question).

        An adapter may answer all three at once (``visit``, optional: ckptlab's own objects).
        """
        adapter = require_adapter(obj)
        at_once = getattr(adapter, "visit", None)
        if at_once is None:
            children = self._children(obj, adapter)
            return children, self._slots(obj, adapter), self._info(obj, adapter)
        found, slots, info = at_once(obj)
        return self._unwrapped(obj, found), slots, info

    def walk(self) -> ProgramGraph[Any]:
        """Snapshot the program from the root."""
        return build_graph(self.root, self)


def check_saveable(obj: Any, where: str | Callable[[], str]) -> None:
    """Refuse an object that cannot be saved as it is, the error starting with where it is.

    ``where`` is the object's path or key, or a function giving it (paths cost a walk: asked
    only when refusing).
    """
    try:
        require_adapter(obj).check_saveable(obj)
    except NotSaveableError as error:
        raise NotSaveableError(f"{where if isinstance(where, str) else where()}: {error}") from None


def program_values(
    program: ProgramGraph[Any], overrides: Mapping[int, np.ndarray[Any, Any]] | None = None
) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """``(key, host array)`` for every value of a program snapshot, refusing unsaveable objects.

    ``overrides`` maps ``id(object)`` to the array to save instead of its current value (the
    ``save_counter`` of the save being made).
    """
    objects = program.objects
    node_id = 0

    def where() -> str:  # the path of the object checked last (one function, not one per value)
        path = program.graph.paths()[node_id]
        return path.pretty if path is not None else type(objects[node_id]).__name__

    for node_id, obj in enumerate(objects):  # noqa: B007 (where() reads node_id)
        check_saveable(obj, where)
    columns = program.graph.columns
    values = []
    for node_id, key in zip(columns.owners, columns.keys, strict=True):
        obj = objects[node_id]
        array = overrides.get(id(obj)) if overrides else None
        values.append((key, array if array is not None else require_adapter(obj).read(obj)))
    return values
