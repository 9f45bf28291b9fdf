"""The public surface is pinned: changing it is a deliberate act (docs/architecture.md)."""

import ast
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import ckptlab as ck
from ckptlab import errors, layers, optimizers

PUBLIC = {
    "AssignmentError", "Checkpoint", "CheckpointLoadStatus", "CheckpointManager",
    "CheckpointReader", "CkptlabError", "CorruptCheckpointError", "InitializationOnlyStatus",
    "InvalidArgumentError",
    "KeyMap", "LockedError", "MatchReport", "MissingDependencyError", "Module",
    "NameBasedSaverStatus", "NearMiss",
    "NotACheckpointError", "NotFoundError", "NotSaveableError", "ReadOptions", "ReportEntry",
    "RestoreConflictError", "SaveHandle", "Saver", "StorageError", "StorageExistsError",
    "StorageIsADirectoryError", "StorageNotADirectoryError", "StoragePermissionError",
    "Trackable", "TrackedDict", "TrackedList", "TrackedTuple", "UnknownPathError",
    "UnsafePickleError", "UnsupportedFormatError", "Variable", "WriteOptions", "__version__",
    "convert", "diff", "explore", "latest_checkpoint", "layers", "list_variables",
    "load_checkpoint", "near_misses", "optimizers", "register_trackable", "set_storage_options",
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
    assert issubclass(ck.InvalidArgumentError, ValueError) and issubclass(
        ck.InvalidArgumentError, TypeError
    )
    assert issubclass(ck.NotACheckpointError, ck.UnsupportedFormatError)
    assert issubclass(ck.StorageError, OSError)
    for error, builtin in [
        (ck.StoragePermissionError, PermissionError),
        (ck.StorageExistsError, FileExistsError),
        (ck.StorageNotADirectoryError, NotADirectoryError),
        (ck.StorageIsADirectoryError, IsADirectoryError),
    ]:
        assert issubclass(error, ck.StorageError) and issubclass(error, builtin)
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


def test_lazy_names_are_the_ones_type_checkers_see():
    """``ckptlab/__init__.py`` imports on first use (``_SOURCES``); its TYPE_CHECKING imports,
    which type checkers and readers see, must name the same modules."""
    tree = ast.parse(pathlib.Path(ck.__file__).read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    imported = {
        alias.name: "ckptlab" if node.module == "ckptlab" else node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == ck._SOURCES
    assert set(ck.__all__) == {*imported, "__version__"}
    assert {n for n in dir(ck) if not n.startswith("_")} >= PUBLIC - {"__version__"}
    with pytest.raises(AttributeError, match="has no attribute 'Chekpoint'"):
        ck.Chekpoint


def test_submodules_are_attributes_as_if_imported_eagerly():
    script = "import ckptlab as ck; print(ck.storage.STATE_FILENAME, ck.errors.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["checkpoint", "ckptlab.errors"]
