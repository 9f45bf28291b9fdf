"""The test command runs every test: slow ones are marked, never filtered out."""

import ast
import pathlib
import re
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SLOW = [  # fuzzing and crash loops: long, and part of every run
    "tests/storage/test_fuzz.py",
    "tests/storage/test_crash.py::test_killed_saves_never_leave_a_partial_checkpoint",
    "tests/test_manager.py::test_crash_loop_never_exposes_a_partial_checkpoint",
]


def test_no_marker_filters_the_test_command():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert not re.search(r"(^|\s)-m\b", options["addopts"])
    pytest_lines = [
        line for line in (ROOT / "Makefile").read_text().splitlines() if "-m pytest" in line
    ]
    assert pytest_lines
    assert all(" -m " not in line.split("-m pytest", 1)[1] for line in pytest_lines)


@pytest.mark.parametrize("where", SLOW)
def test_fuzz_and_crash_loops_are_marked_slow(where):
    path, _, name = where.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    if not name:
        marked = [
            n
            for n in tree.body
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        ]
        assert marked and "slow" in ast.unparse(marked[0].value)
        return
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert any("mark.slow" in ast.unparse(d) for d in function.decorator_list)
