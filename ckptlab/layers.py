"""Tiny numpy layers for examples, tests and teaching (public module ``ck.layers``).

Layers create their variables lazily, on the first call, through the restore-on-create path:
when a restore is waiting for ``kernel``, the stored value becomes the initial value and the
initializer is not called (docs/semantics.md S39).  A build creates all of a layer's variables
or none: every waiting value is checked before the first is created (docs/semantics.md S73).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ckptlab._module import Module
from ckptlab._variable import NewVariable, Variable, create_variables

__all__ = ["Dense", "Sequential", "get_initializer"]

Initializer = Callable[[tuple[int, ...], np.dtype[Any]], Any]
_RNG = np.random.default_rng()
_NAME_COUNTS: dict[str, int] = {}
_NAME_LOCK = threading.Lock()


def _unique_name(base: str) -> str:
    """``base``, then ``base_1``, ``base_2``, ... within this process (Keras' default names)."""
    with _NAME_LOCK:
        count = _NAME_COUNTS.get(base, 0)
        _NAME_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _glorot_uniform(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    fan_in, fan_out = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0] if shape else 1, 1)
    limit = np.sqrt(6.0 / max(1, fan_in + fan_out))
    return _RNG.uniform(-limit, limit, size=shape).astype(dtype)


_INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": _glorot_uniform,
    "zeros": lambda shape, dtype: np.zeros(shape, dtype),
    "ones": lambda shape, dtype: np.ones(shape, dtype),
    "random_normal": lambda shape, dtype: (_RNG.standard_normal(shape) * 0.05).astype(dtype),
}


def get_initializer(initializer: str | Initializer) -> Initializer:
    """Look up an initializer by name, or return a callable ``init(shape, dtype)`` as is.

    Parameters
    ----------
    initializer
        ``"glorot_uniform"``, ``"zeros"``, ``"ones"``, ``"random_normal"``, or a callable
        ``init(shape, dtype)`` returning an array.

    Returns
    -------
    callable
        ``init(shape, dtype)``.

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.

    Examples
    --------
    >>> get_initializer("zeros")((2,), np.dtype("float32"))
    array([0., 0.], dtype=float32)
    """
    if callable(initializer):
        return initializer
    try:
        return _INITIALIZERS[initializer]
    except KeyError:
        raise ValueError(
            f"Unknown initializer {initializer!r}; use one of {sorted(_INITIALIZERS)} or a "
            "callable init(shape, dtype)."
        ) from None


class Dense(Module):
    """A fully connected layer: ``y = x @ kernel + bias``.

    ``kernel`` ``(in, units)`` and ``bias`` ``(units,)`` (float32) are created on the first call.
    Without ``name``, layers are named ``dense``, ``dense_1``, ``dense_2``, ... in creation order
    within the process, as Keras does, so their variables (``dense_1/kernel``) have distinct
    names for name-based checkpoints (:class:`ck.Saver`).

    Parameters
    ----------
    units
        Output size.
    use_bias
        Whether to create and add ``bias``.
    kernel_initializer
        A name or callable for :func:`get_initializer`; not called when a restore supplies the
        kernel (restore-on-create, docs/semantics.md S39).
    name
        The layer's name, the prefix of its variables' names.

    Examples
    --------
    >>> import ckptlab as ck
    >>> layer = ck.layers.Dense(2, kernel_initializer="ones")
    >>> layer(np.ones((1, 3), "float32"))
    array([[3., 3.]], dtype=float32)
    """

    kernel: Variable
    bias: Variable

    def __init__(
        self,
        units: int,
        *,
        use_bias: bool = True,
        kernel_initializer: str | Initializer = "glorot_uniform",
        name: str | None = None,
    ) -> None:
        self.units = int(units)
        self.use_bias = use_bias
        self._kernel_initializer = get_initializer(kernel_initializer)
        self.name = name or _unique_name("dense")
        self.built = False

    def build(self, input_dim: int) -> None:
        """Create ``kernel`` and ``bias`` (restored from a waiting checkpoint if there is one).

        The first call builds the layer; building it by hand fixes the input size early.

        Parameters
        ----------
        input_dim
            Size of the inputs' last axis.

        Raises
        ------
        RestoreConflictError
            A waiting restore holds a value of another shape or dtype for ``kernel`` or
            ``bias``: every waiting value is checked before either variable is created, so
            neither is created or restored (the layer stays unbuilt, the restore waiting), and
            the error lists every conflict.

        Examples
        --------
        >>> import tempfile
        >>> saved = ck.layers.Dense(2, kernel_initializer="ones")
        >>> saved.build(3)
        >>> path = ck.Checkpoint(layer=saved).write(tempfile.mkdtemp())
        >>> layer = ck.layers.Dense(2, kernel_initializer="zeros")
        >>> _ = ck.Checkpoint(layer=layer).restore(path)
        >>> layer.build(3)  # the stored kernel becomes the initial value
        >>> layer.kernel.numpy()
        array([[1., 1.],
               [1., 1.],
               [1., 1.]], dtype=float32)
        """
        new = [
            NewVariable(
                name="kernel",
                shape=(input_dim, self.units),
                dtype=np.float32,
                initializer=self._kernel_initializer,
                variable_name=f"{self.name}/kernel",
            )
        ]
        if self.use_bias:
            new.append(
                NewVariable(
                    name="bias",
                    shape=(self.units,),
                    dtype=np.float32,
                    initializer=_INITIALIZERS["zeros"],
                    variable_name=f"{self.name}/bias",
                )
            )
        create_variables(self, new)  # all or none (docs/semantics.md S73)
        self.built = True

    def __call__(self, x: Any) -> np.ndarray[Any, Any]:
        """Apply the layer (building it on first use)."""
        inputs = np.asarray(x, dtype=np.float32)
        if not self.built:
            self.build(inputs.shape[-1])
        out: np.ndarray[Any, Any] = inputs @ self.kernel._ck_value()
        if self.use_bias:
            out = out + self.bias._ck_value()
        return out

    def __repr__(self) -> str:
        return f"<ck.layers.Dense {self.name!r} units={self.units} built={self.built}>"


class Sequential(Module):
    """Layers applied in order, tracked as ``layers/0``, ``layers/1``, ...

    Parameters
    ----------
    layers
        Callables applied in order (usually ``ck.layers.Dense``).

    Examples
    --------
    >>> import ckptlab as ck
    >>> model = ck.layers.Sequential([ck.layers.Dense(4), ck.layers.Dense(1)])
    >>> model(np.ones((2, 3))).shape
    (2, 1)
    """

    def __init__(self, layers: Iterable[Any] = ()) -> None:
        self.layers = list(layers)

    def add(self, layer: Any) -> None:
        """Append a layer.

        Parameters
        ----------
        layer
            A callable; trackable layers are saved as ``layers/<index>``.

        Examples
        --------
        >>> model = ck.layers.Sequential()
        >>> model.add(ck.layers.Dense(1, kernel_initializer="ones"))
        >>> model(np.ones((1, 2)))
        array([[2.]], dtype=float32)
        """
        self.layers.append(layer)

    def __call__(self, x: Any) -> Any:
        """Apply every layer in order."""
        for layer in self.layers:
            x = layer(x)
        return x
