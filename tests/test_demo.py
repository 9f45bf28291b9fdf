"""The demo script: its smoke mode really starts JupyterLab, and its print mode reports."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

import ckptlab as ck

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def run_demo(*args, cwd):
    return subprocess.run(
        [sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=280, cwd=cwd
    )


@pytest.mark.slow
def test_smoke_mode_starts_lab_serves_and_executes_the_tour(tmp_path):
    done = run_demo("--smoke", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    answered = re.search(
        r"JupyterLab \(pid (\d+)\) answered on http://127\.0\.0\.1:(\d+)", done.stdout
    )
    assert answered, done.stdout
    assert "the server serves tour.ipynb" in done.stdout
    assert "the tour executed in" in done.stdout
    assert done.stdout.rstrip().endswith("demo smoke test passed")
    pid = int(answered.group(1))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_print_mode_reports_the_deliberate_mismatch(tmp_path):
    done = run_demo("--print", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "saved " in done.stdout
    assert "(root).model.head.kernel" in done.stdout  # renamed layer: in the program only
    assert "(root).model.classifier.kernel" in done.stdout  # ...and its old name unused
    assert ck.latest_checkpoint(tmp_path / "training_run").endswith("ckpt-3")


def test_workspace_is_created_once_and_kept(tmp_path):
    sys.path.insert(0, str(DEMO.parent))
    try:
        import demo
    finally:
        sys.path.remove(str(DEMO.parent))
    first = demo.prepare_workspace(tmp_path / "ws")
    assert (tmp_path / "ws" / "tour.ipynb").exists()
    assert first.endswith("ckpt-3")
    assert demo.prepare_workspace(tmp_path / "ws") == first  # not re-created on the next run
    assert [k for k, _ in ck.list_variables(first) if "classifier/kernel/.ATTRIBUTES" in k]


@pytest.mark.slow
def test_interactive_mode_prints_the_url_and_stops_on_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--workspace", str(tmp_path / "ws")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    lab: list[psutil.Process] = []
    try:
        url = None
        for line in process.stdout:
            found = re.search(
                r"ckptlab demo: open (http://127\.0\.0\.1:\d+/lab/tree/tour\.ipynb\?token=\w+)",
                line,
            )
            if found:
                url = found.group(1)
                break
        assert url, "the demo printed no URL"
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.status == 200
        lab += [
            c
            for c in psutil.Process(process.pid).children()
            if "jupyterlab" in " ".join(c.cmdline())
        ]
        assert len(lab) == 1
        assert "--ip=127.0.0.1" in lab[0].cmdline()
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=60) == 0
        assert not lab[0].is_running() or lab[0].status() == psutil.STATUS_ZOMBIE
        assert ck.latest_checkpoint(tmp_path / "ws" / "training_run").endswith("ckpt-3")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for server in lab:  # never leave a JupyterLab behind, whatever failed
            if server.is_running():
                server.kill()
        process.stdout.close()
