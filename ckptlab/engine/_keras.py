"""Keras 3 programs on any backend: layers, models, metrics, optimizers, their variables.

Imported only once a Keras object reaches ckptlab (so keras, with its backend, is imported).
The mapping (docs/keras.md):

* an object's children are what Keras' own saving walks (``saving_lib._walk_saveable``, the
  code behind ``model.save_weights``): attributes holding layers, models, metrics, losses and
  the optimizer, by attribute name (``model.layers`` for ``Sequential`` and functional
  models); layers inside lists and dicts are named as Keras names them in its files
  (``dense``, ``dense_1``: the class name, numbered per container).  An object reachable under
  two names (a subclassed model's attribute and its ``layers`` entry) is one object;
* a layer's own variables are values named by their Keras name (``kernel``, ``bias``,
  ``moving_mean``; ``vars_<i>``, the index in Keras' files, for one Keras named itself from a
  process-wide count: ``variable_3``), its ``SeedGenerator`` state too (so dropout draws the
  same masks after a restore); an optimizer's ``iterations`` and ``learning_rate`` are
  values, its per-variable variables (``momentum``, ``velocity``) slots of their model
  variable.  Metrics and losses hold no saved values, as in Keras' own files;
* a restore copies values in (``variable.assign``; into the tensor's own memory on the torch
  backend), never aliasing a checkpoint's or another model's arrays: a JAX training step
  donates its buffers;
* a layer that is not built yet takes its saved values when it builds, and an optimizer that
  is not built yet takes its slots and the other variables its ``build`` creates when it
  builds (restore-on-create, through a hook on the object's ``build``); a conflict found then
  is reported and nothing of that layer is written.  A ``LossScaleOptimizer``'s slots are
  those of the optimizer it wraps;
* after a restore wrote a layer's variables, the layer's ``finalize_state()`` runs, as after
  Keras' own ``load_own_variables`` (a ``Normalization`` layer's mean and variance).
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras.src.backend.common.stateless_scope import in_stateless_scope
from keras.src.backend.common.variables import Variable as KerasVariable
from keras.src.optimizers.base_optimizer import BaseOptimizer
from keras.src.random.seed_generator import SeedGenerator
from keras.src.saving import saving_lib
from keras.src.saving.keras_saveable import KerasSaveable
from keras.src.utils import naming

from ckptlab.core import ITEMSIZE, ValueSpec
from ckptlab.engine._execute import Kept, on_build, waiting_names
from ckptlab.engine._tables import ObjectTable
from ckptlab.errors import NotSaveableError

__all__ = ["ADAPTER", "KerasAdapter"]

BACKEND = keras.backend.backend()
logger = logging.getLogger("ckptlab")


class _Container:
    """A list, tuple or dict of layers held by a Keras object (Keras saves them by position)."""

    def __init__(self, owner: Any, path: tuple[Any, ...]) -> None:
        self._owner = weakref.ref(owner)  # the table of proxies must not keep the owner alive
        self.path = path
        """The attribute name, then positions inside nested containers."""

    @property
    def owner(self) -> Any:
        return _alive(self._owner, "/".join(map(str, self.path)))

    def get(self) -> Any:
        found = getattr(self.owner, self.path[0])
        for index in self.path[1:]:
            found = _items(found)[index]
        return found

    def __repr__(self) -> str:
        return f"<{'/'.join(map(str, self.path))} of {self._owner()!r}>"


class _Slot:
    """An optimizer slot restored before the optimizer was built.

    It holds the restored array until ``optimizer.build`` creates the slot, then stands for
    that slot variable (so the engine sees one object throughout).  ``optimizer`` is the one
    that creates the slot variables (the inner optimizer of a ``LossScaleOptimizer``).
    """

    def __init__(
        self, optimizer: Any, variable: Any, name: str, array: np.ndarray[Any, Any]
    ) -> None:
        self._optimizer = weakref.ref(optimizer)
        self.variable = variable
        self.name = name
        self.array: np.ndarray[Any, Any] | None = array
        self.state: Kept = "kept"
        """``"placed"`` once the optimizer built the slot, ``"unused"`` if it built none."""

    @property
    def optimizer(self) -> Any:
        return _alive(self._optimizer, f"slot {self.name!r} of {self.variable.path}")

    def real(self) -> Any | None:
        return _slot_variables(self.optimizer).get((id(self.variable), self.name))

    def __repr__(self) -> str:
        return f"<slot {self.name!r} of {self.variable.path}>"


def _alive(reference: weakref.ref[Any], what: str) -> Any:
    found = reference()
    if found is None:
        raise ReferenceError(f"the Keras object that held {what} no longer exists")
    return found


_PROXIES = ObjectTable("keras_proxies", on_object=False)
"""Keras object -> {key: proxy}: its containers and restored-before-build slots."""
_FINALIZED = ObjectTable("keras_finalize", on_object=False)
"""Variable -> a weak reference to its layer, for layers with ``finalize_state``."""


def _gone() -> None:
    """A dead weak reference: no layer."""


def _slot_owner(optimizer: Any) -> Any:
    """The optimizer whose ``build`` creates ``optimizer``'s slot variables.

    A ``LossScaleOptimizer`` lists the variables of the optimizer it wraps as its own (so its
    slots are saved under it), but the wrapped optimizer creates them: slots restored before
    the build are kept there, the same proxies whichever of the two the engine asks.
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    return _slot_owner(inner) if isinstance(inner, BaseOptimizer) else optimizer


