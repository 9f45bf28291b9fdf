"""The framework seam: how the engine sees one framework's objects (internal).

Everything the restore engine does to a program goes through an :class:`Adapter`: which
objects are children of which (the object graph), which objects own a value and of what shape
and dtype, an optimizer's slots, how to read a value for saving and how to write a restored
value in place, and how to notice objects that appear later (deferred restoration).  One module
per framework implements it: :mod:`ckptlab.engine._native` for ckptlab's own numpy objects,
:mod:`ckptlab.engine._torch` for PyTorch, :mod:`ckptlab.engine._nnx` for Flax NNX and
:mod:`ckptlab.engine._keras` for Keras 3.

A framework's adapter is imported only when an object of that framework is first seen, and an
object can only be a framework's object once that framework is imported, so ``import ckptlab``
never imports a framework (docs/frameworks.md).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ckptlab.core import ValueSpec

__all__ = [
    "Adapter",
    "Conversion",
    "adapter_for",
    "is_trackable",
    "require_adapter",
    "unwrapped",
]


@dataclass(frozen=True, slots=True, eq=False)
class Conversion:
    """Values a framework builds from several stored ones as it loads its own files.

    transformers 5 fuses a Mixture-of-Experts model's per-expert weights (``mlp.experts.0.
    gate_proj.weight``, ...) into one tensor (``mlp.experts.gate_up_proj``).  Names are below
    the object whose adapter gave the conversion (``file_conversions``).

    Parameters
    ----------
    sources
        The stored names it reads, in the order ``build`` takes their arrays.
    outputs
        Each value it gives, by name, with the shape and dtype ``build`` gives it (known
        without reading anything).
    build
        The values from the sources' arrays, by name; it may empty the list it gets (so the
        sources' memory goes as soon as the framework is done with them).
    how
        What it does, in words (``"MergeModulelist(dim=0), Concatenate(dim=1)"``).
    """

    sources: tuple[str, ...]
    outputs: Mapping[str, ValueSpec]
    build: Callable[[list[np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]]
    how: str


class Adapter(Protocol):
    """What one framework tells the engine about its objects.

    Objects are the framework's own (modules, tensors, optimizers) or small proxies the
    adapter keeps for state that has no object of its own (a param group's hyperparameters);
    a proxy must be the same object every time it is asked for, since the engine tracks
    objects by identity.

    Optional members, looked up with ``getattr``: ``separator`` (how the framework joins
    names, ``"."`` for torch; default ``"/"``), ``slots_in(optimizer, program)`` (used instead
    of :meth:`slots` by optimizers that find their variables in the program: optax state
    names parameters by path below a model it does not hold), ``aliases(parent, name, child)``
    and ``slot_aliases(optimizer, variable, slot, slot_object)`` (further names a value has in
    the framework's own files, for name-based restores: :mod:`ckptlab.engine._by_name`),
    ``visit(obj)`` (``(children, slots, (value spec, type name, full name, is_optimizer))`` in
    one call, for the graph walk; an adapter defining it must not need ``slots_in``),
    ``check_writes(targets, program)`` (problems writing into ``targets`` would cause
    elsewhere in the program, asked before anything is written: docs/frameworks.md).
    Name-based restores also ask ``optional_segments(obj)``, ``file_names(obj)`` (how ``obj``
    names a value its files store under another name) and ``file_conversions(obj)`` (``None``,
    or a function from the stored names below ``obj`` and their specs to the
    :class:`Conversion` s that build ``obj``'s values from several of them).
    """

    name: str
    """The framework's name, for messages (``"torch"``)."""

    def handles(self, obj: object) -> bool:
        """Whether ``obj`` is one of this framework's trackable objects."""
        ...

    def unwrap(self, obj: Any) -> Any:
        """The object a wrapper stands for (``torch.compile``, ``DataParallel``), else ``obj``.

        Whether an object is a wrapper depends on its type alone (the engine remembers, per
        type, that objects of a type are never wrappers).
        """
        ...

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """Named dependencies, in a stable order."""
        ...

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name``, or ``None``."""
        ...

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """Shape and dtype of the value ``obj`` owns (``None``: it owns none)."""
        ...

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """For an optimizer: ``(variable, slot name, slot object)`` triples."""
        ...

    def is_optimizer(self, obj: Any) -> bool:
        """Whether ``obj`` is an optimizer (display and slot placement)."""
        ...

    def describe(self, obj: Any) -> tuple[str, str]:
        """``(type name, variable name)``; the name is ``""`` where values have no name."""
        ...

    def can_defer(self, obj: Any) -> bool:
        """Whether dependencies ``obj`` gains later can be restored when they appear."""
        ...

    def watch(self, obj: Any, name: str) -> None:
        """A restore waits for ``obj``'s dependency ``name``: make sure its arrival is noticed.

        When it arrives the adapter (or the object itself) calls
        :func:`ckptlab.engine.on_attach`.
        """
        ...

    def check_saveable(self, obj: Any) -> None:
        """Raise :class:`ckptlab.NotSaveableError` if ``obj`` cannot be saved as it is."""
        ...

    def read(self, obj: Any) -> np.ndarray[Any, Any]:
        """The value as a host numpy array (a view of the object's memory where possible)."""
        ...

    def buffer(self, obj: Any) -> np.ndarray[Any, Any] | None:
        """A writable host array that *is* the value's memory, or ``None``.

        The engine reads a restored value straight into it (no second copy); it is asked only
        after every conflict was ruled out, and only when the stored spec equals the value's.
        """
        ...

    def write(self, obj: Any, array: np.ndarray[Any, Any]) -> Any:
        """Give ``obj`` the restored ``array``; return the object that now holds the value.

        That is ``obj`` itself for an in-place write; a framework that must replace the object
        (a parameter on PyTorch's ``meta`` device) returns the replacement.  ``array`` has
        exactly the stored spec, which the engine checked against :meth:`value_spec`.
        """
        ...

    def find_slot(self, optimizer: Any, variable: Any, slot: str) -> Any | None:
        """The existing slot object, or ``None``."""
        ...

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """The spec a slot that does not exist yet must have, given what is stored.

        ``saved_variable``: what the checkpoint holds for the variable (``None``: unknown).

        ``None``: the optimizer cannot create that slot (optax state has a fixed structure);
        the stored slot then stays unused and is reported so.
        """
        ...

    def create_slot(
        self, optimizer: Any, variable: Any, slot: str, array: np.ndarray[Any, Any]
    ) -> Any:
        """Create ``optimizer``'s slot ``slot`` for ``variable`` holding ``array``."""
        ...


# Frameworks the engine knows, by top-level module name of their objects' types.  A framework's
# adapter module is imported only once the framework itself has been imported by the user.
# Keras comes first: on the torch backend a Keras layer is also a torch.nn.Module (each adapter
# claims exactly its own objects).
_FRAMEWORKS: dict[str, str] = {
    "keras": "ckptlab.engine._keras",
    "flax": "ckptlab.engine._nnx",
    "torch": "ckptlab.engine._torch",
}
_NATIVE = "ckptlab.engine._native"
_BY_TYPE: dict[type, Adapter | None] = {}
_WRAPS: dict[type, bool] = {}
"""Type -> whether its objects are wrappers (see :meth:`Adapter.unwrap`)."""


def _load(module: str) -> Adapter:
    adapter: Adapter = importlib.import_module(module).ADAPTER
    return adapter


def _find(obj: object) -> Adapter | None:
    native = _load(_NATIVE)
    if native.handles(obj):
        return native
    for framework, module in _FRAMEWORKS.items():
        if framework in sys.modules:
            adapter = _load(module)
            if adapter.handles(obj):
                return adapter
    return None


def adapter_for(obj: object) -> Adapter | None:
    """The adapter that handles ``obj``, or ``None`` when no framework tracks it.

    Cached by type, so the graph walk pays one dictionary lookup per object.
    """
    cls = type(obj)
    try:
        return _BY_TYPE[cls]
    except KeyError:
        adapter = _BY_TYPE[cls] = _find(obj)
        return adapter


def by_hook(objects: Iterable[Any], hook: str) -> dict[Callable[..., Any], list[Any]]:
    """``objects`` grouped by their adapter's optional member ``hook`` (those without it: left out).

    The adapter is looked up once per type: restores ask this of every value they write.
    """
    hooks: dict[type, Callable[..., Any] | None] = {}
    grouped: dict[Callable[..., Any], list[Any]] = {}
    for obj in objects:
        kind = type(obj)
        if kind in hooks:
            found = hooks[kind]
        else:
            found = hooks[kind] = getattr(adapter_for(obj), hook, None)
        if found is not None:
            grouped.setdefault(found, []).append(obj)
    return grouped


def forget_type(cls: type) -> None:
    """Drop ``cls`` from the cache (after :func:`ckptlab.register_trackable`)."""
    for known in [k for k in _BY_TYPE if issubclass(k, cls)]:
        del _BY_TYPE[known]
        _WRAPS.pop(known, None)


def is_trackable(obj: object) -> bool:
    """Whether ``obj`` can be a node of the object graph (any framework's)."""
    return adapter_for(obj) is not None


def none_wrap(pairs: Sequence[tuple[str, Any]]) -> bool:
    """Whether every object of ``pairs`` is of a type known never to wrap (one lookup a type)."""
    return all(_WRAPS.get(kind) is False for kind in {type(obj) for _, obj in pairs})


def unwrapped(obj: Any) -> Any:
    """``obj``, or the object it wraps (``torch.compile``, ``DataParallel``), through its adapter.

    One dictionary lookup for objects of types that never wrap (nearly all of them).
    """
    cls = type(obj)
    if _WRAPS.get(cls) is False:
        return obj
    inner = require_adapter(obj).unwrap(obj)
    _WRAPS[cls] = inner is not obj
    return inner


def require_adapter(obj: object) -> Adapter:
    """The adapter of an object the walk reached (it was checked when it became a child)."""
    adapter = adapter_for(obj)
    if adapter is None:
        raise TypeError(f"ckptlab cannot track objects of type {type(obj).__name__}")
    return adapter
