"""bfloat16 for plain zarr-python: the registered data type, the entry point, the import hook."""

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


def test_ckptlab_checkpoints_with_bfloat16_open_in_plain_zarr(tmp_path):
    model = ck.Module()
    model.w = ck.Variable(np.arange(6, dtype=np.float32).reshape(2, 3).astype(BF16))
    path = ck.Checkpoint(model=model).write(str(tmp_path / "c"))
    group = zarr.open_group(path, mode="r")
    stored = ck.load_checkpoint(path)._source.stored("model/w/.ATTRIBUTES/VARIABLE_VALUE")
    flat = group[stored.array][...]
    assert flat.dtype == BF16
    assert np.array_equal(flat[stored.offset : stored.offset + 6].reshape(2, 3), model.w.numpy())


def test_registration_works_whichever_is_imported_first(tmp_path):
    path = ck.Checkpoint(w=ck.Variable(np.ones(3, BF16))).write(str(tmp_path / "c"))
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
