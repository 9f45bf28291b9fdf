"""One wire contract: the TypeScript tables and message types are what Python writes today."""

from __future__ import annotations

import pathlib
import typing

from ckptlab.core import ITEMSIZE, STATES
from ckptlab.inspect import _wire

WIRE_TS = pathlib.Path(__file__).resolve().parents[2] / "labextension" / "src" / "core" / "wire.ts"


def test_wire_ts_is_generated_from_python():
    assert WIRE_TS.read_text(encoding="utf-8") == _wire.typescript(), (
        "labextension/src/core/wire.ts is stale: python scripts/wire_ts.py"
    )


def test_every_match_state_and_dtype_is_in_the_tables():
    assert _wire.VIEW_STATES[: len(STATES)] == STATES
    assert set(ITEMSIZE) <= set(_wire.DTYPE_ITEMSIZE)
    assert all(s.explain.startswith(s.one.split()[0]) for s in _wire.STATE_TABLE)
    kinds = {k for k, _ in _wire.PROBLEM_GROUPS}
    assert {s.problem for s in _wire.STATE_TABLE if s.problem} <= kinds


def test_every_message_the_widget_handles_is_declared():
    """The kernel answers exactly the browser messages of the contract."""
    source = (pathlib.Path(_wire.__file__).parents[1] / "widgets" / "_explorer.py").read_text()
    declared = {
        typing.get_args(typing.get_type_hints(m)["type"])[0] for m in _wire.BROWSER_MESSAGES
    }
    handled = {t for t in declared if f'"{t}"' in source}
    assert handled == declared
