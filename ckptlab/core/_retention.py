"""Retention and save-interval rules of ``CheckpointManager`` (internal, pure).

Data in, data out: the manager keeps a :class:`RetentionState`, asks :func:`record_save` for the
state after a save, and :func:`sweep` for what to delete and what to preserve.  Nothing here
reads a clock or touches a file; timestamps are plain seconds (docs/semantics.md S83-S88).
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Collection
from dataclasses import dataclass

from ckptlab.core._statefile import CheckpointState
from ckptlab.errors import InvalidArgumentError

HOUR = 3600.0
"""Seconds per hour (``keep_checkpoint_every_n_hours`` is in hours)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """How many checkpoints to keep, and how often to preserve one for good.

    Examples
    --------
    >>> RetentionPolicy(max_to_keep=3).max_to_keep
    3
    """

    max_to_keep: int | None
    """Active checkpoints to keep; ``None`` keeps everything."""
    keep_every_n_hours: float | None = None
    """Preserve an evicted checkpoint at most once per this many hours (``None``: never)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionState:
    """The managed checkpoints, oldest first, with their timestamps.

    Examples
    --------
    >>> RetentionState(active=(("ckpt-1", 10.0),), last_preserved=9.0).paths
    ('ckpt-1',)
    """

    active: tuple[tuple[str, float], ...]
    """``(path, timestamp)`` pairs, oldest first."""
    last_preserved: float
    """Timestamp of the last checkpoint preserved by ``keep_every_n_hours``."""

    @property
    def paths(self) -> tuple[str, ...]:
        """The active paths, oldest first."""
        return tuple(path for path, _ in self.active)

    @property
    def timestamps(self) -> tuple[float, ...]:
        """The active timestamps, oldest first."""
        return tuple(stamp for _, stamp in self.active)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep:
    """The outcome of a sweep: the new state, what to delete, what was preserved."""

    state: RetentionState
    delete: tuple[str, ...]
    """Evicted paths whose checkpoints must be deleted, oldest first."""
    preserve: tuple[str, ...]
    """Evicted paths kept on disk (``keep_every_n_hours``) but no longer managed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """What a manager recovers from a directory's state file (docs/semantics.md S83)."""

    latest: str | None
    state: RetentionState
    clock_went_back: float = 0.0
    """Seconds the clock is behind the stored last-preserved time (0 when it is not)."""


def validate_policy(max_to_keep: object, keep_every_n_hours: object) -> RetentionPolicy:
    """Check the constructor arguments with TF's wording (docs/semantics.md S82).

    ``max_to_keep`` is ``None`` or a positive integer (a Python or numpy integer, not a bool);
    ``keep_every_n_hours`` is ``None`` or a non-negative number (0 disables it, as in TF).

    Raises
    ------
    InvalidArgumentError
        Either is something else (a ``ValueError`` and a ``TypeError``).

    Examples
    --------
    >>> validate_policy(0, None)
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: Expected a positive integer ... got 0 (int). ...
    >>> validate_policy(3, 0).keep_every_n_hours is None
    True
    """
    if max_to_keep is not None:
        max_to_keep = positive_int(max_to_keep, "max_to_keep", "keeps every checkpoint")
    hours = keep_every_n_hours
    if hours is None:
        return RetentionPolicy(max_to_keep=max_to_keep)
    if not isinstance(hours, bool) and isinstance(hours, numbers.Real) and float(hours) >= 0:
        return RetentionPolicy(max_to_keep=max_to_keep, keep_every_n_hours=float(hours) or None)
    raise InvalidArgumentError(
        "Expected a non-negative number of hours or `None` for "
        f"`keep_checkpoint_every_n_hours`, got {hours!r} ({type(hours).__name__}). Pass "
        "e.g. keep_checkpoint_every_n_hours=2.5, or None (or 0) to preserve nothing."
    )


def positive_int(value: object, name: str, none_means: str) -> int:
    """``value`` as an int when it is a positive integer (Python or numpy, not a bool).

    Examples
    --------
    >>> positive_int(5, "checkpoint_interval", "saves at every call")
    5
    >>> positive_int(0.5, "checkpoint_interval", "saves at every call")
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: Expected a positive integer ... got 0.5 (float). ...
    """
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number <= 0:
        raise InvalidArgumentError(
            f"Expected a positive integer or `None` for `{name}`, got {value!r} "
            f"({type(value).__name__}). Pass a whole number of at least 1, e.g. {name}=3; "
            f"None {none_means}."
        )
    return number


