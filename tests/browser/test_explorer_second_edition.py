"""The explorer's second edition in JupyterLab and Chromium: problems first, live colours,
values compared, training runs; with the XSS checks on every new text surface."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect

import ckptlab as ck
from ckptlab.inspect._wire import STATE_TABLE

from .conftest import cell_text, node_on_screen, open_notebook, run_cell

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EXPLORER = ".ckptlab-explorer"
IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "</script><script>window.__pwned=2</script>"
MIME = "application/vnd.ckptlab.graph+json"

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
setattr(saved, IMG, ck.layers.Dense(2))  # a hostile module name: problem list, tables, runs
getattr(saved, IMG)(np.ones((1, 3), "float32"))
opt = ck.optimizers.Adam(0.1)
opt.apply_gradients([(np.ones(v.shape, "float32"), v) for v in (saved.encoder.kernel,)])
ckpt = ck.Checkpoint(model=saved, optimizer=opt)
RUN = os.path.join(root, "run " + IMG)  # and a hostile folder name: sources, timeline points
manager = ck.CheckpointManager(ckpt, RUN, max_to_keep=None)
for step in range(3):
    saved.encoder.kernel.assign(saved.encoder.kernel.numpy() * 1.5)
    getattr(saved, IMG).kernel.assign(getattr(saved, IMG).kernel.numpy() + 0.01)
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
TIMELINE = "run = ck.explore(RUN)\nrun"
COMPARE = "ck.explore(manager.checkpoints[0], compare=path)"
PWNED = 'print("PWNED=%s" % 0)'


def explorer(page, index=0):
    return page.locator(EXPLORER).nth(index)


def first_view(lab, page, name: str, cells: list[str], conflicting: str):
    """Run a notebook's first cell: its explorer shows the head's two shape conflicts first,
    with their reasons, and hides the optimizer the program does not have."""
    open_notebook(page, lab.notebook(name, cells))
    run_cell(page, 0)
    view = explorer(page)
    expect(view.locator(".ck-stage g.node").first).to_be_visible(timeout=90_000)
    conflicts = view.locator(".ck-kind-conflict .ck-problem")
    expect(conflicts).to_have_count(2)  # the head's weight/kernel and bias
    expect(conflicts.first).to_contain_text(conflicting)
    expect(conflicts.first.locator(".ck-problem-reason")).to_contain_text("shape differs")
    assert view.locator(".ck-hide-optimizer").is_checked()
    assert view.locator("g.node", has_text="optimizer").count() == 0
    return view


def test_first_view_problems_live_colours_and_saved_snapshot(lab, page):
    view = first_view(lab, page, "second.ipynb", [SETUP, RESTORE_FROM_CODE], "model/head/")
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
    for chip in view.locator(".ck-chip").all():  # each a tooltip of plain text
        assert chip.get_attribute("title"), chip.inner_text()
        assert chip.locator("*:not(.ck-swatch)").count() == 0
    # The hostile module's values wait for it (pending): in the problem list, as text.
    problems = view.locator(".ck-problems")
    expect(problems.locator(".ck-kind-pending")).to_contain_text(f"model/{IMG}/kernel")
    expect(view.locator(".ck-source")).to_contain_text(IMG)
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
    # Hostile names in a run: the module in the sparklines, the folder in the tooltips.
    expect(run.locator(".ck-spark-module", has_text="onerror")).to_have_text(f"model/{IMG}")
    expect(run.locator(".ck-point title").first).to_contain_text(f"run {IMG}")
    expect(run.locator(".ck-source")).to_contain_text(IMG)
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
    expect(rows.first).to_contain_text("model/")
    # save_counter (1 -> 3) is compared exactly but not measured: it is no weight.
    expect(rows.filter(has_text="save_counter")).to_have_count(0)
    rows.filter(has_text="encoder/kernel").first.click()
    expect(compare.locator(".ck-histogram-overlay")).to_be_visible(timeout=30_000)
    expect(compare.locator(".ck-details")).to_contain_text("relative L2")
    # The hostile name in the tables, the details and the histogram's tooltips: only text.
    expect(rows.filter(has_text="onerror").first).to_contain_text(f"model/{IMG}/")
    rows.filter(has_text=f"{IMG}/kernel").click()
    expect(compare.locator(".ck-details-title")).to_have_text(f"model/{IMG}/kernel")
    titles = compare.locator(".ck-histogram-overlay rect title")
    expect(titles.first).to_have_text(re.compile(r"^\S+ … \S+: \d+$"), timeout=30_000)
    assert compare.evaluate(
        "r => [...r.querySelectorAll('svg title, .ck-changes [title]')].every("
        "t => t.children.length === 0)"
    )
    compare.locator(".ck-changes-mode button", has_text="modules").click()
    expect(rows.filter(has_text="onerror").first).to_contain_text(f"model/{IMG}")
    for explorer_root in page.locator(EXPLORER).all():
        assert explorer_root.locator("img, script, iframe").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


PARTIAL_RUN = """
import os, tempfile
import numpy as np
import ckptlab as ck
from safetensors.numpy import save_file
RUN = tempfile.mkdtemp()
for step in (2, 4, 6):
    os.makedirs(os.path.join(RUN, "checkpoint-%d" % step))
    save_file({"w": np.full(4, float(step), "float32")},
              os.path.join(RUN, "checkpoint-%d" % step, "model.safetensors"))
