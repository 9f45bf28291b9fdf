"""The JupyterLab extension in a real browser: kernel-less outputs and the checkpoint viewer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

import ckptlab as ck
from ckptlab._reader import open_path
from ckptlab.explorer._sources import CheckpointSource

from .conftest import run_cell

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MIME = "application/vnd.ckptlab.graph+json"
STATIC = '.ckptlab-mime[data-mode="static"] .ckptlab-static[data-ready="true"]'
LIVE = '.ckptlab-mime[data-mode="live"] .ckptlab-explorer'
ENGINE = "/lab/extensions/ckptlab/static/graphviz.js"
SETUP = """
import os, tempfile
import numpy as np
import ckptlab as ck

def build(hidden):
    m = ck.Module()
    m.encoder = ck.layers.Dense(4)
    setattr(m, hidden, ck.layers.Dense(3))
    m.head = ck.layers.Dense(2)
    x = np.ones((2, 5), "float32")
    for name in ("encoder", hidden, "head"):
        x = getattr(m, name)(x)
    return m

path = ck.Checkpoint(model=build("hidden")).write(os.path.join(tempfile.mkdtemp(), "ckpt"))
status = ck.Checkpoint(model=build("hidden_renamed")).restore(path, lazy=True)
status.expect_partial()
ck.explore(status)
"""


def _wait_for(predicate, timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _shutdown_kernels(lab) -> None:
    for session in lab.api("GET", "/api/sessions"):
        lab.api("DELETE", f"/api/sessions/{session['id']}")
    _wait_for(lambda: not lab.api("GET", "/api/kernels"), what="kernels to shut down")


def test_saved_notebook_shows_the_graph_without_its_kernel(lab, page):
    lab.write_notebook("reopen.ipynb", [SETUP])
    saved = lab.root / "reopen.ipynb"
    page.goto(lab.tree("reopen.ipynb"))
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)
    run_cell(page, 0)
    # With its kernel alive, the output is the interactive widget (shown through our renderer).
    expect(page.locator(LIVE)).to_be_visible(timeout=60_000)
    # ...drawn with the engine the extension serves (the widget ESM imports it by URL).
    expect(page.locator(f"{LIVE} g.node").first).to_be_visible(timeout=60_000)
    expect(page.locator(STATIC)).to_have_count(0)
    # Focus the notebook, not the explorer (it keeps keys such as Ctrl+S to itself).
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Control+s")
    _wait_for(lambda: MIME in saved.read_text("utf-8"), what="the notebook to be saved")
    outputs = json.loads(saved.read_text("utf-8"))["cells"][0]["outputs"]
    assert {MIME, "text/html", "application/vnd.jupyter.widget-view+json"} <= set(
        outputs[-1]["data"]
    )
    page.close()
    _shutdown_kernels(lab)

    # Reopened: the widget models died with the kernel; the saved static bundle is drawn.
    page = page.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lab.tree("reopen.ipynb"))
    static = page.locator(STATIC)
    expect(static).to_be_visible(timeout=60_000)
    expect(
        page.locator(".ckptlab-mime .jupyter-widgets", has_text="Error displaying widget")
    ).to_have_count(0)
    explorer = static.locator(".ckptlab-explorer")
    # Reopened, the notebook has started a new kernel: the message says so, truthfully.
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)
    message = explorer.locator(".ck-message")
    expect(message).to_contain_text("re-run the cell", timeout=10_000)
    expect(message).not_to_contain_text("no kernel")
    legend = explorer.locator(".ck-legend")
    expect(legend).to_contain_text("missing 3")  # hidden_renamed's kernel and bias, save_counter
    expect(legend).to_contain_text("pending 2")  # hidden's, waiting for model.hidden
    expect(explorer.locator("g.node").first).to_be_visible()
    # States are coloured: nodes carry their state class.
    assert (
        explorer.locator("g.node.st-program_only").count()
        + explorer.locator("g.node.ck-has-problem").count()
        > 0
    )
    # Search reveals and focuses; the details pane shows the node.
    explorer.locator("input.ck-search").fill("hidden_renamed")
    expect(explorer.locator(".ck-search-count")).to_contain_text("match", timeout=10_000)
    expect(explorer.locator(".ck-details-title")).to_contain_text("hidden_renamed", timeout=10_000)
    expect(explorer.locator(".ck-details")).to_contain_text("2 missing")
    expect(explorer.locator(".ck-details .ck-suggestion")).to_contain_text("likely match")
    # The Graphviz engine came from the extension's static files.
    assert page.evaluate("globalThis.__ckptlabEngineUrl").endswith(ENGINE)
    assert not [e for e in errors if "ckptlab" in e], errors

    # The kernel shut down under the open page: the message follows (no kernel now).
    _shutdown_kernels(lab)
    expect(message).to_contain_text("no kernel", timeout=30_000)
    # And reloaded (a new kernel again), the output stays.
    page.reload()
    expect(page.locator(STATIC)).to_be_visible(timeout=60_000)

    # Untrusted (edited elsewhere, so its signature no longer matches): drawn static before it
    # is attached, it still finds its notebook's kernel, and follows Kernel > Shut Down.
    notebook = json.loads(saved.read_text("utf-8"))
    notebook["metadata"]["edited"] = True
    (lab.root / "untrusted.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    page.goto(lab.tree("untrusted.ipynb"))
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)
    message = page.locator(f"{STATIC} .ck-message")
    expect(message).to_contain_text("re-run the cell", timeout=10_000)
    page.evaluate("window.jupyterapp.commands.execute('kernelmenu:shutdown')")
    expect(page.locator("#jp-main-statusbar")).to_contain_text("No Kernel", timeout=30_000)
    expect(message).to_contain_text("no kernel", timeout=10_000)


def _runs(root: Path) -> tuple[str, dict]:
    """runs/ckpt-1, runs/ckpt-2 and the state file; Python's view of the latest."""
    model = ck.Module()
    model.encoder = ck.layers.Sequential([ck.layers.Dense(6), ck.layers.Dense(3)])
    model.head = ck.layers.Dense(2)
    model.head(model.encoder(np.ones((2, 4), "float32")))
    optimizer = ck.optimizers.Adam(0.01)
    params = [
        v for layer in (*model.encoder.layers, model.head) for v in (layer.kernel, layer.bias)
    ]
    optimizer.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
    checkpoint = ck.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.save(str(root / "runs" / "ckpt"))
    latest = checkpoint.save(str(root / "runs" / "ckpt"))
    view = CheckpointSource(open_path(latest)).view()
    counts = {"nodes": len(view.nodes), "values": sum(1 for _ in view.values())}
    return Path(latest).name, counts


