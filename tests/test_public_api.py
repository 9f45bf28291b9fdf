"""The public surface is pinned: changing it is a deliberate act (docs/architecture.md)."""

import inspect
import re

import pytest

import ckptlab as ck
from ckptlab import errors, layers, optimizers

PUBLIC = {
    "AssignmentError", "Checkpoint", "CheckpointLoadStatus", "CheckpointManager",
    "CheckpointReader", "CkptlabError", "CorruptCheckpointError", "InitializationOnlyStatus",
    "KeyMap", "LockedError", "MatchReport", "MissingDependencyError", "Module",
    "NameBasedSaverStatus", "NearMiss", "NotFoundError", "NotSaveableError", "ReadOptions",
    "ReportEntry", "RestoreConflictError", "SaveHandle", "Saver", "Trackable", "TrackedDict",
    "TrackedList", "TrackedTuple", "UnknownPathError", "UnsafePickleError",
    "UnsupportedFormatError", "Variable", "WriteOptions", "__version__", "convert", "diff",
    "explore", "latest_checkpoint", "layers", "list_variables",
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
    """Every ckptlab error also inherits the builtin it resembles (ckptlab/errors.py)."""
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


def public_callables():
    """Every public function and class, and the public methods and properties of the classes."""
    for name in sorted(PUBLIC - {"__version__"}):
        obj = getattr(ck, name)
        if inspect.ismodule(obj):
            yield from ((f"{name}.{n}", getattr(obj, n)) for n in obj.__all__)
            continue
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and (
                    inspect.isfunction(member) or isinstance(member, classmethod | property)
                ):
                    yield f"{name}.{attr}", getattr(obj, attr, member)


def sections(obj):
    return set(re.findall(r"^(\w[\w ]*)\n-{3,}$", inspect.getdoc(obj) or "", re.MULTILINE))


def expected_sections(obj):
    """Parameters when it takes any, Returns when it returns something, always Examples."""
    if isinstance(obj, property):
        return set()
    try:
        signature = inspect.signature(obj)
    except ValueError:  # an exception class without its own __init__: nothing to pass
        return {"Examples"}
    named = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
    wanted = {"Examples"}
    if named:
        wanted.add("Parameters")
    if not inspect.isclass(obj) and signature.return_annotation not in (None, "None"):
        wanted.add("Returns")
    return wanted


@pytest.mark.parametrize(("name", "obj"), list(public_callables()), ids=lambda x: str(x)[:60])
def test_public_callables_have_numpy_sections(name, obj):
    """numpy-style docs on every public callable; the Examples run as doctests."""
    doc = obj.__doc__ if isinstance(obj, property) else inspect.getdoc(obj)
    assert (doc or "").strip(), f"{name} has no docstring"
    missing = expected_sections(obj) - sections(obj)
    assert not missing, f"{name} lacks {sorted(missing)}"
