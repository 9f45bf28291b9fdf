"""The one-command demo: JupyterLab on a tour notebook with a demo checkpoint (``make demo``).

Modes
-----
``python scripts/demo.py``
    Prepare ``demo_workspace/`` (a copy of ``notebooks/tour.ipynb`` and, on first run, a demo
    checkpoint whose program has drifted: a renamed layer, an added layer, a shape change and
    optimizer values left over), start JupyterLab on 127.0.0.1 with a fresh token, and print the
    URL of the tour.  Ctrl-C stops it.  ``--reset`` recreates the workspace.
``python scripts/demo.py --smoke``
    Non-interactive check used by the tests: the same set-up in a temporary directory, JupyterLab
    on a free port, check that the server answers and serves the tour, execute the tour with a
    kernel, stop the server.  Exit status 0 when everything worked.
``python scripts/demo.py --print [DIR]``
    No JupyterLab: save a model, restore it into a drifted program, print the match report.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import ckptlab as ck

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "notebooks" / "tour.ipynb"
WORKSPACE = ROOT / "demo_workspace"
FEATURES = 20
DEMO_RUN = "training_run"
"""The demo's checkpoint folder.  Not ``checkpoints``: Jupyter Server's contents API reserves
that name (``GET /api/contents/checkpoints`` lists file checkpoints), so its file browser could
not open it."""


# --- the demo checkpoint ----------------------------------------------------------------------


def make_demo_checkpoint(directory: Path) -> str:
    """Train a small classifier for three "epochs", saving after each; return the last path."""
    rng = np.random.default_rng(0)
    model = ck.Module()
    model.encoder = ck.layers.Sequential([ck.layers.Dense(32), ck.layers.Dense(16)])
    model.classifier = ck.layers.Dense(3)
    x = rng.standard_normal((64, FEATURES)).astype("float32")
    model.classifier(model.encoder(x))
    optimizer = ck.optimizers.Adam(0.01)
    ckpt = ck.Checkpoint(model=model, optimizer=optimizer)
    params = [
        v for layer in (*model.encoder.layers, model.classifier) for v in (layer.kernel, layer.bias)
    ]
    path = ""
    for _ in range(3):
        grads = [0.1 * rng.standard_normal(p.shape).astype("float32") for p in params]
        optimizer.apply_gradients(list(zip(grads, params, strict=True)))
        path = ckpt.save(directory / "ckpt")
    return path


def prepare_workspace(workspace: Path, *, reset: bool = False) -> str:
    """Create the workspace (tour + training run) if needed; return the latest checkpoint."""
    if reset and workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    if not (workspace / "tour.ipynb").exists():
        shutil.copyfile(TOUR, workspace / "tour.ipynb")
    latest = ck.latest_checkpoint(workspace / DEMO_RUN)
    if latest is None:
        latest = make_demo_checkpoint(workspace / DEMO_RUN)
        print(f"created the demo checkpoint {latest}")
    return latest


# --- JupyterLab -------------------------------------------------------------------------------


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else a free port the system picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def lab_command(workspace: Path, port: int, token: str, *, browser: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={workspace}",
        f"--LabApp.workspaces_dir={workspace / '.jupyter' / 'workspaces'}",
        "--LabApp.default_url=/lab/tree/tour.ipynb",
    ]
    if not browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root without it
    return command


def lab_environment(workspace: Path) -> dict[str, str]:
    """Isolated Jupyter config/runtime dirs; the news pop-up disabled."""
    config = workspace / ".jupyter" / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    page_config = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
    (config / "labconfig" / "page_config.json").write_text(json.dumps(page_config))
    env = dict(os.environ)
    env["JUPYTER_CONFIG_DIR"] = str(config)
    env["JUPYTER_RUNTIME_DIR"] = str(workspace / ".jupyter" / "runtime")
    return env


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with status {process.returncode} before answering"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # lab shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- modes ------------------------------------------------------------------------------------


def interactive(workspace: Path, port: int | None, reset: bool) -> int:
    # Ctrl-C (SIGINT) stops the demo however it was started: a command a non-interactive shell
    # starts in the background inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt (CI runs the tests that way; the test sends SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    prepare_workspace(workspace, reset=reset)
    port = port or free_port(8888)
    token = secrets.token_hex(16)
    browser = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    env = lab_environment(workspace)
    process = subprocess.Popen(lab_command(workspace, port, token, browser=browser), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/api/status?token={token}", process)
        url = f"{base}/lab/tree/tour.ipynb?token={token}"
        print(f"\nckptlab demo: open {url}\n(Ctrl-C stops JupyterLab)\n", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)


def check_server(base: str, token: str) -> None:
    """The server lists the tour as a notebook and renders the lab page for it."""
    with urllib.request.urlopen(
        f"{base}/api/contents/tour.ipynb?token={token}", timeout=30
    ) as reply:
        served = json.load(reply)
    if served["type"] != "notebook":
        raise RuntimeError(f"tour.ipynb is served as {served['type']!r}, not as a notebook")
    with urllib.request.urlopen(f"{base}/lab/tree/tour.ipynb?token={token}", timeout=30) as reply:
        if b"JupyterLab" not in reply.read():
            raise RuntimeError("the lab page for tour.ipynb did not render")
    print(f"the server serves tour.ipynb ({len(served['content']['cells'])} cells)")


def execute_tour(workspace: Path) -> float:
    """Run every cell of the workspace's tour with a kernel; return the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(workspace / "tour.ipynb", as_version=4)
    start = time.monotonic()
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workspace)}},
    )
    client.execute()
    return time.monotonic() - start


