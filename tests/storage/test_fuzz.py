"""Mutation fuzzing: 2,000+ damaged variants of valid checkpoints (document and bytes).

Format 3 checkpoints (values spanning shards) and copies of the golden format-2 checkpoint are
attacked alike.

Every variant is opened, fully read, verified and restored through the facade.  Each step either
succeeds or raises a ckptlab error: never another exception, a hang, a read outside the
checkpoint, or (when only bytes were damaged) a silently wrong value.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ckptlab as ck
from ckptlab.storage import LocalStore, _layout, _stream, open_checkpoint, verify_checkpoint

from .conftest import training_checkpoint

GOLDEN_V2 = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "v2"

pytestmark = pytest.mark.slow  # 2,100 damaged checkpoints

HOSTILE_STRINGS = [
    "",
    "../../etc/passwd",
    "/etc/passwd",
    "values/0",
    "values/1",
    "values/../values/0",
    "packed/float32",
    "packed/int64",
    "packed/../../x",
    "data/float32",
    "data/int64",
    "data/../../x",
    "values/99999999",
    "float32",
    "object",
    "<script>alert(1)</script>",
    "k" * 70_000,
    "\x00",
    "model/kernel/.ATTRIBUTES/VARIABLE_VALUE",
]
HOSTILE_INTS = [0, 1, -1, 2, 3, 7, 2**31, 2**32, 2**47, 2**48, 2**63, 2**64, 10**30]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(HOSTILE_INTS),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


class RecordingStore(LocalStore):
    """A local store that records every key it is asked about."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in {"read", "read_into", "read_ranges", "size", "exists", "is_dir", "list_dir"}:
            keys = super().__getattribute__("keys")

            def recorded(first: Any, *args: Any, **kwargs: Any) -> Any:
                keys.extend([r[0] for r in first] if name == "read_ranges" else [first])
                return attribute(first, *args, **kwargs)

            return recorded
        return attribute


def build(directory: Path) -> tuple[str, dict[str, np.ndarray]]:
    """A small checkpoint with data arrays of three dtypes, a value spanning shards, slots."""
    checkpoint = training_checkpoint(3, 2, np.arange(600, dtype=np.float32).reshape(60, 10))
    checkpoint.flags = ck.Variable(np.array([True, False, True]))
    saved = _layout.INNER_BYTES, _layout.LOCAL_SHARD_BYTES, _stream.STEP
    _layout.INNER_BYTES, _layout.LOCAL_SHARD_BYTES, _stream.STEP = 400, 800, 1024
    try:  # the 2,400-byte value spans 4 shards of 2 inner chunks each
        options = ck.WriteOptions(progress=False, durable=False)
        path = checkpoint.write(str(directory / "pristine"), options=options)
    finally:
        _layout.INNER_BYTES, _layout.LOCAL_SHARD_BYTES, _stream.STEP = saved
    return path, everything(path)


def everything(path: str) -> dict[str, np.ndarray]:
    source = open_checkpoint(LocalStore(), path)
    return source.read_many(source.document.values)


@pytest.fixture(scope="module", params=["v3", "golden-v2"])
def pristine(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    if request.param == "v3":
        return build(directory)
    path = str(shutil.copytree(GOLDEN_V2, directory / "pristine"))
    return path, everything(path)


def fresh_program() -> ck.Checkpoint:
    model = ck.layers.Dense(3)
    model(np.ones((2, 2), np.float32))
    checkpoint = ck.Checkpoint(model=model, optimizer=ck.optimizers.Adam(0.1))
    checkpoint.big = ck.Variable(np.zeros((60, 10), np.float32))
    checkpoint.flags = ck.Variable(np.zeros(3, bool))
    return checkpoint


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (sequence of keys/indices) into a JSON value, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += json_paths(item, (*prefix, index))
    return paths


def mutate_document(data: st.DataObject, root: dict) -> None:
    document = root["attributes"]["ckptlab"]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = json_paths(document)
        where = data.draw(st.sampled_from(paths[1:]), label="path")
        parent = document
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "add"]))
        if action == "replace":
            parent[last] = data.draw(json_value, label="value")
        elif action == "delete":
            del parent[last]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(parent[last])
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(HOSTILE_STRINGS), label="key")] = parent[last]


