"""Flax NNX programs: modules, variables of every kind, ``nnx.Optimizer`` with optax state.

Imported only once a flax object reaches ckptlab (so flax and JAX are already imported).  The
mapping (docs/jax.md):

* an NNX graph node (``nnx.Module``, ``nnx.List``/``nnx.Dict``, ``nnx.Rngs``,
  ``nnx.Optimizer``, any ``nnx.Pytree``) has the children NNX's own graph gives it, in NNX's
  order, named by attribute (list positions as ``0``, ``1``); a Variable or Module reachable
  under two names is one object with two edges;
* an ``nnx.Variable`` of any type (``Param``, ``BatchStat``, ``RngKey``, ``RngCount``,
  ``OptState``, user-defined) owns its value; an array held directly as a data attribute owns
  one too, through a proxy that stands for the attribute, and pytrees of such things (tuples,
  dicts, optax states) are container nodes: exactly what ``nnx.state`` holds;
* a number, bool or string marked as data (``nnx.data(1.5)``: a leaf of ``nnx.state``) is a
  value too: numbers and bools as 0-d arrays of their numpy dtype, strings as UTF-8 JSON bytes
  (Python state, :mod:`ckptlab.engine._pystate`); restored as the same Python type.  Any other
  object marked as data is refused (``NotSaveableError``): a save never drops state silently;
* a typed PRNG key array is stored as its key data (``uint32``) and restored as keys of the
  same implementation;
* a restore gives each value a *new* array, of the target's dtype, placed with the target's
  sharding (``jax.device_put``); the old array is never written to (a jitted step may have
  donated it).  An abstract value (``nnx.eval_shape``) gets a real array, on its
  ``ShapeDtypeStruct``'s sharding when it has one, else on JAX's default device; a weakly
  typed 0-d one (what ``eval_shape`` makes of a number) takes a saved Python number too and
  becomes that number;
* an ``nnx.Optimizer``'s ``step`` and the optax state that is not per parameter (``count``)
  are values below it; per-parameter state (``mu``, ``nu``: the ``OptVariable`` entries of an
  ``nnx.State`` that mirrors the parameters) are slots of the parameter they mirror, except
  the ``MaskedNode`` placeholders ``optax.masked`` leaves for the parameters it skips.  The
  optimizer does not hold its model, so the model is found in the program: the NNX node whose
  ``nnx.state(node, wrt)`` has exactly the paths the optimizer's state mirrors.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import graph as nnx_graph
from flax.nnx.training.optimizer import OptVariable
from optax import MaskedNode

from ckptlab.core import ITEMSIZE, ValueSpec
from ckptlab.engine import _pystate
from ckptlab.engine._tables import ObjectTable
from ckptlab.errors import NotSaveableError

__all__ = ["ADAPTER", "NnxAdapter"]

Key = Any
"""A key in NNX's graph: an attribute name, a list position, a dict key."""

_TEXT = ValueSpec(shape=(None,), dtype="uint8")
"""A string's value: its UTF-8 JSON bytes, of any length (Python state)."""


class _Place:
    """A proxy for something NNX keeps by position, not as an object of its own.

    ``owner`` is the nearest NNX graph node; ``path`` the keys from it.  A container proxy
    (a tuple, a dict, an optax state) has children; a leaf proxy (an array held as a data
    attribute) owns a value.  Proxies are kept per owner and path, so asking twice gives the
    same object, and stand for the place: a new tuple assigned there is seen through them.
    """

    def __init__(self, owner: Any, path: tuple[Key, ...], leaf: bool) -> None:
        self._owner = weakref.ref(owner)  # the table of proxies must not keep the owner alive
        self.path = path
        self.leaf = leaf

    @property
    def owner(self) -> Any:
        found = self._owner()
        if found is None:
            raise ReferenceError(
                f"the NNX object that held {'/'.join(map(str, self.path))} no longer exists"
            )
        return found

    def get(self) -> Any:
        found = self.owner
        for key in self.path:
            found = _child(found, key)
        return found

    def __repr__(self) -> str:
        where = "/".join(map(str, self.path))
        owner = type(self._owner()).__name__
        return f"<{'array' if self.leaf else 'pytree'} {where} of {owner}>"


_PLACES = ObjectTable("nnx_places", on_object=False)
"""NNX graph node -> {(path, leaf): proxy}.  Beside the object: NNX builds its graph from a
module's ``__dict__``, so nothing of ckptlab's may live there."""
_MODELS = ObjectTable("nnx_models", on_object=False)
"""``nnx.Optimizer`` -> a weak reference to the model its state was last matched to."""


