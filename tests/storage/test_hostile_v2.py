"""Hostile and damaged format-2 checkpoints (copies of the golden one): every one is a clear
ckptlab error, never a crash, a hang, a huge allocation, or a read outside the checkpoint; and
loading never executes code.  ``test_hostile.py`` attacks format 3 the same way."""

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
from ckptlab.storage import LocalStore, _reader, open_checkpoint, verify_checkpoint

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "v2"
CHUNK = 100 * 10 * 8 + 4
"""Bytes of a chunk of the golden checkpoint's (300, 10) float64 own array (3 chunks)."""


@pytest.fixture
def path(tmp_path):
    """A copy of the golden format-2 checkpoint: packed values, a 3-chunk own array, a slot."""
    return str(shutil.copytree(GOLDEN, tmp_path / "c"))


def document(path: str) -> dict:
    return json.loads(Path(path, "zarr.json").read_text())


def rewrite(path: str, edit) -> None:
    root = document(path)
    edit(root["attributes"]["ckptlab"])
    Path(path, "zarr.json").write_text(json.dumps(root))


def own(doc: dict) -> tuple[str, dict]:
    return next(
        (k, v) for k, v in doc["values"].items() if "offset" not in v and v["shape"] == [300, 10]
    )


def packed(doc: dict) -> tuple[str, dict]:
    return next((k, v) for k, v in doc["values"].items() if "offset" in v and v["shape"])


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


# -- damaged bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", [own, packed])
def test_bit_flip_names_the_key_and_the_object(path, which):
    key, value = which(document(path)["attributes"]["ckptlab"])
    chunk = (
        Path(path, value["array"], "c", "0")
        if "offset" in value
        else Path(path, value["array"], "c", "1", "0")
    )
    data = bytearray(chunk.read_bytes())
    where = (
        value["offset"] * ck.core.ITEMSIZE[value["dtype"]] + 1
        if "offset" in value
        else len(data) // 2
    )
    data[where] ^= 0x10
    chunk.write_bytes(data)
    problems = verify_checkpoint(path)
    assert problems and value["array"] in problems[0]
    with pytest.raises(ck.CorruptCheckpointError, match="checksum mismatch") as info:
        open_checkpoint(LocalStore(), path).read(key)
    assert repr(key) in str(info.value)
    assert value["array"] in str(info.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.write_bytes(f.read_bytes()[:-7]),
        lambda f: f.write_bytes(f.read_bytes() + b"extra"),
        lambda f: f.write_bytes(b""),
        lambda f: f.unlink(),
        lambda f: (f.unlink(), f.mkdir()),
    ],
    ids=["truncated", "appended", "emptied", "missing", "directory"],
)
@pytest.mark.parametrize("which", [own, packed])
def test_damaged_chunks(path, damage, which):
    _, value = which(document(path)["attributes"]["ckptlab"])
    chunk = (
        Path(path, value["array"], "c", "0")
        if "offset" in value
        else Path(path, value["array"], "c", "2", "0")
    )
    damage(chunk)
    expect(path, match=r"missing|holds \d+ bytes|bytes, expected")


def test_missing_array_metadata_is_reported_by_verify_only(path):
    _, value = own(document(path)["attributes"]["ckptlab"])
    Path(path, value["array"], "zarr.json").unlink()
    open_checkpoint(LocalStore(), path).read_many(document(path)["attributes"]["ckptlab"]["values"])
    assert any("plain Zarr readers" in p for p in verify_checkpoint(path))


# -- hostile documents --------------------------------------------------------------------------

HOSTILE_EDITS = {
    "offset beyond the pack": lambda d: packed(d)[1].update(offset=10**6),
    "negative offset": lambda d: packed(d)[1].update(offset=-1),
    "pack longer than stored": lambda d: next(iter(d["packs"].values())).update(length=10**9),
    "pack chunk changed": lambda d: next(iter(d["packs"].values())).update(chunk=7),
    "shape beyond stored bytes": lambda d: own(d)[1].update(shape=[3000, 10]),
    "shape overflows": lambda d: own(d)[1].update(shape=[2**40, 2**40], chunks=[1, 1]),
    "shape overflows int64": lambda d: own(d)[1].update(shape=[2**62, 2**62, 2**62]),
    "negative dimension": lambda d: own(d)[1].update(shape=[-300, 10]),
    "too many dimensions": lambda d: own(d)[1].update(shape=[1] * 40, chunks=[1] * 40),
    "huge chunk": lambda d: own(d)[1].update(chunks=[2**46, 10]),
    "zero chunk": lambda d: own(d)[1].update(chunks=[0, 10]),
    "array path escapes": lambda d: own(d)[1].update(array="../../../etc"),
    "absolute array path": lambda d: own(d)[1].update(array="/etc/passwd"),
    "dot-dot inside array path": lambda d: own(d)[1].update(array="values/../values/0"),
    "pack path escapes": lambda d: d.update(
        packs={"packed/../x": {"dtype": "float32", "length": 1, "chunk": 1}}
    ),
    "unknown dtype": lambda d: own(d)[1].update(dtype="object"),
    "dtype differs from its pack": lambda d: packed(d)[1].update(dtype="int8"),
    "checksum list too short": lambda d: own(d)[1].update(crc32c=[1]),
    "checksum out of range": lambda d: own(d)[1].update(crc32c=[2**40, 0, 0]),
    "checksum is a string": lambda d: own(d)[1].update(crc32c=["0", "0", "0"]),
    "shape is a string": lambda d: own(d)[1].update(shape="300"),
    "bool as int": lambda d: own(d)[1].update(shape=[True, 10]),
    "float as int": lambda d: own(d)[1].update(shape=[300.0, 10]),
    "edge to a missing node": lambda d: d["graph"]["nodes"][0]["children"].append(["ghost", 999]),
    "negative node id": lambda d: d["graph"]["nodes"][0]["children"].append(["ghost", -1]),
    "duplicate child name": lambda d: d["graph"]["nodes"][0]["children"].append(
        d["graph"]["nodes"][0]["children"][0]
    ),
    "child is not a pair": lambda d: d["graph"]["nodes"][0]["children"].append("model"),
    "attribute names a missing key": lambda d: next(
        n for n in d["graph"]["nodes"] if n.get("attributes")
    )["attributes"][0].update(key="nope/.ATTRIBUTES/VARIABLE_VALUE"),
    "slot names a missing node": lambda d: next(
        n for n in d["graph"]["nodes"] if n.get("slot_variables")
    )["slot_variables"][0].__setitem__(2, 10**6),
    "oversize key": lambda d: d["values"].update({"k" * 70_000: own(d)[1]}),
    "oversize child name": lambda d: d["graph"]["nodes"][0]["children"].append(["n" * 70_000, 0]),
    "no nodes": lambda d: d["graph"].update(nodes=[]),
    "nodes not a list": lambda d: d["graph"].update(nodes={"0": {}}),
    "values not an object": lambda d: d.update(values=[1, 2]),
    "missing kind": lambda d: d.pop("kind"),
    "unknown kind": lambda d: d.update(kind="pickle"),
    "graph missing": lambda d: d.pop("graph"),
    "writer not an object": lambda d: d.update(writer="me"),
    "document not an object": lambda d: d.clear() or d.update({"format_version": [2]}),
}


