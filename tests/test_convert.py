"""``ck.convert``: foreign checkpoints written as ckptlab checkpoints, then restored."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_checkpoint, resolve

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "foreign"


@pytest.fixture(scope="module")
def manifest():
    return json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]


def _digests(path: str) -> dict[str, str]:
    reader = ck.load_checkpoint(path)
    return {
        key: hashlib.sha256(reader.get_tensor(key).tobytes()).hexdigest()
        for key in reader.get_variable_to_shape_map()
    }


def test_torch_state_dict_converts_and_restores_by_name(manifest, tmp_path):
    out = ck.convert(FIXTURES / "torch" / "state_dict.pt", tmp_path / "converted")
    source = open_checkpoint(*resolve(out))
    assert source.document.kind == "name"
    assert source.document.writer["source_format"].startswith("PyTorch")
    expected = manifest["torch_state_dict"]["tensors"]
    assert _digests(out) == {k: v["sha256"] for k, v in expected.items()}
    model = ck.Module()
    variables = {}
    for index, (name, spec) in enumerate(expected.items()):
        dtype = ck.load_checkpoint(out).get_variable_to_dtype_map()[name]
        variables[name] = ck.Variable(np.zeros(spec["shape"], dtype), name=name)
        setattr(model, f"v{index}", variables[name])
    status = ck.Checkpoint(model=model).restore(out)
    assert isinstance(status, ck.NameBasedSaverStatus)
    status.assert_consumed()
    for name, variable in variables.items():
        assert hashlib.sha256(variable.numpy().tobytes()).hexdigest() == expected[name]["sha256"]


def test_tf2_checkpoint_keeps_its_object_graph(manifest, tmp_path):
    src = str(FIXTURES / "tf2_keras_legacy_adam" / "ckpt")
    out = ck.convert(src, tmp_path / "converted")
    original, converted = ck.load_checkpoint(src), ck.load_checkpoint(out)
    assert _digests(out) == _digests(src)
    assert [dict(n.children) for n in converted.object_graph.nodes] == [
        dict(n.children) for n in original.object_graph.nodes
    ]
    assert [n.slot_variables for n in converted.object_graph.nodes] == [
        n.slot_variables for n in original.object_graph.nodes
    ]


def _fixture_paths() -> dict[str, str]:
    """Every fixture of the manifest: its TF prefix or its one file."""
    fixtures = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
    return {name: f.get("prefix") or f["files"][0]["path"] for name, f in fixtures.items()}


@pytest.mark.parametrize(("name", "src"), sorted(_fixture_paths().items()))
def test_every_fixture_converts_and_every_value_survives(tmp_path, manifest, name, src):
    """Fixtures holding strings, float8 or int4 convert with ``skip_unsupported``."""
    source = open_checkpoint(*resolve(str(FIXTURES / src)))
    refused = {k for k, v in source.document.values.items() if v.dtype not in ck.core.ITEMSIZE}
    out = ck.convert(FIXTURES / src, tmp_path / "converted", skip_unsupported=bool(refused))
    converted = open_checkpoint(*resolve(out))
    assert converted.document.kind == source.document.kind
    expected = {
        k: v["sha256"]
        for k, v in manifest[name]["tensors"].items()
        if k in source.document.values and k not in refused
    }
    digests = _digests(out)
    assert set(digests) == set(source.document.values) - refused
    assert {k: digests[k] for k in expected} == expected
    if name == "tf1_many_keys":
        assert len(digests) == manifest[name]["tensor_summary"]["count"]


def test_unsupported_dtypes_are_named_or_skipped(tmp_path, manifest):
    src = FIXTURES / "tf2_dtypes" / "ckpt"
    with pytest.raises(ck.UnsupportedFormatError, match="skip_unsupported=True") as caught:
        ck.convert(src, tmp_path / "refused")
    assert "d/text/.ATTRIBUTES/VARIABLE_VALUE" in str(caught.value)
    assert not (tmp_path / "refused").exists()
    out = ck.convert(src, tmp_path / "converted", skip_unsupported=True)
    kept = ck.load_checkpoint(out).get_variable_to_dtype_map()
    assert "d/bf16/.ATTRIBUTES/VARIABLE_VALUE" in kept
    assert not any(k.startswith(("d/text", "d/i4", "d/f8")) for k in kept)


def test_convert_applies_a_key_map(tmp_path, manifest):
    key_map = ck.KeyMap({r"\.weight$": "/kernel"}, transpose=["kernel$"])
    out = ck.convert(FIXTURES / "torch" / "state_dict.pt", tmp_path / "mapped", key_map=key_map)
    assert ck.load_checkpoint(out).get_variable_to_shape_map()["fc1/kernel"] == [4, 3]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"key_map": {"a": "b"}}, "ck.KeyMap or None for `key_map`"),
        ({"options": {"durable": False}}, "ck.WriteOptions or None for `options`"),
        ({"format": "pt"}, "for `format`, got 'pt' (str)"),
        ({"format": "safetensors", "root": 1}, "for `root`, got 1 (int)"),
        ({"format": "safetensors", "max_shard_size": "big"}, "at least one byte"),
        ({"max_shard_size": "5GB"}, "format='safetensors' only"),
    ],
)
def test_wrong_arguments_are_refused_before_anything_is_written(tmp_path, arguments, message):
    """Each was a bare Python error (AttributeError, ValueError) from inside the conversion."""
    source = ck.Checkpoint(w=ck.Variable([1.0])).write(tmp_path / "src")
    with pytest.raises(ck.InvalidArgumentError, match=re.escape(message)):
        ck.convert(source, tmp_path / "out", **arguments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_an_existing_safetensors_destination_is_a_storage_exists_error(tmp_path):
    """It was a bare ck.CkptlabError; a FileExistsError is what such a refusal is."""
    source = ck.Checkpoint(w=ck.Variable([1.0])).write(tmp_path / "src")
    (tmp_path / "out.safetensors").write_bytes(b"x")
    with pytest.raises(ck.StorageExistsError, match="out.safetensors: it exists") as caught:
        ck.convert(source, tmp_path / "out.safetensors", format="safetensors")
    assert isinstance(caught.value, FileExistsError)
    assert (tmp_path / "out.safetensors").read_bytes() == b"x"


def test_a_full_disk_names_the_export_not_its_staging_copy(tmp_path, no_space):
    source = ck.Checkpoint(w=ck.Variable(np.ones(100, np.float32))).write(tmp_path / "src")
    no_space(lambda name: ".tmp-" in name)
    with pytest.raises(ck.StorageError) as caught:
        ck.convert(source, tmp_path / "out.safetensors", format="safetensors")
    assert str(caught.value).startswith(
        f"Could not write {tmp_path / 'out.safetensors'}: No space left on device."
    )
    assert caught.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_directory_removed_while_an_export_writes_publishes_nothing(tmp_path, monkeypatch):
    """``rm -rf`` of the export's directory after its first shard: the next shard's write
    re-created the hidden staging directory (local writes create their parents), and the
    export renamed it into place without the first shard and returned.  It now raises
    NotFoundError naming the export and publishes nothing, as a save does."""
    from ckptlab.storage import LocalStore

    values = {name: ck.Variable(np.full(100, i, np.float32)) for i, name in enumerate("abc")}
    source = ck.Checkpoint(**values).write(tmp_path / "src")
    exports = tmp_path / "exports"
    write_stream, written = LocalStore.write_stream, []

    def removed_after_the_first(store, key, batches, *, durable):  # one call per shard
        write_stream(store, key, batches, durable=durable)
        written.append(key)
        if len(written) == 1:
            shutil.rmtree(exports)

    monkeypatch.setattr(LocalStore, "write_stream", removed_after_the_first)
    with pytest.raises(ck.NotFoundError) as caught:
        ck.convert(source, exports / "hf", format="safetensors", max_shard_size=500)
    message = str(caught.value)
    assert len(written) == 3 and message.startswith(f"Could not write {exports / 'hf'}: ")
    assert "Something removed the directory" in message and "nothing was published" in message
    assert ".tmp-" not in message
    assert not exports.exists() or os.listdir(exports) == []


PAUSED_IN_EXPORT = """
    import sys, time
    import ckptlab as ck
    from ckptlab.storage import LocalStore
    source, target = sys.argv[1:]
    write_stream = LocalStore.write_stream
    def paused(store, key, batches, *, durable):  # a safetensors file: one call
        write_stream(store, key, batches, durable=durable)
        print("PAUSED", flush=True)  # its temporary holds a file's bytes
        time.sleep(600)
    LocalStore.write_stream = paused
    ck.convert(source, target, format="safetensors")
