"""bfloat16 and plain zarr-python.

Format 3 stores bfloat16 values as their uint16 bit patterns (``attributes.ckptlab_dtype``
names the real dtype), so zarr alone lists and reads every checkpoint; the registered
``bfloat16`` data type (entry point, import hook) serves version 2 checkpoints and users' own
arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import ml_dtypes
import numpy as np
import zarr

import ckptlab as ck

BF16 = np.dtype(ml_dtypes.bfloat16)


def test_the_entry_point_names_the_data_type():
    points = {p.name: p for p in entry_points(group="zarr.data_type")}
    assert points["bfloat16"].value == "ckptlab.storage._zarr_dtype:BFloat16"
    assert points["bfloat16"].load()._zarr_v3_name == "bfloat16"


def test_bfloat16_round_trips_bit_exactly_through_plain_zarr(tmp_path):
    bits = np.array([0x0000, 0x8000, 0x0001, 0x7FC1, 0xFFC1, 0x7F80, 0x3F80], dtype=np.uint16)
    values = bits.view(BF16)  # 0, -0, subnormal, NaN payloads, inf, 1
    array = zarr.create_array(str(tmp_path / "a"), shape=values.shape, dtype=BF16, chunks=(4,))
    array[...] = values
    metadata = json.loads((tmp_path / "a" / "zarr.json").read_text())
    assert metadata["data_type"] == "bfloat16"  # TensorStore's and Orbax's name
    back = zarr.open_array(str(tmp_path / "a"), mode="r")[...]
    assert back.dtype == BF16
    assert np.array_equal(back.view(np.uint16), bits)


def test_ckptlab_checkpoints_store_bfloat16_as_its_bit_pattern(tmp_path):
    model = ck.Module()
    model.w = ck.Variable(np.arange(6, dtype=np.float32).reshape(2, 3).astype(BF16))
    path = ck.Checkpoint(model=model).write(str(tmp_path / "c"))
    group = zarr.open_group(path, mode="r")
    stored = ck.load_checkpoint(path)._source.stored("model/w/.ATTRIBUTES/VARIABLE_VALUE")
    array = group[stored.array]
    assert array.dtype == np.uint16 and array.attrs["ckptlab_dtype"] == "bfloat16"
    flat = array[stored.offset : stored.offset + 6].reshape(2, 3)
    assert np.array_equal(flat.view(BF16), model.w.numpy())


PLAIN_ZARR = """
import hashlib, json, math, sys
sys.modules["ckptlab"] = None  # as if ckptlab were not installed: importing it fails
import zarr

group = zarr.open_group(sys.argv[1], mode="r")
members = sorted(name for name, _ in group.members(max_depth=None))
document = group.attrs["ckptlab"]
values, arrays = document["values"], document["arrays"]
found = {}
for key, shape, number, offset in zip(
    values["key"], values["shape"], values["array"], values["offset"]
):
    array = group[arrays[number]["path"]]
    size = math.prod(shape)
    data = array[offset : offset + size].reshape(shape)
    dtype = array.attrs.get("ckptlab_dtype", str(array.dtype))
    found[key] = [dtype, hashlib.sha256(data.tobytes()).hexdigest()]
loaded = sys.modules.get("ckptlab") is not None
print(json.dumps({"members": members, "values": found, "ckptlab": loaded}))
"""


def test_plain_zarr_without_ckptlab_lists_and_reads_every_value(tmp_path):
    """Issue 17 item 13: a checkpoint holding bfloat16 lists and reads with zarr alone."""
    model = ck.Module()
    model.half = ck.Variable(np.array([1, -2.5, np.inf], BF16))
    model.big = ck.Variable(np.arange(300_000, dtype=np.float32).astype(BF16))  # many inner chunks
    model.f = ck.Variable(np.linspace(0, 1, 7, dtype=np.float32))
    model.flags = ck.Variable(np.array([True, False]))
    model.step = ck.Variable(np.int64(3))
    path = ck.Checkpoint(model=model).write(str(tmp_path / "c"))
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_ZARR, path],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    assert report["ckptlab"] is False
    assert report["members"] == ["data", "data/bfloat16", "data/bool", "data/float32", "data/int64"]
    expected = {
        f"model/{name}/.ATTRIBUTES/VARIABLE_VALUE": [
            value.numpy().dtype.name,
            __import__("hashlib").sha256(value.numpy().tobytes()).hexdigest(),
        ]
        for name, value in [
            ("half", model.half),
            ("big", model.big),
            ("f", model.f),
            ("flags", model.flags),
            ("step", model.step),
        ]
    }
    assert report["values"] == expected


def test_registration_works_whichever_is_imported_first():
    path = str(Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "v2")
    for first, second in (("ckptlab", "zarr"), ("zarr", "ckptlab")):
        script = textwrap.dedent(
            f"""
            import sys, {first}, {second}
            group = zarr.open_group(sys.argv[1], mode="r")
            print(group["packed/bfloat16"].dtype)
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script, path],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert result.stdout.strip() == "bfloat16"