def _gone() -> None:
    """A dead weak reference: no model."""


def _place(owner: Any, path: tuple[Key, ...], leaf: bool) -> _Place:
    table: dict[tuple[tuple[Key, ...], bool], _Place] = _PLACES.setdefault(owner, dict)
    found = table.get((path, leaf))
    if found is None:
        found = table[path, leaf] = _Place(owner, path, leaf)
    return found


def _node_dict(node: Any) -> dict[Key, Any]:
    impl = nnx_graph.get_node_impl(node)
    return {} if impl is None else impl.node_dict(node)


def _child(node: Any, key: Key) -> Any:
    """``_node_dict(node)[key]`` without building the dict.

    NNX lists every attribute of a node and sorts them to answer ``node_dict``, so a path
    through an ``nnx.List`` of n layers cost n steps, and restoring the optimizer state of n
    layers n * n (400 layers with Adam: 1.5 s).  An ``nnx.Pytree`` (modules, lists, optimizers)
    keeps its children as attributes, integer keys under their decimal names; lists, tuples and
    dicts index directly; anything else takes the general path.
    """
    if isinstance(node, nnx.Pytree):
        return vars(node)[key if isinstance(key, str) else str(key)]
    if type(node) in (list, tuple, dict):
        return node[key]
    return _node_dict(node)[key]


def _data_items(node: Any) -> Iterator[tuple[Key, Any]]:
    """``(key, value)`` of a graph node or pytree, without what NNX treats as static."""
    for key, value, _ in _marked_items(node):
        yield key, value


def _marked_items(node: Any) -> Iterator[tuple[Key, Any, bool]]:
    """``(key, value, marked as data)``, without what NNX treats as static."""
    impl = nnx_graph.get_node_impl(node)
    if impl is None:
        return
    items, _ = impl.flatten(node)
    for key, value in items:
        if isinstance(value, nnx_graph.StaticElem):
            continue
        if isinstance(value, nnx_graph.DataElem):
            yield key, value.value, True
        else:
            yield key, value, False


def _is_leaf(value: Any, marked: bool) -> bool:
    """Whether ``value`` is a leaf of ``nnx.state`` that is not a Variable.

    An array, or anything marked as data (``nnx.data(1.5)``) that is not itself a node: NNX's
    own rule (``flax.nnx.graphlib``).
    """
    return _is_array(value) or (
        marked and not isinstance(value, nnx.Variable) and nnx_graph.get_node_impl(value) is None
    )


