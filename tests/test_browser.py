"""JupyterLab in a real browser: Debian's Chromium (headless, 1280x900) driven by Playwright opens
01_quickstart (with a SweepPanel and a TreeExplorer appended to the test's copy), runs every cell,
and clicks Run in each panel. It checks that the settings fold after a run, that the Run button, the
figure and the whole tables lie inside the panel and the viewport's width with nothing overflowing
sideways, that the sweep shows one figure at a time and stays short, that the ComparePanel's cluster
filter filters, and that the tree's whole prompt (segue included) is one click away. Screenshots go to
data/exports/screenshots/{compare,sweep,tree}-panel.png (the window) and -panel-full.png (the panel).

`make test` installs chromium (apt) and playwright (pip); this test fails, never skips, when
either is missing. Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REAL_MODELS_DIR, REPO
from tests.test_notebooks import install_kernelspec

pytestmark = pytest.mark.models

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "data" / "exports" / "screenshots"
MODELS = ("gemma-3-270m", "smollm2-135m-instruct")


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path, embedded_models):
    """JupyterLab on 127.0.0.1 with a token, its own Jupyter dirs and a temporary WORKBENCH_HOME."""
    dirs = {name: tmp_path / name for name in ("home", "settings", "workspaces", "config", "data", "runtime",
                                               "ipython", "mpl", "root", "workbench-home")}
    for folder in dirs.values():
        folder.mkdir()
    (dirs["workbench-home"] / "models").symlink_to(REAL_MODELS_DIR, target_is_directory=True)
    # A copy: JupyterLab autosaves, and the committed notebooks stay without outputs.
    shutil.copy(REPO / "notebooks" / "01_quickstart.ipynb", dirs["root"])
    settings = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    install_kernelspec(dirs["data"])
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "HOME": str(dirs["home"]), "JUPYTER_CONFIG_DIR": str(dirs["config"]),
           "JUPYTER_DATA_DIR": str(dirs["data"]), "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
           "IPYTHONDIR": str(dirs["ipython"]), "MPLCONFIGDIR": str(dirs["mpl"]),
           "WORKBENCH_HOME": str(dirs["workbench-home"]), "WORKBENCH_NOTEBOOK_QUICK": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("WORKBENCH_STORE", None)  # the store lives in the temporary home
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={dirs['root']}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}", "--ServerApp.terminals_enabled=False",
    ]
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"JupyterLab exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer: {log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield Lab(url, token, dirs["root"], log)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)


WAIT_FOR_KERNEL = """async () => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  for (let i = 0; i < 600; i++) {
    const w = app.shell.currentWidget;
    if (w && w.sessionContext) {
      await w.sessionContext.ready;
      const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
      if (kernel && kernel.status === 'idle') return kernel.name;
    }
    await new Promise(r => setTimeout(r, 200));
  }
  return null;
}"""

ALL_EXECUTED = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content) return false;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return cells.length > 0 && cells.every(c => c.model.executionCount !== null)
    && kernel && kernel.status === 'idle';
}"""


# The two panels the quickstart does not show, appended to the test's copy of the notebook: one JupyterLab
# session and one kernel (the sampler and its loaded models) for all three panels.
EXTRA_CELLS = [
    "from workbench.widgets import SweepPanel, TreeExplorer\n\n"
    "sweep = SweepPanel(sampler, prompt=\"mode-collapse/random-digit\", temperatures=(0.5, 1.5), points=3, n=N,\n"
    "                   metrics=(\"entropy_bits\", \"top1_mass\"))\n"
    "sweep",
    "tree = TreeExplorer(sampler, prompt=\"attractors/wedding-toast\", model=\"gemma-3-270m\",\n"
    "                    compare_with=\"smollm2-135m-instruct\", k=3)\n"
    "tree",
]

# Where a panel's parts are on the page: the Run button, the shown figures, the tables and every other
# visible element, against the panel, its output area, the notebook's scroller and the viewport.
MEASURE = """(panel, run) => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
                             height: r.height}; };
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const all = sel => [...panel.querySelectorAll(sel)].filter(shown);
  const button = all('button.widget-button').find(b => b.textContent.trim() === run);
  const p = box(panel);
  const outside = all('*').filter(e => e.tagName !== 'OPTION' && !e.closest('.workbench-table-box')
                                       && box(e).width > 0 && (box(e).right > p.right + 1 || box(e).left < p.left - 1))
                          .map(e => e.tagName + '.' + [...e.classList].join('.'));
  const scroller = panel.closest('.jp-WindowedPanel-outer') || panel.closest('.jp-Notebook');
  const output = panel.closest('.jp-OutputArea-output');
  return {viewport: document.documentElement.clientWidth, panel: p,
          panelScroll: [panel.scrollWidth, panel.clientWidth],
          outputScroll: output ? [output.scrollWidth, output.clientWidth] : null,
          notebookScroll: scroller ? [scroller.scrollWidth, scroller.clientWidth] : null,
          run: button ? box(button) : null, images: all('img').map(box),
          tables: all('table.workbench-table').map(box),
          tableBoxes: all('.workbench-table-box').map(e => [e.scrollWidth, e.clientWidth]), outside};
}"""


