"""Without a format's optional package, opening one of its files names the extra to install."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")


def _gguf(path) -> None:
    name = b"w"
    info = struct.pack("<Q", len(name)) + name + struct.pack("<IQIQ", 1, 4, 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    path.write_bytes(head + b"\0" * (-len(head) % 32) + np.zeros(4, np.float32).tobytes())


def _hdf5(path) -> None:
    with h5py.File(path, "w") as handle:
        handle["layers/dense/vars/0"] = np.zeros(3, np.float32)


def _orbax(path) -> None:
    path.mkdir()
    (path / "_METADATA").write_text(json.dumps({"tree_metadata": {}}))


@pytest.mark.parametrize(
    ("module", "extra", "make", "name"),
    [
        ("gguf", "gguf", _gguf, "model.gguf"),
        ("h5py", "keras", _hdf5, "model.weights.h5"),
        ("tensorstore", "orbax", _orbax, "orbax_ckpt"),
    ],
)
def test_a_missing_package_names_its_extra(tmp_path, module, extra, make, name):
    path = tmp_path / name
    make(path)
    script = f"""
import sys
sys.modules[{module!r}] = None  # makes `import {module}` raise ImportError
import ckptlab as ck
try:
    ck.list_variables({str(path)!r})
except ck.MissingDependencyError as error:
    assert isinstance(error, ImportError)
    print(error)
else:
    raise SystemExit("opened without {module}")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"pip install 'ckptlab[{extra}]'" in result.stdout
    assert repr(module) in result.stdout
    # and with the package, the same file opens
    check = f"import ckptlab as ck; print(len(ck.list_variables({str(path)!r})))"
    opened = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr
