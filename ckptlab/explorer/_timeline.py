"""Training runs: a directory of checkpoints as a timeline (internal).

A run is a ``CheckpointManager`` directory (its state file lists the checkpoints, oldest first,
with their times) or any directory of checkpoints ckptlab reads whose names carry a step number
(``checkpoint-500/`` of the Hugging Face trainer with its ``model.safetensors``, ``step_10.pt``,
``ckpt-3``).  A directory the readers take as one checkpoint (a Hugging Face model directory,
sharded or not, a PyTorch DCP directory, an Orbax checkpoint) is no run of its files: its
numbered files are its shards (``model-00001-of-00003.safetensors``, ``__0_0.distcp``), and
when it cannot be opened (a shard missing or linked out of it) that error is raised.  Per
checkpoint the timeline holds its step, time, size, weight norm and update ratio
(``||w_i - w_{i-1}|| / ||w_{i-1}||``), in total and per module (the object holding the values).
Weights are the model's floating-point values: optimizer state (moments, step counters) is
neither read nor counted.

Statistics are computed lazily (when the widget asks), each value read once: the previous
checkpoint's values stay in memory to measure the update.  They are cached in this process,
each checkpoint's under what identifies its content (:func:`_identity`; for a ckptlab
checkpoint the checksum of the very document bytes the statistics were computed from, so a
checkpoint replaced while the timeline is open is never cached as the one it replaced) and each
update under the two checkpoints it compares, so reopening a run is fast and a checkpoint
written again at its path is measured again.  A checkpoint that cannot be read (the newest one
still being written, a damaged one) is marked with the reason and has no statistics; the rest
of the run is measured and compared as usual.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex

import numpy as np

from ckptlab.core import ValueSpec, is_floating
from ckptlab.errors import CkptlabError, InvalidArgumentError, NotACheckpointError
from ckptlab.explorer._compare import Diff, compare_stored
from ckptlab.explorer._sources import DiffSource, checkpoint_values
from ckptlab.explorer._values import difference, squares
from ckptlab.inspect import DTYPE_ITEMSIZE, GraphView, ModuleSeries, TimelineData, TimelinePoint
from ckptlab.storage import (
    ByteStore,
    StoredCheckpoint,
    document_checksum,
    find_checkpoint,
    listed_path,
    open_path,
    read_state,
    resolve,
)

Progress = Callable[[float, str], None]
Pick = int | str | os.PathLike[str]
"""A checkpoint of a run: an index (negative from the newest) or a path (see ``pick``)."""
_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_EXTENSIONS = re.compile(r"(\.(weights|h5|hdf5|keras|pt|pth|bin|safetensors|gguf|json|npz))+\Z")
"""File extensions left out of a step number (``epoch_3.weights.h5`` is step 3, not 5)."""
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
KEEP_BYTES = 1024**3
"""Previous values kept in memory for the update ratio; above this they are read again."""


@dataclass(frozen=True, slots=True)
class RunCheckpoint:
    """One checkpoint of a run: where it is, its step (from its name) and time."""

    path: str
    step: int | None
    time: float | None


@dataclass(slots=True)
class CheckpointStats:
    """What the timeline needs of one checkpoint (cached; computed once)."""

    nbytes: int
    values: int
    squares: dict[str, float]
    """Key -> ``||w||²``."""
    paths: dict[str, tuple[str, ...]]
    """Key -> display path of the model's values (optimizer state is not a weight)."""
    specs: dict[str, ValueSpec]


Identity = tuple[str, tuple[int, ...]]
"""A checkpoint's path and what changes whenever its content does (see :func:`_identity`)."""
_CACHE: dict[Identity, CheckpointStats] = {}
_UPDATES: dict[tuple[Identity, Identity], dict[str, float]] = {}
"""(previous checkpoint, checkpoint) -> key -> ``||w - w_prev||²``."""


def _step(name: str) -> int | None:
    found = _NUMBER.search(_EXTENSIONS.sub("", name))
    return int(found.group(1)) if found else None


