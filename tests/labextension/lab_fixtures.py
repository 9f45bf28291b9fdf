"""Shared fixtures of the JupyterLab extension's checkpoint viewer (issue 7).

Each fixture is a checkpoint's root ``zarr.json`` (what the viewer reads through the contents
API) and the graph view JSON that Python's ``CheckpointSource.view()`` makes of it.  The
TypeScript port (labextension/src/lab/checkpoint.ts) must produce the same JSON
(labextension/test/lab-checkpoint.test.ts); ``test_lab_fixtures.py`` checks that Python still
does.  Regenerate after a deliberate change of the view model::

    .venv/bin/python tests/labextension/lab_fixtures.py
    cd labextension && npx prettier --write test/lab-fixtures   # the format npm run check wants
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import ckptlab as ck
from ckptlab.explorer._sources import CheckpointSource
from ckptlab.core import ValueSpec
from ckptlab.core._document import CheckpointDocument, parse_document

FIXTURES = Path(__file__).resolve().parents[2] / "labextension" / "test" / "lab-fixtures"
SOURCE = "fixtures/CHECKPOINT"
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(2)</script>",
    "a.b/c",
    "..",
    "é ü 名",
]


class _Stored:
    """The part of a StoredCheckpoint that CheckpointSource.view() reads."""

    def __init__(self, document: CheckpointDocument) -> None:
        self.document = document
        self.display_path = SOURCE

    def specs(self) -> dict[str, ValueSpec]:
        return {k: ValueSpec(shape=v.shape, dtype=v.dtype) for k, v in self.document.values.items()}


def view_json(zarr_json: dict[str, Any]) -> dict[str, Any]:
    """Python's graph view JSON of a checkpoint, from its root zarr.json alone."""
    document = parse_document(zarr_json["attributes"]["ckptlab"], SOURCE)
    return CheckpointSource(_Stored(document)).view().to_json()  # type: ignore[arg-type]


def _adam(directory: Path) -> str:
    rng = np.random.default_rng(0)
    model = ck.Module()
    model.encoder = ck.layers.Sequential([ck.layers.Dense(8), ck.layers.Dense(4)])
    model.head = ck.layers.Dense(2)
    x = rng.standard_normal((3, 5)).astype("float32")
    model.head(model.encoder(x))
    optimizer = ck.optimizers.Adam(0.01)
    params = [
        v for layer in (*model.encoder.layers, model.head) for v in (layer.kernel, layer.bias)
    ]
    optimizer.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
    return ck.Checkpoint(model=model, optimizer=optimizer).write(str(directory / "adam"))


def _hostile(directory: Path) -> str:
    root = ck.Module()
    for i, name in enumerate(HOSTILE):
        holder = ck.Module()
        holder.w = ck.Variable(np.zeros((i + 1, 2), "float32"))
        setattr(root, name, holder)
    root.mixed = ck.Module()
    root.mixed.flag = ck.Variable(np.array([True, False]))
    root.mixed.z = ck.Variable(np.zeros(3, "complex128"))
    root.mixed.h = ck.Variable(np.zeros((4, 4), "float16"))
    root.mixed.big = ck.Variable(np.zeros(320, "float32"))  # 1280 B: "1.2 KB" (half to even)
    return ck.Checkpoint(root=root).write(str(directory / "hostile"))


def _saver(directory: Path) -> str:
    variables = {
        "model.layers.0.weight": ck.Variable(np.zeros((2, 3), "float32")),
        "model/layers/0/bias": ck.Variable(np.zeros(3, "float32")),
        "a.b": ck.Variable(np.int64(1)),
        "a/b": ck.Variable(np.int64(2)),
        "<b>bold</b>": ck.Variable(np.zeros(1, "int8")),
    }
    return ck.Saver(variables).save(str(directory / "saver"))


MAKERS = {"adam": _adam, "hostile": _hostile, "saver": _saver}


def generate(out: Path = FIXTURES) -> list[str]:
    """Write ``<name>.zarr.json`` and ``<name>.view.json`` for every fixture (in the format
    version ckptlab writes; ``<name>-v2.*`` hold the same checkpoints in version 2)."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in MAKERS.items():
            path = Path(make(Path(tmp)))
            zarr_json = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
            zarr_json["attributes"]["ckptlab"]["writer"] = {"library": "ckptlab", "fixture": name}
            (out / f"{name}.zarr.json").write_text(json.dumps(zarr_json, indent=1) + "\n", "utf-8")
            view = view_json(zarr_json)
            (out / f"{name}.view.json").write_text(json.dumps(view, indent=1) + "\n", "utf-8")
            names.append(name)
    return names


if __name__ == "__main__":
    print("wrote", ", ".join(generate(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES)))