def mutate_bytes(data: st.DataObject, path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p != path / "zarr.json")
    target = data.draw(st.sampled_from(files), label="file")
    content = target.read_bytes()
    action = data.draw(
        st.sampled_from(["flip", "truncate", "append", "delete", "directory", "empty", "swap"])
    )
    if action == "flip" and content:
        position = data.draw(st.integers(0, len(content) - 1), label="position")
        bit = data.draw(st.integers(0, 7), label="bit")
        target.write_bytes(
            content[:position] + bytes([content[position] ^ (1 << bit)]) + content[position + 1 :]
        )
    elif action == "truncate":
        target.write_bytes(content[: data.draw(st.integers(0, max(len(content) - 1, 0)))])
    elif action == "append":
        target.write_bytes(content + data.draw(st.binary(min_size=1, max_size=16)))
    elif action == "delete":
        target.unlink()
    elif action == "directory":
        target.unlink()
        target.mkdir()
    elif action == "empty":
        target.write_bytes(b"")
    else:  # another file's bytes in its place
        other = data.draw(st.sampled_from(files), label="other")
        target.write_bytes(other.read_bytes() if other.is_file() else b"")
    return target.name if target.name == "zarr.json" else "chunk"


def exercise(path: str, expected: dict[str, np.ndarray], bytes_only: bool) -> None:
    store = RecordingStore()
    try:
        source = open_checkpoint(store, path, progress=False)
        values = source.read_many(source.document.values)
    except ck.CkptlabError as error:
        event(f"read: {type(error).__name__}")
        read_error: ck.CkptlabError | None = error
    else:
        event("read: ok")
        read_error = None
        if bytes_only:  # the document is intact: anything read must be exactly what was saved
            for key, value in values.items():
                assert value.tobytes() == expected[key].tobytes(), key
    outside = [k for k in store.keys if not (k == path or k.startswith(path + "/"))]
    assert not outside, outside[:3]
    problems = verify_checkpoint(path)
    event(f"verify: {'problems' if problems else 'clean'}")
    # verify reads every byte: damage a read noticed, it notices too, and a checkpoint it finds
    # intact opens, lists and restores (every saved value where the document says it is).
    if read_error is not None:
        assert problems, f"read raised {read_error!r}, verify found nothing"
    assert all(isinstance(p, str) and p.split(":")[0] for p in problems), problems
    if problems:
        with contextlib.suppress(ck.CkptlabError):
            ck.list_variables(path)
            fresh_program().read(path).expect_partial()
        return
    assert read_error is None
    assert {key for key, _ in ck.list_variables(path)} == set(values)
    program = fresh_program()
    if not bytes_only:  # a valid document that says something else may conflict with the program
        with contextlib.suppress(ck.RestoreConflictError):
            program.read(path).expect_partial()
        return
    program.read(path).assert_consumed()
    again = ck.load_checkpoint(program.write(path + "-restored"))
    for key, value in expected.items():
        assert again.get_tensor(key).tobytes() == value.tobytes(), key


@settings(
    max_examples=1100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=st.data())
def test_mutated_checkpoints_fail_cleanly(pristine, tmp_path_factory, data):
    source, expected = pristine
    work = Path(source).with_name("work")
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work)
    mode = data.draw(st.sampled_from(["document", "bytes", "both"]), label="mode")
    bytes_only = mode == "bytes"
    if mode in ("document", "both"):
        root_path = work / "zarr.json"
        root = json.loads(root_path.read_text())
        mutate_document(data, root)
        root_path.write_text(json.dumps(root))
    if mode in ("bytes", "both"):
        mutate_bytes(data, work)
    exercise(os.fspath(work), expected, bytes_only)
