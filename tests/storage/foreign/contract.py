"""What every foreign format must do, as assertions shared by the per-format tests.

``expected`` maps each key to the array the framework's own reader returned; every check
compares bytes, dtype and shape (bit for bit), never approximately.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import ckptlab as ck
from ckptlab.cli import main as cli
from ckptlab.core import ITEMSIZE
from ckptlab.explorer._sources import CheckpointSource
from ckptlab.storage import open_path
from ckptlab.storage._safetensors_writer import SAFETENSORS_DTYPES


def assert_same_array(got: np.ndarray, want: np.ndarray, key: str) -> None:
    assert got.dtype == want.dtype, (key, got.dtype, want.dtype)
    assert got.shape == want.shape, (key, got.shape, want.shape)
    assert got.tobytes() == want.tobytes(), key


def assert_reads_exactly(path: Path | str, expected: dict[str, np.ndarray]) -> None:
    """Listing and every value, bit for bit, through the public readers."""
    assert ck.list_variables(path) == sorted((k, list(v.shape)) for k, v in expected.items())
    reader = ck.load_checkpoint(path)
    assert reader.get_variable_to_shape_map() == {k: list(v.shape) for k, v in expected.items()}
    for key, want in expected.items():
        assert_same_array(reader.get_tensor(key), want, key)


def read_everything(path: Path | str) -> None:
    """Every value through the public reader (raises what the first damaged value raises)."""
    reader = ck.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)


def assert_reads_without(paths: list[Path], frameworks: tuple[str, ...]) -> None:
    """Reading every value of ``paths`` in a fresh interpreter imports none of ``frameworks``."""
    script = f"""
import sys
import ckptlab as ck
for path in {[str(p) for p in paths]!r}:
    reader = ck.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {frameworks!r})
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli([*args, "--color", "never"], stdout=out)
    return code, out.getvalue()


def assert_works_everywhere(
    path: Path | str, expected: dict[str, np.ndarray], tmp_path: Path, *, checksums: bool = False
) -> None:
    """Explorer, diff, convert (both ways), restore by name and the CLI, on one checkpoint."""
    path = str(path)
    source = open_path(path)
    view = CheckpointSource(source).view()
    shown = {node.value.key for node in view.nodes if node.value is not None}
    assert shown == set(expected)
    assert type(ck.explore(path)).__name__.endswith("Widget")

    converted = ck.convert(path, tmp_path / "as-ckptlab", skip_unsupported=True)
    diff = ck.diff(path, converted)
    unstorable = {k for k, v in expected.items() if v.dtype.name not in ITEMSIZE}
    assert not diff.added and not diff.changed, diff.summary()
    assert {e.key for e in diff.removed} == unstorable

    exported = ck.convert(
        path, tmp_path / "as-safetensors", format="safetensors", skip_unsupported=True
    )
    diff = ck.diff(path, exported)
    unstorable = {k for k, v in expected.items() if v.dtype.name not in SAFETENSORS_DTYPES}
    assert not diff.added and not diff.changed, diff.summary()
    assert {e.key for e in diff.removed} == unstorable

    model = ck.Module()
    variables = {}
    for index, (key, want) in enumerate(sorted(expected.items())):
        if want.dtype.name not in ITEMSIZE:
            continue
        variable = ck.Variable(np.zeros(want.shape, want.dtype), dtype=want.dtype, name=key)
        setattr(model, f"v{index}", variable)
        variables[key] = variable
    status = ck.Checkpoint(model=model).restore(path)
    status.expect_partial()
    for key, variable in variables.items():
        assert_same_array(variable.numpy(), expected[key], key)

    code, text = run_cli("ls", path, "--json")
    assert code == 0
    listed = json.loads(text)
    assert {v["key"] for v in listed["values"]} == set(expected)
    code, text = run_cli("verify", path, "--json")
    report = json.loads(text)["checkpoints"][0]
    assert code == 0 and report["ok"] and report["values_checked"] == len(expected)
    assert report["checksums"] is checksums
    code, text = run_cli("verify", path)
    assert ("no checksums in this format" in text) != checksums
    assert text.startswith("OK") == checksums and text.startswith("UNVERIFIED") != checksums
    code, text = run_cli("export", path, "--format", "json")
    assert code == 0 and json.loads(text)
    out = str(tmp_path / "cli-out")
    code, text = run_cli("convert", path, out, "--to", "safetensors", "--skip-unsupported")
    assert code == 0, text


def expected_from(values: dict[str, Any]) -> dict[str, np.ndarray]:
    """Plain numpy arrays (C order) from whatever the framework returned."""
    return {k: np.ascontiguousarray(np.asarray(v)) for k, v in values.items()}
