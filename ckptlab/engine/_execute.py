"""The executor: the only code that mutates user objects during a restore (internal).

It writes restored values and creates optimizer slots (through each object's adapter), and arms
and fires deferred restorations.  Decisions are made elsewhere (the core plans, the
coordinators call in here).  What it remembers about user objects (which restore wrote a value
last, which restores wait for a dependency) lives in side tables keyed by object identity,
never in the objects, so copying or pickling a model never drags a restore along.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from ckptlab.engine._adapter import adapter_for, by_hook, require_adapter
from ckptlab.engine._tables import ObjectTable
from ckptlab.errors import RestoreConflictError

Commit = Callable[[], None]
"""The effects of a validated restore step: record, write or queue (does not fail)."""


def nothing() -> None:
    """Does nothing: a restore step with no effects, or an undo with nothing to put back."""


class Restorer(Protocol):
    """A restore in progress that objects may wait on (a coordinator)."""

    uid: int
    lazy: bool

    def prepare(self, starts: list[tuple[int, Any]]) -> Commit:
        """Match ``(node, object)`` starts, check and read everything; return the effects.

        Raises (and changes nothing) when what it would write conflicts or cannot be read.
        """
        ...

    def prepare_subtree(self, parent: Any, name: str, obj: Any) -> Commit:
        """Name-based restores: like :meth:`prepare` for every value below ``obj``.

        ``obj`` is about to become ``parent``'s dependency ``name``.
        """
        ...

    status: weakref.ref[Any] | None
    """The status reporting this restore, while it lives (set by the status)."""
    compared: dict[int, bool]
    """uid of an older restore -> :meth:`laid_out_like` of it (decided once per pair: a
    restore arms every module of a model)."""

    def laid_out_like(self, older: Any) -> bool:
        """Whether ``older``, a restore of this one's type, reads a checkpoint laid out alike.

        Two eager restores of checkpoints laid out alike (the same graph and value specs; an
        evaluation loop over one run's checkpoints) check the same values against the same
        objects and fill them, and the newer one's values win (docs/semantics.md S41).
        """
        ...


class Deferring(Restorer, Protocol):
    """A restore that waits for objects (an object-based restore: a coordinator)."""

    def values_for_creation(
        self, wanted: Sequence[tuple[int, tuple[int | None, ...], str]]
    ) -> list[np.ndarray[Any, Any] | None]:
        """The stored values of nodes ``(node, shape, dtype)`` to create variables with.

        ``None`` for a node that holds no value.  Every value is checked against its spec
        before any is read: a conflict raises one :class:`RestoreConflictError` listing them
        all, having read nothing.
        """
        ...

    def hold(self, starts: list[tuple[int, Any]]) -> None:
        """Match ``starts`` and keep what matched unwritten, as a lazy restore does.

        For objects that appeared with conflicting shapes or dtypes and cannot be undone (a
        Keras layer built by the framework): the conflicts stay in the status, the rest can be
        written with ``run_restore_ops(only=...)``.
        """
        ...

    def give_up(self, nodes: Iterable[int], reason: str = "") -> None:
        """Stop waiting for ``nodes``: their parent was completed without them.

        ``reason``: why they will not be restored, when it is not that (for the report).
        """
        ...


Position = tuple[Deferring, int]
"""A deferred restoration: (coordinator, checkpoint node id)."""

Kept = Literal["kept", "placed", "unused"]
"""Where a value kept for an object that does not exist yet went (see :func:`kept`)."""


_DEFERRED = ObjectTable("deferred", on_object=True)
"""parent -> {dependency name: [positions waiting for it]}."""
_NAME_BASED = ObjectTable("name_based", on_object=True)
"""object -> [name-based restores that restore what is attached below it]."""
_WRITTEN_BY = ObjectTable("written_by", on_object=False)
"""The restore that wrote an object last, for objects that do not keep it themselves."""


_UIDS = itertools.count(1)
_NEWEST_UID = 0


def _newest(target: Any) -> int:
    own: int | None = getattr(target, "_ck_written_by", None)  # ck.Variable keeps its own
    return own if own is not None else int(_WRITTEN_BY.get(target, 0))


def _record(target: Any, uid: int) -> None:
    if getattr(target, "_ck_written_by", None) is not None:
        target._ck_written_by = uid
    else:
        _WRITTEN_BY.set(target, uid)


"""object holding a value -> uid of the newest restore that wrote it."""


SUPERSEDED = "a newer restore of a checkpoint laid out alike waits for this object instead"
"""Why an older restore stopped waiting (:func:`_superseded`)."""


def _superseded(older: Restorer, newer: Restorer) -> bool:
    """Whether ``older`` may stop waiting: ``newer`` replaces it and no status reports it.

    ``newer`` replaces it when both are eager restores of one kind, ``newer`` the newer, of
    checkpoints laid out alike (:meth:`Restorer.laid_out_like`).  Then dropping it changes
    nothing anyone can see, and restoring in a loop (an evaluation over a run's checkpoints,
    each restore leaving the optimizer waiting) keeps one restore waiting instead of every
    one of them (docs/semantics.md S41).
    """
    if type(older) is not type(newer) or older.uid >= newer.uid or older.lazy or newer.lazy:
        return False
    if older.status is not None and older.status() is not None:
        return False
    known = newer.compared.get(older.uid)
    if known is None:
        known = newer.compared[older.uid] = newer.laid_out_like(older)
    return known


def arm_deferral(parent: Any, name: str, position: Position) -> None:
    """Remember that ``parent``'s future dependency ``name`` should be restored.

    An older restore waiting at the same place that ``position``'s restore supersedes
    (:func:`_superseded`) stops waiting.
    """
    table: dict[str, list[Position]] = _DEFERRED.setdefault(parent, dict)
    waiting = table.setdefault(name, [])
    restorer, node = position
    for older in [p for p in waiting if p[1] == node and _superseded(p[0], restorer)]:
        waiting.remove(older)
        older[0].give_up([node], SUPERSEDED)
    waiting.append(position)
    require_adapter(parent).watch(parent, name)


def arm_name_based(obj: Any, restorer: Restorer) -> None:
    """Remember that dependencies added below ``obj`` should be restored by name.

    Older restores that ``restorer`` supersedes (:func:`_superseded`) stop waiting.
    """
    waiting: list[Restorer] = _NAME_BASED.setdefault(obj, list)
    if restorer not in waiting:
        waiting[:] = [older for older in waiting if not _superseded(older, restorer)]
        waiting.append(restorer)


def pending_positions(parent: Any, name: str) -> list[Position]:
    """Positions waiting for ``parent.name``, newest restore first."""
    table: dict[str, list[Position]] = _DEFERRED.get(parent, {})
    return sorted(table.get(name, []), key=lambda p: p[0].uid, reverse=True)


def waiting_names(parent: Any) -> list[str]:
    """The dependency names of ``parent`` that some restore waits for."""
    table: dict[str, list[Position]] = _DEFERRED.get(parent, {})
    return list(table)


def on_attach(parent: Any, name: str, child: Any) -> None:
    """Called when ``child`` becomes ``parent``'s dependency ``name``: fire waiting restores.

    All or nothing: every waiting restore is matched, checked and read first; only when all
    of them succeed does any of them bind, write or queue.  The newest restore writes first,
    so its value wins (docs/semantics.md S41).  If one fails, nothing changed, every position
    stays armed and the error propagates (the caller undoes the attach).
    """
    on_attach_all(parent, [(name, child)])


def on_attach_all(parent: Any, children: Sequence[tuple[str, Any]]) -> None:
    """:func:`on_attach` for several new dependencies ``(name, child)`` of ``parent`` at once.

    A layer's build attaches its variables together: every restore waiting for any of them is
    matched, checked and read before any binds or writes, so a failure leaves all of them
    unrestored and every position armed (the caller undoes all the attaches).
    """
    table: dict[str, list[Position]] = _DEFERRED.get(parent, {})
    name_based: list[Restorer] = list(_NAME_BASED.get(parent, ()))
    if not table and not name_based:
        return
    found = [(name, child, pending_positions(parent, name)) for name, child in children]
    commits = [
        restorer.prepare([(node, child)])
        for _, child, positions in found
        for restorer, node in positions
    ]
    commits += [
        restorer.prepare_subtree(parent, name, child)
        for name, child, _ in found
        for restorer in name_based
    ]
    for commit in commits:
        commit()
    for name, _, positions in found:
        if positions:
            table[name] = [p for p in table.get(name, []) if p not in positions]
            if not table[name]:
                del table[name]
    if not table:
        _DEFERRED.discard(parent)


def values_for_creation(
    parent: Any, wanted: Sequence[tuple[str, tuple[int | None, ...], np.dtype[Any]]]
) -> list[np.ndarray[Any, Any] | None]:
    """Restore-on-create: the stored values to create ``parent``'s new variables with.

    ``wanted`` are the variables' ``(name, shape, dtype)``; a value is ``None`` when no
    restore holds one (the initializer is called).  For each name, the newest eager restore
    waiting for it that holds a value supplies it (docs/semantics.md S39, S41).  A restore
    checks every value it supplies before reading any, so a conflict raises one
    :class:`RestoreConflictError` listing them all before any variable of the group exists.
    """
    values: list[np.ndarray[Any, Any] | None] = [None] * len(wanted)
    untried = [[p for p in pending_positions(parent, n) if not p[0].lazy] for n, _, _ in wanted]
    while True:  # rounds: a restore whose node holds no value leaves it to an older one
        asks: dict[int, tuple[Deferring, list[tuple[int, int]]]] = {}
        for index, positions in enumerate(untried):
            if values[index] is None and positions:
                restorer, node = positions.pop(0)
                asks.setdefault(id(restorer), (restorer, []))[1].append((index, node))
        if not asks:
            return values
        for restorer, items in asks.values():
            found = restorer.values_for_creation(
                [(node, wanted[index][1], wanted[index][2].name) for index, node in items]
            )
            for (index, _), value in zip(items, found, strict=True):
                values[index] = value


def on_build(
    parent: Any, present: Sequence[tuple[str, Any]], absent: Sequence[str]
) -> RestoreConflictError | None:
    """``parent`` was completed (a Keras layer or optimizer built): fire or end what waits on it.

    Unlike :func:`on_attach`, the framework cannot undo a build.  Each waiting restore (newest
    first) matches, checks and reads all of ``parent``'s new dependencies at once and writes
    them; on a conflict it writes none of them and holds them (:meth:`Deferring.hold`), and
    the error is returned for the caller to raise or report.  Dependencies in ``absent`` will
    not appear: no restore waits for them any longer (they are reported unused).
    """
    table: dict[str, list[Position]] = _DEFERRED.get(parent, {})
    waiting: dict[int, tuple[Deferring, list[tuple[int, Any]], list[int]]] = {}
    for name, child in [*present, *((name, None) for name in absent)]:
        for restorer, node in table.pop(name, []):
            _, starts, gone = waiting.setdefault(id(restorer), (restorer, [], []))
            if child is None:
                gone.append(node)
            else:
                starts.append((node, child))
    if not table:
        _DEFERRED.discard(parent)
    error: RestoreConflictError | None = None
    for restorer, starts, gone in sorted(waiting.values(), key=lambda w: -w[0].uid):
        restorer.give_up(gone)
        if not starts:
            continue
        try:
            commit = restorer.prepare(starts)
        except RestoreConflictError as found:
            restorer.hold(starts)
            error = error or found
        else:
            commit()
    return error


def abandon(parent: Any, names: Iterable[str], reason: str) -> None:
    """No restore waits for ``parent``'s dependencies ``names`` any longer, because ``reason``.

    For dependencies that appeared in a way that must not take a restored value (a torch
    lazy parameter that ``load_state_dict`` materialised with the user's values, a buffer
    registered as non-persistent): the waiting values are reported unused, with the reason.
    """
    table: dict[str, list[Position]] = _DEFERRED.get(parent, {})
    for name in names:
        for restorer, node in table.pop(name, []):
            restorer.give_up([node], reason)
    if not table:
        _DEFERRED.discard(parent)


def kept(obj: Any) -> Kept | None:
    """For a value an adapter keeps until its object exists: where it is now.

    A Keras optimizer that is not built yet keeps restored slots until it builds: ``"kept"``
    (still waiting), ``"placed"`` (given to the slot), ``"unused"`` (the optimizer built
    without such a slot).  ``None`` for every other object (adapters without ``kept``).
    """
    adapter = adapter_for(obj)
    ask: Callable[[Any], Kept | None] | None = getattr(adapter, "kept", None)
    return None if ask is None else ask(obj)


def after_writes(targets: Iterable[Any]) -> None:
    """Tell the adapters which objects one restore step has just written (all of them).

    An adapter with ``written(objects)`` recomputes what depends on them (a Keras
    ``Normalization`` layer's mean and variance, from its restored statistics).
    """
    for tell, written in by_hook(targets, "written").items():
        tell(written)


def write_value(
    target: Any, array: np.ndarray[Any, Any], uid: int, *, explicit: bool = False
) -> Any:
    """Give ``target`` the restored ``array`` unless a newer restore already wrote it.

    ``explicit`` (``run_restore_ops``): the caller asked for this write now, so it happens
    even over a newer restore's value (the latest assignment wins, docs/semantics.md S41).
    Returns the object now holding the value (see :meth:`Adapter.write`).
    """
    newest = _newest(target)
    if newest > uid and not explicit:
        return target
    holder = require_adapter(target).write(target, array)
    _record(holder, max(newest, uid))
    return holder


def next_uid() -> int:
    """A new restore id; later restores win over earlier ones (docs/semantics.md S41)."""
    global _NEWEST_UID
    _NEWEST_UID = next(_UIDS)
    return _NEWEST_UID


def newest_uid() -> int:
    """The id of the newest restore so far (0: none): no object was written by a newer one."""
    return _NEWEST_UID


def mark_written(targets: Iterable[Any], uid: int) -> None:
    """Record that restore ``uid`` gave ``targets`` their values (read into their memory)."""
    newest = uid >= _NEWEST_UID  # else a newer restore wrote some: keep its mark on those
    for target in targets:
        _record(target, uid if newest else max(_newest(target), uid))


def written_by(target: Any) -> int:
    """The uid of the newest restore that wrote ``target`` (0: none)."""
    return _newest(target)


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
    adapter = require_adapter(optimizer)
    existing = adapter.find_slot(optimizer, variable, slot)
    if existing is not None:
        return write_value(existing, array, uid, explicit=explicit)
    slot_object = adapter.create_slot(optimizer, variable, slot, array)
    _record(slot_object, uid)
    return slot_object