def recover(saved: CheckpointState | None, now: float) -> Recovery:
    """Compute the manager's starting state from a parsed state file (``None``: none).

    Without a state file the last-preserved time is ``now - 1`` (docs/semantics.md S87).  Entries
    whose timestamp is not after the last-preserved time are not managed (TF: checkpoints listed
    without timestamps, e.g. by ``Checkpoint.save``, are never deleted by a manager).
    Timestamps in the future are clamped to ``now``.

    Examples
    --------
    >>> state = CheckpointState(latest="b", all_paths=("a", "b"), timestamps=(5.0, 6.0),
    ...                         last_preserved=1.0)
    >>> recover(state, now=10.0).state.paths
    ('a', 'b')
    >>> recover(None, now=10.0).state.last_preserved
    9.0
    """
    if saved is None:
        return Recovery(latest=None, state=RetentionState(active=(), last_preserved=now - 1.0))
    preserved = saved.last_preserved if saved.last_preserved is not None else 0.0
    behind = max(0.0, preserved - now)
    preserved = min(preserved, now)
    stamps = saved.timestamps or (preserved,) * len(saved.all_paths)
    active: dict[str, float] = {}
    for path, stamp in zip(saved.all_paths, stamps, strict=False):
        stamp = min(stamp, now)
        if stamp > preserved:
            active.pop(path, None)
            active[path] = stamp
    state = RetentionState(active=tuple(active.items()), last_preserved=preserved)
    return Recovery(latest=saved.latest, state=state, clock_went_back=behind)


def record_save(state: RetentionState, path: str, timestamp: float) -> RetentionState:
    """Record a save of ``path``: it becomes the newest entry (docs/semantics.md S86).

    Examples
    --------
    >>> s = RetentionState(active=(("a", 1.0), ("b", 2.0)), last_preserved=0.0)
    >>> record_save(s, "a", 3.0).paths
    ('b', 'a')
    """
    kept = tuple(entry for entry in state.active if entry[0] != path)
    return RetentionState(active=(*kept, (path, timestamp)), last_preserved=state.last_preserved)


def merge(mine: RetentionState, theirs: RetentionState, present: Collection[str]) -> RetentionState:
    """Combine a manager's list with the one the state file holds now (another manager saved).

    Every entry of ``theirs`` stays.  An entry only ``mine`` has stays when it is ``present``
    (still on disk: e.g. a ``Checkpoint.save`` replaced the state file) and newer than the later
    of the two last-preserved times (an older one was preserved by the other manager and is no
    longer managed; a deleted one is not present).  Oldest first, by timestamp.

    Examples
    --------
    >>> mine = RetentionState(active=(("ckpt-1", 1.0), ("ckpt-2", 2.0)), last_preserved=0.0)
    >>> theirs = RetentionState(active=(("ckpt-2", 2.0), ("ckpt-3", 3.0)), last_preserved=0.0)
    >>> merge(mine, theirs, present={"ckpt-1"}).paths
    ('ckpt-1', 'ckpt-2', 'ckpt-3')
    >>> merge(mine, theirs, present=()).paths
    ('ckpt-2', 'ckpt-3')
    """
    preserved = max(mine.last_preserved, theirs.last_preserved)
    listed = {path for path, _ in theirs.active}
    extra = [
        (path, stamp)
        for path, stamp in mine.active
        if path not in listed and path in present and stamp > preserved
    ]
    entries = sorted([*theirs.active, *extra], key=lambda entry: entry[1])
    return RetentionState(active=tuple(entries), last_preserved=preserved)


def sweep(state: RetentionState, policy: RetentionPolicy) -> Sweep:
    """Evict the oldest entries beyond ``max_to_keep`` (docs/semantics.md S85, S87).

    An evicted entry is preserved (kept on disk, no longer managed) when its timestamp is at
    least ``keep_every_n_hours`` after the last preserved one, which then moves to it.

    Examples
    --------
    >>> s = RetentionState(active=(("a", 1.0), ("b", 2.0), ("c", 3.0)), last_preserved=0.0)
    >>> result = sweep(s, RetentionPolicy(max_to_keep=2))
    >>> result.delete, result.state.paths
    (('a',), ('b', 'c'))
    """
    if policy.max_to_keep is None:
        return Sweep(state=state, delete=(), preserve=())
    excess = max(0, len(state.active) - policy.max_to_keep)
    preserved = state.last_preserved
    delete: list[str] = []
    keep: list[str] = []
    for path, stamp in state.active[:excess]:
        hours = policy.keep_every_n_hours
        if hours is not None and stamp - hours * HOUR >= preserved:
            preserved = stamp
            keep.append(path)
        else:
            delete.append(path)
    remaining = RetentionState(active=state.active[excess:], last_preserved=preserved)
    return Sweep(state=remaining, delete=tuple(delete), preserve=tuple(keep))


def interval_allows(
    last_step: int | None, step: int, interval: int | None, *, check_interval: bool
) -> bool:
    """Whether a save at ``step`` happens under ``checkpoint_interval`` (docs/semantics.md S88).

    The first save always happens; a second save at the same step never does; otherwise the
    step must have advanced by ``interval`` unless ``check_interval`` is false.

    Examples
    --------
    >>> [interval_allows(0, s, 5, check_interval=True) for s in (0, 4, 5)]
    [False, False, True]
    """
    if interval is None or last_step is None:
        return True
    if step == last_step:
        return False
    return not check_interval or step >= last_step + interval