def check_fits(page, panel, run: str, name: str) -> dict:
    """The Run button, every shown figure and every table lie inside the panel and the viewport's width, and
    nothing in the panel overflows sideways; returns the measurements."""
    m = panel.evaluate(MEASURE, run)
    right = min(m["viewport"], m["panel"]["right"])
    where = f"{name}: {m}"
    assert m["run"] is not None, f"no visible {run} button: {where}"
    assert m["images"] and m["tables"], f"no figure or no table shown: {where}"
    for part in [m["run"], *m["images"], *m["tables"]]:
        assert part["left"] >= m["panel"]["left"] - 1 and part["right"] <= right + 1, where
    assert m["panel"]["right"] <= m["viewport"], where
    for scroll in [m["panelScroll"], m["outputScroll"], m["notebookScroll"], *m["tableBoxes"]]:
        assert scroll is None or scroll[0] <= scroll[1], f"horizontal overflow {scroll}: {where}"
    assert not m["outside"], f"sticking out of the panel: {m['outside'][:8]}: {where}"
    print(f"{name}: panel {m['panel']['width']:.0f} x {m['panel']['height']:.0f} px (viewport {m['viewport']}); "
          f"figures {[round(i['width']) for i in m['images']]} px wide; tables "
          f"{[round(t['width']) for t in m['tables']]} px wide")
    return m


