"""ckptlab: object-based checkpoints with TensorFlow's semantics, stored as Zarr v3.

Names are imported on first use (PEP 562), so ``import ckptlab`` and ``ckptlab --version``
do not load numpy, zarr or ml_dtypes until something needs them.

Examples
--------
>>> import ckptlab as ck
>>> ckpt = ck.Checkpoint(step=ck.Variable(0))
>>> sorted(ck.__all__)[:3]
['AssignmentError', 'Checkpoint', 'CheckpointLoadStatus']
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ckptlab import _zarr_hook, errors  # both light: the standard library only
from ckptlab._version import __version__

if TYPE_CHECKING:  # what type checkers and readers see; _SOURCES below says the same at run time
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
        InvalidArgumentError,
        LockedError,
        MissingDependencyError,
        NotACheckpointError,
        NotFoundError,
        NotSaveableError,
        RestoreConflictError,
        StorageError,
        StorageExistsError,
        StorageIsADirectoryError,
        StorageNotADirectoryError,
        StoragePermissionError,
        UnknownPathError,
        UnsafePickleError,
        UnsupportedFormatError,
    )
    from ckptlab.explorer import diff, explore
    from ckptlab.storage import ReadOptions, WriteOptions, latest_checkpoint, set_storage_options

_SOURCES = {
    "layers": "ckptlab",
    "optimizers": "ckptlab",
    "SaveHandle": "ckptlab._async",
    "Checkpoint": "ckptlab._checkpoint",
    "convert": "ckptlab._convert",
    "diff": "ckptlab.explorer",
    "explore": "ckptlab.explorer",
    "KeyMap": "ckptlab._keymap",
    "CheckpointManager": "ckptlab._manager",
    **dict.fromkeys(("Module", "TrackedDict", "TrackedList", "TrackedTuple"), "ckptlab._module"),
    **dict.fromkeys(("CheckpointReader", "list_variables", "load_checkpoint"), "ckptlab._reader"),
    "Saver": "ckptlab._saver",
    "Variable": "ckptlab._variable",
    **dict.fromkeys(("MatchReport", "NearMiss", "ReportEntry", "near_misses"), "ckptlab.core"),
    **dict.fromkeys(
        (
            "CheckpointLoadStatus",
            "InitializationOnlyStatus",
            "NameBasedSaverStatus",
            "Trackable",
            "register_trackable",
        ),
        "ckptlab.engine",
    ),
    **dict.fromkeys(errors.__all__, "ckptlab.errors"),
    **dict.fromkeys(
        ("ReadOptions", "WriteOptions", "latest_checkpoint", "set_storage_options"),
        "ckptlab.storage",
    ),
}
"""Where each public name lives (imported on first access)."""

__all__ = [
    "AssignmentError",
    "Checkpoint",
    "CheckpointLoadStatus",
    "CheckpointManager",
    "CheckpointReader",
    "CkptlabError",
    "CorruptCheckpointError",
    "InitializationOnlyStatus",
    "InvalidArgumentError",
    "KeyMap",
    "LockedError",
    "MissingDependencyError",
    "MatchReport",
    "Module",
    "NameBasedSaverStatus",
    "NearMiss",
    "NotACheckpointError",
    "NotFoundError",
    "NotSaveableError",
    "ReadOptions",
    "ReportEntry",
    "RestoreConflictError",
    "SaveHandle",
    "Saver",
    "StorageError",
    "StorageExistsError",
    "StorageIsADirectoryError",
    "StorageNotADirectoryError",
    "StoragePermissionError",
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
    "set_storage_options",
]

_zarr_hook.install()  # plain zarr reads bfloat16 once ckptlab is imported (cheap: no zarr import)


if not TYPE_CHECKING:  # type checkers see the imports above (and flag misspelt names)

    def __getattr__(name: str) -> Any:
        """Import a public name, or a submodule such as ``ckptlab.storage``, on first access."""
        source = _SOURCES.get(name)
        if source == __name__ or (source is None and _is_submodule(name)):
            value = importlib.import_module(f"{__name__}.{name}")
        elif source is not None:
            value = getattr(importlib.import_module(source), name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        """The public names and what was imported already."""
        return sorted({*globals(), *__all__})


def _is_submodule(name: str) -> bool:
    """Whether ``ckptlab.<name>`` is a module (imported on attribute access, as if eager)."""
    return not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where ``jupyter labextension develop`` finds the built JupyterLab extension."""
    return [{"src": "labextension", "dest": "ckptlab"}]
