"""The versioned JSON schema: Python output validates, and the TypeScript fixture is current."""

from __future__ import annotations

import json
import pathlib

import jsonschema
import pytest

import ckptlab.inspect
from ckptlab.core import ValueSpec
from ckptlab.inspect import VIEW_STATES, ViewValue, build_view, graph_payload
from ckptlab.inspect import _mime as mime

SCHEMA = json.loads(
    (pathlib.Path(ckptlab.inspect.__file__).parent / "graph.schema.json").read_text()
)
FIXTURE = (
    pathlib.Path(__file__).parents[2] / "labextension" / "test" / "fixtures" / "mismatch.graph.json"
)


def test_schema_is_valid_and_lists_every_state():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    items = SCHEMA["$defs"]["graph"]["properties"]["states"]["prefixItems"]
    assert tuple(i["const"] for i in items) == VIEW_STATES


def test_view_json_validates(mismatch):
    jsonschema.validate(mismatch.to_json(), SCHEMA)


def test_large_payloads_use_the_compressed_envelope(monkeypatch):
    monkeypatch.setattr(mime, "INLINE_LIMIT", 100)
    view = build_view(
        [ViewValue(path=("w",), state="stored", stored=ValueSpec(shape=(1,), dtype="int8"))],
        title="t",
        source="s",
        kind="checkpoint",
        summary="",
    )
    payload = graph_payload(view)
    assert payload["encoding"] == "gzip+base64"
    jsonschema.validate(payload, SCHEMA)


def test_typescript_fixture_is_current(mismatch):
    """labextension/test/fixtures/mismatch.graph.json is what Python writes today."""
    if not FIXTURE.exists():
        pytest.fail("missing fixture: run python tests/inspect/conftest.py")
    assert json.loads(FIXTURE.read_text(encoding="utf-8")) == json.loads(
        json.dumps(mismatch.to_json())
    ), "stale fixture: run python tests/inspect/conftest.py, then npm run format in labextension/"
