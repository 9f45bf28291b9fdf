"""``ck.explore``: the explorer widget for a status, a checkpoint, a program, a diff or a run."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ckptlab._checkpoint import Checkpoint, takes_keyword
from ckptlab.core import gc_paused
from ckptlab.errors import InvalidArgumentError
from ckptlab.explorer import _engine
from ckptlab.explorer._compare import compare_stored
from ckptlab.explorer._sources import CheckpointSource, DiffSource, ProgramSource, StatusSource
from ckptlab.explorer._timeline import Timeline, TimelineSource, find_run
from ckptlab.storage import open_path, resolve_path

if TYPE_CHECKING:  # the widget needs the widgets extra; imported when one is made
    from ckptlab.widgets import ExplorerWidget


def _is_path(target: object) -> bool:
    return isinstance(target, str | os.PathLike)


def _paired(status: Any) -> int:
    report = status.report()
    return len(report.matched) + len(report.conflicts)


def _lazy_status(program: Any, path: str) -> Any:
    """``program`` read lazily from ``path``, the program placed where it matches best.

    A ``ck.Checkpoint`` is used as it is.  Any other program object (a torch model) is tried
    as the root, and, when that pairs nothing with an object-based checkpoint, under each of
    the checkpoint's top-level names: ``ck.explore("runs/ckpt-3", program=model)`` finds the
    model saved by ``ck.Checkpoint(model=model, optimizer=...)``.
    """
    if isinstance(program, Checkpoint):
        status = program.read(path, lazy=True)  # parses the document once
        status.expect_partial()
        return status
    best = Checkpoint(root=program).read(path, lazy=True)
    best.expect_partial()
    stored = _engine.stored_of(best)
    graph = stored.document.graph if stored is not None else None
    if _paired(best) or graph is None:
        return best
    for name in filter(takes_keyword, graph.nodes[0].children):  # not save_counter
        candidate = Checkpoint(**{name: program}).read(path, lazy=True)
        candidate.expect_partial()
        if _paired(candidate) > _paired(best):
            best = candidate
    return best


def source_for(target: Any, program: Any = None, compare: Any = None) -> Any:
    """The explorer source for ``target`` (see :func:`explore`)."""
    if compare is not None:
        if not (_is_path(target) and _is_path(compare)):
            raise InvalidArgumentError(
                "ck.explore(a, compare=b) compares two checkpoints: pass two paths (or "
                f"directories); got {type(target).__name__} and {type(compare).__name__}."
            )
        left, right = open_path(target), open_path(compare)
        return DiffSource(compare_stored(left, right), left, right)
    if _engine.is_status(target):
        return StatusSource(target)
    if isinstance(target, Checkpoint):
        return ProgramSource(target)
    if _is_path(target):
        if program is not None:
            store, key = resolve_path(target)  # a directory: its latest checkpoint (no parsing)
            return StatusSource(_lazy_status(program, store.display(key)))
        run = find_run(target)
        if run is not None:
            return TimelineSource(Timeline(run))
        return CheckpointSource(open_path(target))
    raise InvalidArgumentError(
        f"ck.explore() takes a checkpoint path or directory, a ck.Checkpoint, or a restore status; "
        f"got {type(target).__name__}. For a restore you can debug, use "
        "ck.explore(ck.Checkpoint(model=model).restore(path, lazy=True))."
    )


def explore(target: Any, *, program: Any = None, compare: Any = None) -> ExplorerWidget:
    """An interactive explorer widget of a checkpoint, a program, a comparison, or a training run.

    Parameters
    ----------
    target
        A checkpoint path; a directory (a training run with two or more checkpoints shows as a
        timeline, otherwise its latest checkpoint; a directory that is itself one checkpoint,
        such as a sharded Hugging Face model, opens as it, as ``ck.list_variables`` does); a
        :class:`ck.Checkpoint` (its program: what
        ``save()`` would write); or a status from ``restore``/``read``, whose colours follow
        later restores.  With ``restore(path, lazy=True)`` "Restore selected" writes chosen
        subgraphs.
    program
        With a path: a ``Checkpoint``, or any program object (a torch model), to compare
        against, read lazily: nothing is written until "Restore selected".  A bare model is
        placed where it matches, as the root or under the checkpoint's top-level name.
    compare
        With a path: a second checkpoint; the graph is coloured by how each value changed
        (as ``ck.diff(target, compare).widget()``).

    Returns
    -------
    ckptlab.widgets.ExplorerWidget
        Displays as the interactive graph; outside widget front ends as an HTML table.

    Examples
    --------
    >>> import ckptlab as ck, tempfile, os
    >>> path = ck.Checkpoint(w=ck.Variable([1.0])).write(os.path.join(tempfile.mkdtemp(), "c"))
    >>> ck.explore(path).summary
    '1 values, 8 B'
    """
    try:
        from ckptlab.widgets import ExplorerWidget
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            f"ck.explore needs the widget extras ({error}); pip install 'ckptlab[widgets]'. "
            "Without them, status.report() and ck.diff(a, b) give the same information as data."
        ) from error
    with gc_paused():  # opening and laying out 100,000 values builds millions of small objects
        return ExplorerWidget(source_for(target, program, compare))
