"""Shared fixtures for the foreign-format tests: the committed framework files and manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "foreign"
collect_ignore = ["writers"]
"""Scripts the tests run in subprocesses to write real framework files (they import Keras,
JAX, Orbax, torch.distributed): not test modules, and not to be imported for doctests."""


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "manifest.json").read_text())["fixtures"]
