"""Golden checkpoints of every format version keep loading, bit-exactly, forever.

``tests/fixtures/golden`` was written once by ``tests/fixtures/make_golden.py``; never rewrite
it to make this test pass (write a new version's fixture instead).  ``v<N>`` was written by one
process, ``v3-workers`` by two workers (own arrays, in the older form of FORMAT.md section 5).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import ckptlab as ck
from ckptlab.storage import verify_checkpoint

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_golden_checkpoint_loads(version):
    path = str(GOLDEN / version)
    expected = EXPECTED[version]
    reader = ck.load_checkpoint(path)
    assert sorted(reader.get_variable_to_shape_map()) == sorted(expected)
    assert reader._source.document.format_version == int(version[1:].partition("-")[0])
    for key, spec in expected.items():
        value = reader.get_tensor(key)
        assert list(value.shape) == spec["shape"], key
        assert value.dtype.name == spec["dtype"], key
        assert hashlib.sha256(value.tobytes()).hexdigest() == spec["sha256"], key
    assert verify_checkpoint(path) == []


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_golden_checkpoint_restores_into_a_program(version):
    model = ck.Module()
    model.dense = ck.Module()
    model.dense.kernel = ck.Variable(np.zeros((3, 4), np.float32))
    model.step = ck.Variable(np.int64(0))
    status = ck.Checkpoint(model=model).read(str(GOLDEN / version))
    status.assert_existing_objects_matched().expect_partial()
    assert int(model.step.numpy()) == 42
    kernel = model.dense.kernel.numpy()  # after one Adam step from arange(12)/7
    digest = EXPECTED[version]["model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"]["sha256"]
    assert hashlib.sha256(kernel.tobytes()).hexdigest() == digest


BIG = "model/big/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_golden_own_array_opens_in_plain_zarr(version):
    group = zarr.open_group(str(GOLDEN / version), mode="r")
    big = group.attrs["ckptlab"]["values"][BIG]
    array = group[big["array"]]
    assert array.shape == (300, 10)
    assert array.chunks == (100, 10)
    assert np.array_equal(array[...], np.arange(3000, dtype=np.float64).reshape(300, 10) ** 0.5)


def test_golden_v3_opens_in_plain_zarr():
    """Every member lists; the value spanning three shards reads through the document's columns."""
    group = zarr.open_group(str(GOLDEN / "v3"), mode="r")
    members = dict(group.members(max_depth=None))
    dtypes = {spec["dtype"] for spec in EXPECTED["v3"].values()}
    assert sorted(members) == ["data", *sorted(f"data/{d}" for d in dtypes)]
    document = group.attrs["ckptlab"]
    values = document["values"]
    row = values["key"].index(BIG)
    array = group[document["arrays"][values["array"][row]]["path"]]
    assert array.shards[0] < 3000  # the fixture's small shards: the value spans several
    offset = values["offset"][row]
    data = array[offset : offset + 3000].reshape(values["shape"][row])
    assert np.array_equal(data, np.arange(3000, dtype=np.float64).reshape(300, 10) ** 0.5)


def test_golden_own_arrays_in_the_older_form_keep_loading():
    """Before own arrays were labelled, a multi-worker save wrote a bfloat16 one with Zarr
    ``data_type`` ``bfloat16`` (FORMAT.md section 5): ckptlab's readers, its verification, the
    explorer's listing and plain zarr with ckptlab imported all still read it."""
    path = str(GOLDEN / "v3-workers")
    key = "model/sharded_half/.ATTRIBUTES/VARIABLE_VALUE"
    group = zarr.open_group(path, mode="r")
    document = group.attrs["ckptlab"]
    values = document["values"]
    info = document["arrays"][values["array"][values["key"].index(key)]]
    metadata = json.loads((GOLDEN / "v3-workers" / info["path"] / "zarr.json").read_text())
    assert metadata["data_type"] == "bfloat16" and "ckptlab_dtype" not in metadata["attributes"]
    bits = [0x7FC1, 0xFF81, 0x8000, 0x7F80, 0x0001, 0x3F80] * 2
    stored = group[info["path"]][...]  # zarr knows bfloat16 once ckptlab is imported
    assert stored.dtype.name == "bfloat16" and stored.view(np.uint16).ravel().tolist() == bits
    assert ck.load_checkpoint(path).get_tensor(key).view(np.uint16).ravel().tolist() == bits
    assert verify_checkpoint(path) == []
    assert ck.explore(path).summary.startswith(f"{len(EXPECTED['v3-workers'])} values")
