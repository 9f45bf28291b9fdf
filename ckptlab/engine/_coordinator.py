"""The object-based restore coordinator: one restore, from planning to writing (internal).

A coordinator owns what one ``restore()`` call has bound, written, queued (lazy mode) and left
pending.  Planning is pure (``ckptlab.core.plan_restore``); every mutation goes through the
executor (:mod:`ckptlab.engine._execute`).  Eager restores check every shape and dtype and
verify every value's checksum before writing anything (:mod:`ckptlab.engine._load`), so a
conflict or a damaged value leaves the program untouched.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ckptlab.core import (
    OPTIMIZER_SLOT,
    Assignment,
    MatchReport,
    NodePath,
    ObjectGraph,
    RestorePlan,
    RestoreState,
    SlotRestore,
    ValueSpec,
    all_matched,
    ancestor_paths,
    build_report,
    gc_paused,
    object_prefix,
    plan_restore,
    unused_warning,
)
from ckptlab.engine import _execute
from ckptlab.engine._adapter import by_hook
from ckptlab.engine._execute import next_uid
from ckptlab.engine._load import Fetch, Load, commit, fetch
from ckptlab.engine._program import Program
from ckptlab.errors import RestoreConflictError, UnknownPathError
from ckptlab.storage import StoredCheckpoint

logger = logging.getLogger("ckptlab")


# -- live updates -------------------------------------------------------------------------------
# The explorer follows a status: every restore owns a Revision, bumped whenever it binds, queues
# or writes (``_record``/``_write`` below, and NameBasedRestore's commit and run_queued).


class Revision:
    """A change counter with weakly held listeners, told after every change."""

    def __init__(self) -> None:
        self.number = 0
        self._listeners: list[weakref.ref[Any] | weakref.WeakMethod[Any]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each change while its owner lives (held weakly)."""
        ref = (
            weakref.WeakMethod(callback) if hasattr(callback, "__self__") else weakref.ref(callback)
        )
        self._listeners.append(ref)

    def bump(self) -> None:
        """Count a change and tell the listeners (a failing listener is logged, not raised)."""
        self.number += 1
        alive = []
        for ref in self._listeners:
            callback = ref()
            if callback is None:
                continue
            alive.append(ref)
            try:
                callback()
            except Exception:
                logger.exception("ckptlab: a restore listener failed")
        self._listeners = alive


Write = Assignment[Any] | SlotRestore[Any]
UNPLACED_SLOT = (
    "the optimizer has no such slot for this variable and cannot create one (a torch "
    "optimizer whose param_groups do not hold the parameter; optax state has a fixed structure)"
)
"""Why a slot value whose optimizer cannot hold it stays unused (``RestorePlan.unused_slots``)."""


def conflict_error(
    conflicts: Sequence[Write],
    source: str,
    paths: Sequence[str],
    problems: Sequence[str] = (),
    *,
    lazy: bool = False,
) -> RestoreConflictError:
    """One error listing every conflict (path, program side vs checkpoint side).

    ``problems`` are conflicts that are not one value's shape or dtype (a layout that does not
    fit), already phrased.  ``lazy``: raised by ``run_restore_ops`` of a lazy restore, whose fix
    is a conflict-free selection (advising a lazy restore there would be advice already taken).
    """
    lines = [f"  {problem}" for problem in problems]
    for item, path in zip(conflicts, paths, strict=True):
        kind = item.conflict
        if kind == "shape":
            what = (
                f"Received incompatible tensor with shape {item.stored.shape} when attempting to "
                f"restore variable with shape {item.expected.shape}"
            )
        else:
            what = (
                f"expected dtype {item.expected.describe_dtype()} does not equal original dtype "
                f"{item.stored.dtype}"
            )
        lines.append(f"  {path} ({item.key}): {what}")
    part = (
        "leave them out: status.run_restore_ops(only=[...]) with conflict-free paths "
        "(status.report().conflicts lists the conflicts; ck.explore(status) shows them)."
        if lazy
        else "restore lazily (restore(path, lazy=True)) and pick a conflict-free part with "
        "status.run_restore_ops(only=[...])."
    )
    return RestoreConflictError(
        f"Restoring from {source} found {len(lines)} conflict(s); nothing was written:\n"
        + "\n".join(lines)
        + "\nFix the program (shapes and dtypes must match exactly; ckptlab never casts), or "
        + part,
        tuple(conflicts),
    )


