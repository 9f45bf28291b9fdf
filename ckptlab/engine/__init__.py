"""The restore engine: live programs of any framework, restores, statuses (internal package).

``Program`` walks a live program through per-framework adapters (``Adapter``, the seam a new
framework implements: docs/frameworks.md); the coordinators match a checkpoint against it and
plan (with :mod:`ckptlab.core`), check, fetch (with :mod:`ckptlab.storage`) and write through
the executor, the only code that mutates user objects; the statuses are what ``restore``
returns.  The public classes (``ck.Trackable``, the statuses) are re-exported by ``ckptlab``.
"""

from ckptlab.engine._adapter import Adapter, adapter_for, is_trackable, require_adapter
from ckptlab.engine._by_name import NameBasedRestore, value_names
from ckptlab.engine._coordinator import RestoreCoordinator, Revision, conflict_error
from ckptlab.engine._execute import (
    Commit,
    Restorer,
    arm_deferral,
    create_slot,
    next_uid,
    on_attach,
    on_attach_all,
    values_for_creation,
    waiting_names,
    write_value,
)
from ckptlab.engine._native import Trackable, register_trackable
from ckptlab.engine._program import Program, check_saveable, program_values
from ckptlab.engine._status import (
    CheckpointLoadStatus,
    InitializationOnlyStatus,
    NameBasedSaverStatus,
    RestoreStatus,
)

__all__ = [
    "Adapter",
    "CheckpointLoadStatus",
    "Commit",
    "InitializationOnlyStatus",
    "NameBasedRestore",
    "NameBasedSaverStatus",
    "Program",
    "RestoreCoordinator",
    "Revision",
    "RestoreStatus",
    "Restorer",
    "Trackable",
    "adapter_for",
    "arm_deferral",
    "check_saveable",
    "conflict_error",
    "create_slot",
    "is_trackable",
    "next_uid",
    "on_attach",
    "on_attach_all",
    "program_values",
    "register_trackable",
    "require_adapter",
    "value_names",
    "values_for_creation",
    "waiting_names",
    "write_value",
]