def _proxies(owner: Any) -> dict[Any, Any]:
    found: dict[Any, Any] = _PROXIES.setdefault(owner, dict)
    return found


def _container(owner: Any, path: tuple[Any, ...]) -> _Container:
    table = _proxies(owner)
    if path not in table:
        table[path] = _Container(owner, path)
    found: _Container = table[path]
    return found


def _items(container: Any) -> list[Any]:
    return list(container.values()) if isinstance(container, dict) else list(container)


def _has_saveables(container: Any) -> bool:
    return any(
        isinstance(item, KerasSaveable)
        or (isinstance(item, list | tuple | dict) and _has_saveables(item))
        for item in _items(container)
    )


def _unique(name: str, used: dict[str, int]) -> str:
    """Keras' naming inside containers (``saving_lib._get_unique_name``)."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


# -- what an object holds --------------------------------------------------------------------


def _own_variables(obj: Any) -> list[tuple[Any, int | None]]:
    """A layer's own variables, in Keras' file order: ``(variable, file index)``.

    The order is what ``obj.save_own_variables`` writes (``vars/0``, ``vars/1``, ...);
    variables it writes as computed arrays (a merged LoRA kernel) have no file index.  Objects
    without ``save_own_variables`` (metrics, losses) have none: Keras does not save them.
    """
    save = getattr(obj, "save_own_variables", None)
    if save is None or isinstance(obj, BaseOptimizer):
        return []
    store: dict[str, Any] = {}
    save(store)
    found: dict[int, tuple[Any, int | None]] = {}
    for key, value in store.items():
        if isinstance(value, KerasVariable) and key.isdigit():
            found.setdefault(id(value), (value, int(key)))
    own = [*getattr(obj, "_trainable_variables", ()), *getattr(obj, "_non_trainable_variables", ())]
    for variable in own:
        found.setdefault(id(variable), (variable, None))
    return list(found.values())


def _auto_named(variable: Any) -> bool:
    """Whether Keras named ``variable`` itself: ``variable``, ``variable_1``, ...

    Keras gives a variable created without a name (``add_weight()`` without ``name``, Nadam's
    ``_u_product``) the next name of a count over the whole process, so a second model of the
    same program gets other names.
    """
    stem = re.escape(naming.to_snake_case(type(variable).__name__))
    return re.fullmatch(rf"{stem}(_\d+)?", variable.name) is not None


def _variable_name(variable: Any, index: int) -> str:
    """A variable's edge name: its Keras name, or ``vars_<index>`` if Keras made it up.

    ``index`` is its position in Keras' own files (``vars/<index>``), the same for every
    instance of the program.
    """
    return f"vars_{index}" if _auto_named(variable) else str(variable.name)


def _optimizer_values(optimizer: Any) -> list[tuple[str, Any]]:
    """An optimizer's values that are not slots: ``iterations``, ``learning_rate``, others."""
    found = [("iterations", optimizer._iterations)]
    if isinstance(optimizer._learning_rate, KerasVariable):
        found.append(("learning_rate", optimizer._learning_rate))
    skip = {id(v) for v in _slot_variables(optimizer).values()} | {id(v) for _, v in found}
    found += [
        (_variable_name(v, i), v) for i, v in enumerate(optimizer.variables) if id(v) not in skip
    ]
    return found


