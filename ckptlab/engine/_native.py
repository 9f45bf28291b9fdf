"""ckptlab's own objects as a program: the first adapter (internal; ``Trackable`` is public).

A trackable lists its children with ``_ck_children``; one that owns a value (``ck.Variable``)
describes it with ``_ck_value_spec`` and hands out the live array with ``_ck_value``; an
optimizer lists its slots with ``_ck_slot_variables``.  Third-party classes join without
subclassing through :func:`register_trackable`.  Attaching a child to a ``ck.Module`` calls
:func:`ckptlab.engine.on_attach` itself, so nothing needs watching.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ckptlab.core import ValueSpec, Visit
from ckptlab.engine._adapter import adapter_for, forget_type, is_trackable

__all__ = ["ADAPTER", "Trackable", "register_trackable"]

_CHILDREN_HOOKS: dict[type, Callable[[Any], Mapping[str, Any]]] = {}


class Trackable(abc.ABC):  # noqa: B024 (a marker base; every method has a default)
    """Base class of every ckptlab trackable.

    Subclasses list their children with ``_ck_children``; variables also describe their value
    with ``_ck_value_spec``.  Third-party classes can opt in without subclassing through
    :func:`register_trackable`.

    Examples
    --------
    >>> import ckptlab as ck
    >>> isinstance(ck.Variable(1.0), ck.Trackable)
    True
    """

    _ck_accepts_dependencies = True
    _ck_is_optimizer = False

    def _ck_children(self) -> list[tuple[str, Any]]:
        """Named dependencies, in insertion order."""
        return []

    def _ck_child(self, name: str) -> Any | None:
        """The dependency called ``name``."""
        return next((child for key, child in self._ck_children() if key == name), None)

    def _ck_value_spec(self) -> ValueSpec | None:
        """Shape and dtype of the owned value (``None``: this object owns no value)."""
        return None

    def _ck_check_saveable(self) -> None:  # noqa: B027 (optional hook, empty by default)
        """Raise :class:`NotSaveableError` if this object cannot be saved as it is."""

    def _ck_visit(self) -> Visit[Any]:
        """Everything the graph walk asks of this object, in one call.

        ``(children, slots, (value spec, type name, full name, is_optimizer))``; a subclass
        with a fixed answer (``ck.Variable``, a leaf) overrides it for speed.
        """
        slots = getattr(self, "_ck_slot_variables", None)
        return (
            self._ck_children(),
            slots() if slots is not None else (),
            (
                self._ck_value_spec(),
                type(self).__name__,
                getattr(self, "_ck_name", ""),
                bool(self._ck_is_optimizer),
            ),
        )


def register_trackable(cls: type, children: Callable[[Any], Mapping[str, Any]]) -> None:
    """Make instances of a third-party class trackable without subclassing.

    Parameters
    ----------
    cls
        The class to register; ``isinstance(obj, ck.Trackable)`` then holds for its instances.
    children
        Returns the object's named dependencies: a mapping of local name to a trackable (a
        ckptlab object, or an object of a framework ckptlab adapts, such as a
        ``torch.nn.Module``).  Anything else raises ``ValueError`` when the graph is walked:
        a save never drops a value silently.  Dependencies present at restore time are
        restored; restore-on-attach needs a subclass of :class:`ck.Module`.

    Examples
    --------
    >>> import ckptlab as ck
    >>> class Pair:
    ...     def __init__(self):
    ...         self.a, self.b = ck.Variable(1.0), ck.Variable(2.0)
    >>> ck.register_trackable(Pair, lambda p: {"a": p.a, "b": p.b})
    >>> isinstance(Pair(), ck.Trackable)
    True
    """
    Trackable.register(cls)
    _CHILDREN_HOOKS[cls] = children
    forget_type(cls)


def _registered_children(obj: Any) -> list[tuple[str, Any]]:
    for cls in type(obj).__mro__:
        hook = _CHILDREN_HOOKS.get(cls)
        if hook is not None:
            found = list(hook(obj).items())
            wrong = [(name, child) for name, child in found if not is_trackable(child)]
            if wrong:
                name, child = wrong[0]
                raise ValueError(
                    f"The children hook registered for {cls.__name__} returned {name!r}: a "
                    f"{type(child).__name__}, which ckptlab cannot track (it would be saved as "
                    "nothing). Return ck.Variable/ck.Module objects (or framework objects such "
                    "as torch modules), or leave the entry out."
                )
            return found
    return []


class NativeAdapter:
    """How the engine sees ``ck.Variable``, ``ck.Module``, containers and optimizers."""

    name = "numpy"

    def handles(self, obj: object) -> bool:
        """Every :class:`Trackable` (subclass or registered)."""
        return isinstance(obj, Trackable)

    def unwrap(self, obj: Any) -> Any:
        """Ckptlab has no wrappers."""
        return obj

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """``_ck_children()``, or the registered hook's mapping."""
        method = getattr(obj, "_ck_children", None)
        if method is not None:
            children: list[tuple[str, Any]] = method()
            return children
        return _registered_children(obj)

    def visit(self, obj: Any) -> Visit[Any]:
        """Children, slots and node info in one call: ``_ck_visit()`` where defined."""
        method = getattr(obj, "_ck_visit", None)
        if method is not None:
            found: Visit[Any] = method()
            return found
        spec, (type_name, full_name) = self.value_spec(obj), self.describe(obj)
        info = (spec, type_name, full_name, self.is_optimizer(obj))
        return self.children(obj), self.slots(obj), info

    def child(self, obj: Any, name: str) -> Any | None:
        """``_ck_child(name)`` where defined."""
        lookup = getattr(obj, "_ck_child", None)
        if lookup is not None:
            found: Any | None = lookup(name)
            return found
        return dict(self.children(obj)).get(name)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """``_ck_value_spec()`` where defined."""
        method = getattr(obj, "_ck_value_spec", None)
        spec: ValueSpec | None = method() if method is not None else None
        return spec

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """``_ck_slot_variables()`` of an optimizer."""
        method = getattr(obj, "_ck_slot_variables", None)
        slots: Sequence[tuple[Any, str, Any]] = method() if method is not None else ()
        return slots

    def is_optimizer(self, obj: Any) -> bool:
        """``_ck_is_optimizer``."""
        return bool(getattr(obj, "_ck_is_optimizer", False))

    def describe(self, obj: Any) -> tuple[str, str]:
        """The type name and, for variables, ``Variable.name``."""
        return type(obj).__name__, getattr(obj, "_ck_name", "")

    def can_defer(self, obj: Any) -> bool:
        """Subclasses that accept dependencies notice attachments themselves."""
        return hasattr(obj, "_ck_children") and bool(obj._ck_accepts_dependencies)

    def watch(self, obj: Any, name: str) -> None:
        """Nothing to arrange: ``ck.Module.__setattr__`` calls ``on_attach``."""

    def check_saveable(self, obj: Any) -> None:
        """``_ck_check_saveable()`` where defined."""
        check = getattr(obj, "_ck_check_saveable", None)
        if check is not None:
            check()

    def read(self, obj: Any) -> np.ndarray[Any, Any]:
        """The live array (never handed to users)."""
        return np.asarray(obj._ck_value())

    def buffer(self, obj: Any) -> np.ndarray[Any, Any] | None:
        """The variable's own array, when it can take a value in place."""
        method = getattr(obj, "_ck_buffer", None)
        found: np.ndarray[Any, Any] | None = method() if method is not None else None
        return found

    def write(self, obj: Any, array: np.ndarray[Any, Any]) -> Any:
        """``_ck_restore_value(array)``: the variable takes the array itself."""
        obj._ck_restore_value(array)
        return obj

    def find_slot(self, optimizer: Any, variable: Any, slot: str) -> Any | None:
        """``optimizer._ck_find_slot``."""
        return optimizer._ck_find_slot(variable, slot)

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec:
        """Slots have their variable's shape and dtype."""
        spec = adapter_for(variable)
        found = spec.value_spec(variable) if spec is not None else None
        return found if found is not None else stored

    def create_slot(
        self, optimizer: Any, variable: Any, slot: str, array: np.ndarray[Any, Any]
    ) -> Any:
        """``optimizer._ck_create_slot``."""
        return optimizer._ck_create_slot(variable, slot, array)


ADAPTER = NativeAdapter()
