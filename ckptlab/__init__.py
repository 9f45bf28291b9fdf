"""ckptlab: object-based checkpoints with TensorFlow's semantics, stored as Zarr v3.

Examples
--------
>>> import ckptlab as ck
>>> ckpt = ck.Checkpoint(step=ck.Variable(0))
>>> sorted(ck.__all__)[:3]
['AssignmentError', 'Checkpoint', 'CheckpointLoadStatus']
"""

from ckptlab import layers, optimizers
from ckptlab._async import SaveHandle
from ckptlab._checkpoint import Checkpoint
from ckptlab._manager import CheckpointManager
from ckptlab._reader import CheckpointReader, list_variables, load_checkpoint
from ckptlab._saver import Saver
from ckptlab._status import CheckpointLoadStatus, InitializationOnlyStatus, NameBasedSaverStatus
from ckptlab._trackable import (
    Module,
    NotSaveableError,
    Trackable,
    TrackedDict,
    TrackedList,
    TrackedTuple,
    Variable,
    register_trackable,
)
from ckptlab._version import __version__
from ckptlab.core import MatchReport, ReportEntry
from ckptlab.errors import (
    AssignmentError,
    CkptlabError,
    CorruptCheckpointError,
    LockedError,
    NotFoundError,
    RestoreConflictError,
    UnknownPathError,
    UnsupportedFormatError,
)
from ckptlab.storage import WriteOptions, latest_checkpoint

__all__ = [
    "AssignmentError",
    "Checkpoint",
    "CheckpointLoadStatus",
    "CheckpointManager",
    "CheckpointReader",
    "CkptlabError",
    "CorruptCheckpointError",
    "InitializationOnlyStatus",
    "LockedError",
    "MatchReport",
    "Module",
    "NameBasedSaverStatus",
    "NotFoundError",
    "NotSaveableError",
    "ReportEntry",
    "RestoreConflictError",
    "SaveHandle",
    "Saver",
    "Trackable",
    "TrackedDict",
    "TrackedList",
    "TrackedTuple",
    "UnknownPathError",
    "UnsupportedFormatError",
    "Variable",
    "WriteOptions",
    "__version__",
    "latest_checkpoint",
    "layers",
    "list_variables",
    "load_checkpoint",
    "optimizers",
    "register_trackable",
]