def _open_from_menu(page, item_text: str) -> None:
    item = page.locator(".jp-DirListing-item", has_text=item_text).first
    expect(item).to_be_visible(timeout=30_000)
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Open in ckptlab checkpoint viewer").click()


def test_context_menu_opens_the_viewer(lab, page):
    name, expected = _runs(lab.root)
    assert name == "ckpt-2"
    lab.api(
        "PUT",
        "/lab/api/settings/ckptlab:plugin",
        {"raw": json.dumps({"colorScheme": "colorblind", "expandDepth": 1})},
    )
    engine_requests: list[str] = []
    page.on("request", lambda r: engine_requests.append(r.url) if ENGINE in r.url else None)
    page.goto(lab.tree("runs"))
    expect(page.locator("body")).to_have_attribute(
        "data-ckptlab-scheme", "colorblind", timeout=60_000
    )

    # A checkpoint folder: the viewer shows the same graph Python builds.
    _open_from_menu(page, "ckpt-1")
    viewer = page.locator(".ckptlab-viewer:visible")
    graph = viewer.locator('.ckptlab-viewer-graph[data-ready="true"]')
    expect(graph).to_be_visible(timeout=30_000)
    expect(viewer).to_have_attribute("data-folder", "runs/ckpt-1")
    assert int(graph.get_attribute("data-nodes")) == expected["nodes"]
    assert int(graph.get_attribute("data-values")) == expected["values"]
    explorer = graph.locator(".ckptlab-explorer")
    visible = int(explorer.get_attribute("data-visible"))
    assert explorer.locator("g.node").count() == visible
    expect(explorer.locator(".ck-message")).to_contain_text("contents API")
    expect(explorer.locator(".ck-legend")).to_contain_text(f"stored {expected['values']}")
    explorer.locator("input.ck-search").fill("kernel")
    expect(explorer.locator(".ck-details")).to_contain_text("float32", timeout=10_000)
    expect(explorer.locator(".ck-details")).to_contain_text("bytes")
    expect(explorer.locator(".ck-details")).to_contain_text(".ATTRIBUTES/VARIABLE_VALUE")

    # The state file: its latest checkpoint.
    _open_from_menu(page, "checkpoint")
    viewer = page.locator(".ckptlab-viewer:visible")
    expect(viewer).to_have_attribute("data-folder", "runs/ckpt-2", timeout=30_000)
    graph = viewer.locator('.ckptlab-viewer-graph[data-ready="true"]')
    expect(graph).to_be_visible(timeout=30_000)
    assert int(graph.get_attribute("data-nodes")) == expected["nodes"]

    # Open in notebook: a new notebook next to the checkpoint, exploring it with a kernel.
    page.locator(".jp-MainAreaWidget:visible .ckptlab-open-in-notebook").click()
    editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first
    expect(editor).to_contain_text('ck.explore("ckpt-2")', timeout=60_000)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)
    run_cell(page, 0)
    live = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) {LIVE}")
    expect(live.locator("g.node").first).to_be_visible(timeout=60_000)
    # One engine download for the page: viewers and the widget share it.
    assert len(engine_requests) == 1, engine_requests
    assert not [e for e in page.errors if "ckptlab" in e], page.errors
    lab.api("PUT", "/lab/api/settings/ckptlab:plugin", {"raw": "{}"})