def screenshots(page, panel, name: str) -> None:
    """{name}-panel.png: what a 1280x900 window shows with the panel's top at the top after a run;
    {name}-panel-full.png: the whole panel at the same width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(400)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-panel.png"))
    height = panel.evaluate("e => e.getBoundingClientRect().height")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(height) + 400})
    panel.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(400)
    panel.screenshot(path=str(SCREENSHOTS / f"{name}-panel-full.png"))
    page.set_viewport_size(VIEWPORT)
    assert (SCREENSHOTS / f"{name}-panel.png").stat().st_size > 20_000


def settings_folded(panel) -> bool:
    return "jupyter-widget-Collapse-open" not in (
        panel.locator(".workbench-settings .jupyter-widget-Collapse").first.get_attribute("class") or "")


VIEWPORT = {"width": 1280, "height": 900}
SWEEP_MAX_HEIGHT = 1600  # px: settings folded, one figure at a time, one table row per model and temperature


def test_panels_in_jupyterlab_in_chromium(jupyterlab):
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (make test does this)"
    from playwright.sync_api import expect, sync_playwright  # missing: pip install playwright (make test does)

    notebook = jupyterlab.root / "01_quickstart.ipynb"
    content = json.loads(notebook.read_text())
    content["cells"] += [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                          "source": source} for source in EXTRA_CELLS]
    notebook.write_text(json.dumps(content))
    browser_home = jupyterlab.root.parent / "browser-home"
    browser_home.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
            env={"HOME": str(browser_home), "PATH": "/usr/bin:/bin"},
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{jupyterlab.url}/lab/tree/01_quickstart.ipynb?token={jupyterlab.token}")
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
            kernel = page.evaluate(WAIT_FOR_KERNEL)
            log = jupyterlab.log.read_text()[-2000:]
            assert kernel == "workbench", f"kernel not ready ({kernel}); server log: {log}"
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_EXECUTED, timeout=420_000, polling=1000)
            assert page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0
            check_compare_panel(page, expect)
            check_sweep_panel(page, expect)
            check_tree_explorer(page, expect)
        finally:
            browser.close()


def check_compare_panel(page, expect) -> None:
    panel = page.locator(".workbench-compare").first
    expect(panel).to_be_visible(timeout=60_000)
    panel.scroll_into_view_if_needed()
    # The notebook ran the panel once (seed 0): its settings are folded. Open them, change the seed and the
    # temperature, click Run.
    assert settings_folded(panel)
    panel.locator(".workbench-settings .jupyter-widget-Collapse-header").first.click()
    seed = panel.locator(".widget-text", has=page.locator("label", has_text="seed")).locator("input")
    expect(seed).to_be_visible()
    seed.fill("7")
    seed.press("Tab")  # the change reaches the kernel on blur
    temperature = panel.locator(".widget-slider", has=page.locator("label", has_text="temperature"))
    temperature.locator(".noUi-handle").press("ArrowLeft")  # 1.00 -> 0.95
    expect(temperature.locator(".widget-readout")).to_have_text("0.95")
    panel.locator("button.widget-button", has_text="Run").click()
    status = panel.locator(".workbench-status")
    expect(status).to_contain_text("done: n=8, T=0.95, top-p=1, seed=7 (gemma-3-270m: 8 drawn", timeout=240_000)
    expect(seed).to_be_hidden()  # the settings fold after a run: the figure comes first

    image = panel.locator("img").first
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 300
    table = panel.locator("table.workbench-table").first
    expect(table).to_be_visible()
    for model in MODELS:
        expect(table).to_contain_text(model)
        # A model name stays on one line (it wrapped onto three before).
        cell = table.locator("td", has_text=model).first
        lines = cell.evaluate("td => { const r = document.createRange(); r.selectNodeContents(td); "
                              "return r.getBoundingClientRect().height / parseFloat(getComputedStyle(td).fontSize); }")
        assert lines < 2, f"{model} wraps: {lines:.1f} font sizes high"
    assert panel.locator(".workbench-error").count() == 0
    check_fits(page, panel, "Run", "compare")

    # The sample browser: choosing a cluster shows only that cluster's samples.
    samples = panel.locator(".workbench-samples")
    listing = samples.locator(".widget-select select option")
    expect(listing).to_have_count(16)  # n=8 from each model
    cluster = samples.locator(".widget-dropdown", has=page.locator("label", has_text="cluster")).locator("select")
    labels = cluster.locator("option").all_inner_texts()
    assert labels[0] == "(all)" and len(labels) > 2, labels
    assert not any(label.startswith("(") for label in labels[1:]), f"raw tuples listed: {labels}"
    sizes = {i: int(re.search(r"\((\d+)\)$", label).group(1)) for i, label in enumerate(labels) if i}
    chosen = min(sizes, key=sizes.get)
    assert sizes[chosen] < 16, labels
    cluster.select_option(index=chosen)
    expect(listing).to_have_count(sizes[chosen])
    assert panel.locator(".workbench-error").count() == 0
    cluster.select_option(index=0)
    expect(listing).to_have_count(16)
    screenshots(page, panel, "compare")


def check_sweep_panel(page, expect) -> None:
    panel = page.locator(".workbench-sweep").first
    panel.scroll_into_view_if_needed()
    assert not settings_folded(panel)  # open before the first run
    panel.locator("button.widget-button", has_text="Run").click()
    expect(panel.locator(".workbench-status")).to_contain_text("done:", timeout=240_000)
    assert panel.locator(".workbench-error").count() == 0
    assert settings_folded(panel)
    # One figure at a time, chosen by a toggle; the table follows it.
    expect(panel.locator("img")).to_have_count(1)
    table = panel.locator("table.workbench-table").first
    expect(table.locator("tbody tr")).to_have_count(6)  # 2 models x 3 temperatures
    first = panel.locator("img").get_attribute("src")
    check_fits(page, panel, "Run", "sweep (entropy_bits)")
    m = panel.evaluate(MEASURE, "Run")
    assert m["panel"]["height"] <= SWEEP_MAX_HEIGHT, m
    panel.locator(".widget-toggle-buttons button", has_text="top1_mass").click()
    expect(table).to_contain_text("top-1")
    assert panel.locator("img").get_attribute("src") != first
    expect(panel.locator("img")).to_have_count(1)
    m = check_fits(page, panel, "Run", "sweep (top1_mass)")
    assert m["panel"]["height"] <= SWEEP_MAX_HEIGHT, m
    screenshots(page, panel, "sweep")


def check_tree_explorer(page, expect) -> None:
    panel = page.locator(".workbench-tree").first
    panel.scroll_into_view_if_needed()
    perturbation = panel.locator(".widget-dropdown", has=page.locator("label", has_text="perturbation"))
    perturbation.locator("select").select_option(label="murderer")
    # The preview shows the end of the prompt as filled: the segue is there.
    expect(panel.locator(".workbench-settings pre").first).to_contain_text("is a murderer")
    panel.locator("button.widget-button", has_text="Expand").click()
    expect(panel.locator(".workbench-status")).to_contain_text("nodes; click a node", timeout=240_000)
    assert panel.locator(".workbench-error").count() == 0
    assert settings_folded(panel)
    expect(panel.locator("img").first).to_be_visible()
    expect(panel.locator("table.workbench-table").first).to_be_visible()
    # The whole text the model got (segue included) is one click away.
    full = panel.locator("details.workbench-full-prompt")
    full.locator("summary").click()
    expect(full.locator("pre")).to_be_visible()
    expect(full.locator("pre")).to_contain_text("Good evening, everyone.")
    expect(full.locator("pre")).to_contain_text("is a murderer")
    check_fits(page, panel, "Expand", "tree")
    screenshots(page, panel, "tree")
