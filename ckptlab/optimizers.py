"""Numpy optimizers with TensorFlow's slot-variable layout (public module ``ck.optimizers``).

Slots are saved under ``<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot>`` (docs/semantics.md
S17).  They are created on the first ``apply_gradients`` for a variable, or as soon as a restore
has bound both the variable and the optimizer and holds slot values for them (TF's v1-optimizer
behaviour, docs/semantics.md S68).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ckptlab._module import Module
from ckptlab._variable import Variable, create_variable

__all__ = ["SGD", "Adam", "Optimizer"]


class Optimizer(Module):
    """Base class: iteration counter, slot bookkeeping and the checkpoint hooks.

    Subclasses name their slots (``slot_names``) and update one variable (``_update``).

    Parameters
    ----------
    learning_rate
        Step size.

    Examples
    --------
    >>> class Halve(ck.optimizers.Optimizer):
    ...     def _update(self, var, grad, step):
    ...         var.assign(var.numpy() / 2)
    >>> w = ck.Variable([4.0])
    >>> Halve(learning_rate=1.0).apply_gradients([(np.zeros(1), w)])
    >>> w.numpy()
    array([2.])
    """

    _ck_is_optimizer = True
    iter: Variable

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = float(learning_rate)
        self._ck_slot_table: dict[int, tuple[Variable, dict[str, Variable]]] = {}
        create_variable(
            self, "iter", shape=(), dtype=np.int64, initializer=lambda s, d: 0, trainable=False
        )

    @property
    def iterations(self) -> Variable:
        """Number of ``apply_gradients`` calls (int64, saved as ``iter``)."""
        return self.iter

    @property
    def slot_names(self) -> tuple[str, ...]:
        """Names of the slots kept per variable (a property: never a saved dependency)."""
        return ()

    def get_slot_names(self) -> list[str]:
        """Names of the slots this optimizer keeps per variable.

        Returns
        -------
        list of str

        Examples
        --------
        >>> ck.optimizers.SGD(0.1, momentum=0.9).get_slot_names()
        ['momentum']
        """
        return list(self.slot_names)

    def get_slot(self, var: Variable, slot_name: str) -> Variable:
        """The slot ``slot_name`` of ``var``.

        Parameters
        ----------
        var
            A variable this optimizer updates.
        slot_name
            One of :meth:`get_slot_names`.

        Returns
        -------
        Variable
            The slot, of ``var``'s shape and dtype.

        Raises
        ------
        KeyError
            The slot does not exist yet (created by the first ``apply_gradients`` for ``var``,
            or by a restore).

        Examples
        --------
        >>> w = ck.Variable([1.0])
        >>> opt = ck.optimizers.Adam(0.1)
        >>> opt.apply_gradients([(np.ones(1), w)])
        >>> opt.get_slot(w, "m").numpy()
        array([0.1])
        """
        slot = self._ck_find_slot(var, slot_name)
        if slot is None:
            raise KeyError(
                f"No slot {slot_name!r} for variable {var.name!r} yet; slots are created by the "
                "first apply_gradients for that variable (or by a restore). "
                f"Slots: {self.slot_names}."
            )
        return slot

    def _slot(self, var: Variable, slot_name: str) -> Variable:
        slots = self._ck_slot_table.setdefault(id(var), (var, {}))[1]
        if slot_name not in slots:
            slots[slot_name] = Variable(
                np.zeros(var.shape, var.dtype), name=f"{var.name}/{slot_name}", trainable=False
            )
        return slots[slot_name]

    def _ck_find_slot(self, var: Variable, slot_name: str) -> Variable | None:
        entry = self._ck_slot_table.get(id(var))
        return None if entry is None else entry[1].get(slot_name)

    def _ck_slot_variables(self) -> list[tuple[Any, str, Any]]:
        return [
            (var, name, slot)
            for var, slots in self._ck_slot_table.values()
            for name, slot in slots.items()
        ]

    def _ck_create_slot(
        self, var: Variable, slot_name: str, value: np.ndarray[Any, Any]
    ) -> Variable:
        """Create the slot ``slot_name`` of ``var`` holding ``value`` (a restore's hook).

        The restored array is adopted (it was read for this slot alone): no second copy.  The
        executor writes slots that exist already itself, so this only ever creates.
        """
        slot = Variable(
            np.empty((0,) * value.ndim, value.dtype),
            name=f"{var.name}/{slot_name}",
            shape=(None,) * value.ndim,
            trainable=False,
        )
        slot._ck_adopt(value)
        self._ck_slot_table.setdefault(id(var), (var, {}))[1][slot_name] = slot
        return slot

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, Variable]]) -> None:
        """Update each variable with its gradient (numpy arrays), then count one iteration.

        Parameters
        ----------
        grads_and_vars
            ``(gradient, variable)`` pairs; a ``None`` gradient skips its variable.

        Examples
        --------
        >>> w = ck.Variable([1.0, 1.0])
        >>> opt = ck.optimizers.SGD(0.5)
        >>> opt.apply_gradients([(np.array([1.0, 2.0]), w)])
        >>> w.numpy(), int(opt.iterations.numpy())
        (array([0.5, 0. ]), 1)
        """
        step = int(self.iter.numpy()) + 1
        for grad, var in grads_and_vars:
            if grad is None:
                continue
            self._update(var, np.asarray(grad, dtype=var.dtype), step)
        self.iter.assign(step)

    def _update(self, var: Variable, grad: np.ndarray[Any, Any], step: int) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent with optional momentum (slot ``momentum`` when ``momentum > 0``).

    Parameters
    ----------
    learning_rate
        Step size.
    momentum
        Momentum factor; ``0`` keeps no slot.

    Examples
    --------
    >>> import ckptlab as ck
    >>> w = ck.Variable([1.0])
    >>> ck.optimizers.SGD(0.5).apply_gradients([(np.array([2.0]), w)])
    >>> w.numpy()
    array([0.])
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.momentum = float(momentum)

    @property
    def slot_names(self) -> tuple[str, ...]:
        """``("momentum",)`` with momentum, otherwise none."""
        return ("momentum",) if self.momentum > 0 else ()

    def _update(self, var: Variable, grad: np.ndarray[Any, Any], step: int) -> None:
        if self.momentum > 0:
            velocity = self._slot(var, "momentum")
            velocity.assign(self.momentum * velocity._ck_value() - self.learning_rate * grad)
            var.assign_add(velocity._ck_value())
        else:
            var.assign_sub(self.learning_rate * grad)


class Adam(Optimizer):
    """Adam (slots ``m`` and ``v``), as Keras' legacy optimizer computes it.

    Parameters
    ----------
    learning_rate
        Step size.
    beta_1, beta_2
        Decay rates of the first and second moment estimates.
    epsilon
        Added to the denominator for numerical stability.

    Examples
    --------
    >>> import ckptlab as ck
    >>> w = ck.Variable([1.0])
    >>> opt = ck.optimizers.Adam(0.1)
    >>> opt.apply_gradients([(np.array([1.0]), w)])
    >>> opt.get_slot_names(), int(opt.iterations.numpy())
    (['m', 'v'], 1)
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    @property
    def slot_names(self) -> tuple[str, ...]:
        """``("m", "v")``."""
        return ("m", "v")

    def _update(self, var: Variable, grad: np.ndarray[Any, Any], step: int) -> None:
        m, v = self._slot(var, "m"), self._slot(var, "v")
        m.assign(self.beta_1 * m._ck_value() + (1 - self.beta_1) * grad)
        v.assign(self.beta_2 * v._ck_value() + (1 - self.beta_2) * grad * grad)
        rate = self.learning_rate * np.sqrt(1 - self.beta_2**step) / (1 - self.beta_1**step)
        var.assign_sub(rate * m._ck_value() / (np.sqrt(v._ck_value()) + self.epsilon))
