"""The public surface is pinned: changing it is a deliberate, reviewed act (STYLE.md rule 1)."""

import ckptlab as ck
from ckptlab import errors, layers, optimizers

PUBLIC = {
    "AssignmentError", "Checkpoint", "CheckpointLoadStatus", "CheckpointManager",
    "CheckpointReader", "CkptlabError", "CorruptCheckpointError", "InitializationOnlyStatus",
    "KeyMap", "LockedError", "MatchReport", "MissingDependencyError", "Module",
    "NameBasedSaverStatus", "NearMiss", "NotFoundError", "NotSaveableError", "ReportEntry",
    "RestoreConflictError", "SaveHandle",
    "Saver", "Trackable", "TrackedDict", "TrackedList", "TrackedTuple", "UnknownPathError",
    "UnsafePickleError", "UnsupportedFormatError", "Variable", "WriteOptions", "__version__",
    "convert", "diff", "explore", "latest_checkpoint", "layers", "list_variables",
    "load_checkpoint", "near_misses", "optimizers", "register_trackable",
}  # fmt: skip


def test_top_level_all_is_pinned():
    assert set(ck.__all__) == PUBLIC
    assert all(hasattr(ck, name) for name in ck.__all__)


def test_submodule_surfaces():
    assert layers.__all__ == ["Dense", "Sequential", "get_initializer"]
    assert set(optimizers.__all__) == {"SGD", "Adam", "Optimizer"}
    assert set(errors.__all__) <= PUBLIC


def test_errors_inherit_the_builtins_they_resemble():
    """API.md, Errors."""
    assert issubclass(ck.NotFoundError, FileNotFoundError)
    assert issubclass(ck.CorruptCheckpointError, ValueError)
    assert issubclass(ck.RestoreConflictError, ValueError) and issubclass(
        ck.RestoreConflictError, TypeError
    )
    assert issubclass(ck.UnsupportedFormatError, ValueError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), ck.CkptlabError)


def test_every_public_name_is_documented():
    undocumented = [
        n
        for n in ck.__all__
        if not n.startswith("_") and not (getattr(ck, n).__doc__ or "").strip()
    ]
    assert undocumented == []