class RestoreCoordinator:
    """The state of one object-based restore."""

    def __init__(
        self, source: StoredCheckpoint, view: Program, *, lazy: bool, skip_slots: bool = False
    ) -> None:
        assert source.document.graph is not None
        self.skip_slots = skip_slots
        self.uid = next_uid()
        self.source = source
        self.graph: ObjectGraph = source.document.graph
        self.stored = source.specs()
        self.view = view
        self.lazy = lazy
        self.bound: dict[int, Any] = {}
        self.written: set[int] = set()
        self.queued: dict[int, Write] = {}
        self.pending_slots: dict[int, list[Any]] = {}
        self.taken: dict[int, int] = {}
        """``id(object)`` -> the node whose value it took (written or queued)."""
        self.deferred: set[int] = set()
        self.blocked: dict[int, str] = {}
        self.inconsistent: dict[int, list[Any]] = {}
        """Bound node -> the other program objects a second reference to it resolved to."""
        self.merged: dict[int, int] = {}
        self.unused_attributes: dict[int, str] = {}
        self.given_up: dict[int, str] = {}
        """Nodes this restore stopped waiting for -> why (see :meth:`give_up`)."""
        self.kept: dict[int, Any] = {}
        """Bound node -> the object keeping its value until its own object exists (a slot of
        a Keras optimizer that is not built yet): pending until then."""
        self.expect_partial = False
        self._preloaded: dict[int, np.ndarray[Any, Any]] = {}
        self.compared: dict[int, bool] = {}
        self.status: weakref.ref[Any] | None = None
        self.revision = Revision()

    # -- restoring --------------------------------------------------------------------------

    def restore(self, starts: list[tuple[int, Any]]) -> None:
        """Match from ``starts``; eagerly write (all or nothing) or, lazily, queue."""
        self.prepare(starts)()

    def prepare(self, starts: list[tuple[int, Any]]) -> _execute.Commit:
        """Match from ``starts`` and, eagerly, check and read every value; return the effects.

        Raises :class:`RestoreConflictError` (or a read error) having changed nothing.
        """
        plan, writes = self._plan(starts)
        if self.lazy:
            return lambda: self._queue(plan, writes)
        conflicts = plan.conflicts()
        if conflicts:
            raise self._conflict_error(conflicts)
        load = self._fetch(writes, explicit=False)

        def commit() -> None:
            self._record(plan)
            self._write(writes, load)

        return commit

    def hold(self, starts: list[tuple[int, Any]]) -> None:
        """Match ``starts`` and queue every value unwritten, conflicts included (as lazily).

        For objects created with conflicting shapes or dtypes that cannot be undone (a Keras
        layer built by the framework): the status reports the conflicts, and
        ``run_restore_ops(only=...)`` writes a conflict-free part.
        """
        self._queue(*self._plan(starts))

    def give_up(self, nodes: Iterable[int], reason: str = "") -> None:
        """Stop waiting for ``nodes``: they will not appear, or not for this restore (unused).

        ``reason`` says why, for the report (empty: their parent was completed without them,
        so nothing is in the program at their path).
        """
        nodes = set(nodes) & self.deferred
        if nodes:
            self.deferred -= nodes
            if reason:
                self.given_up.update(dict.fromkeys(nodes, reason))
            self.revision.bump()

    def laid_out_like(self, older: Any) -> bool:
        """Whether ``older``'s checkpoint is laid out as this one's (see ``Restorer``).

        The same graph, column for column, and the same value specs.
        """
        return (
            self.skip_slots == older.skip_slots
            and self.stored == older.stored
            and self.graph.columns.same_as(older.graph.columns)
        )

    def _plan(self, starts: list[tuple[int, Any]]) -> tuple[RestorePlan[Any], list[Write]]:
        plan = plan_restore(
            self.graph,
            self.stored,
            self.view,
            starts,
            self.bound,
            self.pending_slots,
            skip_slots=self.skip_slots,
            taken=self.taken,
        )
        return plan, [*plan.assignments, *plan.slot_restores]

    def _queue(self, plan: RestorePlan[Any], writes: list[Write]) -> None:
        self._record(plan)
        self.queued.update((w.node, w) for w in writes)

    def values_for_creation(
        self, wanted: Sequence[tuple[int, tuple[int | None, ...], str]]
    ) -> list[np.ndarray[Any, Any] | None]:
        """Restore-on-create: the stored values for variables about to be created.

        Every value is checked before any is read (one error lists every conflict); what is
        read is kept for the attach that follows, so it is not read twice.
        """
        keys = self.graph.value_keys()
        probes = [
            Assignment(
                node=node,
                key=key,
                target=None,
                expected=ValueSpec(shape=shape, dtype=dtype),
                stored=self.stored[key],
            )
            if (key := keys[node]) is not None
            else None
            for node, shape, dtype in wanted
        ]
        conflicts = [p for p in probes if p is not None and p.conflict is not None]
        if conflicts:
            raise self._conflict_error(conflicts)
        arrays = [None if p is None else self.source.read(p.key) for p in probes]
        for probe, array in zip(probes, arrays, strict=True):
            if probe is not None and array is not None:
                self._preloaded[probe.node] = array
        return arrays

    def prepare_subtree(self, parent: Any, name: str, obj: Any) -> _execute.Commit:
        """Object-based restores do not restore by name."""
        return _execute.nothing

    def run_queued(self, only: Iterable[str | tuple[str, ...]] | None) -> None:
        """Lazy mode: write queued values (those under ``only``), all or nothing."""
        selected = list(self.queued.values())
        if only is not None:
            chosen = _Selection(self._check_paths(only))
            selected = [w for w in selected if chosen(self._path(w.node))]
        conflicts = [w for w in selected if w.conflict is not None]
        if conflicts:
            raise self._conflict_error(conflicts, lazy=True)
        self._write(selected, self._fetch(selected, explicit=True), explicit=True)

    def _check_paths(self, only: Iterable[str | tuple[str, ...]]) -> list[str]:
        if isinstance(only, str):
            only = [only]
        known = {path.prefix for path in self.graph.paths() if path is not None}
        reachable = known.union(*map(ancestor_paths, known))  # every path and those above it
        prefixes = [_prefix(path, reachable) for path in only]
        unknown = [p for p in prefixes if p and p not in reachable]
        if unknown:
            close = sorted(k for k in known if k and "/" not in k)
            raise UnknownPathError(
                f"run_restore_ops(only=...) got {unknown}, which name nothing in "
                f"{self.source.display_path}. Paths are '/'-separated local names as in the keys "
                f"(e.g. 'model/dense'); top-level names here: {close[:20]}."
            )
        return prefixes

    def _path(self, node: int) -> NodePath:
        """Where a checkpoint node sits (unreachable nodes get a placeholder)."""
        return self.graph.paths()[node] or NodePath(path=(f"<unreachable node {node}>",))

    def _conflict_error(
        self, conflicts: Sequence[Write], *, lazy: bool = False
    ) -> RestoreConflictError:
        shown = [self._path(c.node).pretty for c in conflicts]
        return conflict_error(conflicts, self.source.display_path, shown, lazy=lazy)

    def _check_writes(self, writes: Sequence[Write]) -> None:
        """Let adapters refuse writes that would break other objects of the program.

        A torch ``meta`` tensor is replaced by a real one; an optimizer built around the meta
        tensor would keep it (and take its restored state onto it). Raises
        :class:`RestoreConflictError` naming every problem; nothing has been written.
        """
        targets = by_hook((w.target for w in writes if isinstance(w, Assignment)), "check_writes")
        if not targets:
            return

        def program() -> list[tuple[str, Any]]:
            walked = self.view.walk()
            paths = walked.graph.paths()
            return [(p.pretty, obj) for p, obj in zip(paths, walked.objects, strict=True) if p]

        problems = [
            problem for check, found in targets.items() for problem in check(found, program)
        ]
        if problems:
            raise RestoreConflictError(
                f"Restoring from {self.source.display_path} found {len(problems)} problem(s); "
                "nothing was written:\n" + "\n".join(f"  {problem}" for problem in problems)
            )

    def _fetch(self, writes: Sequence[Write], *, explicit: bool) -> Load:
        self._check_writes(writes)
        items = [
            Fetch(w.node, w.key, w.target if isinstance(w, Assignment) else None, w.stored)
            for w in writes
        ]
        return fetch(self.source, items, uid=self.uid, explicit=explicit, preloaded=self._preloaded)

    def _record(self, plan: RestorePlan[Any]) -> None:
        self.bound.update(plan.bindings)
        self.taken.update((id(a.target), a.node) for a in plan.assignments)
        for deferral in plan.deferrals:
            self.deferred.add(deferral.node)  # first: arming may give up at once (give_up)
            _execute.arm_deferral(deferral.parent, deferral.name, (self, deferral.node))
        for blocked in plan.blocked:
            self.blocked[blocked.node] = type(blocked.parent).__name__
        for merge in plan.merges:
            self.merged[merge.node] = merge.first
        for waiting in plan.pending_slots:
            self.pending_slots.setdefault(waiting.variable_node, []).append(waiting)
        self.given_up.update(dict.fromkeys(plan.unused_slots, UNPLACED_SLOT))
        done = {a.node for a in plan.assignments} | {s.node for s in plan.slot_restores}
        done.update(plan.unused_slots)
        for variable_node, entries in list(self.pending_slots.items()):
            self.pending_slots[variable_node] = [p for p in entries if p.node not in done]
        if plan.inconsistencies:
            for item in plan.inconsistencies:
                self.inconsistent.setdefault(item.node, []).append(item.other)
                logger.warning(
                    "Inconsistent references when loading the checkpoint into this object graph. "
                    "Either the Trackable object references in the Python program have changed in "
                    "an incompatible way, or the checkpoint was generated in an incompatible "
                    "program. Two checkpoint references (to %s) resolved to different objects "
                    "(%s and %s).",
                    self._path(item.node).pretty,
                    self._brief(item.bound),
                    self._brief(item.other),
                )
        for node in plan.unused_attributes:
            self.unused_attributes[node] = type(self.bound[node]).__name__
        self.revision.bump()

    def _brief(self, obj: Any) -> str:
        """A short description of a program object for messages: never its values.

        Type, name, shape, dtype and device (``Parameter (64, 32) float32 on cpu``) and its
        identity, since two objects of one description are what an inconsistency shows.
        """
        type_name, name = self.view.describe(obj)
        spec = self.view.value_spec(obj)
        device = getattr(obj, "device", None)
        parts = [
            type_name,
            repr(name) if name else "",
            spec.describe() if spec else "",
            f"on {device}" if device is not None and not callable(device) else "",
            f"at {id(obj):#x}",
        ]
        return " ".join(part for part in parts if part)

    def _write(self, writes: Sequence[Write], load: Load, *, explicit: bool = False) -> None:
        by_node = {write.node: write for write in writes}
        queued = {node: self.queued[node] for node in by_node if node in self.queued}
        done: list[Any] = []

        def forget(nodes: list[int]) -> None:  # put back: neither written nor dequeued
            self.written.difference_update(nodes)
            self.queued.update((node, queued[node]) for node in nodes if node in queued)

        def one(node: int, array: np.ndarray[Any, Any]) -> None:
            write = by_node[node]
            if isinstance(write, SlotRestore):
                holder = _execute.create_slot(
                    write.optimizer, write.variable, write.slot, array, self.uid, explicit=explicit
                )
                self.bound[write.node] = holder
            else:
                holder = _execute.write_value(write.target, array, self.uid, explicit=explicit)
                if holder is not write.target:  # the framework replaced the object
                    self.bound[write.node] = holder
                    self.taken[id(holder)] = self.taken.pop(id(write.target), write.node)
            if _execute.kept(holder) == "kept":
                self.kept[write.node] = holder
            done.append(holder)
            self.written.add(write.node)
            self.queued.pop(write.node, None)

        def placed(nodes: list[int]) -> None:  # read into the memory of assignments' targets
            done.extend(by_node[node].target for node in nodes)  # type: ignore[union-attr]
            self.written.update(nodes)
            if self.queued:
                for node in nodes:
                    self.queued.pop(node, None)

        commit(
            self.source,
            load,
            one,
            placed,
            lambda node: self._path(node).pretty,
            forget,
            uid=self.uid,
            explicit=explicit,
        )
        _execute.after_writes(done)
        if writes:
            self.revision.bump()

    def _settle(self) -> None:
        """Values kept for objects that did not exist yet: placed by now, or never placed."""
        for node, holder in list(self.kept.items()):
            now = _execute.kept(holder)
            if now == "kept":
                continue
            del self.kept[node]
            if now == "unused":  # e.g. Adam's slots kept for an SGD that built without them
                self.bound.pop(node, None)
                self.written.discard(node)

    # -- reporting --------------------------------------------------------------------------

    def state(self) -> RestoreState:
        """What this restore has done, as data."""
        self._settle()
        conflicts = {
            node: (kind, w.expected)
            for node, w in self.queued.items()
            if (kind := w.conflict) is not None
        }
        pending_slot_nodes = {p.node for entries in self.pending_slots.values() for p in entries}
        return RestoreState(
            bound=frozenset(self.bound.keys() - self.kept.keys()) | frozenset(self.queued),
            written=frozenset(self.written),
            queued=frozenset(self.queued),
            conflicts=conflicts,
            pending_slots=frozenset(pending_slot_nodes),
            deferred=self._waiting_below() | frozenset(self.kept),
            blocked=dict(self.blocked),
            inconsistent={
                node: (id(self.bound[node]), frozenset(map(id, others)))
                for node, others in self.inconsistent.items()
            },
            merged=dict(self.merged),
            unused_attributes=dict(self.unused_attributes),
            given_up=dict(self.given_up),
            bound_program_ids=frozenset(id(o) for o in self.bound.values())
            | frozenset(id(w.target) for w in self.queued.values() if isinstance(w, Assignment)),
        )

    def _waiting_below(self) -> frozenset[int]:
        """Deferred nodes and everything below them that is not bound yet.

        A whole module waits for its attach, its values included.  An optimizer the program
        lacks stays as it was (its values are reported as unused optimizer values: a model-only
        program restoring a training checkpoint is the common case).
        """
        if not self.deferred:
            return frozenset()
        optimizers = self.graph.optimizer_nodes()
        waiting = set(self.deferred)
        queue = [node for node in self.deferred if node not in optimizers]
        while queue:
            for child in self.graph.child_table()[queue.pop()].values():
                if child not in waiting and child not in self.bound and child not in optimizers:
                    waiting.add(child)
                    queue.append(child)
        return frozenset(waiting)

    @gc_paused()  # a walk and an entry per value: many small objects, no cycles among them
    def report(self, *, with_program: bool = True) -> MatchReport:
        """A snapshot of the match, re-walking the live program."""
        program = self.view.walk() if with_program else None
        return build_report(
            checkpoint=self.source.display_path,
            graph=self.graph,
            stored=self.stored,
            state=self.state(),
            program_graph=program.graph if program else ObjectGraph(nodes=()),
            program_specs=program.specs if program else (),
            program_ids=[id(o) for o in program.objects] if program else (),
            lazy=self.lazy,
            skip_slots=self.skip_slots,
        )

    @gc_paused()
    def all_matched(self, *, checkpoint_side: bool) -> bool:
        """:func:`~ckptlab.core.all_matched` against the live program (True: nothing to report)."""
        program = self.view.walk()
        return all_matched(
            self.graph,
            self.state(),
            program.specs,
            [id(o) for o in program.objects],
            checkpoint_side=checkpoint_side,
        )

    def _all_values_taken(self) -> bool:
        """Whether every checkpoint value went somewhere (the common case: nothing to warn)."""
        self._settle()
        if self.merged or self.unused_attributes or self.inconsistent or self.blocked:
            return False
        taken = self.bound.keys() | self.queued.keys()
        return all(owner in taken for owner in self.graph.columns.owners)

    def _unowned(self, report: MatchReport) -> MatchReport:
        """``report`` without the values below objects a newer restore waits for instead.

        Those are the newer restore's to restore or warn about (:data:`_execute.SUPERSEDED`).
        """
        paths = self.graph.paths()
        owned = frozenset(
            path.prefix
            for node, why in self.given_up.items()
            if why == _execute.SUPERSEDED and (path := paths[node]) is not None
        )
        if not owned:
            return report
        kept = tuple(e for e in report.entries if not _under(e.path, owned))
        return dataclasses.replace(report, entries=kept)

    def __del__(self) -> None:
        try:  # never raise from a finalizer (at interpreter exit module globals may be gone)
            if not self.expect_partial and not self._all_values_taken():
                for line in unused_warning(self._unowned(self.report(with_program=False))):
                    logger.warning("%s", line)
        except Exception:
            pass