def _weights_in(store: ByteStore, folder: str) -> str | None:
    """The checkpoint inside a step folder; ``None`` if it holds none.

    ckptlab's own, a trainer's weights file (``checkpoint-500/model.safetensors``), or the
    folder itself where the readers open it as one checkpoint (a model sharded with its index,
    a DCP or Keras checkpoint).  A folder recognised as a checkpoint but unreadable (a shard
    missing while it is written, damage) is one: the timeline says what is wrong with it.
    """
    if os.path.exists(os.path.join(folder, "zarr.json")):
        return folder
    for name in _WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    try:
        return folder if is_one_checkpoint(store, folder) else None
    except CkptlabError:
        return folder


def find_run(directory: str | os.PathLike[str]) -> list[RunCheckpoint] | None:
    """The checkpoints of a run directory, oldest first; ``None`` when it is not a run.

    A run has at least two checkpoints: listed by a state file, or (local directories) entries
    with a step number in their names that hold a checkpoint.  In a directory that is itself
    one checkpoint (:func:`is_one_checkpoint`) only subdirectories count: its own files are
    parts of that checkpoint, not checkpoints of a run; if it cannot be opened (a shard
    missing or linked out of it), its error is raised, as ``ck.list_variables`` raises it.

    Examples
    --------
    >>> import tempfile
    >>> find_run(tempfile.mkdtemp()) is None
    True
    """
    store, folder = resolve(directory)
    state = read_state(store, folder)
    if state is not None and len(state.all_paths) >= 2:
        stamps = list(state.timestamps) + [None] * len(state.all_paths)
        return [
            RunCheckpoint(
                path=listed_path(store, folder, p),
                step=_step(p),
                time=stamps[i],
            )
            for i, p in enumerate(state.all_paths)
        ]
    if "://" in os.fspath(directory) or not os.path.isdir(folder):
        return None
    files: list[RunCheckpoint] = []
    folders: list[RunCheckpoint] = []
    for name in os.listdir(folder):
        step, full = _step(name), os.path.join(folder, name)
        if step is None or name.endswith((".index", ".json")) or name.startswith("."):
            continue
        inside = os.path.isdir(full)
        target = _weights_in(store, full) if inside else full
        if target is not None:
            found = RunCheckpoint(path=target, step=step, time=os.path.getmtime(target))
            (folders if inside else files).append(found)
    if len(files) + len(folders) >= 2 and files and is_one_checkpoint(store, folder):
        files = []  # its shards; step folders beside them (a trainer's output) still make a run
    run = sorted(files + folders, key=lambda c: (c.step or 0, c.path))
    return run if len(run) >= 2 else None


def is_one_checkpoint(store: ByteStore, folder: str) -> bool:
    """Whether the readers take ``folder`` itself as one checkpoint, as ``ckptlab ls`` does.

    The same question ``ck.list_variables(folder)`` answers, so the explorer and the readers
    agree.  A folder they find nothing in, or refuse as several checkpoints (several weights
    files and no index joining them: a run of ``step_10.pt`` files), is none.

    Raises
    ------
    CkptlabError
        The folder is recognised as one checkpoint but cannot be opened (a shard missing or
        linked out of the folder, a damaged index): the error ``ck.list_variables`` raises.
    """
    try:
        return find_checkpoint(store, folder, progress=False) is not None
    except NotACheckpointError:
        return False


def _identity(path: str) -> Identity | None:
    """What the statistics of checkpoint ``path`` are cached under; ``None``: not cached.

    A ckptlab checkpoint (on any store) is identified by the checksum of its root document,
    which holds every value's checksums: a size check and one read, nothing parsed.  Another
    format's file or folder on disk by its modification time (in nanoseconds) and size;
    anything else (a TensorFlow bundle's prefix, a foreign checkpoint on an object store) by
    nothing.
    """
    try:
        checksum = document_checksum(*resolve(path))
        if checksum is not None:
            return path, (checksum,)
        stat = os.stat(path)
    except (CkptlabError, OSError):
        return None  # opening it says why
    return path, (stat.st_mtime_ns, stat.st_size)


def _nbytes(spec: ValueSpec) -> int:
    return math.prod(d or 0 for d in spec.shape) * DTYPE_ITEMSIZE.get(spec.dtype, 8)


