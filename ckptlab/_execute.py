"""The executor: the only code that mutates user objects during a restore (internal).

It writes restored values, creates optimizer slots, arms and fires deferred restorations, and
creates variables through the restore-on-create path.  Decisions are made elsewhere (the core
plans, the coordinators in ``_restore`` call in here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ckptlab._trackable import Variable

if TYPE_CHECKING:
    from numpy.typing import DTypeLike


Commit = Callable[[], None]
"""The effects of a validated restore step: record, write or queue (does not fail)."""


class Restorer(Protocol):
    """A restore in progress that objects may wait on (a coordinator)."""

    uid: int
    lazy: bool

    def prepare(self, starts: list[tuple[int, Any]]) -> Commit:
        """Match ``(node, object)`` starts, check and read everything; return the effects.

        Raises (and changes nothing) when what it would write conflicts or cannot be read.
        """
        ...

    def value_for_creation(
        self, node: int, shape: tuple[int | None, ...], dtype: str
    ) -> np.ndarray[Any, Any] | None:
        """The stored value to create a variable with, checked against its spec."""
        ...

    def prepare_subtree(self, obj: Any) -> Commit:
        """Name-based restores: like :meth:`prepare` for every variable below ``obj``."""
        ...


Position = tuple[Restorer, int]
"""A deferred restoration: (coordinator, checkpoint node id)."""


def _deferred(obj: Any) -> dict[str, list[Position]]:
    table: dict[str, list[Position]] = obj.__dict__.setdefault("_ck_deferred", {})
    return table


def _name_based(obj: Any) -> list[Restorer]:
    restorers: list[Restorer] = obj.__dict__.setdefault("_ck_name_based", [])
    return restorers


def arm_deferral(parent: Any, name: str, position: Position) -> None:
    """Remember that ``parent``'s future dependency ``name`` should be restored."""
    _deferred(parent).setdefault(name, []).append(position)


def arm_name_based(obj: Any, restorer: Restorer) -> None:
    """Remember that dependencies added below ``obj`` should be restored by name."""
    if hasattr(obj, "__dict__"):
        waiting = _name_based(obj)
        if restorer not in waiting:
            waiting.append(restorer)


def pending_positions(parent: Any, name: str) -> list[Position]:
    """Positions waiting for ``parent.name``, newest restore first."""
    if not hasattr(parent, "__dict__"):
        return []
    return sorted(_deferred(parent).get(name, []), key=lambda p: p[0].uid, reverse=True)


def on_attach(parent: Any, name: str, child: Any) -> None:
    """Called when ``child`` becomes ``parent``'s dependency ``name``: fire waiting restores.

    All or nothing: every waiting restore is matched, checked and read first; only when all
    of them succeed does any of them bind, write or queue.  The newest restore writes first,
    so its value wins (SEMANTICS 41).  If one fails, nothing changed, every position stays
    armed and the error propagates (the caller undoes the attach).
    """
    if not hasattr(parent, "__dict__"):
        return
    positions = pending_positions(parent, name)
    commits = [restorer.prepare([(node, child)]) for restorer, node in positions]
    commits += [restorer.prepare_subtree(child) for restorer in list(_name_based(parent))]
    for commit in commits:
        commit()
    if positions:
        table = _deferred(parent)
        table[name] = [p for p in table.get(name, []) if p not in positions]
        if not table[name]:
            del table[name]


def write_value(
    target: Any, array: np.ndarray[Any, Any], uid: int, *, explicit: bool = False
) -> None:
    """Give ``target`` the restored ``array`` unless a newer restore already wrote it.

    ``explicit`` (``run_restore_ops``): the caller asked for this write now, so it happens
    even over a newer restore's value (the latest assignment wins, SEMANTICS 41 and R99).
    """
    newest = getattr(target, "_ck_restore_uid", 0)
    if newest > uid and not explicit:
        return
    if isinstance(target, Variable):
        target._value = array
        target._ck_restore_uid = max(newest, uid)
    else:
        target._ck_restore_value(array)


def create_slot(
    optimizer: Any,
    variable: Any,
    slot: str,
    array: np.ndarray[Any, Any],
    uid: int,
    *,
    explicit: bool = False,
) -> Any:
    """Ask ``optimizer`` to create its ``slot`` for ``variable`` holding ``array``.

    A slot that exists by now (training, or another restore, created it) is written like any
    restored value, under the same newest-restore rule.
    """
    existing = optimizer._ck_find_slot(variable, slot)
    if existing is not None:
        write_value(existing, array, uid, explicit=explicit)
        return existing
    slot_variable = optimizer._ck_create_slot(variable, slot, array)
    slot_variable._ck_restore_uid = uid
    return slot_variable


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

    This is TensorFlow's restore-on-create path (SEMANTICS 39): when a restore is pending for
    ``name``, the stored value becomes the initial value and ``initializer`` is not called.
    """
    resolved = np.dtype(dtype)
    value = None
    for restorer, node in pending_positions(owner, name):
        if not restorer.lazy:
            value = restorer.value_for_creation(node, shape, resolved.name)
            if value is not None:
                break
    if value is None:
        concrete = tuple(d if d is not None else 0 for d in shape)
        value = np.asarray(initializer(concrete, resolved), dtype=resolved)
    variable = Variable(
        value, name=variable_name or name, dtype=resolved, shape=shape, trainable=trainable
    )
    owner._ck_track(name, variable, set_attribute=set_attribute)
    return variable
