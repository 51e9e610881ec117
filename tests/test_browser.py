"""JupyterLab in a real browser: Debian's Chromium (headless) driven by Playwright opens
01_quickstart, runs every cell, changes a ComparePanel control, clicks Run and checks that the
figure and the metrics table appear for both models; a screenshot goes to
data/exports/screenshots/.

`make test` installs chromium (apt) and playwright (pip); this test fails, never skips, when
either is missing. Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
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


def test_compare_panel_in_jupyterlab_in_chromium(jupyterlab):
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (make test does this)"
    from playwright.sync_api import expect, sync_playwright  # missing: pip install playwright (make test does)

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
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{jupyterlab.url}/lab/tree/01_quickstart.ipynb?token={jupyterlab.token}")
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
            kernel = page.evaluate(WAIT_FOR_KERNEL)
            log = jupyterlab.log.read_text()[-2000:]
            assert kernel == "workbench", f"kernel not ready ({kernel}); server log: {log}"
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_EXECUTED, timeout=420_000, polling=1000)
            assert page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0

            panel = page.locator(".workbench-compare").first
            expect(panel).to_be_visible(timeout=60_000)
            panel.scroll_into_view_if_needed()
            # The notebook ran the panel once (seed 0, from the store). Change the seed, then click Run.
            seed = panel.locator(".widget-text", has=page.locator("label", has_text="seed")).locator("input")
            seed.fill("7")
            seed.press("Tab")  # the change reaches the kernel on blur
            temperature = panel.locator(".widget-slider", has=page.locator("label", has_text="temperature"))
            temperature.locator(".noUi-handle").press("ArrowLeft")  # 1.00 -> 0.95
            expect(temperature.locator(".widget-readout")).to_have_text("0.95")
            panel.locator("button.widget-button", has_text="Run").click()
            status = panel.locator(".workbench-status")
            expect(status).to_contain_text("done: n=8, T=0.95, top-p=1, seed=7 (gemma-3-270m: 8 drawn",
                                           timeout=240_000)

            image = panel.locator("img").first
            expect(image).to_be_visible()
            assert image.evaluate("img => img.naturalWidth") > 300
            table = panel.locator("table.workbench-table").first
            expect(table).to_be_visible()
            for model in MODELS:
                expect(table).to_contain_text(model)
            assert panel.locator(".workbench-error").count() == 0
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot = SCREENSHOTS / "compare-panel.png"
            # The viewport is taller than the panel, so the whole panel (settings, figure, tables) is in view.
            panel.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)
            panel.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
