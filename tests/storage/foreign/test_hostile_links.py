"""Symbolic links in multi-file foreign checkpoints: followed only inside the checkpoint.

docs/foreign-formats.md §12.1: a shard, an index or a metadata file may be a link that resolves
inside the checkpoint's directory, or (a Hugging Face hub cache snapshot) into the repository's
``blobs``; anything else is refused before a byte of it is read.  Every layout here is built
with real links.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage._foreign._bundle_writer import write_bundle

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SECRET = np.full(3, 42.0, np.float32)


def expect_refused(action, link: Path, target: Path) -> str:
    with pytest.raises(ck.UnsupportedFormatError, match="is a symbolic link to") as info:
        action()
    message = str(info.value)
    assert str(link) in message and str(target.resolve()) in message, message
    assert "Copy the real files" in message, message
    return message


def hf_sharded(directory: Path, shards: dict[str, dict[str, np.ndarray]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for shard, tensors in shards.items():
        safetensors_numpy.save_file(tensors, str(directory / shard))
        weight_map.update(dict.fromkeys(tensors, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


def move_out(link: Path, target: Path) -> Path:
    """Move ``link``'s file to ``target`` and leave a symbolic link to it in its place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(link, target)
    link.symlink_to(target)
    return target


# -- Hugging Face --------------------------------------------------------------------------------


def test_an_hf_shard_linked_from_outside_is_refused(tmp_path):
    model = hf_sharded(tmp_path / "hf", {"model-00001-of-00001.safetensors": {"w": SECRET}})
    shard = model / "model-00001-of-00001.safetensors"
    target = move_out(shard, tmp_path / "outside" / "secret.safetensors")
    expect_refused(lambda: ck.load_checkpoint(model).get_tensor("w"), shard, target)
    expect_refused(lambda: ck.list_variables(model / "model.safetensors.index.json"), shard, target)


def test_an_hf_index_linked_from_outside_is_refused_before_it_is_parsed(tmp_path):
    model = tmp_path / "hf"
    model.mkdir()
    target = tmp_path / "outside" / "hostname"
    target.parent.mkdir()
    target.write_text("not json at all")
    index = model / "model.safetensors.index.json"
    index.symlink_to(target)
    message = expect_refused(lambda: ck.list_variables(model), index, target)
    assert "JSON" not in message


def test_a_single_weights_file_linked_from_outside_is_refused(tmp_path):
    model = tmp_path / "hf"
    model.mkdir()
    target = tmp_path / "outside" / "model.safetensors"
    target.parent.mkdir()
    safetensors_numpy.save_file({"w": SECRET}, str(target))
    (model / "model.safetensors").symlink_to(target)
    expect_refused(lambda: ck.list_variables(model), model / "model.safetensors", target)


def test_a_stray_outside_link_does_not_hide_the_weights(tmp_path):
    model = tmp_path / "hf"
    model.mkdir()
    safetensors_numpy.save_file({"w": np.ones(2, np.float32)}, str(model / "model.safetensors"))
    (tmp_path / "notes.bin").write_bytes(b"\x80notes")
    (model / "training_args.bin").symlink_to(tmp_path / "notes.bin")
    assert ck.list_variables(model) == [("w", [2])]


