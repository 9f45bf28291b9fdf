"""Hostile Keras 3 files (HDF5 through h5py, ``.keras`` zips): typed errors, nothing read outside.

Every file is written here with h5py, a few KB; the ones that would allocate gigabytes run in a
forked child with a memory and time limit (``bounded``).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_path

h5py = pytest.importorskip("h5py")

KEY = "layers/dense/vars/0"


def weights(path: Path, **datasets: np.ndarray) -> Path:
    """A ``.weights.h5`` with one dataset per keyword (``__`` stands for ``/``)."""
    with h5py.File(path, "w") as handle:
        for name, data in datasets.items():
            handle[name.replace("__", "/")] = data
    return path


def keras_zip(path: Path, member: bytes | None, method: int = zipfile.ZIP_STORED, **extra) -> Path:
    """A ``.keras`` archive: config, metadata and (unless ``None``) the weights member."""
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("config.json", extra.get("config", b"{}"))
        archive.writestr("metadata.json", b"{}")
        if member is not None:
            archive.writestr("model.weights.h5", member)
    return path


def h5_bytes(data: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle[KEY] = data
    return buffer.getvalue()


# -- bytes outside the file --------------------------------------------------------------------


def test_a_dataset_stored_in_an_external_file_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret " * 8)
    path = tmp_path / "ckpt" / "model.weights.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as handle:
        handle.create_dataset(KEY, shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
    with pytest.raises(ck.CorruptCheckpointError, match="external files .*secret.txt") as info:
        ck.load_checkpoint(path).get_tensor(KEY)
    assert "top secret" not in str(info.value)
    assert str(path) in str(info.value) and "save the weights again" in str(info.value)


def test_a_virtual_dataset_is_refused(tmp_path):
    source = weights(tmp_path / "source.h5", data=np.arange(4, dtype="f4"))
    path = tmp_path / "model.weights.h5"
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(4,))
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset(KEY, layout)
    with pytest.raises(ck.CorruptCheckpointError, match="virtual dataset"):
        ck.list_variables(path)


def test_external_and_soft_links_are_not_followed(tmp_path):
    other = weights(tmp_path / "other.h5", layers__other__vars__0=np.arange(3, dtype="f4"))
    path = weights(tmp_path / "model.weights.h5", layers__dense__vars__0=np.ones(2, "f4"))
    with h5py.File(path, "a") as handle:
        handle["layers/linked/vars/0"] = h5py.ExternalLink(str(other), "layers/other/vars/0")
        handle["layers/soft"] = h5py.SoftLink("/layers/dense")
    assert ck.list_variables(path) == [(KEY, [2])]


# -- sizes the file does not hold ---------------------------------------------------------------


def test_a_huge_dataset_with_no_chunks_written_is_refused_on_open(tmp_path, bounded):
    path = tmp_path / "big.weights.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(KEY, shape=(2**30,), dtype="f4", chunks=(1024,))
    assert path.stat().st_size < 8192
    outcome = bounded(lambda: ck.load_checkpoint(path).get_tensor(KEY), seconds=20, memory=2**30)
    assert outcome is not None and outcome[:2] == (True, "CorruptCheckpointError"), outcome
    assert "4,294,967,296 bytes, but the file stores 0 bytes" in outcome[2]


def test_a_huge_compressed_dataset_fails_to_allocate_with_a_typed_error(tmp_path, bounded):
    path = tmp_path / "big.weights.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(KEY, shape=(2**30,), dtype="f4", chunks=(1024,), compression="gzip")
    assert ck.list_variables(path) == [(KEY, [2**30])]  # compressed: the stored size says little
    outcome = bounded(lambda: ck.load_checkpoint(path).get_tensor(KEY), seconds=20, memory=2**30)
    assert outcome is not None and outcome[:2] == (True, "CorruptCheckpointError"), outcome
    assert f"{KEY!r}" in outcome[2] and "4,294,967,296 bytes" in outcome[2]
    assert "more memory than this process can allocate" in outcome[2]


@pytest.mark.parametrize(
    "options",
    [{}, {"chunks": (5,)}, {"chunks": (5,), "compression": "gzip"}, {"fletcher32": True}],
)
def test_fully_written_datasets_of_every_layout_still_read(tmp_path, options):
    path = tmp_path / "model.weights.h5"
    data = np.arange(12, dtype="f4")
    with h5py.File(path, "w") as handle:
        handle.create_dataset(KEY, data=data, **options)
        handle.create_dataset("layers/dense/vars/1", shape=(0, 3), dtype="f4")
        handle["layers/dense/vars/2"] = np.float32(7)
    reader = ck.load_checkpoint(path)
    np.testing.assert_array_equal(reader.get_tensor(KEY), data)
    assert reader.get_tensor("layers/dense/vars/1").shape == (0, 3)
    assert reader.get_tensor("layers/dense/vars/2") == 7


# -- damaged .keras archives ---------------------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_changed_byte_in_the_weights_member_fails_its_crc(tmp_path, method):
    member = h5_bytes(np.arange(256, dtype="f4"))
    path = keras_zip(tmp_path / "model.keras", member, method)
    assert ck.list_variables(path) == [(KEY, [256])]
    data = bytearray(path.read_bytes())
    if method == zipfile.ZIP_STORED:  # a byte of the HDF5 superblock, as in the hanging file
        data[data.find(b"\x89HDF") + 20] ^= 0x8A
    else:  # a deflated byte: the stream may still inflate, into other bytes
        start = data.find(b"model.weights.h5") + len("model.weights.h5")
        data[start + 200] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match="model.weights.h5") as info:
        ck.list_variables(path)
    if method == zipfile.ZIP_STORED:
        assert "fails its zip CRC-32 check" in str(info.value)


def test_the_crc_is_checked_in_pieces(tmp_path, monkeypatch):
    from ckptlab.storage._foreign import _keras

    monkeypatch.setattr(_keras, "CRC_PIECE", 1000, raising=False)
    member = h5_bytes(np.arange(4096, dtype="f4"))
    path = keras_zip(tmp_path / "model.keras", member)
    assert ck.list_variables(path) == [(KEY, [4096])]
    data = bytearray(path.read_bytes())
    data[data.rfind(np.arange(4096, dtype="f4")[-8:].tobytes())] ^= 0x01  # the last piece
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match="CRC-32"):
        ck.list_variables(path)


def test_a_zip_needing_an_unknown_version_is_typed(tmp_path):
    path = keras_zip(tmp_path / "model.keras", h5_bytes(np.ones(2, "f4")))
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + 6] = 250  # "version needed to extract": 25.0
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match=r"zip file version 25\.0"):
        ck.list_variables(path)


def test_a_keras_archive_without_weights_says_what_it_must_hold(tmp_path):
    path = keras_zip(tmp_path / "model.keras", None)
    with pytest.raises(ck.CorruptCheckpointError, match="no model.weights.h5 member") as info:
        ck.list_variables(path)
    assert "torch" not in str(info.value)
    assert "config.json, metadata.json and model.weights.h5" in str(info.value)


def test_a_deeply_nested_config_is_typed(tmp_path):
    member = h5_bytes(np.ones(2, "f4"))
    path = keras_zip(tmp_path / "model.keras", member, config=b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ck.CorruptCheckpointError, match="config.json is damaged"):
        ck.list_variables(path)


# -- odd HDF5 structure ---------------------------------------------------------------------------


def test_a_dtype_attribute_that_is_an_array_is_ignored(tmp_path):
    path = weights(tmp_path / "model.weights.h5", layers__dense__vars__0=np.arange(3, dtype="f4"))
    with h5py.File(path, "a") as handle:
        handle[KEY].attrs["dtype"] = np.array([1, 2])
    np.testing.assert_array_equal(ck.load_checkpoint(path).get_tensor(KEY), np.arange(3))


def test_a_null_dataspace_holds_no_value_and_is_named(tmp_path):
    path = weights(tmp_path / "model.weights.h5", layers__dense__vars__0=np.ones(2, "f4"))
    with h5py.File(path, "a") as handle:
        handle.create_dataset("layers/dense/vars/1", shape=None, dtype="f4")
    reader = open_path(path)
    assert list(reader.document.values) == [KEY]
    assert "null dataspace" in reader.skipped["layers/dense/vars/1"]


def test_a_name_that_is_not_utf8_is_typed(tmp_path):
    path = weights(tmp_path / "model.weights.h5", layers__dense__vars__0=np.ones(2, "f4"))
    with h5py.File(path, "a") as handle:
        handle["layers/dense/vars"].create_dataset(b"\xff1", data=np.ones(2, "f4"))
    with pytest.raises(ck.UnsupportedFormatError, match=r"not UTF-8 text") as info:
        ck.list_variables(path)
    assert str(path) in str(info.value)


def test_a_missing_shard_is_not_found(tmp_path):
    weights(tmp_path / "model_00000.weights.h5", layers__dense__vars__0=np.ones(2, "f4"))
    index = tmp_path / "model.weights.json"
    shards = ["model_00000.weights.h5", "model_00001.weights.h5"]
    index.write_text(json.dumps({"weight_map": {"/layers/dense/vars": shards}}))
    with pytest.raises(ck.NotFoundError, match="model_00001.weights.h5 is missing") as info:
        ck.list_variables(index)
    assert "Copy every file of the checkpoint" in str(info.value)
