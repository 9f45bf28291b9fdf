"""The explorer in a real JupyterLab and Chromium: colours, details, restore, search, theme, XSS."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import node_on_screen

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EXPLORER = ".ckptlab-explorer"
SETUP = """
import os, tempfile
import numpy as np
import ckptlab as ck

def build(hidden, head_units=1):
    m = ck.Module()
    m.encoder = ck.layers.Dense(8)
    setattr(m, hidden, ck.layers.Dense(4))
    m.head = ck.layers.Dense(head_units)
    x = np.ones((2, 5), "float32")
    for name in ("encoder", hidden, "head"):
        x = getattr(m, name)(x)
    return m

saved, opt = build("hidden"), ck.optimizers.Adam(0.01)
params = [v for l in (saved.encoder, saved.hidden, saved.head) for v in (l.kernel, l.bias)]
opt.apply_gradients([(np.ones(p.shape, "float32"), p) for p in params])
saved.scale = ck.Variable(np.ones(3, "float32"))
path = ck.Checkpoint(model=saved, optimizer=opt).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
fresh, fresh_opt = build("hidden_renamed", head_units=2), ck.optimizers.Adam(0.01)
fresh.scale = ck.Variable(np.ones(3, "float64"))  # a dtype conflict
status = ck.Checkpoint(model=fresh, optimizer=fresh_opt).restore(path, lazy=True)
status.expect_partial()
w = ck.explore(status)
w
"""

CHECK_ENCODER = """
same = np.array_equal(fresh.encoder.kernel.numpy(), saved.encoder.kernel.numpy())
print("ENCODER_RESTORED=%s" % same)
steps = (int(fresh_opt.iterations.numpy()), int(opt.iterations.numpy()))
print("UNSELECTED_UNTOUCHED=%s" % (steps == (0, 1)))
print("MESSAGE=%s" % w.message)
print("SVG_EXPORTED=%s" % (w.svg.startswith("<svg") and "st-restored" in w.svg))
"""

BIG = """
import os, tempfile
import numpy as np
import ckptlab as ck
m = ck.Module()
m.layers = [ck.Module() for _ in range({layers})]
for i, layer in enumerate(m.layers):
    for j in range({per_layer}):
        setattr(layer, "w%d" % j, ck.Variable(np.zeros(2, "float32")))
