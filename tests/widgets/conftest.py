"""A recording comm (no kernel) and small checkpoints with every kind of mismatch."""

from __future__ import annotations

import comm.base_comm
import ipywidgets.comm
import numpy as np
import pytest

import ckptlab as ck


class RecordingComm(comm.base_comm.BaseComm):
    """Keeps every message a widget publishes (what the browser would receive)."""

    def __init__(self, *args, **kwargs) -> None:
        self.messages: list[tuple[str, dict, list]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.messages.append((msg_type, data or {}, list(buffers or [])))


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch):
    monkeypatch.setattr(ipywidgets.comm, "create_comm", RecordingComm)


def build(hidden: str, head_units: int = 1) -> ck.Module:
    model = ck.Module()
    model.encoder = ck.layers.Dense(8)
    setattr(model, hidden, ck.layers.Dense(4))
    model.head = ck.layers.Dense(head_units)
    x = np.ones((2, 5), "float32")
    for name in ("encoder", hidden, "head"):
        x = getattr(model, name)(x)
    return model


@pytest.fixture
def saved(tmp_path):
    """(model, path) of a checkpoint with an Adam optimizer's slots."""
    model, optimizer = build("hidden"), ck.optimizers.Adam(0.01)
    params = [
        v for layer in (model.encoder, model.hidden, model.head) for v in (layer.kernel, layer.bias)
    ]
    optimizer.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
    path = ck.Checkpoint(model=model, optimizer=optimizer).save(tmp_path / "ckpt")
    return model, path


@pytest.fixture
def lazy(saved):
    """(saved model, fresh model, lazy status): renamed layer, head with 2 units."""
    model, path = saved
    fresh = build("hidden_renamed", head_units=2)
    status = ck.Checkpoint(model=fresh, optimizer=ck.optimizers.Adam(0.01)).restore(path, lazy=True)
    status.expect_partial()
    return model, fresh, status
