"""Real browser tests: JupyterLab on 127.0.0.1 (token auth) and Debian's Chromium via Playwright.

The one JupyterLab fixture of the test suite: one server per session, with the JupyterLab
extension this checkout built (``ckptlab/labextension``) first on its labextensions path
(``JUPYTER_PATH``) and isolated config, data, settings and workspace directories; the kernel
imports this checkout's ckptlab (``PYTHONPATH``).  Never runs ``playwright install``: the
browser is ``/usr/bin/chromium`` (``make system-packages`` installs it with apt-get); one fresh
browser profile per test.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "ckptlab" / "widgets" / "static"
BUILT = REPO / "ckptlab" / "labextension"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A running JupyterLab: its URL, token and root directory, and a small REST client."""

    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url, self.token, self.root = url, token, root

    def write_notebook(self, name: str, cells: list[str]) -> None:
        """Write a notebook of code cells into the server's root."""
        nb = {
            "cells": [
                {
                    "cell_type": "code",
                    "metadata": {},
                    "source": src,
                    "outputs": [],
                    "execution_count": None,
                }
                for src in cells
            ],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.root / name).write_text(json.dumps(nb), encoding="utf-8")

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code cells; return its URL in a fresh workspace."""
        self.write_notebook(name, cells)
        workspace = Path(name).stem
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def tree(self, path: str = "") -> str:
        """The URL of JupyterLab with ``path`` open (a notebook) or browsed (a folder)."""
        where = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{where}?reset&token={self.token}"

    def api(self, method: str, path: str, body: object | None = None) -> Any:
        """Call the server's REST API; the JSON answer (or ``None``)."""
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


@contextlib.contextmanager
def running_lab(root: Path | None = None, extension: Path | None = BUILT) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 (a free port, a random token) until the block ends.

    ``extension``: a built JupyterLab extension to put first on the labextensions path.
    """
    root = root or Path(tempfile.mkdtemp(prefix="ckptlab-lab-"))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(root / ".jcfg"),
        JUPYTER_DATA_DIR=str(root / ".jdata"),
        JUPYTER_RUNTIME_DIR=str(root / ".jrt"),
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        PYTHONWARNINGS="ignore",
    )
    if extension is not None and (extension / "package.json").exists():
        data = root / ".jpath"
        (data / "labextensions").mkdir(parents=True, exist_ok=True)
        (data / "labextensions" / "ckptlab").symlink_to(extension, target_is_directory=True)
        env["JUPYTER_PATH"] = str(data)
    jupyter = Path(sys.executable).parent / "jupyter"
    announcements = "@jupyterlab/apputils-extension:announcements"
    subprocess.run(
        [str(jupyter), "labextension", "disable", "--level=user", announcements],
        env=env,
        check=False,
        capture_output=True,
    )
    command = [
        *(str(jupyter), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1"),
        *(f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"),
        *(f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={root / '.jws'}"),
        f"--LabApp.user_settings_dir={root / '.jset'}",
        "--LabApp.expose_app_in_browser=True",
    ]
    with open(root / ".lab.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
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


@contextlib.contextmanager
def chromium(profile: Path, **options: Any) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium with a fresh profile (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
            **options,
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        try:
            yield page
        finally:
            context.close()


@pytest.fixture(scope="session")
def lab():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no system Chromium at {CHROMIUM} (make system-packages installs it)")
    if not (STATIC / "explorer.js").exists():
        pytest.skip("the explorer front end is not built (make js)")
    if not (BUILT / "package.json").exists():
        pytest.skip("the JupyterLab extension is not built (cd labextension && npm run build:prod)")
    with running_lab() as running:
        yield running


@pytest.fixture
def page(lab, tmp_path):
    with chromium(tmp_path / "profile") as page:
        yield page


class Notebook:
    """Drives a notebook in the page: open it, run cells, read outputs."""

    def __init__(self, page) -> None:
        self.page = page

    def open(self, url: str) -> None:
        open_notebook(self.page, url)

    def run(self, index: int):
        return run_cell(self.page, index)

    def text(self, cell) -> str:
        return cell_text(cell)


@pytest.fixture
def nb(page):
    return Notebook(page)


def open_notebook(page, url: str) -> None:
    """Open a notebook and wait for its kernel."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)


def run_cell(page, index: int, timeout: float = 120_000):
    """Run cell ``index`` (retrying a dropped Shift+Enter); return the cell locator."""
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


def cell_text(cell) -> str:
    """The text of a cell's last output."""
    return cell.locator(".jp-OutputArea-output").last.inner_text().strip()