def smoke() -> int:
    """Start JupyterLab, check it answers and serves the tour, execute the tour, stop it."""
    with tempfile.TemporaryDirectory(prefix="ckptlab-demo-") as tmp:
        workspace = Path(tmp)
        latest = prepare_workspace(workspace)
        port, token = free_port(), secrets.token_hex(16)
        command = lab_command(workspace, port, token, browser=False)
        with open(workspace / "lab.log", "wb") as log:
            process = subprocess.Popen(
                command, env=lab_environment(workspace), stdout=log, stderr=log
            )
            base = f"http://127.0.0.1:{port}"
            try:
                seconds = wait_until_ready(f"{base}/api/status?token={token}", process)
                print(f"JupyterLab (pid {process.pid}) answered on {base} after {seconds:.1f} s")
                check_server(base, token)
                print(f"the tour executed in {execute_tour(workspace):.1f} s against {latest}")
            finally:
                stop(process)
        print("demo smoke test passed")
    return 0


def print_report(workdir: str) -> int:
    """The original text demo: save, restore into a drifted program, print the report."""
    path = make_demo_checkpoint(Path(workdir) / DEMO_RUN)
    print(f"saved {path}")
    for key, shape in ck.list_variables(path)[:6]:
        print(f"  {key}  {shape}")
    print("  ...")
    fresh = ck.Module()
    fresh.encoder = ck.layers.Sequential([ck.layers.Dense(32), ck.layers.Dense(16)])
    fresh.head = ck.layers.Dense(3)  # renamed from `classifier`: its values will not match
    status = ck.Checkpoint(model=fresh).restore(path)
    fresh.head(fresh.encoder(np.zeros((1, FEATURES), "float32")))  # building restores the encoder
    status.expect_partial()
    print()
    print(status.report())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke", action="store_true", help="non-interactive check (used by the tests)"
    )
    mode.add_argument(
        "--print",
        dest="print_dir",
        nargs="?",
        const="",
        metavar="DIR",
        help="print a match report, no JupyterLab",
    )
    parser.add_argument("--port", type=int, help="JupyterLab port (default: 8888 if free)")
    parser.add_argument(
        "--workspace", type=Path, default=WORKSPACE, help="default: demo_workspace/"
    )
    parser.add_argument(
        "--reset", action="store_true", help="recreate the workspace and its checkpoint"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        return smoke()
    if args.print_dir is not None:
        if args.print_dir:
            return print_report(args.print_dir)
        with tempfile.TemporaryDirectory() as tmp:
            return print_report(tmp)
    return interactive(args.workspace, args.port, args.reset)


if __name__ == "__main__":
    sys.exit(main())