class Timeline:
    """A training run: its checkpoints and (lazily) their statistics."""

    def __init__(self, run: Sequence[RunCheckpoint]) -> None:
        self.run = list(run)
        self._ids = [_identity(c.path) for c in self.run]
        self._stats = [_CACHE.get(i) if i else None for i in self._ids]
        self._updates = [
            _UPDATES.get((a, b)) if a and b else None
            for a, b in zip([None, *self._ids[:-1]], self._ids, strict=True)
        ]
        """Index -> its update from the checkpoint before (key -> ``||w - w_prev||²``)."""
        self._opened: dict[int, StoredCheckpoint] = {}
        self.unreadable: dict[int, CkptlabError] = {}
        """Index -> why that checkpoint cannot be read (found when it was opened or read)."""

    def open(self, index: int) -> StoredCheckpoint:
        """The checkpoint at ``index`` (opened once); an unreadable one raises its error again."""
        if index not in self._opened:
            with self._noting(index):
                self._opened[index] = open_path(self.run[index].path)
        return self._opened[index]

    @contextlib.contextmanager
    def _noting(self, index: int) -> Iterator[None]:
        """Note why checkpoint ``index`` cannot be read when the block fails (and re-raise)."""
        try:
            yield
        except CkptlabError as error:
            self.unreadable.setdefault(index, error)
            raise

    def _measured(self, index: int) -> bool:
        """Whether checkpoint ``index`` has its statistics and (after a readable one) update."""
        before = index - 1
        return self._stats[index] is not None and (
            before < 0 or before in self.unreadable or self._updates[index] is not None
        )

    @property
    def complete(self) -> bool:
        """Whether every readable checkpoint's statistics (and update) are known."""
        return all(i in self.unreadable or self._measured(i) for i in range(len(self.run)))

    def compute(self, progress: Progress | None = None) -> None:
        """Compute what is missing, reading each value once; ``progress(fraction, text)``.

        A checkpoint that fails to open or read is noted in :attr:`unreadable` and skipped.
        """
        previous: dict[str, np.ndarray[Any, Any]] = {}
        previous_index = -1
        total = len(self.run)
        for i, checkpoint in enumerate(self.run):
            if i in self.unreadable or self._measured(i):
                continue
            if progress is not None:
                progress(i / total, f"reading {checkpoint.path} ({i + 1} of {total})")
            if i > 0 and previous_index != i - 1:
                previous = self._weights(i - 1) or {}
            current = self._weights(i)
            if current is None:
                previous, previous_index = {}, -1
                continue
            identity = self._read_identity(i)
            stats = self._stats[i]
            if stats is None or identity != self._ids[i]:  # or replaced since the timeline opened
                stats = self._stats[i] = self._new_stats(i, current)
            if identity is not None:
                _CACHE[identity] = stats
            if i > 0 and i - 1 not in self.unreadable:
                update = self._updates[i] = {
                    key: difference(previous[key], array)[2]
                    for key, array in current.items()
                    if key in previous
                    and previous[key].shape == array.shape
                    and previous[key].dtype == array.dtype
                }
                before = self._read_identity(i - 1)  # read: its values are ``previous``
                if identity is not None and before is not None:
                    _UPDATES[before, identity] = update
            keep = sum(a.nbytes for a in current.values()) <= KEEP_BYTES
            previous, previous_index = (current, i) if keep else ({}, -1)
        if progress is not None:
            progress(1.0, "")

    def _read_identity(self, index: int) -> Identity | None:
        """What the statistics computed from checkpoint ``index`` (opened) are cached under.

        A ckptlab checkpoint's is the checksum of the document bytes it was opened from, not
        the one taken when the timeline opened (:func:`_identity`): replaced in between, its
        statistics are the new bytes' and must never be cached as the old checkpoint's.
        Another format's is the one taken when the timeline opened.
        """
        checksum = self._opened[index].checksum
        return self._ids[index] if checksum is None else (self.run[index].path, (checksum,))

    def _weights(self, index: int) -> dict[str, np.ndarray[Any, Any]] | None:
        """The model's floating-point values of checkpoint ``index`` (not its optimizer's).

        ``None`` when it cannot be opened or read (the reason noted in :attr:`unreadable`).
        """
        if index in self.unreadable:
            return None
        try:
            with self._noting(index):
                stored = self.open(index)
                values = stored.read_many(list(_model_paths(stored)))
        except CkptlabError:
            return None
        return {key: array for key, array in values.items() if _is_weight(array)}

    def verify(self, index: int) -> bool:
        """Whether checkpoint ``index`` opens and every stored value passes its checks.

        Every value is read; when one fails, the reason is noted in :attr:`unreadable`.
        """
        try:
            with self._noting(index):
                stored = self.open(index)
                stored.open_values().verify(stored.specs())
        except CkptlabError:
            return False
        return True

    def _new_stats(self, index: int, current: dict[str, np.ndarray[Any, Any]]) -> CheckpointStats:
        stored = self.open(index)
        return CheckpointStats(
            nbytes=sum(_nbytes(s) for s in stored.specs().values()),
            values=len(stored.specs()),
            squares={k: squares(v) for k, v in current.items()},
            paths=_model_paths(stored),
            specs=dict(stored.specs()),
        )

    def data(self, a: int, b: int) -> TimelineData:
        """The points and per-module series (computing what is missing first)."""
        self.compute()
        stats = [None if i in self.unreadable else s for i, s in enumerate(self._stats)]
        points: list[TimelinePoint] = []
        for i, (checkpoint, s) in enumerate(zip(self.run, stats, strict=True)):
            update, base = self._update(i, stats)
            points.append(
                {
                    "path": checkpoint.path,
                    "step": checkpoint.step,
                    "time": checkpoint.time,
                    "nbytes": s.nbytes if s else None,
                    "values": s.values if s else None,
                    "weight_norm": math.sqrt(sum(s.squares.values())) if s else None,
                    "update_ratio": _ratio(update, base) if update is not None else None,
                    "error": str(self.unreadable[i]) if i in self.unreadable else None,
                }
            )
        return {"points": points, "modules": self._modules(stats), "a": a, "b": b}

    def _update(
        self, index: int, stats: list[CheckpointStats | None]
    ) -> tuple[dict[str, float] | None, dict[str, float]]:
        """Checkpoint ``index``'s squared updates and its predecessor's squares.

        ``None, {}`` for the first, an unreadable one, and one after an unreadable one.
        """
        now, before = stats[index], stats[index - 1] if index else None
        if now is None or before is None:
            return None, {}
        return self._updates[index], before.squares

    def _modules(self, stats: list[CheckpointStats | None]) -> list[ModuleSeries]:
        modules: dict[str, list[str]] = {}
        newest = next((s for s in reversed(stats) if s is not None), None)
        for key, path in newest.paths.items() if newest else ():
            modules.setdefault("/".join(path[:-1]), []).append(key)
        out: list[ModuleSeries] = []
        for module, keys in modules.items():
            norms: list[float | None] = []
            ratios: list[float | None] = []
            for i, s in enumerate(stats):
                present = [s.squares[k] for k in keys if k in s.squares] if s else []
                norms.append(math.sqrt(sum(present)) if present else None)
                update, base = self._update(i, stats)
                mine = {k: update[k] for k in keys if k in update} if update else {}
                ratios.append(_ratio(mine, base) if mine else None)
            if any(n is not None for n in norms):
                out.append({"module": module, "weight_norm": norms, "update_ratio": ratios})
        out.sort(key=lambda m: -(m["update_ratio"][-1] or 0.0))
        return out

    def rows(self, *, modules: bool = False) -> list[dict[str, Any]]:
        """The timeline as rows: one per checkpoint, or per (checkpoint, module)."""
        data = self.data(0, len(self.run) - 1)
        if not modules:
            return [dict(p) for p in data["points"]]
        return [
            {
                "step": point["step"],
                "path": point["path"],
                "module": series["module"],
                "weight_norm": series["weight_norm"][i],
                "update_ratio": series["update_ratio"][i],
            }
            for series in data["modules"]
            for i, point in enumerate(data["points"])
        ]


