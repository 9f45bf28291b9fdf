"""Trackable objects: the base class, third-party registration, and ``Variable``.

A trackable has named dependencies (its children in the object graph); a variable owns a
value.  Auto-tracking modules and the tracked containers are in ``ckptlab._module``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ckptlab.core import ValueSpec
from ckptlab.errors import AssignmentError
from ckptlab.storage import dtype_name

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

__all__ = ["Trackable", "Variable", "children_of", "is_trackable", "register_trackable"]

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
        self._ck_spec = ValueSpec(shape=declared, dtype=array.dtype.name)
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
        return self._ck_spec

    def _ck_adopt(self, array: np.ndarray[Any, Any]) -> None:
        """Take ``array`` itself (no copy) as the value; its shape becomes the declared shape."""
        self._value = array
        self._declared_shape = tuple(array.shape)
        self._ck_spec = ValueSpec(shape=self._declared_shape, dtype=array.dtype.name)

    def _ck_value(self) -> np.ndarray[Any, Any]:
        """The live array (not a copy): used by savers, never handed to users."""
        return self._value
