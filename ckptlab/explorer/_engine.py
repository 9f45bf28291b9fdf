"""Every call the explorer makes into the restore engine, in one place (internal).

The explorer reads statuses, restore coordinators and live programs only through these
functions, so moving the engine (or adding program adapters) means re-pointing this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ckptlab._checkpoint import Checkpoint
from ckptlab.core import NodePath, ProgramGraph, ValueSpec
from ckptlab.engine import (
    CheckpointLoadStatus,
    InitializationOnlyStatus,
    NameBasedSaverStatus,
    Revision,
    require_adapter,
)
from ckptlab.storage import StoredCheckpoint

STATUS_TYPES = (CheckpointLoadStatus, NameBasedSaverStatus, InitializationOnlyStatus)


def is_status(target: object) -> bool:
    """Whether ``target`` is a status returned by ``restore``/``read``."""
    return isinstance(target, STATUS_TYPES)


def is_name_based(status: Any) -> bool:
    """Whether ``status`` restores a name-based checkpoint (variables matched by name)."""
    return isinstance(status, NameBasedSaverStatus)


def can_restore(status: Any) -> bool:
    """Whether ``run_restore_ops(only=...)`` can write anything (a lazy, real restore)."""
    return not isinstance(status, InitializationOnlyStatus) and bool(status.report().lazy)


def _restore_of(status: Any) -> Any:
    if isinstance(status, CheckpointLoadStatus):
        return status._coordinator
    if isinstance(status, NameBasedSaverStatus):
        return status._restore
    return None


def stored_of(status: Any) -> StoredCheckpoint | None:
    """The opened checkpoint a status restores from (``None`` for ``restore(None)``)."""
    restore = _restore_of(status)
    return None if restore is None else restore.source


def revision_of(status: Any) -> Revision | None:
    """The status's change counter (bumped whenever its restore binds, queues or writes)."""
    restore = _restore_of(status)
    return None if restore is None else restore.revision


def program_of(status: Any) -> Any:
    """The live view of the program a status restores into."""
    restore = _restore_of(status)
    return None if restore is None else restore.view


def walk(checkpoint: Checkpoint) -> ProgramGraph[Any]:
    """The program of a ``ck.Checkpoint`` now: graph, specs and objects."""
    return checkpoint._ck_view().walk()


def walk_view(view: Any) -> ProgramGraph[Any]:
    """A snapshot of a live view (from :func:`program_of`)."""
    result: ProgramGraph[Any] = view.walk()
    return result


def program_values(program: ProgramGraph[Any]) -> dict[str, tuple[Any, ValueSpec]]:
    """Object path prefix -> (value-owning object, spec) of a program snapshot."""
    out: dict[str, tuple[Any, ValueSpec]] = {}
    for node_id, (path, spec) in enumerate(zip(program.graph.paths(), program.specs, strict=True)):
        if path is not None and spec is not None:
            out[path.prefix] = (program.objects[node_id], spec)
    return out


def program_paths(program: ProgramGraph[Any]) -> list[tuple[int, NodePath, ValueSpec]]:
    """(node id, path, spec) of every value in a program snapshot."""
    return [
        (node_id, path, spec)
        for node_id, (path, spec) in enumerate(
            zip(program.graph.paths(), program.specs, strict=True)
        )
        if path is not None and spec is not None
    ]


def value_of(obj: Any) -> np.ndarray[Any, Any]:
    """The current value of a value-owning program object, as numpy (any framework's)."""
    return np.asarray(require_adapter(obj).read(obj))


def listen(status: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` (held weakly) whenever the status's restore changes something."""
    revision = revision_of(status)
    if revision is not None:
        revision.listen(callback)
