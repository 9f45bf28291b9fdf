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
from ckptlab._convert import convert
from ckptlab._keymap import KeyMap
from ckptlab._manager import CheckpointManager
from ckptlab._module import Module, TrackedDict, TrackedList, TrackedTuple
from ckptlab._reader import CheckpointReader, list_variables, load_checkpoint
from ckptlab._saver import Saver
from ckptlab._variable import Variable
from ckptlab._version import __version__
from ckptlab.core import MatchReport, NearMiss, ReportEntry, near_misses
from ckptlab.engine import (
    CheckpointLoadStatus,
    InitializationOnlyStatus,
    NameBasedSaverStatus,
    Trackable,
    register_trackable,
)
from ckptlab.errors import (
    AssignmentError,
    CkptlabError,
    CorruptCheckpointError,
    LockedError,
    MissingDependencyError,
    NotFoundError,
    NotSaveableError,
    RestoreConflictError,
    UnknownPathError,
    UnsafePickleError,
    UnsupportedFormatError,
)
from ckptlab.explorer import diff, explore
from ckptlab.storage import ReadOptions, WriteOptions, latest_checkpoint

__all__ = [
    "AssignmentError",
    "Checkpoint",
    "CheckpointLoadStatus",
    "CheckpointManager",
    "CheckpointReader",
    "CkptlabError",
    "CorruptCheckpointError",
    "InitializationOnlyStatus",
    "KeyMap",
    "LockedError",
    "MissingDependencyError",
    "MatchReport",
    "Module",
    "NameBasedSaverStatus",
    "NearMiss",
    "NotFoundError",
    "NotSaveableError",
    "ReadOptions",
    "ReportEntry",
    "RestoreConflictError",
    "SaveHandle",
    "Saver",
    "Trackable",
    "TrackedDict",
    "TrackedList",
    "TrackedTuple",
    "UnknownPathError",
    "UnsafePickleError",
    "UnsupportedFormatError",
    "Variable",
    "WriteOptions",
    "__version__",
    "convert",
    "diff",
    "explore",
    "latest_checkpoint",
    "layers",
    "list_variables",
    "load_checkpoint",
    "near_misses",
    "optimizers",
    "register_trackable",
]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where ``jupyter labextension develop`` finds the built JupyterLab extension."""
    return [{"src": "labextension", "dest": "ckptlab"}]
