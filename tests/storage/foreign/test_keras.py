"""Keras 3 weights written by real Keras (JAX backend, in a subprocess), read without Keras."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_path
from ckptlab.storage._layout import numpy_dtype

from .contract import (
    assert_reads_exactly,
    assert_reads_without,
    assert_works_everywhere,
    read_everything,
)

h5py = pytest.importorskip("h5py")
if importlib.util.find_spec("keras") is None:  # not imported here: it would pick a backend
    pytest.skip("keras is not installed", allow_module_level=True)
WRITER = Path(__file__).parent / "writers" / "keras_writer.py"


@pytest.fixture(scope="module")
def keras_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(WRITER), str(root)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return root


def _expected(keras_dir: Path, which: str) -> dict[str, np.ndarray]:
    with open(keras_dir / "expected.pickle", "rb") as handle:
        found = pickle.load(handle)[which]
    return {
        key: np.frombuffer(data, numpy_dtype(dtype)).reshape(shape).copy()
        for key, (dtype, shape, data) in found.items()
    }


@pytest.mark.parametrize(
    ("file", "which"),
    [
        ("model.weights.h5", "weights"),
        ("model.keras", "keras"),
        ("sharded.weights.json", "weights"),
    ],
)
def test_values_match_keras_own_reader(keras_dir, file, which):
    expected = _expected(keras_dir, which)
    dtypes = {v.dtype.name for v in expected.values()}
    assert {"bfloat16", "float32", "int32"} <= dtypes
    assert "layers/dense/vars/0" in expected and any(k.startswith("optimizer/") for k in expected)
    assert_reads_exactly(keras_dir / file, expected)


def test_layer_paths_are_the_tree_and_names_are_kept(keras_dir):
    reader = open_path(keras_dir / "model.keras")
    assert reader.layer_names["layers/dense"] == "hidden"
    assert reader.layer_names["optimizer"] == "adam"
    assert reader.metadata["keras_version"].startswith("3.")
    assert reader.config["class_name"] in ("Functional", "Model")
    assert "Keras 3 model (.keras)" in reader.format_name
    keys = list(reader.document.values)
    assert keys.index("optimizer/vars/2") < keys.index("optimizer/vars/10")  # natural order


def test_sharded_weights_span_several_files(keras_dir):
    data = json.loads((keras_dir / "sharded.weights.json").read_text())
    assert (
        len({f for v in data["weight_map"].values() for f in (v if isinstance(v, list) else [v])})
        > 2
    )
    reader = open_path(keras_dir / "sharded.weights.json")
    assert {v.foreign.file for v in reader.document.values.values()} == {
        p.name for p in keras_dir.glob("sharded_*.weights.h5")
    }


def test_a_folder_of_one_keras_checkpoint_opens_as_it(keras_dir, tmp_path):
    """``ckptlab ls folder/`` of a sharded save opens its ``.weights.json``; of one ``.keras``
    file, that file; a folder of several is several checkpoints, and the error lists them."""
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for part in [keras_dir / "sharded.weights.json", *keras_dir.glob("sharded_*.weights.h5")]:
        shutil.copy(part, sharded)
    assert ck.list_variables(sharded) == ck.list_variables(keras_dir / "sharded.weights.json")
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(keras_dir / "model.keras", single)
    (single / "notes.txt").write_text("trained for 2 epochs")
    assert ck.list_variables(single) == ck.list_variables(keras_dir / "model.keras")
    shutil.copy(keras_dir / "model.weights.h5", single)
    with pytest.raises(ck.NotACheckpointError, match=r"several Keras checkpoints \(model\."):
        ck.list_variables(single)


def test_keras_weights_work_with_every_entry_point(keras_dir, tmp_path):
    assert_works_everywhere(keras_dir / "model.keras", _expected(keras_dir, "keras"), tmp_path)


def test_a_deflated_keras_archive_reads_the_same(keras_dir, tmp_path):
    deflated = tmp_path / "deflated.keras"
    with (
        zipfile.ZipFile(keras_dir / "model.keras") as source,
        zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert_reads_exactly(deflated, _expected(keras_dir, "keras"))


def test_reading_imports_neither_keras_nor_jax(keras_dir):
    files = ["model.weights.h5", "model.keras", "sharded.weights.json"]
    assert_reads_without([keras_dir / f for f in files], ("keras", "jax", "tensorflow", "torch"))


# -- damaged files -----------------------------------------------------------------------------


def test_truncated_weights_are_corrupt(keras_dir, tmp_path):
    data = (keras_dir / "model.weights.h5").read_bytes()
    for cut in (100, len(data) // 2):
        path = tmp_path / f"cut{cut}.weights.h5"
        path.write_bytes(data[:cut])
        with pytest.raises(ck.CorruptCheckpointError):
            read_everything(path)


def test_a_truncated_keras_archive_is_corrupt(keras_dir, tmp_path):
    data = (keras_dir / "model.keras").read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) - 200])  # the central directory is gone
    with pytest.raises(ck.CorruptCheckpointError):
        ck.list_variables(path)


def test_shard_paths_that_leave_the_directory_are_refused(keras_dir, tmp_path):
    directory = tmp_path / "k"
    shutil.copytree(keras_dir, directory)
    data = json.loads((directory / "sharded.weights.json").read_text())
    data["weight_map"]["/layers/dense/vars"] = ["../model.weights.h5"]
    (directory / "sharded.weights.json").write_text(json.dumps(data))
    with pytest.raises(ck.CorruptCheckpointError, match="inside the directory"):
        ck.list_variables(directory / "sharded.weights.json")


def test_string_datasets_are_skipped_and_named(tmp_path):
    path = tmp_path / "odd.weights.h5"
    with h5py.File(path, "w") as handle:
        handle["layers/vocab/vars/0"] = np.array([b"a", b"bc"], dtype=h5py.string_dtype())
        handle["layers/dense/vars/0"] = np.arange(6, dtype=">f4").reshape(2, 3)  # big-endian
    reader = open_path(path)
    assert list(reader.document.values) == ["layers/dense/vars/0"]
    assert "layers/vocab/vars/0" in reader.skipped
    value = reader.read("layers/dense/vars/0")
    assert value.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(value, np.arange(6).reshape(2, 3))


def test_a_fletcher32_file_reports_its_checksum(tmp_path):
    path = tmp_path / "checked.weights.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(
            "layers/d/vars/0", data=np.ones((64, 64), np.float32), fletcher32=True
        )
    assert open_path(path).checksums is True
    data = bytearray(path.read_bytes())
    start = data.find(np.ones(16, np.float32).tobytes())
    data[start + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CorruptCheckpointError, match="HDF5 could not read"):
        ck.load_checkpoint(path).get_tensor("layers/d/vars/0")
