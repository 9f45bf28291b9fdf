"""Restore statuses: what ``restore``/``read`` return (public classes, re-exported).

Assertions are live: each call re-walks the program (docs/semantics.md S45).  Every status also
offers ``report()``, a frozen snapshot of every match state, which the explorer draws.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Any

from ckptlab.core import (
    MatchReport,
    ReportEntry,
    consumed_failure,
    existing_objects_failure,
    nontrivial_failure,
)
from ckptlab.engine._by_name import NameBasedRestore, layout_hint
from ckptlab.engine._coordinator import RestoreCoordinator
from ckptlab.engine._program import Program

__all__ = [
    "CheckpointLoadStatus",
    "InitializationOnlyStatus",
    "NameBasedSaverStatus",
    "RestoreStatus",
]

logger = logging.getLogger("ckptlab")


class _StatusDisplay:
    """Text and HTML display shared by every status."""

    def report(self) -> MatchReport:
        """A frozen snapshot of how the checkpoint matched the program."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.report().summary()}>"

    def _repr_html_(self) -> str:
        from ckptlab.inspect import report_html

        return report_html(self.report(), title=type(self).__name__)


class CheckpointLoadStatus(_StatusDisplay):
    """Status of restoring an object-based checkpoint (returned by ``restore``/``read``).

    The assertions are live: each call re-checks the program as it is now
    (docs/semantics.md S43-S53).

    Parameters
    ----------
    coordinator
        The restore's bookkeeping (internal; statuses are made by ``Checkpoint.restore``).

    Examples
    --------
    >>> import tempfile
    >>> saved = ck.Module()
    >>> saved.w = ck.Variable(1.0)
    >>> path = ck.Checkpoint(model=saved).write(tempfile.mkdtemp() + "/c")
    >>> model = ck.Module()
    >>> status = ck.Checkpoint(model=model).read(path)
    >>> status.report().summary()
    '1 pending'
    >>> model.w = ck.Variable(0.0)  # attached later: restored as it is attached
    >>> float(model.w.numpy()), status.assert_consumed().report().summary()
    (1.0, '1 matched')
    """

    def __init__(self, coordinator: RestoreCoordinator) -> None:
        self._coordinator = coordinator
        coordinator.status = weakref.ref(self)

    def _check(self, message: str | None) -> CheckpointLoadStatus:
        if message is not None:
            raise AssertionError(message)
        return self

    def assert_consumed(self) -> CheckpointLoadStatus:
        """Every value-owning object is bound and every checkpoint value was used.

        Returns
        -------
        CheckpointLoadStatus
            This status, for chaining.

        Raises
        ------
        AssertionError
            Listing every unbound program value and every unused checkpoint value, grouped.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0), b=ck.Variable(2.0)).write(tempfile.mkdtemp())
        >>> status = ck.Checkpoint(a=ck.Variable(0.0)).read(path)
        >>> status.assert_consumed()
        Traceback (most recent call last):
        AssertionError: Unresolved object in checkpoint (root).b: 1 checkpoint values were not ...
        >>> status.expect_partial().assert_existing_objects_matched() is status
        True
        """
        if self._coordinator.all_matched(checkpoint_side=True):  # no report to build
            return self
        return self._check(consumed_failure(self.report()))

    def assert_existing_objects_matched(self) -> CheckpointLoadStatus:
        """Every value-owning object that exists now is bound; extra stored values are fine.

        Returns
        -------
        CheckpointLoadStatus
            This status, for chaining.

        Raises
        ------
        AssertionError
            Listing every program value that found nothing in the checkpoint.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
        >>> status = ck.Checkpoint(a=ck.Variable(0.0), b=ck.Variable(0.0)).read(path)
        >>> status.assert_existing_objects_matched()
        Traceback (most recent call last):
        AssertionError: Found 1 Python objects that were not bound to checkpointed values, ...
        """
        if self._coordinator.all_matched(checkpoint_side=False):
            return self
        return self._check(existing_objects_failure(self.report()))

    def assert_nontrivial_match(self) -> CheckpointLoadStatus:
        """Something besides the root matched.

        Returns
        -------
        CheckpointLoadStatus
            This status, for chaining.

        Raises
        ------
        AssertionError
            Nothing but the root was bound (e.g. the checkpoint belongs to another program).

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
        >>> status = ck.Checkpoint(other=ck.Variable(0.0)).read(path).expect_partial()
        >>> status.assert_nontrivial_match()
        Traceback (most recent call last):
        AssertionError: Nothing except the root object matched a checkpointed value. ...
        """
        if self._coordinator.state().bound - {0}:  # what the report's rule asks, without one
            return self
        return self._check(nontrivial_failure(self.report()))

    def expect_partial(self) -> CheckpointLoadStatus:
        """Silence the warning about unused checkpoint values (changes no assertion).

        Without it, a status collected while checkpoint values went unused logs one WARNING
        line per value on the ``ckptlab`` logger (docs/semantics.md S54).

        Returns
        -------
        CheckpointLoadStatus
            This status, for chaining.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0), b=ck.Variable(2.0)).write(tempfile.mkdtemp())
        >>> status = ck.Checkpoint(a=ck.Variable(0.0)).read(path).expect_partial()
        >>> status.report().summary()
        '1 matched, 1 pending'
        """
        self._coordinator.expect_partial = True
        return self

    def run_restore_ops(
        self, session: object = None, *, only: Iterable[str | tuple[str, ...]] | None = None
    ) -> None:
        """Write queued values (lazy mode); ``only`` restores just those subtrees.

        All or nothing: a conflict in what is selected raises :class:`ck.RestoreConflictError`
        and writes nothing.  It writes even values a newer restore has written since (the
        latest assignment wins).  Eagerly there is nothing queued, so it does nothing.

        Parameters
        ----------
        session
            Ignored (TensorFlow's graph-mode session).
        only
            Object-graph paths: ``/``-separated local names as in the keys
            (``"model/dense"``), or tuples of local names as they are (``("model", "a/b")``,
            for names holding ``/`` or ``.``, or empty).  Optimizer slots belong to their
            optimizer (``only=["optimizer"]`` writes them, ``only=["model"]`` does not).

        Raises
        ------
        RestoreConflictError
            A selected value's shape or dtype conflicts; nothing was written.
        UnknownPathError
            A path in ``only`` names nothing in the checkpoint.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0), b=ck.Variable(2.0)).write(tempfile.mkdtemp())
        >>> a, b = ck.Variable(0.0), ck.Variable(0.0)
        >>> status = ck.Checkpoint(a=a, b=b).read(path, lazy=True)
        >>> status.run_restore_ops(only=["a"])
        >>> float(a.numpy()), float(b.numpy())
        (1.0, 0.0)
        """
        self._coordinator.run_queued(only)

    def initialize_or_restore(self, session: object = None) -> None:
        """Run queued restores; variables are initialized at creation, so nothing else runs.

        Parameters
        ----------
        session
            Ignored (TensorFlow's graph-mode session).

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
        >>> a = ck.Variable(0.0)
        >>> ck.Checkpoint(a=a).read(path, lazy=True).initialize_or_restore()
        >>> float(a.numpy())
        1.0
        """
        self._coordinator.run_queued(None)

    def report(self) -> MatchReport:
        """A frozen snapshot of every match state.

        Returns
        -------
        MatchReport
            Every checkpoint value and every program value with its state; later restores do
            not change it.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Checkpoint(a=ck.Variable(1.0)).write(tempfile.mkdtemp() + "/c")
        >>> report = ck.Checkpoint(a=ck.Variable(0.0)).read(path, lazy=True).report()
        >>> [(entry.path, entry.state) for entry in report.entries]
        [('a', 'bound')]
        """
        return self._coordinator.report()

    @property
    def checkpoint_path(self) -> str:
        """The checkpoint this status restores from."""
        return self._coordinator.source.display_path


