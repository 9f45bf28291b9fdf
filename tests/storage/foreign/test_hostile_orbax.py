"""Hostile Orbax checkpoints (tensorstore): typed errors for damaged stores and metadata.

Each checkpoint is written here with tensorstore (what Orbax itself calls), a few KB, in both of
Orbax's layouts: plain Zarr directories and an OCDBT store (``manifest.ocdbt`` + ``d/``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ckptlab as ck

ts = pytest.importorskip("tensorstore")

KERNEL = np.arange(12, dtype=np.float32).reshape(3, 4)


def orbax_item(directory: Path, *, ocdbt: bool, leaf: list[str] | None = None) -> Path:
    """An Orbax item holding ``params/kernel`` (or the leaf path ``leaf``), as Orbax lays it out."""
    directory.mkdir()
    path = leaf or ["params", "kernel"]
    tree = {
        str(tuple(path)): {
            "key_metadata": [{"key": key, "key_type": 2} for key in path],
            "value_metadata": {"value_type": "np.ndarray", "skip_deserialize": False},
        }
    }
    (directory / "_METADATA").write_text(json.dumps({"tree_metadata": tree}))
    kvstore = (
        {"driver": "ocdbt", "base": f"file://{directory}/"}
        if ocdbt
        else {"driver": "file", "path": f"{directory}/"}
    )
    spec = {
        "driver": "zarr",
        "kvstore": kvstore,
        "path": "params.kernel",
        "metadata": {"shape": [3, 4], "chunks": [3, 4], "dtype": "<f4"},
        "create": True,
    }
    ts.open(spec).result().write(KERNEL).result()
    return directory


@pytest.mark.parametrize("ocdbt", [False, True])
def test_both_layouts_read(tmp_path, ocdbt):
    item = orbax_item(tmp_path / "item", ocdbt=ocdbt)
    assert (item / "manifest.ocdbt").exists() is ocdbt
    np.testing.assert_array_equal(ck.load_checkpoint(item).get_tensor("params/kernel"), KERNEL)


# -- a damaged OCDBT store ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[:20], lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:], lambda b: b""],
    ids=["truncated", "flipped", "empty"],
)
def test_a_damaged_manifest_is_corrupt(tmp_path, damage):
    item = orbax_item(tmp_path / "item", ocdbt=True)
    manifest = item / "manifest.ocdbt"
    manifest.write_bytes(damage(manifest.read_bytes()))
    with pytest.raises(ck.CorruptCheckpointError, match="tensorstore could not read") as info:
        ck.list_variables(item)
    assert str(item) in str(info.value) and "copy it again" in str(info.value)


def test_a_damaged_data_file_is_corrupt(tmp_path):
    item = orbax_item(tmp_path / "item", ocdbt=True)
    for data in (item / "d").iterdir():
        data.write_bytes(data.read_bytes()[:30])
    with pytest.raises(ck.CorruptCheckpointError, match="tensorstore could not read"):
        ck.load_checkpoint(item).get_tensor("params/kernel")


# -- hostile metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("ocdbt", [False, True])
@pytest.mark.parametrize("key", ["/etc/passwd", "a/../../../x", ".."])
def test_leaf_keys_that_leave_the_item_are_refused(tmp_path, ocdbt, key):
    item = orbax_item(tmp_path / "item", ocdbt=ocdbt, leaf=[key])
    with pytest.raises(ck.CorruptCheckpointError, match="expected a relative path") as info:
        ck.list_variables(item)
    assert "_METADATA" in str(info.value)


def test_deeply_nested_array_metadata_is_corrupt(tmp_path):
    item = orbax_item(tmp_path / "item", ocdbt=False)
    (item / "params.kernel" / ".zarray").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ck.CorruptCheckpointError, match="metadata of params.kernel is not JSON"):
        ck.list_variables(item)


def test_value_metadata_that_is_not_an_object_is_corrupt(tmp_path):
    item = orbax_item(tmp_path / "item", ocdbt=False)
    tree = json.loads((item / "_METADATA").read_text())
    next(iter(tree["tree_metadata"].values()))["value_metadata"] = [1]
    (item / "_METADATA").write_text(json.dumps(tree))
    with pytest.raises(ck.CorruptCheckpointError, match=r"has value_metadata \[1\]"):
        ck.list_variables(item)


@pytest.mark.parametrize(
    "dtype",
    ["(99999999999,)f4", "(-1,)f4", "(2,)<f4", "<f4,<f4", [["a", "<f4"]], "<M8[s]", "p", "<i3"],
)
def test_a_dtype_that_is_no_number_is_refused_naming_the_array(tmp_path, dtype):
    """Sub-array, structured, date and platform-sized dtypes are no checkpoint values; numpy
    raised a bare ValueError parsing some of them ('(99999999999,)f4')."""
    item = orbax_item(tmp_path / "item", ocdbt=False)
    zarray = json.loads((item / "params.kernel" / ".zarray").read_text())
    zarray["dtype"] = dtype
    (item / "params.kernel" / ".zarray").write_text(json.dumps(zarray))
    for call in (ck.list_variables, ck.load_checkpoint):
        with pytest.raises(ck.UnsupportedFormatError, match="data type") as info:
            call(item)
        assert f"Array 'params.kernel' of {item}" in str(info.value)


# -- fill values ----------------------------------------------------------------------------------


def _declare(item: Path, shape: list[int], chunks: list[int]) -> None:
    """Rewrite the plain array's ``.zarray`` to ``shape``, with a fill value and no chunk files."""
    array = item / "params.kernel"
    zarray = json.loads((array / ".zarray").read_text())
    zarray.update(shape=shape, chunks=chunks, fill_value=0)
    (array / ".zarray").write_text(json.dumps(zarray))
    for chunk in array.iterdir():
        if chunk.name != ".zarray":
            chunk.unlink()


def test_unwritten_chunks_read_as_the_fill_value(tmp_path):
    item = orbax_item(tmp_path / "item", ocdbt=False)
    _declare(item, [4000], [100])  # legit: Orbax skips chunks equal to the fill value
    np.testing.assert_array_equal(
        ck.load_checkpoint(item).get_tensor("params/kernel"), np.zeros(4000, np.float32)
    )


CAPPED_READ = """
import json, resource, sys
from pathlib import Path
import ckptlab as ck
reader = ck.load_checkpoint(sys.argv[1])
used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, used + 2**30))
try:
    reader.get_tensor(sys.argv[2])
    print(json.dumps(None))
except BaseException as error:
    print(json.dumps([isinstance(error, ck.CkptlabError), type(error).__name__, str(error)]))
"""
"""Read a value with at most 1 GiB more address space; tensorstore refuses to run in a forked
child (its threads), so this runs in a fresh process instead of the ``bounded`` fixture."""


def test_a_huge_fill_value_array_fails_to_allocate_with_a_typed_error(tmp_path):
    item = orbax_item(tmp_path / "item", ocdbt=False)
    _declare(item, [2**30], [1024])
    assert ck.list_variables(item) == [("params/kernel", [2**30])]
    done = subprocess.run(
        [sys.executable, "-c", CAPPED_READ, str(item), "params/kernel"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    outcome = json.loads(done.stdout.splitlines()[-1]) if done.stdout else done.stderr[-2000:]
    assert isinstance(outcome, list) and outcome[:2] == [True, "CorruptCheckpointError"], outcome
    assert "'params/kernel'" in outcome[2] and "4,294,967,296 bytes" in outcome[2]
    assert "read it on a machine with more memory" in outcome[2]
