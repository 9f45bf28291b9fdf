"""Training runs as a timeline: a manager directory, or a directory of torch/HF checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.explorer import _timeline


@pytest.fixture
def run(tmp_path):
    """A CheckpointManager directory of 4 checkpoints; the encoder doubles each step."""
    model = ck.Module()
    model.encoder = ck.Module()
    model.encoder.w = ck.Variable(np.ones(4, "float32"))
    model.head = ck.Variable(np.ones(2, "float32"))
    manager = ck.CheckpointManager(ck.Checkpoint(model=model), tmp_path / "runs", max_to_keep=None)
    for step in range(4):
        model.encoder.w.assign(model.encoder.w.numpy() * 2)
        manager.save(checkpoint_number=step * 10)
    manager.close()
    _timeline._CACHE.clear()
    return tmp_path / "runs"


def test_a_manager_directory_opens_as_a_timeline(run):
    widget = ck.explore(run)
    assert widget.is_run
    data = widget.load_timeline()
    points = data["points"]
    assert [p["step"] for p in points] == [0, 10, 20, 30]
    assert points[0]["update_ratio"] is None
    expected = math.sqrt(16) / math.sqrt(16 + 2)  # ||w|| doubles: delta = w; head unchanged
    assert points[1]["update_ratio"] == pytest.approx(expected, rel=1e-5)
    encoder = next(m for m in data["modules"] if m["module"] == "model/encoder")
    assert encoder["update_ratio"][1:] == pytest.approx([1.0, 1.0, 1.0])
    assert encoder["weight_norm"] == pytest.approx([4.0, 8.0, 16.0, 32.0])
    assert data["modules"][0]["module"] == "model/encoder"  # most updated first
    assert widget.view.kind == "diff"  # first vs last compared
    widget.pick(2, 3)
    assert widget.timeline["a"] == 2 and widget.timeline["b"] == 3
    w = widget.view.find(("model", "encoder", "w"))
    assert widget.view.nodes[w].value.change[0] == pytest.approx(8.0)  # 8 -> 16


def test_statistics_are_cached_per_checkpoint_and_read_each_value_once(run, monkeypatch):
    from ckptlab.storage import StoredCheckpoint

    reads: list[str] = []
    original = StoredCheckpoint.read_many

    def counting(self, keys, outs=None):
        keys = list(keys)
        reads.extend(f"{self.display_path}:{k}" for k in keys)
        return original(self, keys, outs)

    monkeypatch.setattr(StoredCheckpoint, "read_many", counting)
    timeline = _timeline.Timeline(_timeline.find_run(run))
    progress: list[float] = []
    timeline.compute(lambda fraction, text: progress.append(fraction))
    assert len(reads) == len(set(reads)) == 4 * 3  # save_counter, encoder/w, head: once each
    assert progress[-1] == 1.0 and progress == sorted(progress)
    reads.clear()
    again = _timeline.Timeline(_timeline.find_run(run))
    assert again.complete
    again.compute()
    assert reads == []


def test_the_timeline_as_a_table(run):
    widget = ck.explore(run)
    table = widget.timeline_table()
    assert list(table["step"]) == [0, 10, 20, 30]
    per_module = widget.timeline_table(modules=True)
    assert set(per_module["module"]) == {"model", "model/encoder"}  # save_counter is no weight


def test_a_directory_of_torch_checkpoints_is_a_run(tmp_path):
    torch = pytest.importorskip("torch")
    for step in (100, 200, 300):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        torch.save({"layer.weight": torch.full((2, 2), float(step))}, folder / "pytorch_model.bin")
    run = _timeline.find_run(tmp_path)
    assert [c.step for c in run] == [100, 200, 300]
    data = _timeline.Timeline(run).data(0, 2)
    ratios = [p["update_ratio"] for p in data["points"]]
    assert ratios == [None, pytest.approx(1.0), pytest.approx(0.5)]  # 100 -> 200 -> 300


def test_one_checkpoint_is_not_a_run(tmp_path):
    ck.Checkpoint(w=ck.Variable(1.0)).save(tmp_path / "ckpt")
    assert _timeline.find_run(tmp_path) is None
    assert not ck.explore(tmp_path).is_run