newest = os.path.join(RUN, "checkpoint-6", "model.safetensors")
data = open(newest, "rb").read()
open(newest, "wb").write(data[:-8])  # still being written
run = ck.explore(RUN)
run
"""


def test_a_checkpoint_that_cannot_be_read_is_marked_in_the_timeline(lab, page):
    """The newest checkpoint-N is half written: its point says why, and cannot be picked."""
    open_notebook(page, lab.notebook("partial.ipynb", [PARTIAL_RUN]))
    run_cell(page, 0)
    run = explorer(page)
    expect(run.locator(".ck-spark-row").first).to_be_visible(timeout=60_000)
    expect(run.locator(".ck-point")).to_have_count(3)
    unreadable = run.locator(".ck-point-unreadable")
    expect(unreadable).to_have_count(1)
    expect(unreadable.locator("title")).to_contain_text("step 6 · unreadable: ")
    expect(unreadable.locator("title")).to_contain_text("is not a readable safetensors file")
    legend = run.locator(".ck-timeline-legend")
    expect(legend).to_contain_text("cannot read step 6")
    expect(legend).to_contain_text("comparing a = step 2 with b = step 4")
    unreadable.click()
    expect(run.locator(".ck-picking")).to_have_count(0)
    assert page.errors == []


BIG = """
import os, tempfile
import numpy as np
import ckptlab as ck
m = ck.Module()
m.layers = [ck.Module() for _ in range(30)]
for layer in m.layers:
    for j in range(100):
        setattr(layer, "w%d" % j, ck.Variable(np.zeros(2, "float32")))