def _model_paths(stored: StoredCheckpoint) -> dict[str, tuple[str, ...]]:
    """Key -> display path of every value that is not an optimizer's (slots, step counters)."""
    return {v.key: v.path for v in checkpoint_values(stored) if not v.optimizer}


def _is_weight(array: np.ndarray[Any, Any]) -> bool:
    """Floating-point values are weights; counters and other integers are not measured."""
    return is_floating(array.dtype.name)


def _ratio(update: dict[str, float], base: dict[str, float]) -> float:
    delta = sum(update.values())
    norm = sum(base.get(k, 0.0) for k in update)
    if delta == 0:
        return 0.0
    return math.inf if norm == 0 else math.sqrt(delta / norm)


class TimelineSource(DiffSource):
    """An explorer over a training run: a timeline, and the comparison of two of its checkpoints."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.a_index, self.b_index = 0, 0
        self._pick_readable()

    def _pick_readable(self) -> None:
        """Compare the oldest and the newest checkpoint that can be read.

        One that fails to open, or whose values fail their checks, is marked unreadable in the
        timeline and the next one is tried; when none can be read, the newest's error is raised.
        """
        timeline, count = self.timeline, len(self.timeline.run)
        while readable := [i for i in range(count) if i not in timeline.unreadable]:
            a, b = readable[0], readable[-1]
            try:
                self._pick(a, b)
                return
            except CkptlabError:
                if a in timeline.unreadable or b in timeline.unreadable:
                    continue  # did not open; noted
                if timeline.verify(b) and timeline.verify(a):
                    raise  # neither fails alone: not a damaged checkpoint
        raise timeline.unreadable[count - 1]

    def _pick(self, a: int, b: int) -> None:
        left, right = self.timeline.open(a), self.timeline.open(b)
        result: Diff = compare_stored(left, right)
        self.a_index, self.b_index = a, b
        super().__init__(result, left, right)

    def pick(self, a: Pick, b: Pick) -> GraphView:
        """Compare checkpoints ``a`` and ``b`` of the run from now on.

        Each is an index into the run, oldest first (``-1`` is the newest, as Python counts),
        or a checkpoint's path as the timeline shows it (``timeline_table()["path"]``), or its
        last components (``ckpt-10``, ``checkpoint-500/model.safetensors``).

        Raises
        ------
        InvalidArgumentError
            ``a`` or ``b`` is no checkpoint of the run (the message names the valid ones).
        CkptlabError
            The error of an unreadable checkpoint (what the timeline marks).

        Either way nothing changes.
        """
        run = [c.path for c in self.timeline.run]
        self._pick(run_index(run, a, "a"), run_index(run, b, "b"))
        return self.view()

    def timeline_data(self, progress: Progress | None = None) -> TimelineData:
        """The run's points and per-module series (computed lazily, with progress)."""
        self.timeline.compute(progress)
        return self.timeline.data(self.a_index, self.b_index)