class InitializationOnlyStatus(_StatusDisplay):
    """Status of ``restore(None)``: nothing is restored (docs/semantics.md S29).

    What ``ckpt.restore(ck.latest_checkpoint(directory))`` returns for a directory without
    checkpoints.  Every assertion and ``run_restore_ops()`` raise ``AssertionError``.

    Parameters
    ----------
    view
        The program (internal; statuses are made by ``Checkpoint.restore``).

    Examples
    --------
    >>> import tempfile
    >>> latest = ck.latest_checkpoint(tempfile.mkdtemp())  # an empty directory: None
    >>> status = ck.Checkpoint(w=ck.Variable(0.0)).restore(latest)
    >>> type(status).__name__, status.report().summary()
    ('InitializationOnlyStatus', '2 missing in checkpoint')
    """

    _MESSAGE = "No checkpoint specified (save_path=None); nothing is being restored."

    def __init__(self, view: Program) -> None:
        self._view = view

    def assert_consumed(self) -> InitializationOnlyStatus:
        """Always fails: there is no checkpoint (so do the other two assertions).

        Returns
        -------
        InitializationOnlyStatus
            Never: it raises.

        Raises
        ------
        AssertionError
            "No checkpoint specified (save_path=None); nothing is being restored."

        Examples
        --------
        >>> ck.Checkpoint().restore(None).assert_nontrivial_match()
        Traceback (most recent call last):
        AssertionError: No checkpoint specified (save_path=None); nothing is being restored.
        """
        raise AssertionError(self._MESSAGE)

    assert_existing_objects_matched = assert_nontrivial_match = assert_consumed

    def expect_partial(self) -> InitializationOnlyStatus:
        """Nothing to silence.

        Returns
        -------
        InitializationOnlyStatus
            This status, for chaining.

        Examples
        --------
        >>> status = ck.Checkpoint().restore(None)
        >>> status.expect_partial() is status
        True
        """
        return self

    def run_restore_ops(self, session: object = None, *, only: Iterable[str] | None = None) -> None:
        """There are no restore ops without a checkpoint: raises, as TensorFlow does.

        Parameters
        ----------
        session, only
            Ignored.

        Raises
        ------
        AssertionError
            Always.

        Examples
        --------
        >>> ck.Checkpoint().restore(None).run_restore_ops()
        Traceback (most recent call last):
        AssertionError: No checkpoint specified, so no restore ops are available ...
        """
        raise AssertionError(
            "No checkpoint specified, so no restore ops are available (save_path=None to "
            "Checkpoint.restore). Pass a path, e.g. ck.latest_checkpoint(directory)."
        )

    def initialize_or_restore(self, session: object = None) -> None:
        """Variables are initialized at creation: nothing to do.

        Parameters
        ----------
        session
            Ignored (TensorFlow's graph-mode session).

        Examples
        --------
        >>> w = ck.Variable(3.0)
        >>> ck.Checkpoint(w=w).restore(None).initialize_or_restore()
        >>> float(w.numpy())
        3.0
        """

    def report(self) -> MatchReport:
        """Every program value is missing from the (absent) checkpoint.

        Returns
        -------
        MatchReport
            Every program value as ``program_only``.

        Examples
        --------
        >>> ck.Checkpoint(w=ck.Variable(0.0)).read(None).report().summary()
        '1 missing in checkpoint'
        """
        program = self._view.walk()
        paths = program.graph.paths()
        entries = tuple(
            ReportEntry(
                path=path.prefix,
                pretty=path.pretty,
                key=program.graph.nodes[i].value_key or "",
                state="program_only",
                program=spec,
                reason="no checkpoint was given",
            )
            for i, (spec, path) in enumerate(zip(program.specs, paths, strict=True))
            if spec is not None and path is not None
        )
        return MatchReport(checkpoint="(none)", entries=entries)


