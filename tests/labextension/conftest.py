"""The JupyterLab extension in a real JupyterLab and Chromium (issue 7).

One JupyterLab per session on 127.0.0.1 (free port, token), with the extension this checkout
built (ckptlab/labextension) put first on its labextensions path through JUPYTER_PATH, and
isolated config, data, settings and workspace directories.  Debian's Chromium via Playwright,
never ``playwright install``; a fresh profile per test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "ckptlab" / "labextension"
CHROMIUM = os.environ.get("CKPTLAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Lab:
    """A running JupyterLab: URL, token, root directory, and a small REST client."""

    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url, self.token, self.root = url, token, root

    def api(self, method: str, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def tree(self, path: str = "") -> str:
        where = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{where}?reset&token={self.token}"

    def write_notebook(self, name: str, cells: list[str]) -> None:
        nb = {
            "cells": [
                {
                    "cell_type": "code",
                    "metadata": {},
                    "source": s,
                    "outputs": [],
                    "execution_count": None,
                }
                for s in cells
            ],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(nb), encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def lab():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if not (BUILT / "package.json").exists():
        pytest.skip("the JupyterLab extension is not built (cd labextension && npm run build:prod)")
    root = Path(tempfile.mkdtemp(prefix="ckptlab-labext-"))
    data = root / ".jpath"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "ckptlab").symlink_to(BUILT, target_is_directory=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_PATH=str(data),
        JUPYTER_CONFIG_DIR=str(root / ".jcfg"),
        JUPYTER_DATA_DIR=str(root / ".jdata"),
        JUPYTER_RUNTIME_DIR=str(root / ".jrt"),
        PYTHONWARNINGS="ignore",
    )
    jupyter = Path(sys.executable).parent / "jupyter"
    subprocess.run(
        [
            str(jupyter),
            "labextension",
            "disable",
            "--level=user",
            "@jupyterlab/apputils-extension:announcements",
        ],
        env=env,
        check=False,
        capture_output=True,
    )
    log = open(root / ".lab.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(jupyter),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={root / '.jws'}",
            f"--LabApp.user_settings_dir={root / '.jset'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError((root / ".lab.log").read_text()) from None
                time.sleep(0.1)
        yield Lab(url, token, root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


@pytest.fixture
def page(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        try:
            yield page
        finally:
            context.close()


def run_cell(page, index: int, timeout: float = 120_000):
    """Run cell ``index`` of the visible notebook (retrying a dropped Shift+Enter)."""
    from playwright.sync_api import expect

    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()
    for _ in range(4):
        prompt.click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(prompt).not_to_have_text(before, timeout=5_000)
            break
        except AssertionError:
            pass
    expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout)
    return cell
