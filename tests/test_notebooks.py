"""The teaching notebooks in notebooks/: stored without outputs, and each one executes.

Each notebook declares what it needs in its metadata (``ckptlab.requires``); a notebook whose
requirement is not part of this installation is skipped with the reason.  Cells tagged
``interactive`` (the explorer) are also run without those cells, so the by-code half of a
notebook is checked even where no widget front end is wanted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import ckptlab as ck

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 120  # a guard against a hung kernel, not a speed target (benchmarks/ measure)

REQUIREMENTS = {
    "explore": lambda: hasattr(ck, "explore"),
    "manager": lambda: hasattr(ck, "CheckpointManager"),
    "torch": lambda: importlib.util.find_spec("torch") is not None,
    "jax": lambda: all(importlib.util.find_spec(m) is not None for m in ("jax", "flax", "optax")),
    "dask": lambda: (
        importlib.util.find_spec("ckptlab.distributed") is not None
        and importlib.util.find_spec("distributed") is not None
    ),
}


def missing_requirements(notebook):
    needs = notebook.metadata.get("ckptlab", {}).get("requires", [])
    return [need for need in needs if not REQUIREMENTS[need]()]


def execute(notebook, workdir):
    """Run every cell in a fresh kernel whose working and temporary directory is ``workdir``.

    Raises on the first cell that fails; afterwards every code cell has run, in order, and none
    left an error output.
    """
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []


def test_the_expected_notebooks_are_there():
    names = [p.stem for p in PATHS]
    assert names[:3] == ["01_quickstart", "02_how_matching_works", "03_deferred_and_lazy_restore"]
    assert "05_transfer_learning" in names
    assert "08_on_disk_format" in names


@pytest.mark.parametrize("path", [*PATHS, NOTEBOOKS / "tour.ipynb"], ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has stored outputs"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
    assert "widgets" not in notebook.metadata


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp() lands here
    notebook = nbformat.read(path, as_version=4)
    missing = missing_requirements(notebook)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, which this installation lacks")
    execute(notebook, tmp_path)


INTERACTIVE = [
    p
    for p in PATHS
    if any("interactive" in c.metadata.get("tags", []) for c in nbformat.read(p, 4).cells)
]


@pytest.mark.parametrize("path", INTERACTIVE, ids=lambda p: p.stem)
def test_notebook_executes_by_code_without_the_interactive_cells(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if "interactive" not in c.metadata.get("tags", [])]
    assert notebook.cells
    execute(notebook, tmp_path)
