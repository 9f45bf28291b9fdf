"""Explorer benchmark: JupyterLab on 127.0.0.1 + Debian's Chromium (headless, Playwright).

Measures, from pressing Shift+Enter on ``ck.explore(path)`` to the graph in the page:

* a 10,000-value checkpoint's first view (target: under 2 s);
* a 100,000-value checkpoint opening collapsed (target: under 3 s);
* expanding a 500-node group in the browser (target: under 1 s);
* the size of the widget's first message (comm_open: state + buffers) for 100,000 values
  (target: under 2 MB), and of the static MIME bundle saved in the notebook.

``--screenshot docs/explorer.png`` also saves the explorer on a real mismatch (the README's
picture), and ``docs/explorer-dark.png`` in JupyterLab's dark theme.
Run: ``.venv/bin/python benchmarks/bench_explorer.py [--screenshot PATH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import comm.base_comm
import ipywidgets.comm
import numpy as np
from playwright.sync_api import expect

import ckptlab as ck
from ckptlab._reader import open_path
from ckptlab.core import gc_paused
from ckptlab.explorer._sources import CheckpointSource
from ckptlab.widgets import ExplorerWidget

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


browser = _load("ckptlab_browser_conftest", ROOT / "tests/browser/conftest.py")
programs = _load("ckptlab_browser_tests", ROOT / "tests/browser/test_explorer_browser.py")
EXPLORER = ".ckptlab-explorer"


def write_checkpoint(path: Path, blocks: int, per_block: int) -> str:
    model = ck.Module()
    model.blocks = [ck.Module() for _ in range(blocks)]
    for block in model.blocks:
        for i in range(per_block):
            setattr(block, f"w{i}", ck.Variable(np.zeros(4, "float32")))
    return ck.Checkpoint(model=model).write(path)


def python_side(path: str) -> dict[str, float | int]:
    """Kernel-side costs of ck.explore(path), measured here without a kernel.

    The first message is the widget's comm_open (its state and binary buffers); the MIME bundle
    is the static copy saved in the notebook.
    """
    sent: dict[int, int] = {}

    class Recorder(comm.base_comm.BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            size = len(json.dumps(data)) + sum(len(b) for b in buffers or [])
            sent.setdefault(id(self), size)

    original = ipywidgets.comm.create_comm
    ipywidgets.comm.create_comm = Recorder
    try:
        with gc_paused():  # as ck.explore does
            t0 = time.perf_counter()
            stored = open_path(path)
            t1 = time.perf_counter()
            widget = ExplorerWidget(CheckpointSource(stored))  # the view, its JSON, the comm
            t2 = time.perf_counter()
        bundle = widget._repr_mimebundle_()
        t3 = time.perf_counter()
    finally:
        ipywidgets.comm.create_comm = original
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    return {
        "first_message_100k_bytes": sent[id(widget.comm)],
        "mime_bundle_100k_bytes": len(json.dumps(data)),
        "python_open_document_100k_s": t1 - t0,
        "python_view_and_widget_100k_s": t2 - t1,
        "python_mime_bundle_100k_s": t3 - t2,
    }


def timed_display(page, index: int) -> float:
    """Seconds from Shift+Enter on cell ``index`` to its explorer's graph in the page."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    start = time.perf_counter()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(f"{EXPLORER} g.node").first).to_be_attached(timeout=120_000)
    return time.perf_counter() - start


EXPAND = """async (selector) => {
  const root = document.querySelectorAll(selector)[1];
  const group = [...root.querySelectorAll("g.node.ck-collapsed")].find(
    (g) => g.textContent.includes("500 values"));
  const before = root.dataset.visible;
  const t0 = performance.now();
  group.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  while (root.dataset.visible === before) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => requestAnimationFrame(() => r()));
  return [performance.now() - t0, Number(root.dataset.visible), Number(root.dataset.layoutMs),
          root.dataset.layoutIn];
}"""


def run(screenshot: Path | None, repeat: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-explorer-"))
    p10 = write_checkpoint(work / "c10k", 20, 500)
    p100 = write_checkpoint(work / "c100k", 200, 500)
    results: dict[str, object] = dict(python_side(p100))
    nan = float("nan")
    first10, first100, expand = [nan], [nan], [(nan, 0, nan, "")]
    if repeat:
        first10, first100, expand = [], [], []
    with browser.running_lab(work) as lab:
        for attempt in range(repeat):
            cells = [
                "import ckptlab as ck",
                f"ck.explore({p10!r})",
                f"ck.explore({p100!r})",
            ]
            with browser.chromium(work / f"profile-{attempt}") as page:
                browser.open_notebook(page, lab.notebook(f"bench{attempt}.ipynb", cells))
                browser.run_cell(page, 0)
                first10.append(timed_display(page, 1))
                first100.append(timed_display(page, 2))
                big = page.locator(EXPLORER).nth(1)
                before = big.get_attribute("data-visible")
                # model/blocks: 200 groups
                big.locator("g.node.ck-collapsed g.ck-toggle").first.click()
                expect(big).not_to_have_attribute("data-visible", before or "", timeout=30_000)
                expand.append(page.evaluate(EXPAND, EXPLORER))
        if screenshot is not None:
            with browser.chromium(work / "profile-shot") as page:
                browser.open_notebook(page, lab.notebook("shot.ipynb", [programs.SETUP]))
                cell = browser.run_cell(page, 0)
                root = cell.locator(EXPLORER)
                root.locator("input.ck-hide-optimizer").check()
                root.locator("g.node.st-shape_conflict").filter(has_text="(4, 2)").first.click()
                expect(root.locator(".ck-details")).to_contain_text("min / max", timeout=20_000)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                root.screenshot(path=str(screenshot))
                page.evaluate(
                    "window.jupyterapp.commands.execute("
                    "'apputils:change-theme', {theme: 'JupyterLab Dark'})"
                )
                expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
                page.wait_for_timeout(500)
                root.screenshot(path=str(screenshot.with_name(f"{screenshot.stem}-dark.png")))
    results.update(
        first_view_10k_s=statistics.median(first10),
        collapsed_view_100k_s=statistics.median(first100),
        expand_500_ms=statistics.median(e[0] for e in expand),
        expand_500_layout_ms=statistics.median(e[2] for e in expand),
        expand_500_visible_nodes=expand[0][1],
        expand_500_layout_in=expand[0][3] if len(expand[0]) > 3 else "",
        runs=repeat,
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = run(args.screenshot, args.repeat)
    targets = {
        "first_view_10k_s": 2.0,
        "collapsed_view_100k_s": 3.0,
        "expand_500_ms": 1000.0,
        "first_message_100k_bytes": 2_000_000,
    }
    for name, value in results.items():
        target = targets.get(name)
        verdict = "" if target is None else ("  OK" if value < target else f"  OVER ({target})")
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:28} {shown}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