@pytest.mark.parametrize("edit", HOSTILE_EDITS.values(), ids=HOSTILE_EDITS.keys())
def test_hostile_documents(path, edit):
    rewrite(path, edit)
    expect(path)


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
        b'{"zarr_format": 3, "node_type": "group", "attributes": {"ckptlab": {"format_version": '
        + b"9" * 5000
        + b"}}}",
    ],
    ids=["empty", "truncated", "binary", "deeply nested", "an array", "zarr v2", "NaN", "huge int"],
)
def test_hostile_root_documents(path, text):
    Path(path, "zarr.json").write_bytes(text)
    expect(path)


def test_zarr_group_without_a_document_is_not_found(path):
    Path(path, "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    expect(path, ck.NotFoundError, match="not a ckptlab checkpoint")


def test_oversize_document_is_refused_before_reading(path, monkeypatch):
    monkeypatch.setattr(_reader, "MAX_DOCUMENT_BYTES", 1000)
    expect(path, match="refuses documents over")


def test_no_huge_allocation_for_huge_claims(path, peak_bytes):
    """A document claiming terabytes is refused after checking sizes, before allocating."""

    def edit(doc):
        _, value = own(doc)
        value.update(shape=[2**38, 10], chunks=[100, 10], crc32c=[0] * 3)

    def read_it():
        with pytest.raises(ck.CorruptCheckpointError):
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
    # an object-dtype pickle planted as a chunk is just bytes of the wrong size
    _, value = own(document(path)["attributes"]["ckptlab"])
    Path(path, value["array"], "c", "0", "0").write_bytes(pickle.dumps(np.array([object()])))
    expect(path)


def test_symlinked_chunk_outside_is_only_bytes(path, tmp_path):
    """A chunk that is a symlink to a file elsewhere is read as bytes and fails its checksum."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * CHUNK)
    _, value = own(document(path)["attributes"]["ckptlab"])
    chunk = Path(path, value["array"], "c", "0", "0")
    chunk.unlink()
    chunk.symlink_to(secret)
    with pytest.raises(ck.CorruptCheckpointError) as info:
        read_everything(path)
    assert "sss" not in str(info.value)


def test_restore_of_a_damaged_checkpoint_changes_nothing(path):
    _, value = own(document(path)["attributes"]["ckptlab"])
    chunk = Path(path, value["array"], "c", "2", "0")
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
    model = ck.Module()
    model.dense = ck.Module()
    model.dense.kernel = ck.Variable(np.ones((3, 4), np.float32))
    model.big = ck.Variable(np.zeros((300, 10), np.float64))
    with pytest.raises(ck.CorruptCheckpointError):
        ck.Checkpoint(model=model).read(path)
    assert np.array_equal(model.dense.kernel.numpy(), np.ones((3, 4), np.float32))
    assert not model.big.numpy().any()


def test_copies_are_independent(path, tmp_path):
    copy_path = tmp_path / "copy"
    shutil.copytree(path, copy_path)
    assert verify_checkpoint(str(copy_path)) == []
    assert copy.deepcopy(document(path)) == document(str(copy_path))


@pytest.mark.parametrize("key", ["garbage", "../../x", "/abs", "big/.ATTRIBUTES"])
def test_keys_outside_the_grammar_are_refused(path, key):
    """FORMAT.md 3: every key of an object-based document parses; a bad one is named."""

    def rename(doc: dict) -> None:
        old, _ = own(doc)
        doc["values"][key] = doc["values"].pop(old)
        for node in doc["graph"]["nodes"]:
            for attribute in node.get("attributes", ()):
                if attribute["key"] == old:
                    attribute["key"] = key

    rewrite(path, rename)
    expect(path, match=f"values\\[{re.escape(repr(key))}\\].*grammar of FORMAT.md")
    with pytest.raises(ck.CorruptCheckpointError, match=re.escape(repr(key))):
        ck.list_variables(path)