def test_a_folder_whose_only_outside_link_is_no_weights_file_is_no_checkpoint(tmp_path):
    """A link named like notes, not weights, is no reason to read or refuse: the folder is
    simply not a checkpoint (the CLI's exit status 2, not a link error)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (tmp_path / "elsewhere.txt").write_text("secret")
    (folder / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(ck.NotFoundError, match="is a directory but not a ckptlab checkpoint"):
        ck.list_variables(folder)


def test_links_inside_the_directory_are_followed(tmp_path):
    model = hf_sharded(tmp_path / "hf", {"model-00001-of-00001.safetensors": {"w": SECRET}})
    shard = model / "model-00001-of-00001.safetensors"
    move_out(shard, model / "store" / "real.safetensors")
    np.testing.assert_array_equal(ck.load_checkpoint(model).get_tensor("w"), SECRET)


@pytest.mark.parametrize("subfolder", ["", "text_encoder"])
def test_a_hub_cache_snapshot_keeps_working(tmp_path, subfolder):
    """``models--org--name/snapshots/<rev>/[subfolder/]`` files link into ``../../blobs``."""
    repo = tmp_path / "hub" / "models--org--name"
    snapshot = repo / "snapshots" / "0123abcd" / subfolder
    shards = {
        "model-00001-of-00002.safetensors": {"a": np.arange(3, dtype=np.float32)},
        "model-00002-of-00002.safetensors": {"b": np.ones((2, 2), np.float32)},
    }
    hf_sharded(snapshot, shards)
    (repo / "blobs").mkdir()
    for number, name in enumerate([*shards, "model.safetensors.index.json"]):
        blob = repo / "blobs" / f"{number:040x}"
        shutil.move(snapshot / name, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    reader = ck.load_checkpoint(snapshot)
    np.testing.assert_array_equal(reader.get_tensor("a"), np.arange(3))
    np.testing.assert_array_equal(reader.get_tensor("b"), np.ones((2, 2)))
    listed = ck.list_variables(snapshot / "model.safetensors.index.json")
    assert listed == [("a", [3]), ("b", [2, 2])]


def test_a_snapshot_may_not_link_past_its_repository_blobs(tmp_path):
    repo = tmp_path / "hub" / "models--org--name"
    snapshot = hf_sharded(
        repo / "snapshots" / "0123abcd", {"model-00001-of-00001.safetensors": {"w": SECRET}}
    )
    (repo / "blobs").mkdir()
    shard = snapshot / "model-00001-of-00001.safetensors"
    target = move_out(shard, tmp_path / "hub" / "models--other--repo" / "blobs" / "x")
    expect_refused(lambda: ck.list_variables(snapshot), shard, target)


def test_a_snapshot_may_not_leave_through_a_linked_blobs(tmp_path, monkeypatch):
    """A repository whose ``blobs`` is itself a link (to ``/``) is no hub cache: a link through
    it resolves outside the repository and is refused before a byte of its target is read."""
    repo = tmp_path / "hub" / "models--org--m"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "blobs").symlink_to("/")
    secret = tmp_path / "elsewhere" / "secret.safetensors"
    secret.parent.mkdir()
    safetensors_numpy.save_file({"w": SECRET}, str(secret))
    passwd = tmp_path / "elsewhere" / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    link = snapshot / "model.safetensors"
    read: list[str] = []
    original = ck.storage.LocalStore.read_into

    def recording(self, key, out, offset):
        read.append(os.path.realpath(key))
        return original(self, key, out, offset)

    monkeypatch.setattr(ck.storage.LocalStore, "read_into", recording)
    for target in (secret, passwd):
        link.unlink(missing_ok=True)
        link.symlink_to(f"../../blobs{target}")
        message = expect_refused(lambda: ck.list_variables(snapshot), link, target)
        assert f"{repo / 'blobs'} is itself a symbolic link" in message, message
        assert str(target) not in read


def test_only_a_hub_cache_repository_lends_its_blobs(tmp_path):
    """``snapshots/<rev>/`` under a folder not named ``models--<org>--<name>`` is no hub cache."""
    repo = tmp_path / "notacache"
    snapshot = hf_sharded(
        repo / "snapshots" / "0123abcd", {"model-00001-of-00001.safetensors": {"w": SECRET}}
    )
    shard = snapshot / "model-00001-of-00001.safetensors"
    target = repo / "blobs" / "0001"
    target.parent.mkdir()
    shutil.move(shard, target)
    shard.symlink_to(os.path.relpath(target, snapshot))
    expect_refused(lambda: ck.list_variables(snapshot), shard, target)


def hub_repository(root: Path, files: dict[str, bytes], revision: str = "0123abcd") -> Path:
    """``models--org--name`` as huggingface_hub lays it out: blobs, refs/main, a snapshot."""
    repo = root / "models--org--name"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for number, (name, data) in enumerate(files.items()):
        blob = repo / "blobs" / f"{revision}{number:032x}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def test_a_hub_cache_repository_names_the_snapshot_to_pass(tmp_path):
    weights = safetensors_numpy.save({"w": SECRET})
    hub_repository(tmp_path, {"model.safetensors": weights}, revision="0ld")
    snapshot = hub_repository(tmp_path, {"model.safetensors": weights}, revision="cafe")
    repo = snapshot.parent.parent
    for path in (repo, repo / "snapshots"):
        with pytest.raises(ck.NotFoundError) as info:
            ck.list_variables(path)
        message = str(info.value)
        assert "Hugging Face hub cache repository" in message, message
        assert f"Pass {snapshot} (the revision refs/main names" in message, message
    assert ck.list_variables(snapshot) == [("w", [3])]


def test_a_deleted_blob_names_the_dangling_link_and_where_it_points(tmp_path):
    """huggingface-cli delete-cache (or an interrupted download) leaves links to nothing."""
    weights = safetensors_numpy.save({"w": SECRET})
    snapshot = hub_repository(tmp_path, {"model.safetensors": weights})
    link = snapshot / "model.safetensors"
    target = os.readlink(link)
    os.remove(link.resolve())
    for path in (snapshot, link):
        with pytest.raises(ck.NotFoundError) as info:
            ck.list_variables(path)
        message = str(info.value)
        assert f"{link} is a symbolic link to {target} ({tmp_path}/" in message, message
        assert "which does not exist" in message and "Download the model again" in message
        assert "not a ckptlab checkpoint" not in message and "suffix" not in message, message


def test_a_sharded_snapshot_whose_shard_blob_was_deleted_names_the_link(tmp_path):
    model = hf_sharded(tmp_path / "model", {"model-00001-of-00001.safetensors": {"w": SECRET}})
    snapshot = hub_repository(tmp_path, {f.name: f.read_bytes() for f in model.iterdir()})
    shard = snapshot / "model-00001-of-00001.safetensors"
    os.remove(shard.resolve())
    with pytest.raises(ck.NotFoundError, match=f"is a symbolic link to {os.readlink(shard)}"):
        ck.list_variables(snapshot)


# -- DCP, Keras, Orbax, TensorFlow -------------------------------------------------------------


def test_a_dcp_file_linked_from_outside_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    directory = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save({"w": torch.arange(4.0)}, checkpoint_id=str(directory))
    assert ck.list_variables(directory) == [("w", [4])]
    (data,) = directory.glob("*.distcp")
    target = move_out(data, tmp_path / "outside" / data.name)
    expect_refused(lambda: ck.list_variables(directory), data, target)
    metadata = directory / ".metadata"
    metadata_target = move_out(metadata, tmp_path / "outside" / "metadata")
    expect_refused(lambda: ck.list_variables(directory), metadata, metadata_target)


def test_keras_shards_and_their_map_linked_from_outside_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    directory = tmp_path / "keras"
    directory.mkdir()
    with h5py.File(directory / "model_00000.weights.h5", "w") as handle:
        handle["layers/dense/vars/0"] = SECRET
    index = directory / "model.weights.json"
    index.write_text(json.dumps({"weight_map": {"/layers/dense/vars": "model_00000.weights.h5"}}))
    assert ck.list_variables(index) == [("layers/dense/vars/0", [3])]
    shard = directory / "model_00000.weights.h5"
    target = move_out(shard, tmp_path / "outside" / "secret.h5")
    expect_refused(lambda: ck.list_variables(index), shard, target)
    shard.unlink()
    shutil.move(target, shard)
    index_target = move_out(index, tmp_path / "outside" / "model.weights.json")
    expect_refused(lambda: ck.list_variables(index), index, index_target)


def test_an_orbax_array_linked_from_outside_is_refused(tmp_path):
    from .test_hostile_orbax import orbax_item

    item = orbax_item(tmp_path / "item", ocdbt=False)
    assert ck.list_variables(item) == [("params/kernel", [3, 4])]
    array = item / "params.kernel"
    target = move_out(array, tmp_path / "outside" / "params.kernel")
    expect_refused(lambda: ck.list_variables(item), array, target)


def test_a_tensorflow_data_file_linked_from_outside_is_refused(tmp_path):
    prefix = tmp_path / "tf" / "ckpt"
    prefix.parent.mkdir()
    write_bundle(str(prefix), {"a": SECRET})
    data = Path(f"{prefix}.data-00000-of-00001")
    target = move_out(data, tmp_path / "outside" / data.name)
    expect_refused(lambda: ck.list_variables(str(prefix)), data, target)
