"""Multi-worker saves of PyTorch state: worker processes each write their share of a torch model."""

from __future__ import annotations

import pytest

import ckptlab as ck
from ckptlab import distributed as ckd

from .conftest import pickle_by_value

torch = pytest.importorskip("torch")

pickle_by_value(__name__)


def build_model(seed=0):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.LayerNorm(256))


def state(rank):
    """Every worker builds the same trained-looking program (replicas of one model)."""
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.ones(2, 64)).sum().backward()
    optimizer.step()
    return ck.Checkpoint(model=model, optimizer=optimizer)


def test_two_worker_processes_save_a_torch_program_restored_in_one(tmp_path):
    engine = ckd.LocalEngine(2)
    path = ckd.save(tmp_path / "ckpt", state, engine=engine)
    written = engine.last_stats.bytes_per_worker
    assert len(written) == 2 and all(n > 0 for n in written)  # both workers wrote values

    fresh = build_model(seed=1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(path).assert_consumed()
    expected = state(0)
    for name, value in expected.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    for old, new in zip(expected.model.parameters(), fresh.parameters(), strict=True):
        saved = expected.optimizer.state[old]["exp_avg"]
        assert torch.equal(fresh_opt.state[new]["exp_avg"], saved)
