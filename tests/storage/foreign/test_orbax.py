"""Orbax checkpoints written by real orbax-checkpoint (in a subprocess), read without JAX."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import open_path
from ckptlab.storage._layout import numpy_dtype

from .contract import assert_reads_exactly, assert_reads_without, assert_works_everywhere

pytest.importorskip("tensorstore")
if importlib.util.find_spec("orbax") is None or importlib.util.find_spec("jax") is None:
    pytest.skip("orbax-checkpoint and jax write the test checkpoints", allow_module_level=True)
WRITER = Path(__file__).parent / "writers" / "orbax_writer.py"
VARIANTS = ["ocdbt", "ocdbt_zarr3", "plain", "plain_zarr3", "manager"]


@pytest.fixture(scope="module")
def orbax_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("orbax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(WRITER), str(root)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return root


def _expected(orbax_dir: Path, variant: str) -> tuple[dict[str, np.ndarray], dict]:
    with open(orbax_dir / "expected.pickle", "rb") as handle:
        found = pickle.load(handle)[variant]
    arrays = {
        key: np.frombuffer(value[2], numpy_dtype(value[0])).reshape(value[1]).copy()
        for key, value in found.items()
        if isinstance(value, tuple)
    }
    return arrays, {k: v for k, v in found.items() if not isinstance(v, tuple)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_values_match_orbax_restore(orbax_dir, variant):
    arrays, literals = _expected(orbax_dir, variant)
    assert {"bfloat16", "float32", "float16", "int32", "uint8", "bool"} <= {
        a.dtype.name for a in arrays.values()
    }
    assert_reads_exactly(orbax_dir / variant, arrays)
    assert open_path(orbax_dir / variant).literals == literals


def test_layouts_are_the_ones_orbax_wrote(orbax_dir):
    names = {v: open_path(orbax_dir / v).format_name for v in VARIANTS}
    assert names["ocdbt"] == "Orbax checkpoint (OCDBT, zarr)"
    assert names["ocdbt_zarr3"] == "Orbax checkpoint (OCDBT, zarr3)"
    assert names["plain"] == "Orbax checkpoint (plain, zarr)"
    assert names["plain_zarr3"] == "Orbax checkpoint (plain, zarr3)"
    assert (orbax_dir / "ocdbt" / "manifest.ocdbt").exists()
    assert (orbax_dir / "plain" / "params.dense.kernel" / ".zarray").exists()


def test_a_manager_opens_at_its_latest_step_and_at_any_level(orbax_dir):
    arrays, _ = _expected(orbax_dir, "manager")
    assert_reads_exactly(orbax_dir / "manager" / "2", arrays)
    state = {k.removeprefix("state/"): v for k, v in arrays.items() if k.startswith("state/")}
    assert_reads_exactly(orbax_dir / "manager" / "2" / "state", state)
    assert_reads_exactly(orbax_dir / "manager" / "2" / "state" / "_METADATA", state)
    older = ck.load_checkpoint(orbax_dir / "manager" / "1").get_tensor("extra/seen")
    np.testing.assert_array_equal(older, [1, 1, 1])


def test_a_manager_with_a_step_prefix_opens_at_its_latest_step(orbax_dir, tmp_path):
    root = orbax_dir / "prefixed"
    assert sorted(os.listdir(root)) == ["ckpt_00003", "ckpt_00012"]
    arrays, _ = _expected(orbax_dir, "prefixed")
    assert arrays["seen"].tolist() == [12, 12, 12]
    assert_reads_exactly(root, arrays)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(root / "ckpt_00012", unfinished / "ckpt_00012")
    (unfinished / "ckpt_00012" / "_CHECKPOINT_METADATA").unlink()
    with pytest.raises(ck.NotFoundError, match=r"'ckpt_00012'.*no finished step.*wait_until_fini"):
        ck.load_checkpoint(unfinished)


def test_an_orbax_checkpoint_works_with_every_entry_point(orbax_dir, tmp_path):
    assert_works_everywhere(orbax_dir / "ocdbt", _expected(orbax_dir, "ocdbt")[0], tmp_path)


def test_reading_imports_neither_jax_nor_orbax(orbax_dir):
    assert_reads_without([orbax_dir / v for v in VARIANTS], ("jax", "jaxlib", "orbax", "flax"))


# -- damaged checkpoints ---------------------------------------------------------------------------


def test_damaged_metadata_is_a_typed_error(orbax_dir, tmp_path):
    directory = tmp_path / "plain"
    shutil.copytree(orbax_dir / "plain", directory)
    (directory / "_METADATA").write_text('{"tree_metadata": {"(')
    with pytest.raises(ck.CorruptCheckpointError, match="not valid JSON"):
        ck.list_variables(directory)
    (directory / "_METADATA").write_text(json.dumps({"tree_metadata": {"x": {"key_metadata": 3}}}))
    with pytest.raises(ck.CorruptCheckpointError, match="leaf"):
        ck.list_variables(directory)
    (directory / "_METADATA").write_text(json.dumps({"something": "else"}))
    with pytest.raises(ck.UnsupportedFormatError, match="tree_metadata"):
        ck.list_variables(directory)


@pytest.mark.parametrize("variant", ["plain", "ocdbt"])
def test_a_missing_array_is_not_found(orbax_dir, tmp_path, variant):
    directory = tmp_path / variant
    shutil.copytree(orbax_dir / variant, directory)
    tree = json.loads((directory / "_METADATA").read_text())
    entry = next(iter(tree["tree_metadata"].values()))
    tree["tree_metadata"]["('ghost',)"] = {
        "key_metadata": [{"key": "ghost", "key_type": 2}],
        "value_metadata": entry["value_metadata"] | {"value_type": "np.ndarray"},
    }
    (directory / "_METADATA").write_text(json.dumps(tree))
    with pytest.raises(ck.NotFoundError, match="ghost"):
        ck.list_variables(directory)


def test_damaged_array_bytes_are_corrupt(orbax_dir, tmp_path):
    directory = tmp_path / "plain"
    shutil.copytree(orbax_dir / "plain", directory)
    chunk = directory / "params.dense.kernel" / "0.0"
    chunk.write_bytes(b"not zstd at all")
    reader = ck.load_checkpoint(directory)
    with pytest.raises(ck.CorruptCheckpointError, match="tensorstore could not read"):
        reader.get_tensor("params/dense/kernel")
    (directory / "params.embed" / ".zarray").write_text('{"shape": [5, 2], "dtype": "|O"}')
    with pytest.raises(ck.UnsupportedFormatError, match="data type"):
        ck.list_variables(directory)


COLLIDING = """
import sys, warnings
import jax.numpy as jnp, orbax.checkpoint as ocp
warnings.filterwarnings("ignore")
checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=False))
tree = {"a/b": jnp.ones(3), "a": {"b": jnp.zeros(3)}}
checkpointer.save(sys.argv[1], args=ocp.args.PyTreeSave(tree))
"""


def test_leaves_that_collide_once_joined_are_refused(tmp_path):
    """Orbax saves the leaves ('a/b',) and ('a', 'b') side by side; joined with '/' both are
    'a/b', and listing one of them would silently drop the other."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", COLLIDING, str(tmp_path / "item")]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    for call in (ck.list_variables, ck.load_checkpoint):
        with pytest.raises(ck.UnsupportedFormatError, match="both named 'a/b'") as info:
            call(tmp_path / "item")
        message = str(info.value)
        assert f"{tmp_path / 'item' / '_METADATA'} has two leaves" in message
        assert "('a/b',)" in message and "('a', 'b')" in message