class NameBasedSaverStatus(_StatusDisplay):
    """Status of restoring a name-based checkpoint (``ck.Saver``): variables match by name.

    All three assertions check that every program variable found its name
    (docs/semantics.md S52); checkpoints of other frameworks without an object graph (PyTorch,
    safetensors, TF1) restore this way too.

    Parameters
    ----------
    restore
        The restore's bookkeeping (internal; statuses are made by ``Checkpoint.restore``).
    exempt
        Program variables the assertions ignore (the ``save_counter`` ``restore`` creates).

    Examples
    --------
    >>> import tempfile
    >>> path = ck.Saver([ck.Variable(1.0, name="dense/bias")]).save(tempfile.mkdtemp() + "/c")
    >>> bias = ck.Variable(0.0, name="dense/bias")
    >>> status = ck.Checkpoint(anything=bias).read(path)
    >>> type(status).__name__, float(bias.numpy())
    ('NameBasedSaverStatus', 1.0)
    """

    def __init__(self, restore: NameBasedRestore, exempt: list[Any]) -> None:
        self._restore = restore
        self._exempt = exempt
        restore.status = weakref.ref(self)

    def _check(self) -> NameBasedSaverStatus:
        report = self.report()
        missing = report.missing
        source = self._restore.source.display_path
        problems = self._restore.problems
        if problems:  # lazy restores only: an eager one raised them
            listed = "\n".join(f"  {problem}" for problem in problems)
            raise AssertionError(
                f"Parts of the name-based checkpoint {source} do not fit the program "
                f"({len(problems)}); run_restore_ops() refuses them:\n{listed}"
            )
        if missing:
            listed = "\n".join(f"  {e.pretty}: [{e.key!r}]" for e in missing)
            raise AssertionError(
                f"Some objects had attributes which were not restored ({len(missing)} from the "
                f"name-based checkpoint {source}, which matches by Variable.name):"
                f"{layout_hint(report)}\n{listed}"
            )
        differing = self._restore.differing
        if differing:
            listed = "\n".join(
                f"  {key!r} (restored: {first!r})" for key, first in differing.items()
            )
            raise AssertionError(
                f"The program ties values the name-based checkpoint {source} holds separately, "
                f"with different contents ({len(differing)}); the first name's value was "
                f"restored, these were not:\n{listed}\nUntie the program to load both, or restore "
                "from a checkpoint of the tied program."
            )
        return self

    def assert_consumed(self) -> NameBasedSaverStatus:
        """Every program variable was restored by name (all three assertions check this).

        Returns
        -------
        NameBasedSaverStatus
            This status, for chaining.

        Raises
        ------
        AssertionError
            "Some objects had attributes which were not restored", listing every variable
            whose name the checkpoint lacks.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver([ck.Variable(1.0, name="a")]).save(tempfile.mkdtemp() + "/c")
        >>> status = ck.Checkpoint(a=ck.Variable(0.0, name="a")).read(path)
        >>> status.assert_consumed() is status
        True
        """
        return self._check()

    assert_existing_objects_matched = assert_nontrivial_match = assert_consumed

    def expect_partial(self) -> NameBasedSaverStatus:
        """Name-based restores log no warning; returns the status.

        Returns
        -------
        NameBasedSaverStatus
            This status, for chaining.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver([ck.Variable(1.0, name="a")]).save(tempfile.mkdtemp() + "/c")
        >>> status = ck.Checkpoint(a=ck.Variable(0.0, name="a")).read(path)
        >>> status.expect_partial() is status
        True
        """
        self._restore.expect_partial = True
        return self

    def run_restore_ops(self, session: object = None, *, only: Iterable[str] | None = None) -> None:
        """Write queued values (lazy mode); ``only`` selects variable names.

        Parameters
        ----------
        session
            Ignored (TensorFlow's graph-mode session).
        only
            Variable names (the checkpoint's keys) to restore; ``None``: everything queued.

        Raises
        ------
        RestoreConflictError
            A selected value's shape or dtype conflicts; nothing was written.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver([ck.Variable(1.0, name="a")]).save(tempfile.mkdtemp() + "/c")
        >>> a = ck.Variable(0.0, name="a")
        >>> status = ck.Checkpoint(a=a).read(path, lazy=True)
        >>> status.run_restore_ops(only=["a"])
        >>> float(a.numpy())
        1.0
        """
        self._restore.run_queued(only)

    def initialize_or_restore(self, session: object = None) -> None:
        """Run queued restores (lazy mode).

        Parameters
        ----------
        session
            Ignored (TensorFlow's graph-mode session).

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver([ck.Variable(1.0, name="a")]).save(tempfile.mkdtemp() + "/c")
        >>> a = ck.Variable(0.0, name="a")
        >>> ck.Checkpoint(a=a).read(path, lazy=True).initialize_or_restore()
        >>> float(a.numpy())
        1.0
        """
        self._restore.run_queued(None)

    def report(self) -> MatchReport:
        """Every program variable and stored name, with its state.

        Returns
        -------
        MatchReport
            A frozen snapshot; later restores do not change it.

        Examples
        --------
        >>> import tempfile
        >>> path = ck.Saver([ck.Variable(1.0, name="a")]).save(tempfile.mkdtemp() + "/c")
        >>> ck.Checkpoint(a=ck.Variable(0.0, name="a")).read(path).report().summary()
        '1 matched'
        """
        return self._restore.report(exempt=self._exempt)


RestoreStatus = CheckpointLoadStatus | InitializationOnlyStatus | NameBasedSaverStatus
"""What ``Checkpoint.restore`` and ``Checkpoint.read`` return."""
