"""The explorer's second edition in JupyterLab and Chromium: problems first, live colours,
values compared, training runs; with the XSS checks on every new text surface."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from .conftest import open_notebook, run_cell

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EXPLORER = ".ckptlab-explorer"
IMG = '<img src=x onerror="window.__pwned=1">'

SETUP = f"""
import os, tempfile
import numpy as np
import ckptlab as ck
IMG = {IMG!r}
root = tempfile.mkdtemp()
saved = ck.Module()
saved.encoder = ck.layers.Dense(8)
saved.head = ck.layers.Dense(3)
saved.head(saved.encoder(np.ones((1, 5), "float32")))
setattr(saved, IMG, ck.Variable(np.ones(2, "float32")))
opt = ck.optimizers.Adam(0.1)
opt.apply_gradients([(np.ones(v.shape, "float32"), v) for v in (saved.encoder.kernel,)])
ckpt = ck.Checkpoint(model=saved, optimizer=opt)
manager = ck.CheckpointManager(ckpt, os.path.join(root, "run"), max_to_keep=None)
for step in range(3):
    saved.encoder.kernel.assign(saved.encoder.kernel.numpy() * 1.5)
    path = manager.save()
fresh = ck.Module()
fresh.encoder = ck.layers.Dense(8)
fresh.head = ck.layers.Dense(4)  # a shape conflict
fresh.head(fresh.encoder(np.ones((1, 5), "float32")))
status = ck.Checkpoint(model=fresh).restore(path, lazy=True)
status.expect_partial()
w = ck.explore(status)
w
"""
RESTORE_FROM_CODE = 'status.run_restore_ops(only=["model/encoder"])'
TIMELINE = 'run = ck.explore(os.path.join(root, "run"))\nrun'
COMPARE = "ck.explore(manager.checkpoints[0], compare=path)"
PWNED = 'print("PWNED=%s" % 0)'


def explorer(page, index=0):
    return page.locator(EXPLORER).nth(index)


def test_first_view_problems_live_colours_and_saved_snapshot(lab, page):
    open_notebook(page, lab.notebook("second.ipynb", [SETUP, RESTORE_FROM_CODE]))
    run_cell(page, 0)
    view = explorer(page)
    expect(view.locator("g.node").first).to_be_visible(timeout=60_000)
    # Problems first: grouped by kind, the conflict with its reason, optimizer hidden.
    conflicts = view.locator(".ck-kind-conflict .ck-problem")
    expect(conflicts).to_have_count(2)  # the head's kernel and bias
    expect(conflicts.first).to_contain_text("model/head/")
    expect(conflicts.first.locator(".ck-problem-reason")).to_contain_text("shape differs")
    assert view.locator(".ck-hide-optimizer").is_checked()  # the program has no optimizer
    assert view.locator("g.node", has_text="optimizer").count() == 0
    # The first conflict is on screen, without scrolling.
    conflict = view.locator("g.node.st-shape_conflict").first
    box, stage = conflict.bounding_box(), view.locator(".ck-stage").bounding_box()
    assert (
        box
        and stage
        and stage["x"] <= box["x"]
        and box["x"] + box["width"] <= stage["x"] + stage["width"]
    )
    # Legend states explain themselves.
    chip = view.locator(".ck-chip.st-bound")
    expect(chip).to_have_attribute("title", re.compile("run_restore_ops\\(\\) writes it"))
    # Selecting a group shows details and does not collapse it; the toggle control does.
    before = int(view.get_attribute("data-visible"))
    model = view.locator("g.node", has=page.locator("text", has_text=re.compile(r"^model$"))).first
    model.locator("text").first.click()
    expect(view.locator(".ck-details-title")).to_have_text("model")
    assert int(view.get_attribute("data-visible")) == before
    model.locator("g.ck-toggle").click()
    expect(view).not_to_have_attribute("data-visible", str(before))
    model = view.locator("g.node", has=page.locator("text", has_text=re.compile(r"^model/$"))).first
    model.locator("g.ck-toggle").click()
    expect(view).to_have_attribute("data-visible", str(before))
    # Hostile names: elided text with the full path as hover text, never markup.
    hostile = view.locator("g.node title", has_text="onerror")
    expect(hostile.first).to_contain_text(f"model/{IMG}")
    assert view.locator("img").count() == 0
    # A restore run from code repaints the widget and the saved bundle follows.
    kernels = view.locator(".ck-stage g.node.st-bound")
    bound = kernels.count()
    run_cell(page, 1)
    expect(view.locator(".ck-stage g.node.st-restored").first).to_be_visible(timeout=10_000)
    restored = view.locator(".ck-stage g.node.st-restored").count()
    assert view.locator(".ck-stage g.node.st-bound").count() == bound - restored
    expect(page.locator(".ckptlab-mime").first).to_have_attribute(
        "data-snapshots", re.compile(r"[1-9]"), timeout=10_000
    )
    page.keyboard.press("Control+s")
    time.sleep(1.5)
    saved = json.loads((lab.root / "second.ipynb").read_text())
    bundle = next(
        o["data"]
        for o in saved["cells"][0]["outputs"]
        if "application/vnd.ckptlab.graph+json" in o.get("data", {})
    )
    graph = bundle["application/vnd.ckptlab.graph+json"]
    assert graph["counts"].get("restored") == restored == 2
    assert "restored" in "".join(bundle["text/plain"])
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_values_compared_and_the_training_run(lab, page):
    open_notebook(page, lab.notebook("runs.ipynb", [SETUP, TIMELINE, COMPARE]))
    run_cell(page, 0)
    run_cell(page, 1)
    run = explorer(page, 1)
    sparks = run.locator(".ck-spark-row")
    expect(sparks.first).to_be_visible(timeout=60_000)
    expect(run.locator(".ck-point")).to_have_count(3)
    expect(sparks.first.locator(".ck-spark-module")).to_have_text("model/encoder")
    # Pick two checkpoints: the graph compares them.
    run.locator(".ck-point").nth(1).click()
    run.locator(".ck-point").nth(2).click()
    expect(explorer(page, 1).locator(".ck-timeline-legend")).to_contain_text(
        "a = step 2", timeout=30_000
    )
    run_cell(page, 2)
    compare = explorer(page, 2)
    expect(compare.locator("g.node.ck-heated").first).to_be_visible(timeout=60_000)
    rows = compare.locator(".ck-change-row")
    expect(rows.first).to_contain_text("model")
    # Sortable: by path ascending, then back to most changed.
    compare.locator("th[data-sort=path]").click()
    first = rows.first.inner_text()
    compare.locator("th[data-sort=path]").click()
    assert rows.first.inner_text() != first
    compare.locator(".ck-changes-mode button", has_text="values").click()
    expect(rows.first).to_contain_text("save_counter")  # 1 -> 3: the largest relative change
    rows.filter(has_text="encoder/kernel").first.click()
    expect(compare.locator(".ck-histogram-overlay")).to_be_visible(timeout=30_000)
    expect(compare.locator(".ck-details")).to_contain_text("relative L2")
    # The hostile name appears in the tables only as text.
    compare.locator(".ck-changes-mode button", has_text="values").click()
    assert compare.locator("img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []
