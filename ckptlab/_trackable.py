"""Trackable objects: the base class, variables, auto-tracking modules and containers.

A trackable has named dependencies (its children in the object graph).  ``Module`` tracks every
trackable assigned to an attribute; lists, tuples and dicts are wrapped so their elements are
named ``name/0`` and ``name/key`` (SEMANTICS 63).  Attaching a child may restore it at once when
a restore is waiting for that name (deferred restoration, SEMANTICS 37-39); a restore that fails
undoes the attach.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSequence
from typing import TYPE_CHECKING, Any, SupportsIndex, overload

import numpy as np

from ckptlab.core import ValueSpec
from ckptlab.errors import AssignmentError, CkptlabError
from ckptlab.storage import dtype_name

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "Module",
    "NotSaveableError",
    "Trackable",
    "TrackedDict",
    "TrackedList",
    "TrackedTuple",
    "Variable",
    "is_trackable",
    "register_trackable",
    "wrap",
]

_CHILDREN_HOOKS: dict[type, Callable[[Any], Mapping[str, Any]]] = {}


class NotSaveableError(CkptlabError, ValueError):
    """A tracked container was changed in a way that breaks restore-on-create (SEMANTICS 64-66)."""


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


def register_trackable(cls: type, children: Callable[[Any], Mapping[str, Any]]) -> None:
    """Make instances of a third-party class trackable without subclassing.

    Parameters
    ----------
    cls
        The class to register; ``isinstance(obj, ck.Trackable)`` then holds for its instances.
    children
        Returns the object's named dependencies (a mapping of local name to trackable).
        Dependencies present at restore time are restored; restore-on-attach needs a subclass
        of :class:`Module`.

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


def children_of(obj: Any) -> list[tuple[str, Any]]:
    """Named dependencies of any trackable (subclass or registered)."""
    method = getattr(obj, "_ck_children", None)
    if method is not None:
        children: list[tuple[str, Any]] = method()
        return children
    for cls in type(obj).__mro__:
        hook = _CHILDREN_HOOKS.get(cls)
        if hook is not None:
            return [(name, child) for name, child in hook(obj).items() if is_trackable(child)]
    return []


def is_trackable(value: object) -> bool:
    """Whether ``value`` can be a node of the object graph."""
    return isinstance(value, Trackable)


def _attach(parent: Trackable, name: str, child: Any) -> None:
    from ckptlab._execute import on_attach

    on_attach(parent, name, child)


# --- Variable ----------------------------------------------------------------------------------


class Variable(Trackable):
    """A mutable numpy-backed value.

    Parameters
    ----------
    initial_value
        Anything ``np.array`` accepts, or a zero-argument callable returning it.
    name
        Used only by name-based checkpoints (``ck.Saver``); default ``"Variable"``.
    dtype
        Default: numpy's inference (``Variable(1.0)`` is float64).
    shape
        Default: the value's shape.  ``None`` dims (``shape=(None, 3)``) accept any size on
        ``assign`` and restore.
    trainable
        Recorded for optimizers and display.

    Examples
    --------
    >>> import ckptlab as ck
    >>> v = ck.Variable([1.0, 2.0], name="w")
    >>> v.assign([3, 4]).numpy()
    array([3., 4.])
    """

    _ck_accepts_dependencies = False

    def __init__(
        self,
        initial_value: ArrayLike | Callable[[], ArrayLike],
        *,
        name: str | None = None,
        dtype: DTypeLike | None = None,
        shape: Iterable[int | None] | None = None,
        trainable: bool = True,
    ) -> None:
        value = initial_value() if callable(initial_value) else initial_value
        if isinstance(value, Variable):
            value = value.numpy()
        array = np.array(value, dtype=dtype)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))
        self._name = "Variable" if name is None else str(name)
        dtype_name(array.dtype, f"Variable {self._name!r}")
        declared = tuple(array.shape) if shape is None else tuple(shape)
        if not ValueSpec(shape=declared, dtype="").shape_accepts(array.shape):
            raise AssignmentError(
                f"Variable {self._name!r}: the initial value has shape {array.shape}, which does "
                f"not fit the declared shape {declared}. Pass a value of that shape or use None "
                "for dims that may vary."
            )
        self._declared_shape = declared
        self._value = array
        self._trainable = bool(trainable)
        self._ck_restore_uid = 0

    @property
    def name(self) -> str:
        """The variable's name (matters only for name-based checkpoints)."""
        return self._name

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the current value."""
        return tuple(self._value.shape)

    @property
    def declared_shape(self) -> tuple[int | None, ...]:
        """The shape given at construction (``None`` dims accept any size)."""
        return self._declared_shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype."""
        return self._value.dtype

    @property
    def trainable(self) -> bool:
        """Whether optimizers should update it."""
        return self._trainable

    def numpy(self) -> np.ndarray[Any, Any]:
        """A copy of the value."""
        return self._value.copy()

    def assign(self, value: ArrayLike) -> Variable:
        """Write ``value`` in place (casting with numpy's ``same_kind`` rule); return self."""
        array = np.asarray(value._value if isinstance(value, Variable) else value)
        if not np.can_cast(array.dtype, self.dtype, casting="same_kind"):
            raise AssignmentError(
                f"Cannot assign a {array.dtype} value to Variable {self._name!r} of dtype "
                f"{self.dtype}: the cast is not 'same_kind'. Convert it explicitly, e.g. "
                f"value.astype({self.dtype.name!r})."
            )
        if array.shape == self._value.shape:
            np.copyto(self._value, array, casting="same_kind")
            return self
        if not ValueSpec(shape=self._declared_shape, dtype="").shape_accepts(array.shape):
            raise AssignmentError(
                f"Cannot assign a value of shape {array.shape} to Variable {self._name!r} of "
                f"shape {self._declared_shape}. Reshape the value, or declare the variable with "
                "None dims (shape=(None, ...)) to let it change size."
            )
        self._value = array.astype(self.dtype, copy=True)
        return self

    def assign_add(self, delta: ArrayLike) -> Variable:
        """Add ``delta`` in place; return self."""
        return self.assign(self._value + np.asarray(delta))

    def assign_sub(self, delta: ArrayLike) -> Variable:
        """Subtract ``delta`` in place; return self."""
        return self.assign(self._value - np.asarray(delta))

    def __array__(
        self, dtype: DTypeLike | None = None, copy: bool | None = None
    ) -> np.ndarray[Any, Any]:
        if copy or dtype is not None:
            return np.array(self._value, dtype=dtype, copy=True)
        view = self._value.view()
        view.flags.writeable = False
        return view

    def __repr__(self) -> str:
        return (
            f"<ck.Variable {self._name!r} shape={self.shape} dtype={self.dtype.name} "
            f"numpy={self._value!r}>"
        )

    def _ck_value_spec(self) -> ValueSpec:
        return ValueSpec(shape=self._declared_shape, dtype=self.dtype.name)

    def _ck_value(self) -> np.ndarray[Any, Any]:
        """The live array (not a copy): used by savers, never handed to users."""
        return self._value


# --- Module ------------------------------------------------------------------------------------