def _slot_variables(optimizer: Any) -> dict[tuple[int, str], Any]:
    """``(id(model variable), slot name)`` -> slot variable, for a built optimizer.

    Keras names a slot ``<model variable path with _ for />_<slot>``
    (``add_variable_from_reference``); the longest matching path wins.  Every prefix ends in
    ``_``, so each ``_`` of a slot's name, from the right, is looked up once (comparing every
    slot with every path took P * P steps: 2.4 s to restore 800 layers with Adam).  Variables
    can share a path (sibling layers given one name): Keras creates each kind of slot in the
    order of ``optimizer._trainable_variables`` (``add_optimizer_variables``), so the n-th
    slot of a name belongs to the n-th variable of that path.
    """
    if not optimizer.built:
        return {}
    prefixes: dict[str, list[Any]] = {}
    for reference in optimizer._trainable_variables:
        prefixes.setdefault(reference.path.replace("/", "_") + "_", []).append(reference)
    seen: dict[str, int] = {}
    found: dict[tuple[int, str], Any] = {}
    for variable in optimizer.variables:
        name = variable.name
        cut = name.rfind("_", 0, len(name) - 1)  # a prefix leaves at least one character
        while cut >= 0:
            references = prefixes.get(name[: cut + 1])
            if references is not None:
                nth = seen[name] = seen.get(name, -1) + 1
                reference = references[min(nth, len(references) - 1)]
                found[id(reference), name[cut + 1 :]] = variable
                break
            cut = name.rfind("_", 0, cut)
    return found


def _seed_generators(layer: Any) -> list[tuple[str, Any]]:
    """A layer's seed generators by the attribute that holds them."""
    names = {id(v): k for k, v in vars(layer).items() if isinstance(v, SeedGenerator)}
    used: dict[str, int] = {}
    return [
        (_unique(names.get(id(g), "seed_generator"), used), g)
        for g in getattr(layer, "_seed_generators", ())
    ]


def _children(obj: Any) -> list[tuple[str, Any]]:
    used: dict[str, int] = {}
    found: list[tuple[str, Any]] = []

    def add(name: str, child: Any) -> None:
        found.append((_unique(name, used), child))

    if isinstance(obj, SeedGenerator):
        return [("state", obj.state)]
    if isinstance(obj, BaseOptimizer):
        for name, value in _optimizer_values(obj):
            add(name, value)
    else:
        own = _own_variables(obj)
        if own and hasattr(type(obj), "finalize_state"):
            for variable, _ in own:
                _FINALIZED.set(variable, weakref.ref(obj))
        for position, (variable, index) in enumerate(own):
            add(_variable_name(variable, position if index is None else index), variable)
        for name, generator in _seed_generators(obj):
            add(name, generator)
    if isinstance(obj, KerasSaveable):
        for attribute, child in saving_lib._walk_saveable(obj):
            if isinstance(child, KerasSaveable):
                add(attribute, child)
            elif isinstance(child, list | tuple | dict) and _has_saveables(child):
                add(attribute, _container(obj, (attribute,)))
    return found


def _container_children(container: _Container) -> list[tuple[str, Any]]:
    used: dict[str, int] = {}
    found: list[tuple[str, Any]] = []
    for index, item in enumerate(_items(container.get())):
        if isinstance(item, KerasSaveable):
            found.append((_unique(naming.to_snake_case(type(item).__name__), used), item))
        elif isinstance(item, list | tuple | dict) and _has_saveables(item):
            inner = _container(container.owner, (*container.path, index))
            found.append((_unique("container", used), inner))
    return found


# -- values ----------------------------------------------------------------------------------


def _array_of(value: Any) -> np.ndarray[Any, Any]:
    """A backend tensor as a host numpy array (a view of CPU memory where possible)."""
    if BACKEND == "torch":
        from ckptlab.engine._torch import to_numpy

        return to_numpy(value)
    return np.asarray(keras.ops.convert_to_numpy(value))


def _initialized(variable: Any) -> bool:
    return getattr(variable, "_value", True) is not None


class _Initial:
    """The initializer of a variable created in a stateless scope: the restored value."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self.array = array

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray[Any, Any]:
        return self.array.copy()


def _assign(variable: Any, array: np.ndarray[Any, Any]) -> None:
    """Copy ``array`` into ``variable``, also while Keras builds a model symbolically.

    A variable created inside a stateless scope (the JAX backend builds models that way) is
    initialised when the scope ends: the restored value becomes its initializer.  Inside a
    scope that records updates, the value is set directly, since the scope would drop it.
    """
    if not _initialized(variable):
        variable._initializer = _Initial(array)
        return
    if BACKEND == "jax":
        import jax

        value = jax.device_put(array, may_alias=False)  # a copy: a training step donates it
    else:
        value = array.copy()
    if in_stateless_scope():
        variable._direct_assign(variable._convert_to_tensor(value, dtype=variable.dtype))
    else:
        variable.assign(value)


def _no_value(variable: Any) -> str:
    """Why ``variable`` has no value to save, and what to do.

    A variable created while Keras traced the model waits with its initializer; one that had a
    value was detached by Keras' JAX trainer, which keeps the state apart from the variables
    while ``fit``, ``evaluate`` or ``predict`` runs (its ``_purge_model_variables``).
    """
    if getattr(variable, "_initializer", None) is not None:
        return (
            f"Keras variable {variable.path} is not initialised yet (created while Keras traced "
            "the model). Run the model once, or build it, before saving."
        )
    return (
        f"Keras variable {variable.path} has no value: while fit(), evaluate() or predict() "
        "runs (in a callback), Keras' JAX trainer holds the model's state apart from its "
        "variables. Call model.jax_state_sync() before saving (a callback's self.model does "
        "it), or save after fit() returns."
    )


def _spec(variable: Any) -> ValueSpec:
    return ValueSpec(
        shape=tuple(variable.shape), dtype=keras.backend.standardize_dtype(variable.dtype)
    )


# -- restore-on-create -----------------------------------------------------------------------


def _hook_build(obj: Any, after: Callable[[Any], None]) -> None:
    """Call ``after(obj)`` once ``obj.build`` has run (once; the hook then removes itself).

    The hook lives in the object's own ``__dict__`` (where Keras keeps a layer's build wrapper),
    so it goes when the object goes.
    """
    own = obj.__dict__.get("build")  # a layer's instance wrapper (Layer.__new__ sets one)
    if getattr(own, "_ck_hook", False):
        return
    original = own if own is not None else obj.build

    @functools.wraps(original)
    def build(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if own is None:
            obj.__dict__.pop("build", None)
        else:
            obj.__dict__["build"] = own
        after(obj)
        return result

    build._ck_hook = True  # type: ignore[attr-defined]
    obj.__dict__["build"] = build


def _built(obj: Any) -> None:
    """``obj`` (a layer or an optimizer) was built: give what restores kept for it.

    Slots restored before an optimizer's build are assigned; a slot it did not create (Adam's
    state kept for an SGD) becomes unused.  Every restore waiting for the object's variables
    gets them now, all of a restore's at once; a variable the build did not create is no
    longer waited for.  A conflict writes nothing of the object, is kept in the status and
    raised (docs/keras.md: Keras swallows errors while it traces a model, so the error is
    also logged, and raised again by the layer's next call).
    """
    if isinstance(obj, BaseOptimizer):
        _place_slots(obj)
    names = waiting_names(obj)
    if not names:
        return
    children = dict(ADAPTER.children(obj))
    present = [(name, children[name]) for name in names if name in children]
    error = on_build(obj, present, [name for name in names if name not in children])
    if error is not None:
        logger.warning("%s", error)
        if _tracing():
            _raise_at_next_call(obj, error)
        raise error


def _place_slots(optimizer: Any) -> None:
    """Give the slots restored before the build their values (or mark them unused)."""
    table = _proxies(optimizer)
    for key, proxy in list(table.items()):
        if isinstance(proxy, _Slot) and proxy.state == "kept":
            real = proxy.real()
            if real is None:
                del table[key]
                proxy.state = "unused"
            else:
                assert proxy.array is not None
                _assign(real, proxy.array)
                proxy.state = "placed"
            proxy.array = None


def _tracing() -> bool:
    """Whether Keras is tracing a model (building it symbolically), where it catches errors."""
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    if in_stateless_scope() or in_symbolic_scope():
        return True
    if BACKEND == "torch":
        from keras.src.backend.torch.core import get_device

        return str(get_device()) == "meta"
    return False


def _raise_at_next_call(layer: Any, error: Exception) -> None:
    """Make ``layer``'s next call raise ``error`` (once; then the hook removes itself)."""
    if not isinstance(layer, keras.Layer):
        return
    own = layer.__dict__.get("call")

    @functools.wraps(layer.call)
    def call(*args: Any, **kwargs: Any) -> Any:
        if own is None:
            layer.__dict__.pop("call", None)
        else:
            layer.__dict__["call"] = own
        if _tracing():  # still inside Keras' trace: it would swallow the error again
            _raise_at_next_call(layer, error)
        raise error

    layer.__dict__["call"] = call


class KerasAdapter:
    """How the engine sees Keras objects."""

    name = "keras"

    def handles(self, obj: object) -> bool:
        """Keras saveables (layers, models, metrics, optimizers), variables, seed generators."""
        return isinstance(obj, KerasSaveable | KerasVariable | SeedGenerator | _Container | _Slot)

    def unwrap(self, obj: Any) -> Any:
        """Keras has no wrappers."""
        return obj

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """What Keras' saving walks (see the module docstring)."""
        if isinstance(obj, _Container):
            return _container_children(obj)
        if isinstance(obj, KerasVariable | _Slot):
            return []
        return _children(obj)

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name``."""
        return dict(self.children(obj)).get(name)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """A variable's shape and dtype."""
        if isinstance(obj, KerasVariable):
            return _spec(obj)
        if isinstance(obj, _Slot):
            real = obj.real()
            if real is not None:
                return _spec(real)
            assert obj.array is not None
            return ValueSpec(shape=obj.array.shape, dtype=obj.array.dtype.name)
        return None

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """A built optimizer's slot variables; slots restored before the build."""
        if not isinstance(obj, BaseOptimizer):
            return []
        restored = {
            key: proxy
            for key, proxy in _proxies(_slot_owner(obj)).items()
            if isinstance(proxy, _Slot)
        }
        found: list[tuple[Any, str, Any]] = []
        variables = {id(v): v for v in obj._trainable_variables}
        for (ident, slot), variable in _slot_variables(obj).items():
            found.append((variables[ident], slot, restored.pop(("slot", ident, slot), variable)))
        found += [(p.variable, p.name, p) for p in restored.values() if p.state == "kept"]
        return found

    def is_optimizer(self, obj: Any) -> bool:
        """Keras optimizers."""
        return isinstance(obj, BaseOptimizer)

    def describe(self, obj: Any) -> tuple[str, str]:
        """The type name; values are named by their paths."""
        if isinstance(obj, _Container):
            return type(obj.get()).__name__, ""
        if isinstance(obj, _Slot):
            return "Variable", ""
        return type(obj).__name__, ""

    def can_defer(self, obj: Any) -> bool:
        """A layer, model or optimizer that is not built yet gains variables when it builds."""
        return isinstance(obj, keras.Layer | BaseOptimizer) and not obj.built

    def watch(self, obj: Any, name: str) -> None:
        """Restore ``obj``'s variable ``name`` when ``obj`` builds."""
        if self.can_defer(obj):
            _hook_build(obj, _built)

    def kept(self, obj: Any) -> Kept | None:
        """Where a slot restored before its optimizer was built is now (docs/frameworks.md)."""
        return obj.state if isinstance(obj, _Slot) else None

    def written(self, objects: Sequence[Any]) -> None:
        """Run ``finalize_state()`` of each layer whose variables a restore step wrote.

        Keras' own ``load_own_variables`` does so (``Normalization`` computes its mean and
        variance from the restored statistics), once per layer, after all of them.
        """
        layers: dict[int, Any] = {}
        for obj in objects:
            owner = _FINALIZED.get(obj, _gone)()
            if owner is not None:
                layers.setdefault(id(owner), owner)
        for layer in layers.values():
            layer.finalize_state()

    def check_saveable(self, obj: Any) -> None:
        """Refuse variables without a value yet, or of a dtype ckptlab does not store."""
        if not isinstance(obj, KerasVariable):
            return
        if not _initialized(obj):
            raise NotSaveableError(_no_value(obj))
        dtype = _spec(obj).dtype
        if dtype not in ITEMSIZE:
            raise NotSaveableError(
                f"Keras variable {obj.path} has dtype {dtype}, which ckptlab does not store; "
                f"supported: {', '.join(sorted(ITEMSIZE))}."
            )

    def read(self, obj: Any) -> np.ndarray[Any, Any]:
        """The value as a host array."""
        if isinstance(obj, _Slot):
            real = obj.real()
            if real is None:
                assert obj.array is not None
                return obj.array
            obj = real
        array = _array_of(obj.value)
        return array if array.flags.c_contiguous else array.copy(order="C")

    def buffer(self, obj: Any) -> np.ndarray[Any, Any] | None:
        """On the torch backend, a CPU variable's own memory (restored in place)."""
        if BACKEND != "torch" or not isinstance(obj, KerasVariable) or not _initialized(obj):
            return None
        from ckptlab.engine._torch import ADAPTER as TORCH

        return TORCH.buffer(obj.value)

    def write(self, obj: Any, array: np.ndarray[Any, Any]) -> Any:
        """Copy ``array`` in (see :func:`_assign`)."""
        if isinstance(obj, _Slot):
            real = obj.real()
            if real is None:
                obj.array = array.copy()
                return obj
            obj = real
        _assign(obj, array)
        return obj

    def find_slot(self, optimizer: Any, variable: Any, slot: str) -> Any | None:
        """The slot variable (or the slot restored before the build)."""
        found = _proxies(_slot_owner(optimizer)).get(("slot", id(variable), slot))
        if found is not None:
            return found
        return _slot_variables(optimizer).get((id(variable), slot))

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """A slot mirrors its variable; a built optimizer without the slot cannot grow one."""
        if optimizer.built:
            return None
        return _spec(variable)

    def create_slot(
        self, optimizer: Any, variable: Any, slot: str, array: np.ndarray[Any, Any]
    ) -> Any:
        """Keep the value until the optimizer builds its slots."""
        owner = _slot_owner(optimizer)
        proxy = _Slot(owner, variable, slot, array.copy())
        _proxies(owner)[("slot", id(variable), slot)] = proxy
        _hook_build(owner, _built)
        return proxy

    # -- names in Keras' own files (name-based restores) --

    def aliases(self, parent: Any, name: str, child: Any) -> list[str]:
        """``vars/<i>``: where Keras' weight files keep a layer's or optimizer's variable."""
        if not isinstance(child, KerasVariable):
            return []
        index = _file_index(parent, child)
        return [] if index is None else [f"vars/{index}"]

    def slot_aliases(self, optimizer: Any, variable: Any, slot: str, obj: Any) -> list[str]:
        """``vars/<i>`` of a slot in the optimizer's part of a Keras weights file."""
        real = obj.real() if isinstance(obj, _Slot) else obj
        index = None if real is None else _file_index(optimizer, real)
        return [] if index is None else [f"vars/{index}"]


def _file_index(owner: Any, variable: Any) -> int | None:
    if isinstance(owner, BaseOptimizer):
        positions: Iterator[tuple[Any, int | None]] = (
            (v, i) for i, v in enumerate(owner.variables)
        )
    elif isinstance(owner, KerasSaveable):
        positions = iter(_own_variables(owner))
    else:
        return None
    return next((i for v, i in positions if v is variable), None)


ADAPTER = KerasAdapter()