"""


@pytest.mark.parametrize("name", ["hf", "model.safetensors"], ids=["directory", "file"])
def test_an_export_removes_what_killed_exports_left_but_not_a_live_ones(
    tmp_path, kill_at_marker, name
):
    """An export killed while writing left its hidden ``.<name>.tmp-<hex>`` behind, and later
    exports of the path never removed it (they pile up, a model's size each). An export now
    removes those a killed export left, as a save does, but not the one a live export of the
    same path is writing (it holds its lock)."""
    source = ck.Checkpoint(w=ck.Variable(np.ones(100, np.float32))).write(tmp_path / "src")
    exports = tmp_path / "exports"
    kill_at_marker(PAUSED_IN_EXPORT, source, exports / name, marker="PAUSED")
    [killed] = os.listdir(exports)
    live = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PAUSED_IN_EXPORT), source, exports / name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout.readline() == "PAUSED\n"
        [writing] = set(os.listdir(exports)) - {killed}
        ck.convert(source, exports / name, format="safetensors")
        assert sorted(os.listdir(exports)) == sorted([name, writing])
    finally:
        live.kill()
        live.wait()
        live.stdout.close()
    assert ck.list_variables(exports / name) == [("w/.ATTRIBUTES/VARIABLE_VALUE", [100])]


GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"


@pytest.mark.parametrize("version", ["v1", "v2", "v3-workers"])
def test_convert_upgrades_old_format_versions(tmp_path, version):
    """``ckptlab convert`` rewrites an old checkpoint in the current format, value for value
    (``v3-workers``: own arrays in the older form of FORMAT.md section 5)."""
    src = str(GOLDEN / version)
    dst = ck.convert(src, str(tmp_path / "upgraded"))
    document = open_checkpoint(*resolve(dst)).document
    assert document.format_version == ck.core.FORMAT_VERSION == 3
    assert document.kind == "object"
    assert _digests(dst) == _digests(src)
    assert sorted(p.name for p in Path(dst).iterdir()) == ["data", "zarr.json"]
    assert ck.storage.verify_checkpoint(dst) == []
    model = ck.Module()
    model.step = ck.Variable(np.int64(0))
    ck.Checkpoint(model=model).read(dst).expect_partial()
    assert int(model.step.numpy()) == 42


def test_a_key_map_renames_the_keys_of_an_object_based_checkpoint(tmp_path):
    """Keys name an object by its first path, so a renamed edge renames the keys below it."""
    model = ck.Module()
    model.w = ck.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    source = ck.Checkpoint(model=model).write(tmp_path / "src")
    key_map = ck.KeyMap({"^w$": "kernel"}, transpose=["model/kernel$"])
    converted = ck.convert(source, tmp_path / "out", key_map=key_map)
    assert ck.list_variables(converted) == [("model/kernel/.ATTRIBUTES/VARIABLE_VALUE", [3, 2])]
    renamed = ck.Module()
    renamed.kernel = ck.Variable(np.zeros((3, 2), np.float32))
    ck.Checkpoint(model=renamed).restore(converted).expect_partial()  # (no save_counter saved)
    np.testing.assert_array_equal(renamed.kernel.numpy(), model.w.numpy().T)
    exported = ck.convert(source, tmp_path / "st", format="safetensors", key_map=key_map)
    reader = ck.load_checkpoint(exported)
    assert list(reader.get_variable_to_shape_map()) == ["model/kernel/.ATTRIBUTES/VARIABLE_VALUE"]


def _sharded_source(directory: Path, *, damaged: bool) -> str:
    """Five values of five dtypes (five shards at 10KB); ``damaged``: the one written last."""
    dtypes = ["float32", "int64", "int32", "float64", "uint8"]
    values = {
        f"v{i}": ck.Variable(np.arange(3000 * (i + 1), dtype=d)) for i, d in enumerate(dtypes)
    }
    source = ck.Checkpoint(**values).write(directory / ("damaged" if damaged else "intact"))
    if damaged:
        with open(os.path.join(source, "data", "uint8", "0"), "r+b") as file:
            file.truncate(100)
    return source


@pytest.mark.parametrize("failing", ["the last shard", "the index"])
def test_a_failed_sharded_export_to_s3_leaves_nothing(tmp_path, s3_prefix, monkeypatch, failing):
    """Object stores cannot rename, so an export writes its shards in place; one that failed
    part-way (a damaged source value, a refused upload) left shards 1-4 of 5 under their final
    names and no index: ``ckptlab ls`` of the path failed and a retry was refused because it
    existed.  The shards are deleted now, the index first when its upload may have landed
    (a reader never takes the remains for a complete export); the retry then succeeds."""
    from ckptlab.storage import FsspecStore

    dst = f"{s3_prefix}/export"
    store, key = resolve(dst)
    deleted: list[str] = []
    delete_tree, write = FsspecStore.delete_tree, FsspecStore.write

    def noted(self, path):
        deleted.append(path)
        delete_tree(self, path)

    def landed_then_lost(self, path, parts, *, durable):  # the upload landed, its answer did not
        write(self, path, parts, durable=durable)
        if path.endswith("model.safetensors.index.json"):
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    monkeypatch.setattr(FsspecStore, "delete_tree", noted)
    monkeypatch.setattr(FsspecStore, "write", landed_then_lost)
    source = _sharded_source(tmp_path, damaged=failing == "the last shard")
    with pytest.raises((ck.CorruptCheckpointError, ConnectionResetError)):
        ck.convert(source, dst, format="safetensors", max_shard_size="10KB")
    assert store.list_dir(key) == []
    assert deleted[0] == f"{key}/model.safetensors.index.json"
    monkeypatch.setattr(FsspecStore, "write", write)
    intact = _sharded_source(tmp_path, damaged=False)
    ck.convert(intact, dst, format="safetensors", max_shard_size="10KB")
    assert len(store.list_dir(key)) == 6
    assert _digests(dst) == _digests(intact)


@pytest.mark.parametrize("name", ["model.safetensors", "export"], ids=["file", "directory"])
def test_a_failed_export_removes_the_parent_directories_it_created(tmp_path, name):
    """An export to ``new/sub/<name>`` whose source is damaged raised, but left ``new/sub/``
    behind, empty (the staging copy's missing parents were created and never removed); a
    failed save removes them too.  Parents that existed before stay, even when empty."""
    source = ck.Checkpoint(a=ck.Variable(np.arange(1000, dtype=np.float32))).write(tmp_path / "src")
    with open(os.path.join(source, "data", "float32", "0"), "r+b") as file:
        file.truncate(10)
    (tmp_path / "old").mkdir()
    for dst in (tmp_path / "new" / "sub" / name, tmp_path / "old" / "sub" / name):
        with pytest.raises(ck.CorruptCheckpointError):
            ck.convert(source, dst, format="safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old", "src"]
    assert list((tmp_path / "old").iterdir()) == []
