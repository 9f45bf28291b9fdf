"""Deterministic graph views shared by the Python tests and the TypeScript tests (fixtures).

``python tests/inspect/conftest.py`` rewrites labextension/test/fixtures/mismatch.graph.json
(then ``npm run format`` in labextension/, whose prettier check covers the fixtures).
"""

from __future__ import annotations

import json
import pathlib

import pytest

from ckptlab.core import ValueSpec
from ckptlab.inspect import GraphView, ViewValue, build_view

FIXTURES = pathlib.Path(__file__).parents[2] / "labextension" / "test" / "fixtures"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "</script><script>window.__pwned=2</script>"


def spec(*shape: int, dtype: str = "float32") -> ValueSpec:
    return ValueSpec(shape=shape, dtype=dtype)


def mismatch_view() -> GraphView:
    """A restore with every kind of problem, optimizer slots, a rename and hostile names."""
    values = [
        ViewValue(
            path=("model", "encoder", "kernel"),
            state="restored",
            restore_path="model/encoder/kernel",
            stored=spec(5, 8),
            program=spec(5, 8),
        ),
        ViewValue(
            path=("model", "encoder", "bias"),
            state="bound",
            restore_path="model/encoder/bias",
            stored=spec(8),
            program=spec(8),
        ),
        ViewValue(
            path=("model", "hidden", "kernel"),
            state="checkpoint_only",
            stored=spec(8, 4),
            reason="nothing in the program at this path",
        ),
        ViewValue(
            path=("model", "hidden", "bias"),
            state="checkpoint_only",
            stored=spec(4),
            reason="nothing in the program at this path",
        ),
        ViewValue(
            path=("model", "head", "kernel"),
            state="shape_conflict",
            stored=spec(4, 1),
            program=spec(4, 2),
        ),
        ViewValue(
            path=("model", "head", "_bias"),
            state="program_only",
            program=spec(1),
            reason="not in the checkpoint",
        ),
        ViewValue(
            path=("model", "head", "bias"),
            state="checkpoint_only",
            stored=spec(1),
            reason="nothing in the program at this path",
        ),
        ViewValue(
            path=("model", "hidden_renamed", "kernel"),
            state="program_only",
            program=spec(8, 4),
            reason="not in the checkpoint",
        ),
        ViewValue(
            path=("model", "hidden_renamed", "bias"),
            state="program_only",
            program=spec(4),
            reason="not in the checkpoint",
        ),
        ViewValue(
            path=("optimizer", "iter"), state="pending", stored=spec(dtype="int64"), optimizer=True
        ),
        ViewValue(
            path=("optimizer", "slots", "m", "model/encoder/kernel"),
            state="bound",
            stored=spec(5, 8),
            optimizer=True,
            slot=True,
            synthetic_depth=1,
            link=("model", "encoder", "kernel"),
        ),
        ViewValue(
            path=("weird", HOSTILE, SCRIPT),
            state="dtype_conflict",
            stored=spec(2, dtype="float64"),
            program=spec(2),
            reason=HOSTILE,
        ),
    ]
    return build_view(
        values,
        title="CheckpointLoadStatus",
        source=f"/tmp/{HOSTILE}/ckpt-1",
        kind="match",
        summary="a summary with " + SCRIPT,
        can_restore=True,
    )


def write_fixture() -> pathlib.Path:
    """Write the mismatch view's JSON for the TypeScript tests."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / "mismatch.graph.json"
    path.write_text(
        json.dumps(mismatch_view().to_json(), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return path


@pytest.fixture
def mismatch() -> GraphView:
    return mismatch_view()


if __name__ == "__main__":
    print(write_fixture())
