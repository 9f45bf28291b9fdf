"""Demo: save a small model, restore it into a fresh program, print the status report.

Run with ``make demo``.  The restore is deliberately imperfect (the new program renamed one
layer and dropped the optimizer) so the report has something to say.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import ckptlab as ck


def build(hidden: str) -> ck.Module:
    model = ck.Module()
    model.encoder = ck.layers.Dense(8, name="encoder")
    setattr(model, hidden, ck.layers.Dense(4, name=hidden))
    model.head = ck.layers.Dense(1, name="head")
    return model


def forward(model: ck.Module, x: np.ndarray) -> np.ndarray:
    for layer in model._ck_children():
        x = layer[1](x)
    return x


def main(workdir: str) -> int:
    x = np.random.default_rng(0).standard_normal((16, 5)).astype("float32")
    model, optimizer = build("hidden"), ck.optimizers.Adam(0.01)
    forward(model, x)
    params = [v for _, layer in model._ck_children() for v in (layer.kernel, layer.bias)]
    optimizer.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
    path = ck.Checkpoint(model=model, optimizer=optimizer).save(Path(workdir) / "ckpt")
    print(f"saved {path}")
    for key, shape in ck.list_variables(path)[:6]:
        print(f"  {key}  {shape}")
    print("  ...")

    fresh = build("hidden_renamed")  # a renamed layer: its values will not match
    status = ck.Checkpoint(model=fresh).restore(path)
    forward(fresh, x)  # building the layers restores their weights (restore-on-create)
    status.expect_partial()
    print()
    print(status.report())
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else tmp))