def _is_array(value: Any) -> bool:
    """An array, or an abstract stand-in for one.

    ``nnx.eval_shape`` puts a ``ShapeDtypeStruct`` in each Variable, and leaves an array held
    outside Variables as a leaked tracer (which ``nnx.state`` does not list); a restore gives
    both a real array.
    """
    return isinstance(value, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _is_abstract(value: Any) -> bool:
    return isinstance(value, jax.ShapeDtypeStruct | jax.core.Tracer)


def _is_param_state(value: Any) -> bool:
    """An ``nnx.State`` of an optimizer mirroring the parameters (its entries are slots)."""
    return isinstance(value, nnx.State) and any(
        isinstance(leaf, OptVariable) for _, leaf in nnx.to_flat_state(value)
    )


def _holds_state(value: Any) -> bool:
    """Whether a pytree holds a Variable, an array or a graph node somewhere below."""
    if isinstance(value, nnx.Variable) or _is_array(value) or nnx_graph.is_graph_node(value):
        return True
    return nnx_graph.is_node(value) and any(_holds_state(v) for _, v in _data_items(value))


def _children(owner: Any, path: tuple[Key, ...], node: Any) -> list[tuple[str, Any]]:
    """The children of ``node``, found at ``path`` below the graph node ``owner``."""
    found: list[tuple[str, Any]] = []
    below_optimizer = isinstance(owner, nnx.Optimizer)
    for key, value, marked in _marked_items(node):
        if isinstance(value, nnx.Variable) or nnx_graph.is_graph_node(value):
            found.append((str(key), value))
        elif _is_leaf(value, marked):
            found.append((str(key), _place(owner, (*path, key), leaf=True)))
        elif below_optimizer and _is_param_state(value):
            continue  # slots of the parameters (see NnxAdapter.slots_in)
        elif nnx_graph.is_node(value) and _holds_state(value):
            found.append((str(key), _place(owner, (*path, key), leaf=False)))
    return found


def _key_of(node: Any, name: str) -> Key | None:
    return next((key for key in _node_dict(node) if str(key) == name), None)


def _value(obj: Any) -> Any:
    """The array (or abstract value, or Python scalar) a Variable or leaf proxy holds."""
    return obj.get_value() if isinstance(obj, nnx.Variable) else obj.get()


def _is_key(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


_NUMBER_DTYPES = {"f": "float64", "i": "int64", "c": "complex128"}
"""What a Python number of each kind is saved as (``np.asarray(1.5).dtype``)."""


def _number_dtype(value: Any) -> str | None:
    """The dtype a Python number saved at ``value``'s place has, when it differs from its own.

    ``nnx.eval_shape`` turns a number (``nnx.data(1.5)``, ``nnx.Variable(3)``) into a weakly
    typed 0-d ``ShapeDtypeStruct`` of JAX's dtype for it (``float32``, ``int32`` without x64),
    which a weakly typed array (``jnp.asarray(1.5)``, saved as ``float32``) becomes too.  So
    such a struct takes either; a bool or a numpy scalar is not weakly typed and takes only
    its dtype.
    """
    if not (isinstance(value, jax.ShapeDtypeStruct) and value.weak_type and value.shape == ()):
        return None
    dtype = np.dtype(value.dtype)
    number = _NUMBER_DTYPES.get(dtype.kind)
    return None if number == dtype.name else number


def _spec_of(value: Any) -> ValueSpec | None:
    if _is_key(value):
        data = jax.eval_shape(jax.random.key_data, value)
        return ValueSpec(shape=tuple(data.shape), dtype=np.dtype(data.dtype).name)
    if _is_array(value):
        number = _number_dtype(value)
        return ValueSpec(
            shape=tuple(value.shape),
            dtype=np.dtype(value.dtype).name,
            also=() if number is None else (number,),
        )
    if isinstance(value, bool | int | float | complex | np.generic):
        return ValueSpec(shape=(), dtype=np.asarray(value).dtype.name)
    if isinstance(value, str):
        return _TEXT
    return None


def _sharding(value: Any) -> Any:
    """Where a new value for ``value`` goes: its sharding, else JAX's default device."""
    if isinstance(value, jax.core.Tracer):
        return jax.devices()[0]
    sharding = getattr(value, "sharding", None)
    return sharding if sharding is not None else jax.devices()[0]


def _new_value(old: Any, array: np.ndarray[Any, Any]) -> Any:
    """A new value like ``old`` holding ``array`` (never written into ``old``)."""
    if _is_key(old):
        impl = old.dtype._impl if _is_abstract(old) else jax.random.key_impl(old)
        # A key array's sharding is its data's (under an explicit mesh a scalar key reports
        # P(None,), of rank 1): the data goes there, then is wrapped.
        data = jax.device_put(array, _sharding(old))
        return jax.random.wrap_key_data(data, impl=impl)
    if array.dtype.name == _number_dtype(old):
        return array.item()  # an abstract Python number: the number saved
    if isinstance(old, jax.Array | jax.ShapeDtypeStruct):
        return jax.device_put(array, _sharding(old))
    if isinstance(old, np.ndarray):
        return array if array.flags.writeable else array.copy()
    if isinstance(old, str):
        text = _pystate.decode(array.tobytes(), lambda a: a)
        if not isinstance(text, str):
            raise TypeError(f"expected a string, the checkpoint holds {type(text).__name__}")
        return text
    return type(old)(array.item())


def _assign(place: _Place, new: Any) -> None:
    """Put ``new`` at ``place``, rebuilding the immutable pytrees on the way."""
    nodes = [place.owner]
    for key in place.path[:-1]:
        nodes.append(_child(nodes[-1], key))
    for node, key in zip(reversed(nodes), reversed(place.path), strict=True):
        impl = nnx_graph.get_node_impl(node)
        assert impl is not None
        if isinstance(impl, nnx_graph.GraphNodeImpl) or impl.set_key is not None:
            impl.set_key(node, key, new)  # type: ignore[misc]
            return
        items, aux = impl.flatten(node)
        new = impl.unflatten([(k, new if k == key else v) for k, v in items], aux)
    raise AssertionError("the owner of a place is a graph node")  # pragma: no cover


class NnxAdapter:
    """How the engine sees Flax NNX objects."""

    name = "flax"

    def handles(self, obj: object) -> bool:
        """NNX graph nodes (modules, lists, optimizers, RNG streams), Variables, proxies."""
        return isinstance(obj, _Place) or nnx_graph.is_graph_node(obj)

    def unwrap(self, obj: Any) -> Any:
        """NNX has no wrappers."""
        return obj

    def children(self, obj: Any) -> Sequence[tuple[str, Any]]:
        """NNX's children of a graph node or of a pytree proxy, in NNX's order."""
        if isinstance(obj, _Place):
            return [] if obj.leaf else _children(obj.owner, obj.path, obj.get())
        if isinstance(obj, nnx.Variable):
            return []
        return _children(obj, (), obj)

    def child(self, obj: Any, name: str) -> Any | None:
        """The dependency called ``name``."""
        return dict(self.children(obj)).get(name)

    def value_spec(self, obj: Any) -> ValueSpec | None:
        """A Variable's (or an array attribute's) shape and dtype; keys as their key data."""
        if isinstance(obj, nnx.Variable) or (isinstance(obj, _Place) and obj.leaf):
            return _spec_of(_value(obj))
        return None

    def slots(self, obj: Any) -> Sequence[tuple[Any, str, Any]]:
        """The slots of an optimizer against the model it was last matched to."""
        model = _MODELS.get(obj, _gone)() if isinstance(obj, nnx.Optimizer) else None
        return [] if model is None else _slots(obj, model)

    def slots_in(self, obj: Any, program: Any) -> Sequence[tuple[Any, str, Any]]:
        """An optimizer's per-parameter state as slots of the parameters of its model."""
        if not isinstance(obj, nnx.Optimizer):
            return []
        model = _find_model(obj, program)
        if model is None:
            _MODELS.discard(obj)
            return []
        _MODELS.set(obj, weakref.ref(model))
        return _slots(obj, model)

    def is_optimizer(self, obj: Any) -> bool:
        """``nnx.Optimizer`` instances."""
        return isinstance(obj, nnx.Optimizer)

    def describe(self, obj: Any) -> tuple[str, str]:
        """The type name; NNX values have no names of their own (paths name them)."""
        if isinstance(obj, _Place):
            value = obj.get()
            return ("Array" if _is_array(value) else type(value).__name__), ""
        return type(obj).__name__, ""

    def can_defer(self, obj: Any) -> bool:
        """NNX has no hook for attributes assigned later: restore after building the model."""
        return False

    def watch(self, obj: Any, name: str) -> None:
        """Nothing to watch (see :meth:`can_defer`)."""

    def check_saveable(self, obj: Any) -> None:
        """Refuse values that hold no data, naming the fix."""
        if not (isinstance(obj, nnx.Variable) or (isinstance(obj, _Place) and obj.leaf)):
            return
        value = _value(obj)
        what = f"{type(obj).__name__} of shape {getattr(value, 'shape', '()')}"
        if isinstance(obj, _Place):
            where = "/".join(map(str, obj.path))
            what = f"{type(obj.owner).__name__}.{where} (a leaf of nnx.state)"
        if _is_abstract(value):
            raise NotSaveableError(
                f"{what} is abstract (nnx.eval_shape): it holds no data. Restore into it "
                "first, or build the model with real arrays."
            )
        if isinstance(value, jax.Array) and not _is_abstract(value) and value.is_deleted():
            raise NotSaveableError(
                f"{what} holds a deleted array: a jitted step donated its buffer and the "
                "Variable was not updated with the result. Save the model the step returned."
            )
        spec = _spec_of(value)
        if spec is None and isinstance(obj, _Place):
            raise NotSaveableError(
                f"{what} holds a {type(value).__name__}: ckptlab saves arrays, numbers, bools "
                "and strings, and never pickles. Keep it static (a plain attribute, not "
                "nnx.data(...)), or hold its state as arrays."
            )
        if spec is None:
            raise NotSaveableError(
                f"{what} holds a {type(value).__name__}, not an array: ckptlab saves arrays, "
                "numbers, bools and strings. Pop such state before saving (e.g. "
                "nnx.pop(model, nnx.Intermediate))."
            )
        if spec.dtype not in ITEMSIZE:
            raise NotSaveableError(
                f"{what} has dtype {spec.dtype}, which ckptlab does not store; supported: "
                f"{', '.join(sorted(ITEMSIZE))}. Convert it before saving."
            )

    def read(self, obj: Any) -> np.ndarray[Any, Any]:
        """The value as a host array (key data for PRNG keys)."""
        value = _value(obj)
        if isinstance(value, str):
            return np.frombuffer(_pystate.encode(value, lambda _: None), dtype=np.uint8)
        array = np.asarray(jax.random.key_data(value) if _is_key(value) else value)
        return array if array.flags.c_contiguous else array.copy(order="C")

    def buffer(self, obj: Any) -> np.ndarray[Any, Any] | None:
        """Never: a JAX array is immutable, so every restore gives a new array."""
        return None

    def write(self, obj: Any, array: np.ndarray[Any, Any]) -> Any:
        """Replace the value with a new array placed like the old one."""
        new = _new_value(_value(obj), array)
        if isinstance(obj, nnx.Variable):
            obj.set_value(new)
        else:
            _assign(obj, new)
        return obj

    def find_slot(self, optimizer: Any, variable: Any, slot: str) -> Any | None:
        """The existing slot (optax state exists from the optimizer's creation on)."""
        return next(
            (s for v, name, s in self.slots(optimizer) if v is variable and name == slot), None
        )

    def slot_spec(
        self,
        optimizer: Any,
        variable: Any,
        slot: str,
        stored: ValueSpec,
        saved_variable: ValueSpec | None = None,
    ) -> ValueSpec | None:
        """``None``: optax state has a fixed structure, so a missing slot cannot be created."""
        return None

    def create_slot(
        self, optimizer: Any, variable: Any, slot: str, array: np.ndarray[Any, Any]
    ) -> Any:
        """Never called (see :meth:`slot_spec`)."""
        raise NotImplementedError("optax state cannot grow a slot")

    # -- names in Orbax files (name-based restores) --

    def aliases(self, parent: Any, name: str, child: Any) -> list[str]:
        """``<name>/value``: Orbax's path of a Variable (its pytree leaf is ``value``)."""
        return [f"{name}/value"] if isinstance(child, nnx.Variable) else []

    def slot_aliases(self, optimizer: Any, variable: Any, slot: str, obj: Any) -> list[str]:
        """``opt_state/0/mu/<parameter path>/value``: where Orbax keeps a slot."""
        for param_state in _param_states(optimizer):
            for path, leaf in nnx.to_flat_state(param_state.state):
                if leaf is obj:
                    keys = ("opt_state", *param_state.path, *path)
                    where = "/".join(map(str, keys))
                    return [where, f"{where}/value"]
        return []


# -- optimizer state as slots ----------------------------------------------------------------


class _ParamState(NamedTuple):
    """A per-parameter ``nnx.State`` of an optimizer: its slot name and where it sits."""

    slot: str
    path: tuple[Key, ...]
    """Keys from ``optimizer.opt_state`` (``(0, "mu")``)."""
    state: nnx.State[Any, Any]


def _param_states(optimizer: Any) -> list[_ParamState]:
    """Every per-parameter ``nnx.State`` of the optimizer.

    The slot name is the state's field name (``mu``); where two states share one (two chained
    transformations with the same state type), their dotted paths from ``opt_state`` are used.
    """
    found: list[tuple[tuple[Key, ...], nnx.State[Any, Any]]] = []

    def visit(node: Any, path: tuple[Key, ...]) -> None:
        for key, value in _data_items(node):
            if _is_param_state(value):
                found.append(((*path, key), value))
            elif nnx_graph.is_node(value) and not nnx_graph.is_graph_node(value):
                visit(value, (*path, key))

    visit(optimizer.opt_state, ())
    short = [next((str(k) for k in reversed(path) if isinstance(k, str)), "") for path, _ in found]
    return [
        _ParamState(
            name if name and short.count(name) == 1 else ".".join(map(str, path)), path, state
        )
        for name, (path, state) in zip(short, found, strict=True)
    ]


def _wanted_paths(optimizer: Any) -> set[tuple[Key, ...]]:
    return {
        tuple(path)
        for found in _param_states(optimizer)
        for path, leaf in nnx.to_flat_state(found.state)
        if isinstance(leaf, OptVariable)
    }


def _variable_at(node: Any, path: tuple[Key, ...]) -> Any | None:
    for key in path:
        try:
            node = _child(node, key)
        except (KeyError, IndexError, TypeError):
            return None
    return node if isinstance(node, nnx.Variable) else None


def _slots(optimizer: Any, model: Any) -> list[tuple[Any, str, Any]]:
    """``(variable, slot name, OptVariable)`` for each parameter's optimizer state.

    A parameter ``optax.masked`` or ``optax.multi_transform`` leaves alone has a
    ``MaskedNode`` placeholder there: no value, so no slot (Orbax stores none either).  Its path
    still counts in :func:`_wanted_paths`, which matches the optimizer to its model.
    """
    found = []
    for param_state in _param_states(optimizer):
        for path, leaf in nnx.to_flat_state(param_state.state):
            if not isinstance(leaf, OptVariable) or isinstance(leaf.get_value(), MaskedNode):
                continue
            variable = _variable_at(model, tuple(path))
            if variable is not None:
                found.append((variable, param_state.slot, leaf))
    return found


def _fits(candidate: Any, optimizer: Any, wanted: set[tuple[Key, ...]]) -> bool:
    """Whether ``optimizer``'s state mirrors exactly ``candidate``'s ``wrt`` variables."""
    if any(_variable_at(candidate, path) is None for path in wanted):
        return False
    paths = {tuple(path) for path, _ in nnx.to_flat_state(nnx.state(candidate, optimizer.wrt))}
    return paths == wanted


def _find_model(optimizer: Any, program: Any) -> Any | None:
    """The NNX node in ``program`` whose parameters ``optimizer``'s state mirrors.

    ``nnx.ModelAndOptimizer`` holds its model.  Otherwise a node next to the optimizer (in the
    same container, as in ``ck.Checkpoint(model=m, optimizer=o)``) is preferred, then any node
    of the program; two that fit equally well are refused, since the slots would be ambiguous.
    """
    own = vars(optimizer).get("model")
    if own is not None and nnx_graph.is_graph_node(own):
        return own
    wanted = _wanted_paths(optimizer)
    if not wanted:
        return None
    parents = _parents(program)
    siblings = [
        child
        for parent in parents.get(id(optimizer), (optimizer, []))[1]
        for _, child in program.children(parent)
    ]
    everything = [obj for obj, _ in parents.values()]
    for group in (siblings, everything):
        fits = _unique(
            o for o in group if _is_model(o) and o is not optimizer and _fits(o, optimizer, wanted)
        )
        if len(fits) == 1:
            return fits[0]
        if len(fits) > 1:
            raise _ambiguous(fits, program)
    return None


def _ambiguous(fits: list[Any], program: Any) -> ValueError:
    """The error for an optimizer whose state fits several modules, naming them and the fix.

    ``nnx.Optimizer`` keeps no reference to its model or its Variables (only copies of their
    values in optax state), so identity cannot decide: the program must.
    """
    paths: dict[int, str] = {id(program.root): ""}
    queue = [program.root]
    while queue:
        parent = queue.pop(0)
        for name, child in program.children(parent):
            if id(child) not in paths:
                paths[id(child)] = f"{paths[id(parent)]}/{name}".lstrip("/")
                queue.append(child)
    shown = ", ".join(f"{paths.get(id(f), '?')} ({type(f).__name__})" for f in fits)
    return ValueError(
        f"An nnx.Optimizer's state fits {len(fits)} modules of this program equally well "
        f"({shown}), so ckptlab cannot tell whose parameters its slots belong to "
        "(nnx.Optimizer keeps no reference to its model). Put the optimizer in a container of "
        "its own next to the module it updates: for a submodule, as in nnx.Optimizer("
        "model.encoder, ...), ck.Checkpoint(model=model, finetune=ck.Checkpoint("
        "encoder=model.encoder, optimizer=optimizer)); for a model and its EMA copy, "
        "ck.Checkpoint(train=ck.Checkpoint(model=model, optimizer=optimizer), ema=ema_model)."
    )


def _is_model(obj: Any) -> bool:
    return nnx_graph.is_graph_node(obj) and not isinstance(obj, nnx.Variable | nnx.Optimizer)


def _unique(objects: Iterator[Any]) -> list[Any]:
    seen: dict[int, Any] = {}
    for obj in objects:
        seen.setdefault(id(obj), obj)
    return list(seen.values())


def _parents(program: Any) -> Mapping[int, tuple[Any, list[Any]]]:
    """``id(object)`` -> ``(object, its parents)`` for every object of ``program``."""
    found: dict[int, tuple[Any, list[Any]]] = {id(program.root): (program.root, [])}
    queue = [program.root]
    while queue:
        parent = queue.pop(0)
        for _, child in program.children(parent):
            if id(child) not in found:
                found[id(child)] = (child, [])
                queue.append(child)
            found[id(child)][1].append(parent)
    return found


ADAPTER = NnxAdapter()
