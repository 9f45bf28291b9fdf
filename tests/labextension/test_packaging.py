"""The JupyterLab extension ships in the wheel and a plain ``pip install`` enables it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARE = "share/jupyter/labextensions/ckptlab"
pytestmark = pytest.mark.slow


def _pip(python: str | Path, *args: str, cwd: Path = REPO) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [str(python), "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _clean_checkout(target: Path) -> Path:
    """The repository's files as a fresh clone has them (no build output), in ``target``.

    ``node_modules`` is linked, not copied: it is what ``npm ci`` installs from the lockfile.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / "labextension" / "node_modules").symlink_to(REPO / "labextension" / "node_modules")
    return target


def test_clean_wheel_contains_the_prebuilt_extension(tmp_path: Path) -> None:
    clone = _clean_checkout(tmp_path / "clone")
    assert not (clone / "ckptlab" / "labextension").exists()
    assert not (clone / "ckptlab" / "widgets" / "static").exists()
    _pip(sys.executable, "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path), cwd=clone)
    (wheel,) = tmp_path.glob("ckptlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/"
    for name in (
        "package.json",
        "install.json",
        "static/graphviz.js",
        "schemas/ckptlab/plugin.json",
    ):
        assert f"{data}{SHARE}/{name}" in names, name
    assert any(
        re.match(rf"{re.escape(data + SHARE)}/static/remoteEntry\.\w+\.js$", n) for n in names
    )
    assert "ckptlab/widgets/static/explorer.js" in names
    assert not any(n.startswith("ckptlab/labextension/") for n in names)  # only in share/


def test_pip_install_enables_the_extension(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # ckptlab's dependencies and JupyterLab come from this environment (a .pth file), so the
    # throwaway venv installs only ckptlab itself, from the source tree, as a user would.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip(python, "install", "--no-deps", "-q", str(REPO), cwd=tmp_path)
    assert (venv / SHARE / "package.json").exists()
    listing = subprocess.run(
        [str(python), "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_PATH=""),
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)  # colours
    section = text.split(str(venv / "share" / "jupyter" / "labextensions"), 1)
    assert len(section) == 2, text
    assert re.search(r"ckptlab v[\d.]+\S* enabled OK \(python, ckptlab\)", section[1]), text