path = ck.Checkpoint(model=m).write(os.path.join(tempfile.mkdtemp(), "big"))
m.layers[7].w5 = ck.Variable(np.zeros(3, "float32"))  # one shape conflict
w = ck.explore(ck.Checkpoint(model=m).read(path, lazy=True))
w
"""

ON_SCREEN = """(root) => {
  const stage = root.querySelector(".ck-stage").getBoundingClientRect();
  return [...root.querySelectorAll("SELECTOR")].some((g) => {
    const r = g.getBoundingClientRect();
    return r.left >= stage.left && r.right <= stage.right && r.top >= stage.top &&
      r.bottom <= stage.bottom;
  });
}"""
VIEWBOX = "r => r.querySelector('.ck-stage svg').getAttribute('viewBox').split(' ').map(Number)"


def _empty_stage_point(view) -> tuple[float, float]:
    """A point of the stage over no node, control or minimap (where a drag pans)."""
    point = view.evaluate(
        """(root) => {
        const r = root.querySelector(".ck-stage").getBoundingClientRect();
        for (let y = r.top + r.height * 0.9; y > r.top + 40; y -= 7) {
          for (let x = r.left + 60; x < r.left + r.width * 0.55; x += 7) {
            const hit = document.elementFromPoint(x, y);
            if (hit && hit.closest(".ck-stage") && !hit.closest("g.node")) return [x, y];
          }
        }
        return null;
      }"""
    )
    assert point, "no empty place on the stage"
    return point[0], point[1]


def drag(page, view, dx: float, dy: float) -> tuple[float, float]:
    """Drag the stage by (dx, dy) pixels from an empty place; that place."""
    x, y = _empty_stage_point(view)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=5)
    page.mouse.up()
    return x, y


def test_pan_zoom_and_the_minimap_keep_the_selection(lab, page):
    open_notebook(page, lab.notebook("panzoom.ipynb", [BIG]))
    run_cell(page, 0)
    view = explorer(page)
    conflict = view.locator(".ck-stage g.node.st-shape_conflict")
    expect(conflict).to_be_visible(timeout=60_000)
    # The minimap: the graph's shapes and colours, not a second set of nodes or ids.
    minimap = view.locator(".ck-minimap")
    expect(minimap).to_be_visible()
    nodes = view.locator(".ck-stage g.node").count()
    assert minimap.locator("g.ck-mini-node").count() == nodes
    assert minimap.locator("g.node, text, title, [id]").count() == 0
    assert minimap.locator("g.ck-mini-node.st-shape_conflict").count() == 1
    assert view.locator("g.node").count() == nodes
    # Select the conflict, then pan and zoom: only the viewBox moves.
    conflict.locator("text").first.click()
    expect(view.locator(".ck-details-title")).to_have_text("model/layers/7/w5")
    selected = view.locator(".ck-stage g.node.ck-selected")
    expect(selected).to_have_count(1)
    chosen = selected.get_attribute("data-node")

    def kept() -> None:
        expect(selected).to_have_count(1)
        assert selected.get_attribute("data-node") == chosen
        expect(view.locator(".ck-details-title")).to_have_text("model/layers/7/w5")

    # Expanding a group keeps it where it was on screen (dragged until one is in view: the
    # layer groups sit beside the middle of layer 7's long column of values).
    view.locator(".ck-zoom-button[title='Zoom out']").click()
    on_screen = ON_SCREEN.replace("SELECTOR", ".ck-stage g.node.ck-collapsed")
    for _ in range(12):
        if view.evaluate(on_screen):
            break
        drag(page, view, 0, -150)
    kept()
    node_id = node_on_screen(view, ".ck-stage g.node.ck-collapsed")
    where = view.locator(f'.ck-stage g.node[data-node="{node_id}"]')
    visible_before = view.get_attribute("data-visible")
    start = where.bounding_box()
    where.locator("g.ck-toggle").click()
    expect(view).not_to_have_attribute("data-visible", visible_before or "")
    end = where.bounding_box()
    assert start and end
    centre = [(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2) for b in (start, end)]
    assert abs(centre[0][0] - centre[1][0]) < 3 and abs(centre[0][1] - centre[1][1]) < 3, centre
    kept()
    before = view.evaluate(VIEWBOX)
    view.locator(".ck-zoom-button[title='Zoom in']").click()
    zoomed = view.evaluate(VIEWBOX)
    assert zoomed[2] < before[2], (before, zoomed)  # narrower: zoomed in
    kept()
    x, y = drag(page, view, 120, 60)
    panned = view.evaluate(VIEWBOX)
    assert panned[2:] == zoomed[2:] and panned[:2] != zoomed[:2], (zoomed, panned)
    kept()
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.wheel(0, 300)  # Ctrl + wheel down: zoom out around the pointer
    page.keyboard.up("Control")
    page.wait_for_timeout(200)
    assert view.evaluate(VIEWBOX)[2] > panned[2]
    kept()
    box = minimap.bounding_box()
    assert box
    moved_from = view.evaluate(VIEWBOX)
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.9)
    assert view.evaluate(VIEWBOX)[:2] != moved_from[:2]
    kept()
    view.locator(".ck-zoom-button[title='Fit the graph']").click()
    kept()
    assert page.errors == []


LONG = """
import os, tempfile
import numpy as np
import ckptlab as ck
saved = ck.Module()
saved.encoder = ck.layers.Dense(4)
saved.encoder(np.ones((1, 3), "float32"))
LONG_NAME = "WWWW_a_layer_with_a_name_much_longer_than_any_box_WWWW"
setattr(saved, LONG_NAME, ck.layers.Dense(2))
getattr(saved, LONG_NAME)(np.ones((1, 3), "float32"))
setattr(saved, "MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM", ck.Variable(np.ones(3, "float32")))
saved.mixed_WiWiWiWi_llll_MMMM_iiii_WWWW = ck.Variable(np.ones((2, 3, 4, 5), "float64"))
path = ck.Checkpoint(model=saved).write(os.path.join(tempfile.mkdtemp(), "long"))
fresh = ck.Module()
fresh.encoder = ck.layers.Dense(5)  # a shape conflict with two long lines
fresh.encoder(np.ones((1, 3), "float32"))
status = ck.Checkpoint(model=fresh).read(path, lazy=True)
status.expect_partial()
w = ck.explore(status)
w
"""

FIT = """(root) => {
  const input = root.querySelector("input.ck-search");
  const style = getComputedStyle(input);
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = `${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const tight = [];
  for (const g of root.querySelectorAll(".ck-stage g.node")) {
    const shape = g.querySelector("path, polygon").getBBox();
    const toggle = g.querySelector("g.ck-toggle circle");
    const right = toggle ? Number(toggle.getAttribute("cx")) - 6 : shape.x + shape.width;
    for (const text of g.querySelectorAll(":scope > text")) {
      const b = text.getBBox();
      if (b.x - shape.x < 4 || right - (b.x + b.width) < 3) tight.push(text.textContent);
    }
  }
  return {placeholder: ctx.measureText(input.placeholder).width, room, tight,
          labels: root.querySelectorAll(".ck-stage g.node > text").length};
}"""

LUMINANCE = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const root = el.closest(".ckptlab-explorer");
  const fg = getComputedStyle(el).color || getComputedStyle(el).fill;
  const text = el instanceof SVGElement ? getComputedStyle(el).fill : fg;
  const bg = getComputedStyle(root).backgroundColor;
  const [a, b] = [lum(text), lum(bg)].sort((x, y) => y - x);
  return {contrast: (a + 0.05) / (b + 0.05), background: lum(bg)};
}"""


def test_labels_fit_the_search_hint_shows_and_the_dark_theme_reads(lab, page, tmp_path):
    open_notebook(page, lab.notebook("looks.ipynb", [LONG]))
    run_cell(page, 0)
    view = explorer(page)
    expect(view.locator(".ck-stage g.node").first).to_be_visible(timeout=60_000)
    view.locator(".ck-collapse").click()  # then open every group: every label drawn
    view.locator(".ck-expand-problems").click()
    view.locator(".ck-hide-optimizer").uncheck()
    expect(view.locator(".ck-stage g.node", has_text="MMMMMMMM")).to_have_count(1)
    geometry = view.evaluate(FIT)
    assert geometry["placeholder"] <= geometry["room"], geometry  # the hint is not cut off
    assert geometry["labels"] > 10 and geometry["tight"] == [], geometry  # room on both sides
    # Long names are elided in the middle; the full path is the node's hover text.
    long = view.locator(".ck-stage g.node", has_text="WWWW_a_layer")
    expect(long.locator("title").first).to_contain_text(
        "model/WWWW_a_layer_with_a_name_much_longer_than_any_box_WWWW"
    )
    expect(long.locator(":scope > text").first).to_contain_text("…")
    # Dark theme: JupyterLab's colours flow in; every text surface stays readable.
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=20_000)
    page.wait_for_timeout(500)
    surfaces = {
        "summary": view.locator(".ck-summary"),
        "legend": view.locator(".ck-chip").first,
        "problem": view.locator(".ck-problem-path").first,
        "label": view.locator(".ck-stage g.node.st-none > text").first,
        "toggle": view.locator(".ck-stage g.ck-toggle text").first,
        "search": view.locator("input.ck-search"),
    }
    for name, surface in surfaces.items():
        reading = surface.evaluate(LUMINANCE)
        assert reading["background"] < 0.05, (name, reading)  # a dark background
        assert reading["contrast"] >= 4.5, (name, reading)  # WCAG AA for text
    minimap_bg = view.locator(".ck-minimap").evaluate("e => getComputedStyle(e).backgroundColor")
    assert sum(int(c) for c in re.findall(r"\d+", minimap_bg)[:3]) < 3 * 80, minimap_bg
    view.screenshot(path=str(tmp_path / "dark.png"))
    assert (tmp_path / "dark.png").stat().st_size > 5_000
    assert page.errors == []


def test_a_crafted_saved_output_stays_text(lab, page):
    """A notebook from elsewhere: its graph bundles are untrusted data, drawn without a kernel."""
    from ckptlab._reader import open_path
    from ckptlab.explorer._sources import CheckpointSource

    model = ck.Module()
    setattr(model, IMG, ck.Variable(np.ones(2, "float32")))
    path = ck.Checkpoint(model=model).write(str(lab.root / "crafted-ckpt"))
    graph = CheckpointSource(open_path(path)).view().to_json()
    graph.update(title=IMG, source=SCRIPT, summary=IMG)
    graph["strings"] = [IMG]
    graph["nodes"]["reason"] = [0] * len(graph["nodes"]["reason"])
    graph["specs"] = [[IMG, shape, size] for _, shape, size in graph["specs"]]
    hostile_state = json.loads(json.dumps(graph))
    hostile_state["states"][0] = 'restored", URL="javascript:window.__pwned=3'
    outputs = [
        {"output_type": "display_data", "metadata": {}, "data": {MIME: g, "text/plain": "x"}}
        for g in (graph, hostile_state)
    ]
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": "# saved elsewhere",
                "outputs": outputs,
                "execution_count": 1,
            }
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (lab.root / "crafted.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    page.goto(lab.tree("crafted.ipynb"))
    drawn = page.locator('.ckptlab-static[data-ready="true"] .ckptlab-explorer')
    expect(drawn.locator("g.node").first).to_be_visible(timeout=60_000)
    expect(drawn.locator(".ck-title")).to_have_text(IMG)
    expect(drawn.locator(".ck-source")).to_have_text(SCRIPT)
    for node in drawn.locator(".ck-stage g.node").all():
        node.locator(":scope > text").first.click()
    expect(drawn.locator(".ck-details")).to_contain_text(IMG)  # reasons and dtypes
    chip = drawn.locator(".ck-chip").first
    assert chip.get_attribute("title") == next(s.explain for s in STATE_TABLE if s.name == "stored")
    refused = page.locator('.ckptlab-static[data-ready="error"]')
    expect(refused).to_contain_text("unknown state")
    assert refused.locator("svg, a").count() == 0
    assert page.locator(".ckptlab-mime a[href^='javascript'], .ckptlab-mime img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


TORCH = """
import os, tempfile
import torch
import ckptlab as ck
torch.manual_seed(0)
def build(out):
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, out))
trained = build(3)
opt = torch.optim.Adam(trained.parameters(), lr=0.1)
trained(torch.ones(2, 4)).sum().backward()
opt.step()
path = ck.Checkpoint(model=trained, optimizer=opt).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
fresh = build(5)  # the head grew: a shape conflict
status = ck.Checkpoint(model=fresh).restore(path, lazy=True)
status.expect_partial()
ck.explore(status)
"""
TORCH_CHECK = """
print("FIRST=%s" % torch.equal(fresh[0].weight, trained[0].weight))
print("HEAD_UNTOUCHED=%s" % (not torch.equal(fresh[2].weight[:3], trained[2].weight)))
"""


def test_a_live_torch_model_restores_from_the_explorer(lab, page):
    view = first_view(lab, page, "torch.ipynb", [TORCH, TORCH_CHECK], "model/2/")
    first = view.locator(".ck-stage g.node", has=page.locator("text", has_text=re.compile("^0$")))
    first.locator("text").first.click(modifiers=["Shift"])  # the first layer and its values
    expect(view.locator(".ck-details-title")).to_have_text("model/0")
    view.locator("button.ck-restore").click()
    expect(view.locator(".ck-message")).to_contain_text("Restored 2 values", timeout=30_000)
    expect(view.locator(".ck-stage g.node.st-restored")).to_have_count(2)
    out = cell_text(run_cell(page, 1))
    assert "FIRST=True" in out and "HEAD_UNTOUCHED=True" in out, out
    assert page.errors == []
