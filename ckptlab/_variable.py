"""``ck.Variable``, the numpy-backed value, and variables created through a waiting restore.

Auto-tracking modules and the tracked containers are in ``ckptlab._module``; the base class
:class:`ckptlab.Trackable` and the engine's view of these objects are in
``ckptlab.engine._native``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ckptlab.core import ValueSpec, Visit, argument_error
from ckptlab.engine import Trackable, values_for_creation
from ckptlab.errors import AssignmentError, InvalidArgumentError
from ckptlab.storage import dtype_name

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

__all__ = ["NewVariable", "Variable", "create_variable", "create_variables"]


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
        self._name = "Variable" if name is None else str(name)
        try:
            dtype = None if dtype is None else np.dtype(dtype)
        except TypeError:
            raise argument_error("dtype", "a numpy dtype", dtype, "dtype='float32'") from None
        try:
            array = np.array(value, dtype=dtype)
        except OverflowError as error:  # a Python int the dtype cannot hold
            _refuse_wrapping(np.asarray(value), np.dtype(dtype), self._name)  # names the value
            found = f"an integer out of that range ({error})"
            raise AssignmentError(_wrap_message(self._name, np.dtype(dtype), found)) from None
        except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: torch's
            raise InvalidArgumentError(
                f"Variable {self._name!r}: the initial value ({type(value).__name__}) does not "
                f"convert to a numpy array: {str(error).rstrip('.')}. Pass numbers, a numpy "
                "array or an array-like (a torch tensor: tensor.detach().numpy())."
            ) from None
        if dtype is not None:
            _refuse_wrapping(np.asarray(value), array.dtype, self._name)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))
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
        """A copy of the value.

        Returns
        -------
        numpy.ndarray
            Changing it does not change the variable.

        Examples
        --------
        >>> v = ck.Variable([1.0, 2.0])
        >>> copy = v.numpy()
        >>> copy[0] = 9.0
        >>> v.numpy()
        array([1., 2.])
        """
        return self._value.copy()

    def assign(self, value: ArrayLike) -> Variable:
        """Write ``value`` in place (casting with numpy's ``same_kind`` rule); return self.

        Parameters
        ----------
        value
            An array-like (or another ``ck.Variable``) of the variable's shape; a variable
            declared with ``None`` dimensions accepts any size there.

        Returns
        -------
        Variable
            This variable.

        Raises
        ------
        AssignmentError
            The shape does not fit, the cast is not ``same_kind`` (float into int, ...), or an
            integer does not fit the dtype (300 into int8: numpy's cast would wrap it to 44).

        Examples
        --------
        >>> v = ck.Variable([0.0, 0.0])
        >>> v.assign([1, 2]).numpy()  # int -> float64 is a same-kind cast
        array([1., 2.])
        """
        array = np.asarray(value._value if isinstance(value, Variable) else value)
        if not np.can_cast(array.dtype, self.dtype, casting="same_kind"):
            raise AssignmentError(
                f"Cannot assign a {array.dtype} value to Variable {self._name!r} of dtype "
                f"{self.dtype}: the cast is not 'same_kind'. Convert it explicitly, e.g. "
                f"value.astype({self.dtype.name!r})."
            )
        _refuse_wrapping(array, self.dtype, self._name)
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
        """Add ``delta`` in place; return self.

        Parameters
        ----------
        delta
            An array-like broadcastable to the variable's shape.

        Returns
        -------
        Variable
            This variable.

        Examples
        --------
        >>> ck.Variable(1).assign_add(2).numpy()
        array(3)
        """
        return self.assign(self._value + np.asarray(delta))

    def assign_sub(self, delta: ArrayLike) -> Variable:
        """Subtract ``delta`` in place; return self.

        Parameters
        ----------
        delta
            As for :meth:`assign_add`.

        Returns
        -------
        Variable
            This variable (``assign`` rules apply: same-kind casts, the same shape).

        Examples
        --------
        >>> ck.Variable([3.0, 4.0]).assign_sub(1.0).numpy()
        array([2., 3.])
        """
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

    def _ck_visit(self) -> Visit[Any]:
        """A leaf: no children, no slots, this value (the walk's question, answered at once)."""
        return (), (), (self._ck_spec, type(self).__name__, self._name, False)

    def _ck_adopt(self, array: np.ndarray[Any, Any]) -> None:
        """Take ``array`` itself (no copy) as the value; its shape becomes the declared shape."""
        self._value = array
        self._declared_shape = tuple(array.shape)
        self._ck_spec = ValueSpec(shape=self._declared_shape, dtype=array.dtype.name)

    _ck_written_by = 0
    """The restore that wrote this variable last (the executor's record; see engine)."""

    def _ck_value(self) -> np.ndarray[Any, Any]:
        """The live array (not a copy): used by savers, never handed to users."""
        return self._value

    @property
    def _ck_name(self) -> str:
        """The name name-based checkpoints match by."""
        return self._name

    def _ck_buffer(self) -> np.ndarray[Any, Any] | None:
        """The live array, for a restore to read into in place (when it owns its memory)."""
        value = self._value
        if value.flags.c_contiguous and value.flags.writeable and value.flags.owndata:
            return value
        return None

    def _ck_restore_value(self, array: np.ndarray[Any, Any]) -> None:
        """Take the restored ``array`` itself as the value (the executor's write)."""
        self._value = array


def _refuse_wrapping(array: np.ndarray[Any, Any], dtype: np.dtype[Any], name: str) -> None:
    """Refuse integers ``dtype`` cannot hold: numpy's cast would wrap them (300 -> 44 in int8).

    Only integers of a wider type are looked at (a Python int is an int64 array here), so a
    value of the variable's own dtype costs nothing.
    """
    if array.dtype.kind not in "iu" or dtype.kind not in "iu" or np.can_cast(array.dtype, dtype):
        return
    if array.size == 0:
        return
    info = np.iinfo(dtype)
    low, high = int(array.min()), int(array.max())
    if low < info.min or high > info.max:
        raise AssignmentError(_wrap_message(name, dtype, str(high if high > info.max else low)))


def _wrap_message(name: str, dtype: np.dtype[Any], found: str) -> str:
    info = np.iinfo(dtype)
    return (
        f"Variable {name!r} of dtype {dtype} holds {info.min}..{info.max}, not {found} (numpy's "
        "cast would wrap it around to another number silently); nothing was written. Pass "
        "values in that range, or use a wider dtype (e.g. dtype='int64')."
    )


def create_variable(
    owner: Any,
    name: str,
    *,
    shape: tuple[int | None, ...],
    dtype: DTypeLike,
    initializer: Callable[[tuple[int, ...], np.dtype[Any]], Any],
    trainable: bool = True,
    variable_name: str | None = None,
    set_attribute: bool = True,
) -> Variable:
    """Create ``owner.name``, taking its initial value from a waiting restore if there is one.

    This is TensorFlow's restore-on-create path (docs/semantics.md S39): when a restore is
    pending for ``name``, the stored value becomes the initial value and ``initializer`` is not
    called.
    """
    new = NewVariable(
        name=name,
        shape=shape,
        dtype=dtype,
        initializer=initializer,
        trainable=trainable,
        variable_name=variable_name,
    )
    return create_variables(owner, [new], set_attribute=set_attribute)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewVariable:
    """A variable for :func:`create_variables` to create: its owner's dependency ``name``.

    ``variable_name`` is its ``Variable.name`` (default ``name``); ``initializer(shape,
    dtype)`` gives its value when no restore holds one.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: DTypeLike
    initializer: Callable[[tuple[int, ...], np.dtype[Any]], Any]
    trainable: bool = True
    variable_name: str | None = None


def create_variables(
    owner: Any, new: Sequence[NewVariable], *, set_attribute: bool = True
) -> list[Variable]:
    """Create several variables of ``owner`` at once (a layer's build): all of them or none.

    Restore-on-create as :func:`create_variable`, for the group: every value a waiting restore
    holds for them is checked (one error lists every conflict) and read before the first
    variable exists, and they are attached together, so a restore that fails leaves ``owner``
    without any of them and every restore still waiting.
    """
    dtypes = [np.dtype(n.dtype) for n in new]
    stored = values_for_creation(
        owner, [(n.name, n.shape, d) for n, d in zip(new, dtypes, strict=True)]
    )
    variables = []
    for spec, dtype, value in zip(new, dtypes, stored, strict=True):
        if value is None:
            concrete = tuple(d if d is not None else 0 for d in spec.shape)
            value = np.asarray(spec.initializer(concrete, dtype), dtype=dtype)
        variables.append(
            Variable(
                value,
                name=spec.variable_name or spec.name,
                dtype=dtype,
                shape=spec.shape,
                trainable=spec.trainable,
            )
        )
    pairs = [(spec.name, v) for spec, v in zip(new, variables, strict=True)]
    owner._ck_track_all(pairs, set_attribute=set_attribute)
    return variables
