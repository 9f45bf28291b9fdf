"""Hostile and damaged format-3 checkpoints: every one is a clear ckptlab error, never a crash, a
hang, a huge allocation, or a read outside the checkpoint; and loading never executes code.

A damaged checkpoint never changes the program: restores verify every value before the first
one is written, whether values are read into fresh arrays or into the program's own buffers.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import (
    LocalStore,
    _layout,
    _reader,
    _stream,
    _writer,
    open_checkpoint,
    verify_checkpoint,
)

from .conftest import training_checkpoint

BIG = "big/.ATTRIBUTES/VARIABLE_VALUE"


def build(tmp_path: Path, name: str = "c") -> str:
    """Packed values of two dtypes, an optimizer slot, and a value spanning three shards."""
    checkpoint = training_checkpoint(4, 3, np.arange(3000, dtype=np.float32).reshape(300, 10))
    return checkpoint.write(str(tmp_path / name), options=ck.WriteOptions(progress=False))


@pytest.fixture
def path(tmp_path, monkeypatch):
    # 4 KiB inner chunks and shards, checksums every 4 KiB: the 12,000-byte value spans three
    # shards and three checksum blocks.
    monkeypatch.setattr(_layout, "INNER_BYTES", 4096)
    monkeypatch.setattr(_layout, "LOCAL_SHARD_BYTES", 4096)
    monkeypatch.setattr(_stream, "STEP", 4096)
    monkeypatch.setattr(_writer, "CRC_BLOCK", 4096)
    return build(tmp_path)


def root(path: str) -> dict:
    return json.loads(Path(path, "zarr.json").read_text())


def document(path: str) -> dict:
    return root(path)["attributes"]["ckptlab"]


def rewrite(path: str, edit) -> None:
    data = root(path)
    edit(data["attributes"]["ckptlab"])
    Path(path, "zarr.json").write_text(json.dumps(data))


def row(doc: dict, key: str = BIG) -> int:
    return doc["values"]["key"].index(key)


def array_of(doc: dict, key: str = BIG) -> dict:
    return doc["arrays"][doc["values"]["array"][row(doc, key)]]


def shard(path: str, key: str = BIG, number: int = 0) -> Path:
    return Path(path, array_of(document(path), key)["path"], str(number))


def column(name: str, key: str = BIG):
    """An edit setting column ``name`` of value ``key``."""

    def edit(value):
        def apply(doc):
            doc["values"][name][row(doc, key)] = value

        return apply

    return edit


def read_everything(path: str) -> None:
    """Open, read every value, restore through the facade; verification must report, not raise."""
    problems = verify_checkpoint(path)
    assert isinstance(problems, list)
    source = open_checkpoint(LocalStore(), path, progress=False)
    source.read_many(source.document.values)
    assert problems == []


def expect(path: str, error=ck.CorruptCheckpointError, match: str | None = None) -> None:
    with pytest.raises(error, match=match) as info:
        read_everything(path)
    message = str(info.value)
    assert len(message) < 2000
    assert os.path.basename(path) in message or "document" in message


def test_the_fixture_spans_three_shards(path):
    assert shard(path, number=2).exists()
    assert len(document(path)["values"]["crc32c"][row(document(path))]) == 3
    read_everything(path)


# -- damaged bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("helper", [False, True], ids=["inline", "helper-thread"])
@pytest.mark.parametrize("number", [0, 1, 2])
def test_bit_flip_names_the_key_and_the_object(path, number, helper, monkeypatch):
    if helper:  # checksums on the helper thread: the mismatch still stops the read
        monkeypatch.setattr(_stream, "OFFLOAD_BYTES", 0)
    target = shard(path, number=number)
    data = bytearray(target.read_bytes())
    data[100] ^= 0x10
    target.write_bytes(data)
    problems = verify_checkpoint(path)
    assert problems and repr(BIG) in problems[0]
    for into in (False, True):
        source = open_checkpoint(LocalStore(), path)
        outs = {BIG: np.zeros((300, 10), np.float32)} if into else None
        with pytest.raises(ck.CorruptCheckpointError, match="checksum mismatch") as info:
            source.read_many([BIG], outs)
        assert repr(BIG) in str(info.value)
        assert f"data/float32/{number}" in str(info.value)
        assert outs is None or not outs[BIG].any()  # nothing was written


def test_a_damaged_shard_index_is_reported_by_verify(path):
    target = shard(path, number=1)
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01  # inside the index: plain Zarr readers would fail, ckptlab reads on
    target.write_bytes(data)
    assert any("shard index is damaged" in p for p in verify_checkpoint(path))
    source = open_checkpoint(LocalStore(), path)
    assert source.read(BIG)[299, 9] == 2999


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.write_bytes(f.read_bytes()[:-7]),
        lambda f: f.write_bytes(f.read_bytes() + b"extra"),
        lambda f: f.write_bytes(b""),
        lambda f: f.unlink(),
        lambda f: (f.unlink(), f.mkdir()),
        lambda f: (f.unlink(), os.mkfifo(f)),  # opening it to read would wait for a writer
    ],
    ids=["truncated", "appended", "emptied", "missing", "directory", "fifo"],
)
@pytest.mark.parametrize("number", [0, 2])
def test_damaged_shards(path, damage, number):
    damage(shard(path, number=number))
    expect(path, match=r"missing|holds \d+ bytes|not a regular file")
    assert any(f"data/float32/{number}" in p for p in verify_checkpoint(path))


def test_missing_array_metadata_is_reported_by_verify_only(path):
    Path(path, array_of(document(path))["path"], "zarr.json").unlink()
    open_checkpoint(LocalStore(), path).read_many([BIG])
    assert any("plain Zarr readers" in p for p in verify_checkpoint(path))


def test_array_metadata_that_disagrees_is_reported_by_verify(path):
    metadata = Path(path, array_of(document(path))["path"], "zarr.json")
    metadata.write_text(metadata.read_text().replace('"float32"', '"int32"'))
    assert any("does not describe" in p for p in verify_checkpoint(path))


def test_an_array_longer_than_stored_is_reported_by_verify(path):
    """Values still read (their own bytes are intact); plain Zarr readers would miss shards."""
    rewrite(path, lambda d: array_of(d).update(length=10**9))
    problems = verify_checkpoint(path)
    assert any("shards missing" in p for p in problems)
    assert open_checkpoint(LocalStore(), path).read(BIG)[299, 9] == 2999


# -- hostile documents --------------------------------------------------------------------------

HOSTILE_EDITS = {
    "offset beyond the array": column("offset")(10**6),
    "negative offset": column("offset")(-1),
    "inner chunk changed": lambda d: array_of(d).update(chunk=7),
    "shard not a multiple of the chunk": lambda d: array_of(d).update(shard=1001),
    "zero chunk": lambda d: array_of(d).update(chunk=0),
    "shape beyond stored bytes": column("shape")([3000, 10]),
    "shape overflows": column("shape")([2**40, 2**40]),
    "shape overflows int64": column("shape")([2**62, 2**62, 2**62]),
    "negative dimension": column("shape")([-300, 10]),
    "too many dimensions": column("shape")([1] * 40),
    "shape is a string": column("shape")("300"),
    "bool as int": column("shape")([True, 10]),
    "float as int": column("shape")([300.0, 10]),
    "array number out of range": column("array")(99),
    "array number negative": column("array")(-1),
    "array path escapes": lambda d: array_of(d).update(path="../../../etc"),
    "absolute array path": lambda d: array_of(d).update(path="/etc/passwd"),
    "dot-dot inside array path": lambda d: array_of(d).update(path="data/../data/float32"),
    "two arrays share a path": lambda d: d["arrays"].append(dict(array_of(d))),
    "unknown dtype": lambda d: array_of(d).update(dtype="object"),
    "arrays not a list": lambda d: d.update(arrays={"data/float32": {}}),
    "checksum list too short": column("crc32c")([1]),
    "checksum out of range": column("crc32c")([2**40, 0, 0]),
    "checksum is a string": column("crc32c")(["0", "0", "0"]),
    "checksum block too small": lambda d: d.update(crc_block=16),
    "checksum block missing": lambda d: d.pop("crc_block"),
    "columns of different lengths": lambda d: d["values"]["offset"].append(0),
    "duplicate key": lambda d: d["values"]["key"].__setitem__(0, d["values"]["key"][1]),
    "edge to a missing node": lambda d: d["graph"]["edges"]["child"].__setitem__(0, 999),
    "negative node id": lambda d: d["graph"]["edges"]["parent"].__setitem__(0, -1),
    "duplicate child name": lambda d: [
        d["graph"]["edges"][c].append(d["graph"]["edges"][c][0])
        for c in ("parent", "name", "child")
    ],
    "child name not a string": lambda d: d["graph"]["edges"]["name"].__setitem__(0, 5),
    "attribute names a missing value": lambda d: d["graph"]["attributes"]["value"].__setitem__(
        0, 10**6
    ),
    "slot names a missing node": lambda d: d["graph"]["slots"]["slot"].__setitem__(0, 10**6),
    "oversize key": lambda d: d["values"]["key"].__setitem__(0, "k" * 70_000),
    "oversize child name": lambda d: d["graph"]["edges"]["name"].__setitem__(0, "n" * 70_000),
    "no nodes": lambda d: d["graph"].update(type=[]),
    "type out of range": lambda d: d["graph"]["type"].__setitem__(0, 99),
    "edges not an object": lambda d: d["graph"].update(edges=[]),
    "values not an object": lambda d: d.update(values=[1, 2]),
    "missing kind": lambda d: d.pop("kind"),
    "unknown kind": lambda d: d.update(kind="pickle"),
    "graph missing": lambda d: d.pop("graph"),
    "writer not an object": lambda d: d.update(writer="me"),
    "document not an object": lambda d: d.clear() or d.update({"format_version": [3]}),
}


@pytest.mark.parametrize("edit", HOSTILE_EDITS.values(), ids=HOSTILE_EDITS.keys())
def test_hostile_documents(path, edit):
    rewrite(path, edit)
    expect(path)


@pytest.mark.parametrize("where", ["data/float32\n", "values/3\n"])
def test_an_array_path_ending_in_a_newline_is_refused_by_the_document(path, where):
    """``$`` matches before a final newline: such a path must not reach the file system."""
    rewrite(path, lambda d: array_of(d).update(path=where))
    expect(path, match=r"invalid at arrays\[0\]\.path")


def test_unknown_format_version(path):
    rewrite(path, lambda d: d.update(format_version=99))
    expect(path, ck.UnsupportedFormatError, match="format_version 99")


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b"\xff\xfe garbage",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"zarr_format": 3, "node_type": "array"}',
        b'{"zarr_format": 2, "node_type": "group", "attributes": {"ckptlab": {}}}',
        b'{"zarr_format": 3, "node_type": "group", "attributes": {"ckptlab": NaN}}',
    ],
    ids=["empty", "truncated", "binary", "deeply nested", "an array", "zarr v2", "NaN"],
)
def test_hostile_root_documents(path, text):
    Path(path, "zarr.json").write_bytes(text)
    expect(path)


def test_oversize_document_is_refused_before_reading(path, monkeypatch):
    monkeypatch.setattr(_reader, "MAX_DOCUMENT_BYTES", 1000)
    expect(path, match="refuses documents over")


def test_a_deep_chain_is_refused_before_its_paths_take_gigabytes(path, peak_bytes):
    """Every path is kept whole: a 20,000-node chain (a 440 KB document) would take ~2 GB."""

    def edit(doc):
        graph, edges = doc["graph"], doc["graph"]["edges"]
        first = len(graph["type"])
        graph["type"] += [-1] * 20_000
        for number in range(20_000):
            edges["parent"].append(first + number - 1 if number else 0)
            edges["name"].append("c")
            edges["child"].append(first + number)

    rewrite(path, edit)

    def name_every_object():
        with pytest.raises(ck.CorruptCheckpointError, match="nests too deep.*restore from another"):
            ck.explore(path)  # names every object

    assert peak_bytes(name_every_object) < 64 * 2**20


@pytest.mark.parametrize("shard_elements", [1024, 2**30])
def test_no_huge_allocation_for_huge_claims(path, peak_bytes, shard_elements):
    """A document claiming terabytes is refused (by its shard count, or by the stored shard's
    size) before anything is allocated."""

    def edit(doc):
        doc["crc_block"] = 2**39
        array_of(doc).update(length=2**40, chunk=1024, shard=shard_elements)
        doc["values"]["shape"][row(doc)] = [2**36, 10]
        doc["values"]["crc32c"] = [[0] * (5 if k == BIG else 1) for k in doc["values"]["key"]]

    def read_it():
        with pytest.raises(ck.CorruptCheckpointError, match="shards|holds"):
            read_everything(path)

    rewrite(path, edit)
    assert peak_bytes(read_it) < 64 * 2**20


def test_loading_never_unpickles(path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    read_everything(path)
    ck.list_variables(path)
    # an object-dtype pickle planted as a shard is just bytes of the wrong size
    shard(path).write_bytes(pickle.dumps(np.array([object()])))
    expect(path)


def test_symlinked_shard_outside_is_only_bytes(path, tmp_path):
    """A shard that is a symlink to a file elsewhere is read as bytes and fails its checksum."""
    target = shard(path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * target.stat().st_size)
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(ck.CorruptCheckpointError) as info:
        read_everything(path)
    assert "sss" not in str(info.value)


@pytest.mark.parametrize("number", [0, 2])
def test_restore_of_a_damaged_checkpoint_changes_nothing(path, number):
    target = shard(path, number=number)
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    target.write_bytes(data)
    model = ck.layers.Dense(4)
    model(np.ones((2, 3), np.float32))
    before = model.kernel.numpy()
    checkpoint = ck.Checkpoint(model=model)
    checkpoint.big = ck.Variable(np.zeros((300, 10), np.float32))
    with pytest.raises(ck.CorruptCheckpointError):
        checkpoint.read(path)
    assert np.array_equal(model.kernel.numpy(), before)
    assert not checkpoint.big.numpy().any()


def test_copies_are_independent(path, tmp_path):
    copy_path = tmp_path / "copy"
    shutil.copytree(path, copy_path)
    assert verify_checkpoint(str(copy_path)) == []
    assert copy.deepcopy(root(path)) == root(str(copy_path))


@pytest.mark.parametrize("key", ["garbage", "../../x", "/abs", "big/.ATTRIBUTES"])
def test_keys_outside_the_grammar_are_refused(path, key):
    """FORMAT.md 3: every key of an object-based document parses; a bad one is named."""
    rewrite(path, column("key")(key))
    expect(path, match=f"values\\[{re.escape(repr(key))}\\].*grammar of FORMAT.md")
    with pytest.raises(ck.CorruptCheckpointError, match=re.escape(repr(key))):
        ck.list_variables(path)
