"""Progress bars: shown for saves and restores that take longer than the delay, never otherwise."""

from __future__ import annotations

import numpy as np
import pytest

import ckptlab as ck
from ckptlab.storage import LocalStore, WriteOptions, _progress, open_checkpoint, write_checkpoint


@pytest.fixture
def values():
    return [(f"v{i}", np.full((64, 1024), i, np.float32)) for i in range(4)]


def test_long_operations_show_a_bar(tmp_path, values, capsys, monkeypatch):
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)
    path = str(tmp_path / "c")
    write_checkpoint(
        LocalStore(), path, values, kind="name", graph=None, writer={}, options=WriteOptions()
    )
    open_checkpoint(LocalStore(), path).read_many(k for k, _ in values)
    err = capsys.readouterr().err
    assert "writing c" in err
    assert "reading c" in err


def test_progress_false_and_short_operations_show_nothing(tmp_path, values, capsys, monkeypatch):
    path = str(tmp_path / "c")
    write_checkpoint(
        LocalStore(), path, values, kind="name", graph=None, writer={}, options=WriteOptions()
    )
    open_checkpoint(LocalStore(), path).read_many(k for k, _ in values)  # well under a second
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)
    options = WriteOptions(progress=False)
    write_checkpoint(
        LocalStore(), path, values, kind="name", graph=None, writer={}, options=options
    )
    open_checkpoint(LocalStore(), path, progress=False).read_many(k for k, _ in values)
    ck.Checkpoint(w=ck.Variable(np.zeros(3))).write(str(tmp_path / "d"), options=options)
    assert capsys.readouterr().err == ""


def test_bar_counts_every_byte():
    with _progress.Progress(100, "x", enabled=True) as bar:
        bar.update(40)
        bar.update(60)
    assert bar.done == 100
    assert not bar.shown


def test_restore_progress_can_be_turned_off(tmp_path, capsys, monkeypatch):
    model = ck.Module()
    model.w = ck.Variable(np.zeros((256, 1024), np.float32))
    path = ck.Checkpoint(model=model).write(
        str(tmp_path / "c"), options=WriteOptions(progress=False)
    )
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)
    ck.Checkpoint(model=model).read(path, options=ck.storage.ReadOptions(progress=False))
    assert capsys.readouterr().err == ""
    ck.Checkpoint(model=model).read(path)
    assert "verifying c" in capsys.readouterr().err  # a small restore reads while verifying