def test_not_a_checkpoint_folder_says_so(lab, page):
    (lab.root / "plain").mkdir(exist_ok=True)
    page.goto(lab.tree(""))
    _open_from_menu(page, "plain")
    expect(page.locator(".jp-Dialog")).to_contain_text(
        "No ckptlab checkpoint in plain", timeout=30_000
    )


def test_viewer_opens_a_folder_named_checkpoints(lab, page):
    """Jupyter Server answers ``GET /api/contents/checkpoints`` (and ``.../checkpoints/<id>``)
    from its file-checkpoints routes; the viewer reads such a folder all the same."""
    model = ck.Module()
    model.dense = ck.layers.Dense(3)
    model.dense(np.ones((1, 2), "float32"))
    manager = ck.CheckpointManager(ck.Checkpoint(model=model), str(lab.root / "checkpoints"), 3)
    manager.save()
    latest = Path(manager.save()).name
    # The server's own answer for this folder is not its listing: the reason for this test.
    assert lab.api("GET", "/api/contents/checkpoints") == []
    page.goto(lab.tree(""))
    _open_from_menu(page, "checkpoints")
    viewer = page.locator(".ckptlab-viewer:visible")
    expect(viewer).to_have_attribute("data-folder", f"checkpoints/{latest}", timeout=30_000)
    graph = viewer.locator('.ckptlab-viewer-graph[data-ready="true"]')
    expect(graph).to_be_visible(timeout=30_000)
    expect(graph.locator(".ck-legend")).to_contain_text("stored 3")  # kernel, bias, save_counter
    expect(graph.locator("g.node", has_text="kernel").first).to_be_visible()
    expect(page.locator(".jp-Dialog")).to_have_count(0)
