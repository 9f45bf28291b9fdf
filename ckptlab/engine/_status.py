"""Restore statuses: what ``restore``/``read`` return (public classes, re-exported).

Assertions are live: each call re-walks the program (docs/semantics.md S45).  Every status also
offers ``report()``, a frozen snapshot of every match state, which the explorer draws.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ckptlab.core import (
    MatchReport,
    ReportEntry,
    consumed_failure,
    existing_objects_failure,
    nontrivial_failure,
)
from ckptlab.engine._by_name import NameBasedRestore
from ckptlab.engine._coordinator import RestoreCoordinator
from ckptlab.engine._program import Program

__all__ = ["CheckpointLoadStatus", "InitializationOnlyStatus", "NameBasedSaverStatus"]

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
    """Status of restoring an object-based checkpoint.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable(1.0)).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> status = ck.Checkpoint(w=ck.Variable(0.0)).read(path)
    >>> status.assert_consumed() is status
    True
    """

    def __init__(self, coordinator: RestoreCoordinator) -> None:
        self._coordinator = coordinator

    def _check(self, message: str | None) -> CheckpointLoadStatus:
        if message is not None:
            raise AssertionError(message)
        return self

    def assert_consumed(self) -> CheckpointLoadStatus:
        """Every value-owning object is bound and every checkpoint value was used."""
        return self._check(consumed_failure(self.report()))

    def assert_existing_objects_matched(self) -> CheckpointLoadStatus:
        """Every value-owning object that exists now is bound; extra stored values are fine."""
        return self._check(existing_objects_failure(self.report()))

    def assert_nontrivial_match(self) -> CheckpointLoadStatus:
        """Something besides the root matched."""
        return self._check(nontrivial_failure(self.report()))

    def expect_partial(self) -> CheckpointLoadStatus:
        """Silence the warning about unused checkpoint values (changes no assertion)."""
        self._coordinator.expect_partial = True
        return self

    def run_restore_ops(self, session: object = None, *, only: Iterable[str] | None = None) -> None:
        """Write queued values (lazy mode); ``only`` restores just those subtrees.

        Paths are ``/``-separated local names as in the keys (``"model/dense"``).  Optimizer
        slots belong to their optimizer (``only=["optimizer"]`` writes them, ``only=["model"]``
        does not).  All or nothing: a conflict in what is selected raises
        :class:`ck.RestoreConflictError` and writes nothing.  It writes even values a newer
        restore has written since (the latest assignment wins).  Eagerly there is nothing
        queued, so it does nothing.
        """
        self._coordinator.run_queued(only)

    def initialize_or_restore(self, session: object = None) -> None:
        """Run queued restores; variables are initialized at creation, so nothing else runs."""
        self._coordinator.run_queued(None)

    def report(self) -> MatchReport:
        """A frozen snapshot of every match state (see :class:`ck.MatchReport`)."""
        return self._coordinator.report()

    @property
    def checkpoint_path(self) -> str:
        """The checkpoint this status restores from."""
        return self._coordinator.source.display_path


class InitializationOnlyStatus(_StatusDisplay):
    """Status of ``restore(None)``: nothing is restored (docs/semantics.md S29)."""

    _MESSAGE = "No checkpoint specified (save_path=None); nothing is being restored."

    def __init__(self, view: Program) -> None:
        self._view = view

    def assert_consumed(self) -> InitializationOnlyStatus:
        """Always fails: there is no checkpoint."""
        raise AssertionError(self._MESSAGE)

    def assert_existing_objects_matched(self) -> InitializationOnlyStatus:
        """Always fails: there is no checkpoint."""
        raise AssertionError(self._MESSAGE)

    def assert_nontrivial_match(self) -> InitializationOnlyStatus:
        """Always fails: there is no checkpoint."""
        raise AssertionError(self._MESSAGE)

    def expect_partial(self) -> InitializationOnlyStatus:
        """Nothing to silence."""
        return self

    def run_restore_ops(self, session: object = None, *, only: Iterable[str] | None = None) -> None:
        """There are no restore ops without a checkpoint."""
        raise AssertionError(
            "No checkpoint specified, so no restore ops are available (save_path=None to "
            "Checkpoint.restore). Pass a path, e.g. ck.latest_checkpoint(directory)."
        )

    def initialize_or_restore(self, session: object = None) -> None:
        """Variables are initialized at creation: nothing to do."""

    def report(self) -> MatchReport:
        """Every program value is missing from the (absent) checkpoint."""
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

    All three assertions check that every program variable found its name (docs/semantics.md S52).
    """

    def __init__(self, restore: NameBasedRestore, exempt: list[Any]) -> None:
        self._restore = restore
        self._exempt = exempt

    def _check(self) -> NameBasedSaverStatus:
        missing = self.report().missing
        if missing:
            listed = "\n".join(f"  {e.pretty}: [{e.key!r}]" for e in missing)
            raise AssertionError(
                f"Some objects had attributes which were not restored ({len(missing)} from the "
                f"name-based checkpoint {self._restore.source.display_path}, which matches by "
                f"Variable.name):\n{listed}"
            )
        return self

    def assert_consumed(self) -> NameBasedSaverStatus:
        """Every program variable was restored by name."""
        return self._check()

    def assert_existing_objects_matched(self) -> NameBasedSaverStatus:
        """Same check as :meth:`assert_consumed` for name-based checkpoints."""
        return self._check()

    def assert_nontrivial_match(self) -> NameBasedSaverStatus:
        """Same check as :meth:`assert_consumed` for name-based checkpoints."""
        return self._check()

    def expect_partial(self) -> NameBasedSaverStatus:
        """Name-based restores log no warning; returns the status."""
        self._restore.expect_partial = True
        return self

    def run_restore_ops(self, session: object = None, *, only: Iterable[str] | None = None) -> None:
        """Write queued values (lazy mode); ``only`` selects variable names."""
        self._restore.run_queued(only)

    def initialize_or_restore(self, session: object = None) -> None:
        """Run queued restores."""
        self._restore.run_queued(None)

    def report(self) -> MatchReport:
        """Every program variable and stored name, with its state."""
        return self._restore.report(exempt=self._exempt)