class Module(Trackable):
    """Auto-tracking base class: trackable attributes become named dependencies.

    Assigning a trackable (or a list/tuple/dict) adds a dependency named after the attribute;
    plain values are not tracked; ``del`` removes the dependency; re-assigning a plain value to a
    tracked name drops the dependency (TensorFlow keeps saving the old object; ckptlab does not).

    Examples
    --------
    >>> import ckptlab as ck
    >>> m = ck.Module()
    >>> m.w = ck.Variable(1.0)
    >>> m.layers = [ck.Module()]
    >>> [name for name, _ in m._ck_children()]
    ['w', 'layers']
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith(("_ck_", "__")):
            object.__setattr__(self, name, value)
            return
        wrapped = wrap(value)
        if not is_trackable(wrapped):
            self._ck_deps.pop(name, None)
            object.__setattr__(self, name, value)
            return
        self._ck_track(name, wrapped, set_attribute=True)

    def _ck_track(self, name: str, child: Any, *, set_attribute: bool) -> None:
        """Make ``child`` the dependency ``name`` and fire waiting restores; undo on failure."""
        deps = self._ck_deps
        had_dep, old_dep = name in deps, deps.get(name)
        had_attr, old_attr = name in self.__dict__, self.__dict__.get(name)
        deps[name] = child
        if set_attribute:
            object.__setattr__(self, name, child)
        try:
            _attach(self, name, child)
        except BaseException:
            if had_dep:
                deps[name] = old_dep
            else:
                del deps[name]
            if set_attribute and had_attr:
                object.__setattr__(self, name, old_attr)
            elif set_attribute:
                object.__delattr__(self, name)
            raise

    def __delattr__(self, name: str) -> None:
        self._ck_deps.pop(name, None)
        object.__delattr__(self, name)

    @property
    def _ck_deps(self) -> dict[str, Any]:
        deps: dict[str, Any] = self.__dict__.setdefault("_ck_dependencies", {})
        return deps

    def _ck_children(self) -> list[tuple[str, Any]]:
        return list(self._ck_deps.items())

    def _ck_child(self, name: str) -> Any | None:
        return self._ck_deps.get(name)


# --- containers --------------------------------------------------------------------------------


def wrap(value: Any) -> Any:
    """Wrap lists, dicts and plain tuples so their trackable elements are tracked."""
    if isinstance(value, Trackable):
        return value
    if type(value) is list:
        return TrackedList(value)
    if type(value) is dict:
        return TrackedDict(value)
    if type(value) is tuple:
        return TrackedTuple(value)
    return value


class TrackedList(Trackable, MutableSequence[Any]):
    """A list whose trackable elements are dependencies named by index (``layers/0``).

    It wraps the list it was given (mutations go through to it).  Saving requires append-only
    use: replacing, deleting or moving a trackable element, or changing the wrapped list behind
    the wrapper's back, makes ``save`` raise :class:`NotSaveableError` (SEMANTICS 64-65).
    """

    def __init__(self, storage: list[Any] | None = None) -> None:
        self._ck_storage: list[Any] = [] if storage is None else storage
        for index, item in enumerate(self._ck_storage):
            self._ck_storage[index] = wrap(item)
        self._ck_seen = list(self._ck_storage)
        self._ck_broken: str | None = None

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [(str(i), item) for i, item in enumerate(self._ck_storage) if is_trackable(item)]

    def _ck_child(self, name: str) -> Any | None:
        if not name.isdigit() or int(name) >= len(self._ck_storage):
            return None
        item = self._ck_storage[int(name)]
        return item if is_trackable(item) else None

    def _ck_check_saveable(self) -> None:
        storage, seen = self._ck_storage, self._ck_seen
        if len(storage) != len(seen) or any(a is not b for a, b in zip(storage, seen, strict=True)):
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a list wrapper constructed to track "
                "trackable ckptlab objects). The wrapped list was modified outside the wrapper "
                f"(its final value was {storage!r}, its value when a checkpoint dependency was "
                f"added was {seen!r}), which breaks restoration on object creation. Modify the "
                "list through the attribute (module.layers.append(...)), not the original list."
            )
        if self._ck_broken:
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a list wrapper constructed to track "
                f"trackable ckptlab objects). {self._ck_broken}. In order to support restoration "
                "on object creation, tracking is exclusively for append-only data structures. "
                "Build a new list (module.layers = [...]) instead of editing this one."
            )

    def _ck_mark(self, removed: Iterable[Any], reason: str) -> None:
        if any(is_trackable(item) for item in removed):
            self._ck_broken = reason

    def _ck_sync(self) -> None:
        self._ck_seen = list(self._ck_storage)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        return self._ck_storage[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        old = self._ck_storage[index]
        removed = old if isinstance(index, slice) else [old]
        new = [wrap(v) for v in value] if isinstance(index, slice) else wrap(value)
        if isinstance(index, slice) or old is not new:
            self._ck_mark(removed, "A list element was replaced (__setitem__, __setslice__)")
        self._ck_storage[index] = new
        self._ck_sync()

    def __delitem__(self, index: Any) -> None:
        old = self._ck_storage[index]
        self._ck_mark(
            old if isinstance(index, slice) else [old],
            "A list element was deleted (__delitem__, __delslice__)",
        )
        del self._ck_storage[index]
        self._ck_sync()

    def __len__(self) -> int:
        return len(self._ck_storage)

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value``; inserting before a trackable element moves it (not saveable)."""
        if index >= len(self._ck_storage):
            self.append(value)
            return
        self._ck_mark(self._ck_storage[index:], "A list element was moved (insert)")
        self._ck_storage.insert(index, wrap(value))
        self._ck_sync()

    def append(self, value: Any) -> None:
        """Append ``value``; a trackable is tracked as ``str(index)`` (restored if awaited)."""
        item = wrap(value)
        self._ck_storage.append(item)
        self._ck_sync()
        if is_trackable(item):
            try:
                _attach(self, str(len(self._ck_storage) - 1), item)
            except BaseException:
                self._ck_storage.pop()
                self._ck_sync()
                raise

    def extend(self, values: Iterable[Any]) -> None:
        """Append each value."""
        for value in values:
            self.append(value)

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort in place; moving trackable elements makes the list unsaveable."""
        self._ck_mark(self._ck_storage, "A list element was moved (sort)")
        self._ck_storage.sort(key=key, reverse=reverse)
        self._ck_sync()

    def reverse(self) -> None:
        """Reverse in place; moving trackable elements makes the list unsaveable."""
        self._ck_mark(self._ck_storage, "A list element was moved (reverse)")
        self._ck_storage.reverse()
        self._ck_sync()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrackedList):
            other = other._ck_storage
        return self._ck_storage == other

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Iterable[Any]) -> list[Any]:
        return [*self._ck_storage, *other]

    def __radd__(self, other: Iterable[Any]) -> list[Any]:
        return [*other, *self._ck_storage]

    def __repr__(self) -> str:
        return f"TrackedList({self._ck_storage!r})"


class TrackedDict(Trackable, MutableMapping[Any, Any]):
    """A dict whose trackable values are dependencies named by key (``cfg/enc``).

    A non-string key mapping to a trackable makes ``save`` raise :class:`NotSaveableError`
    (SEMANTICS 66).
    """

    def __init__(self, storage: dict[Any, Any] | None = None) -> None:
        self._ck_storage: dict[Any, Any] = {} if storage is None else storage
        for key, value in list(self._ck_storage.items()):
            self._ck_storage[key] = wrap(value)

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [
            (k, v) for k, v in self._ck_storage.items() if isinstance(k, str) and is_trackable(v)
        ]

    def _ck_child(self, name: str) -> Any | None:
        value = self._ck_storage.get(name)
        return value if is_trackable(value) else None

    def _ck_check_saveable(self) -> None:
        bad = [k for k, v in self._ck_storage.items() if not isinstance(k, str) and is_trackable(v)]
        if bad:
            raise NotSaveableError(
                f"Unable to save the object {self!r} (a dictionary wrapper constructed "
                "automatically on attribute assignment). It contains a non-string key "
                f"({bad[0]!r}) "
                "which maps to a trackable object or mutable data structure. Use string keys for "
                "trackable values."
            )

    def __getitem__(self, key: Any) -> Any:
        return self._ck_storage[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        had, old = key in self._ck_storage, self._ck_storage.get(key)
        item = wrap(value)
        self._ck_storage[key] = item
        if isinstance(key, str) and is_trackable(item):
            try:
                _attach(self, key, item)
            except BaseException:
                if had:
                    self._ck_storage[key] = old
                else:
                    del self._ck_storage[key]
                raise

    def __delitem__(self, key: Any) -> None:
        del self._ck_storage[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ck_storage)

    def __len__(self) -> int:
        return len(self._ck_storage)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrackedDict):
            other = other._ck_storage
        return self._ck_storage == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TrackedDict({self._ck_storage!r})"


class TrackedTuple(tuple[Any, ...], Trackable):
    """A tuple whose trackable elements are dependencies named by index (``pair/1``)."""

    def __new__(cls, values: Iterable[Any] = ()) -> TrackedTuple:
        return super().__new__(cls, [wrap(v) for v in values])

    def _ck_children(self) -> list[tuple[str, Any]]:
        return [(str(i), item) for i, item in enumerate(self) if is_trackable(item)]