def _prefix(path: object, reachable: set[str]) -> str:
    """The escaped prefix ``run_restore_ops(only=...)`` means by ``path``.

    A tuple gives local names as they are (``("model", "a/b")``, or an empty name); a string is
    a prefix as in the keys, where a trailing ``/`` is dropped unless the path names a child
    called ``""`` (``"model/dct/"``).
    """
    if isinstance(path, tuple) and all(isinstance(name, str) for name in path):
        return object_prefix(path)
    if not isinstance(path, str):
        raise UnknownPathError(
            f"run_restore_ops(only=...) got {type(path).__name__} {path!r:.80}, which is not a "
            "path: give '/'-separated local names as in the keys ('model/dense'), or a tuple of "
            "local names (('model', 'a/b')) for names holding '/' or '.'."
        )
    exact = path.lstrip("/")
    return exact if exact in reachable else path.strip("/")


class _Selection:
    """Which values ``run_restore_ops(only=prefixes)`` writes, a path's depth of work each.

    An optimizer slot belongs to its optimizer, as in TF's object graph: the optimizer's path
    selects it, its variable's path does not; a path reaching into the slot's own key prefix
    (``model/w/.OPTIMIZER_SLOT/optimizer/m``) selects it too.  (Comparing every value with every
    prefix made a selection of thousands of paths, as the explorer makes, quadratic.)
    """

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.everything = "" in prefixes
        self.prefixes = frozenset(prefixes)
        self.into_slots = frozenset(p for p in prefixes if f"/{OPTIMIZER_SLOT}" in f"/{p}")

    def __call__(self, path: NodePath) -> bool:
        if self.everything:
            return True
        if path.slot is None:
            return _under(path.prefix, self.prefixes)
        return _under(object_prefix(path.slot[0]), self.prefixes) or _under(
            path.prefix, self.into_slots
        )


def _under(prefix: str, chosen: frozenset[str]) -> bool:
    """Whether ``prefix`` is one of ``chosen`` or below one."""
    return prefix in chosen or not chosen.isdisjoint(ancestor_paths(prefix))