path = ck.Checkpoint(model=m).write(os.path.join(tempfile.mkdtemp(), "big"))
m.layers[7].w5 = ck.Variable(np.zeros(3, "float32"))  # one shape conflict
status = ck.Checkpoint(model=m).read(path, lazy=True)
w = ck.explore(status)
w
"""

HOSTILE = """
import os, tempfile
import numpy as np
import ckptlab as ck
IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = '</script><script>window.__pwned=2</script>'
m = ck.Module()
setattr(m, IMG, ck.Variable(np.ones(3, "float32")))
m.box = {SCRIPT: ck.Variable(np.ones(2, "float32"))}
path = ck.Checkpoint(model=m).write(os.path.join(tempfile.mkdtemp(), IMG))
other = ck.Module()
other.box = {SCRIPT + "x": ck.Variable(np.ones(2, "float32"))}
status = ck.Checkpoint(model=other).read(path, lazy=True)
status.expect_partial()
w = ck.explore(status)
w
"""


def node(page, path_text: str):
    """The graph node whose first label line is ``path_text``."""
    return page.locator(f"{EXPLORER} g.node").filter(
        has=page.locator("text", has_text=re.compile(rf"^{re.escape(path_text)}$"))
    )


def stroke(locator) -> str:
    return locator.locator("path, polygon").first.evaluate("e => getComputedStyle(e).stroke")


def state_colours(page) -> dict[str, tuple[str, str]]:
    """Each drawn state: (the stroke of its first node, the colour its CSS variable names)."""
    return page.evaluate(
        """() => {
        const root = document.querySelector(".ckptlab-explorer");
        const out = {};
        for (const g of root.querySelectorAll("g.node")) {
          const state = [...g.classList].find((c) => c.startsWith("st-")).slice(3);
          if (state === "none" || state in out) continue;
          const probe = document.createElement("span");
          probe.style.color = `var(--ck-${state})`;
          root.appendChild(probe);
          const expected = getComputedStyle(probe).color;
          probe.remove();
          out[state] = [getComputedStyle(g.querySelector("path, polygon")).stroke, expected];
        }
        return out;
      }"""
    )


def test_colours_details_and_restore_selected(lab, page, nb):
    nb.open(lab.notebook("restore.ipynb", [SETUP, CHECK_ENCODER]))
    nb.run(0)
    expect(page.locator(f"{EXPLORER} g.node").first).to_be_visible(timeout=60_000)
    legend = page.locator(f"{EXPLORER} .ck-legend")
    expect(legend).to_contain_text("not yet written 8")  # the "bound" state, as it reads
    expect(legend).to_contain_text("shape conflict 6")  # head kernel, bias and their 4 slots
    expect(legend).to_contain_text("pending 6")  # hidden's values wait for model.hidden
    conflict = page.locator(f"{EXPLORER} g.node.st-shape_conflict").first
    assert stroke(conflict) == "rgb(194, 24, 91)"  # --ck-shape_conflict
    assert stroke(page.locator(f"{EXPLORER} g.node.st-bound").first) == "rgb(2, 136, 209)"
    colours = state_colours(page)
    drawn = {"bound", "shape_conflict", "dtype_conflict", "pending", "program_only"}
    assert drawn <= colours.keys(), colours
    for state, (found, expected) in colours.items():
        assert found == expected, (state, found, expected)
    assert len({found for found, _ in colours.values()}) == len(colours)  # all distinct
    details = page.locator(f"{EXPLORER} .ck-details")
    # A value the checkpoint lacks: the kernel says so, the pane does not wait for statistics.
    page.locator(f"{EXPLORER} g.node.st-program_only text").first.click()
    expect(details).to_contain_text("not in the checkpoint: no stored value", timeout=20_000)
    expect(details).to_contain_text("expected key")
    expect(details).not_to_contain_text("reading")
    node(page, "scale").click()  # a plain click selects just that node and shows it
    expect(details).to_contain_text("model/scale")
    expect(details).to_contain_text("float64")
    expect(page.locator(f"{EXPLORER} g.node.ck-selected")).to_have_count(1)
    node(page, "scale").click(modifiers=["Control"])  # and Ctrl-click takes it out again
    expect(page.locator(f"{EXPLORER} g.node.ck-selected")).to_have_count(0)
    encoder = node(page, "encoder")
    encoder.click(modifiers=["Shift"])  # select the subtree
    expect(details).to_contain_text("model/encoder")
    kernel = node(page, "kernel").filter(has_text="(5, 8) float32")
    kernel.click(modifiers=["Control"])  # focus it (stays selected with the subtree)
    expect(details).to_contain_text("min / max", timeout=20_000)
    expect(details).to_contain_text("verified (crc32c)")
    # the histogram is drawn (an empty bin is a bar of height 0: not one to wait for)
    page.locator(f"{EXPLORER} .ck-histogram rect:not([height='0'])").first.wait_for()
    kernel.click(modifiers=["Control"])  # toggled back into the selection
    page.locator(f"{EXPLORER} button.ck-restore").click()
    expect(page.locator(f"{EXPLORER} .ck-message")).to_contain_text("Restored", timeout=20_000)
    expect(page.locator(f"{EXPLORER} g.node.st-restored")).not_to_have_count(0)
    page.locator(f"{EXPLORER} button.ck-export").click()  # downloads, and sends it to the kernel
    out = nb.text(nb.run(1))
    assert "ENCODER_RESTORED=True" in out, out
    assert "UNSELECTED_UNTOUCHED=True" in out, out
    assert "SVG_EXPORTED=True" in out, out
    assert page.errors == []


def test_search_expand_keyboard_and_dark_theme(lab, page, nb, tmp_path):
    source = BIG.replace("{layers}", "30").replace("{per_layer}", "100")
    nb.open(lab.notebook("big.ipynb", [source]))
    nb.run(0)
    root = page.locator(EXPLORER)
    expect(root.locator("g.node").first).to_be_visible(timeout=60_000)
    visible = int(root.get_attribute("data-visible") or 0)
    assert visible <= 150, "3,000 values open collapsed"
    expect(node(page, "w5")).to_have_count(1)  # opened down to the problem
    expect(page.locator(f"{EXPLORER} g.node.st-shape_conflict")).to_have_count(1)
    # search: "/" focuses the box; a match inside a collapsed group is revealed
    root.focus()
    page.keyboard.press("/")
    page.keyboard.type("layers/12/w42")
    expect(page.locator(f"{EXPLORER} g.node.ck-match")).to_have_count(1, timeout=10_000)
    expect(root.locator(".ck-search-count")).to_have_text("1 match")
    expect(root.locator(".ck-details")).to_contain_text("model/layers/12/w42")
    # clicking a collapsed group selects it and shows it, without expanding it...
    before = int(root.get_attribute("data-visible") or 0)
    group = root.locator(f'g.node[data-node="{node_on_screen(root, "g.node.ck-collapsed")}"]')
    full_path = (group.locator("title").first.text_content() or "").splitlines()[0]
    group.locator("text").first.click()
    expect(root.locator(".ck-details-title")).to_have_text(full_path)
    expect(group).to_have_class(re.compile(r"\bck-selected\b"))
    expect(root).to_have_attribute("data-visible", str(before))
    # ...its +/- control expands it
    group.locator("g.ck-toggle").click()
    expect(root).not_to_have_attribute("data-visible", str(before))
    # keyboard: Enter toggles the focused group back
    root.focus()
    page.keyboard.press("Enter")
    expect(root).to_have_attribute("data-visible", str(before))
    # dark theme: JupyterLab's variables flow into the explorer
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=20_000)
    background = root.evaluate("e => getComputedStyle(e).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert sum(channels) < 3 * 100, background
    root.screenshot(path=str(tmp_path / "explorer-dark.png"))
    assert (tmp_path / "explorer-dark.png").stat().st_size > 5_000
    assert page.errors == []


def test_hostile_names_run_no_script(lab, page, nb):
    nb.open(lab.notebook("hostile.ipynb", [HOSTILE]))
    nb.run(0)
    root = page.locator(EXPLORER)
    expect(root.locator("g.node").first).to_be_visible(timeout=60_000)
    expect(root).to_contain_text('<img src=x onerror="window.__pwned=1">')
    for text_node in root.locator("g.node").all():
        text_node.click(modifiers=["Control"])
    page.keyboard.press("/")
    page.keyboard.type("script")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None
    assert root.locator("img, script, iframe").count() == 0
    assert page.locator(".jp-OutputArea-output img[src='x']").count() == 0
    assert page.errors == []