def run_index(run: Sequence[str], which: object, argument: str) -> int:
    """The index of checkpoint ``which`` in ``run`` (its paths, oldest first).

    Examples
    --------
    >>> run = ["/runs/ckpt-1", "/runs/ckpt-2", "/runs/ckpt-3"]
    >>> run_index(run, -1, "b"), run_index(run, "ckpt-2", "a"), run_index(run, "/runs/ckpt-1", "a")
    (2, 1, 0)
    >>> run_index(run, 7, "b")
    Traceback (most recent call last):
    ...
    ckptlab.errors.InvalidArgumentError: pick(): b=7 is not a checkpoint of this run of 3: ...
    """
    count, what = len(run), repr(which)
    given = os.fspath(which) if isinstance(which, str | os.PathLike) else None
    if isinstance(given, str) and given:
        exact = _comparable(given)
        relative = "://" not in given and not os.path.isabs(given)
        tail = "/" + os.path.normpath(given) if relative else None
        found = [
            i
            for i, path in enumerate(map(_comparable, run))
            if path == exact or (tail is not None and path.endswith(tail))
        ]
        if len(found) == 1:
            return found[0]
        if found:
            what = f"{which!r} (it names {len(found)} of them)"
    elif (
        isinstance(which, SupportsIndex)
        and not isinstance(which, bool | np.bool_)
        and -count <= operator.index(which) < count
    ):
        return operator.index(which) % count
    ends = [repr(p) for p in run] if count <= 4 else [repr(run[0]), "...", repr(run[-1])]
    shown = ", ".join(ends)
    raise InvalidArgumentError(
        f"pick(): {argument}={what} is not a checkpoint of this run of {count}: pass an index "
        f"from 0 (the oldest) to {count - 1}, or from -{count} to -1 (-1 is the newest), or a "
        f"checkpoint's path as the timeline shows it or its last part ({shown}; all in "
        'w.timeline_table()["path"]).'
    )


def _comparable(path: str) -> str:
    """``path`` as :func:`run_index` compares it: local paths absolute, without trailing '/'."""
    if "://" in path:
        return path.rstrip("/")
    return os.path.normpath(path) if os.path.isabs(path) else os.path.abspath(path)
