"""The viewer's shared fixtures still describe what Python makes of each checkpoint.

The TypeScript port of ``CheckpointSource.view()`` (labextension/src/lab/checkpoint.ts) is tested
against the same files (labextension/test/lab-checkpoint.test.ts): if the view model changes on
either side, one of the two tests fails.  Regenerate with
``python tests/labextension/lab_fixtures.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ckptlab_lab_fixtures", HERE / "lab_fixtures.py")
assert _spec is not None and _spec.loader is not None
lab_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab_fixtures)

NAMES = sorted(lab_fixtures.MAKERS)
OLD = [f"{name}-v2" for name in NAMES]
"""The same checkpoints in format version 2 (written before version 3; never regenerated)."""


@pytest.mark.parametrize("name", NAMES + OLD)
def test_committed_view_matches_python(name: str) -> None:
    zarr_json = json.loads((lab_fixtures.FIXTURES / f"{name}.zarr.json").read_text("utf-8"))
    expected = json.loads((lab_fixtures.FIXTURES / f"{name}.view.json").read_text("utf-8"))
    assert lab_fixtures.view_json(zarr_json) == expected


def test_regenerated_fixtures_match_committed(tmp_path: Path) -> None:
    lab_fixtures.generate(tmp_path)
    for name in NAMES:
        fresh = json.loads((tmp_path / f"{name}.view.json").read_text("utf-8"))
        committed = json.loads((lab_fixtures.FIXTURES / f"{name}.view.json").read_text("utf-8"))
        assert fresh == committed, f"{name}: run python tests/labextension/lab_fixtures.py"


@pytest.mark.parametrize("name", NAMES)
def test_format_versions_give_the_same_view(name: str) -> None:
    new = json.loads((lab_fixtures.FIXTURES / f"{name}.view.json").read_text("utf-8"))
    old = json.loads((lab_fixtures.FIXTURES / f"{name}-v2.view.json").read_text("utf-8"))
    assert new == old


def test_hostile_names_are_in_the_fixture() -> None:
    names = json.loads((lab_fixtures.FIXTURES / "hostile.view.json").read_text("utf-8"))["nodes"]
    assert set(lab_fixtures.HOSTILE) <= set(names["name"])
