"""Reports: one self-contained HTML file of stored runs or results, opened in a real headless Chromium.

The browser check fails, never skips, when Debian's chromium or playwright is missing (`make test`
installs both); Playwright's own browser download is never used.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from tests.conftest import REPO, run_cli
from workbench.errors import WorkbenchError
from workbench.report import Report, ReportFigure, ReportSection, ReportTable, runs_report, write_report

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "data" / "exports" / "screenshots"
FAKE_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"  # shaped like an OpenAI key, never a real one


def open_in_chromium(path: Path, screenshot: Path | None = None) -> dict:
    """Load the file in headless Chromium with the network cut; return what the page shows about its images."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (make test does this)"
    from playwright.sync_api import sync_playwright  # missing: pip install playwright (make test does)

    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            state = page.evaluate("""() => ({
                images: [...document.images].map(img => ({complete: img.complete, width: img.naturalWidth,
                                                          height: img.naturalHeight, shown: img.clientWidth})),
                overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
                sections: document.querySelectorAll('section').length,
                text: document.body.innerText,
            })""")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    state["requests"] = requests
    return state


def assert_renders(state: dict, figures: int) -> None:
    assert len(state["images"]) == figures, state["images"]
    for image in state["images"]:
        assert image["complete"] and image["width"] > 200 and image["height"] > 100 and image["shown"] > 0, image
    assert not state["overflow"], "the page scrolls sideways at 1280 px"
    # Self-contained: nothing but the file itself is fetched (figures are data: URLs).
    assert all(url.startswith(("file:", "data:")) for url in state["requests"]), state["requests"]


def test_a_report_of_stored_runs_is_one_file_that_renders_with_its_provenance(sampler, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    prompt = sampler.library.get("mode-collapse/random-number-completion")
    runs = [sampler.sample(model, prompt, 6, seed=3, max_tokens=6)
            for model in ("gemma-3-270m", "smollm2-135m-instruct")]
    typed = sampler.sample("gemma-3-270m", f"My key is {FAKE_KEY}. The sky is", 3, max_tokens=4)
    report = runs_report(sampler, [runs[0].run_id[:12].lower(), runs[1].run_id, typed.run_id])
    assert len(report.sections) == 2  # runs of one prompt share a section; the typed prompt has its own
    path = write_report(report, tmp_path / "out" / "runs.html")
    html = unescape(path.read_text())
    assert FAKE_KEY not in html and "[redacted]" in html
    for run in runs:
        assert run.run_id in html  # provenance
    assert '"identity"' in html and '"seed": 3' in html and "torch" in html and "transformers" in html
    assert "workbench sample mode-collapse/random-number-completion --model gemma-3-270m --n 6 --seed 3" in html
    assert "Jensen-Shannon" in html and "n = 6" in html
    state = open_in_chromium(path, SCREENSHOTS / "report-runs.png")
    assert_renders(state, figures=2)
    assert state["sections"] == 2


def test_report_cli_writes_the_file_and_bad_input_is_one_line(sampler, tmp_path, fresh_store):
    run = sampler.sample("gemma-3-270m", "The capital of France is", 4, max_tokens=4)
    sampler.close()
    out = tmp_path / "r.html"
    done = run_cli("report", run.run_id, "--out", str(out), env={"WORKBENCH_STORE": str(fresh_store)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {out}"
    assert "data:image/png;base64," in out.read_text()
    for args, says in ((["NOSUCHRUN", "--out", str(out)], "no run"),
                       ([run.run_id, "--out", str(tmp_path / "r.pdf")], "ending in .html"),
                       ([run.run_id], "--out")):
        bad = run_cli("report", *args, env={"WORKBENCH_STORE": str(fresh_store)})
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr, bad.stderr


def test_a_report_escapes_what_it_shows(tmp_path):
    figure = matplotlib.figure.Figure(figsize=(4, 3))
    figure.add_subplot().bar(["a", "b"], [1, 2])
    hostile = "<script>alert(1)</script>"
    table = ReportTable(pd.DataFrame({hostile: [hostile]}), hostile)
    report = Report(hostile, [ReportSection(hostile, hostile, [table], [ReportFigure(figure, hostile)], [hostile],
                                            {"note": hostile})])
    html = write_report(report, tmp_path / "x.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    with pytest.raises(WorkbenchError, match="at least one section"):
        write_report(Report("empty", []), tmp_path / "y.html")
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)


def test_a_panels_export_writes_the_report_with_the_commands_that_redraw_its_runs(sampler):
    from workbench.widgets import ComparePanel

    panel = ComparePanel(sampler, prompt="The weather today is", models=["gemma-3-270m", "smollm2-135m-instruct"],
                         n=2, max_tokens=3, clusters=False)
    panel.run(wait=True)
    assert panel.error is None, panel.last_traceback
    assert "html" in panel.export_formats.value  # the button writes the report by default
    (path,) = panel.export(formats=("html",))
    assert path.suffix == ".html" and path.stem == panel.default_stem().name.removesuffix("-2")
    html = unescape(path.read_text())
    for run in panel.provenance["runs"]:
        assert run["run_id"] in html
        assert f"--model {run['model']} --n 2 --seed 0" in html
    assert "Per model, total view" in html and "Between models" in html and "Samples" in html
    state = open_in_chromium(path, SCREENSHOTS / "report-panel.png")
    assert_renders(state, figures=1)


def test_the_reproduce_command_of_a_run_with_a_segue_redraws_exactly_that_run(sampler, capsys):
    import shlex

    from workbench.cli import main
    from workbench.report import sample_command

    prompt = sampler.library.get("attractors/wedding-toast")
    run = sampler.sample("gemma-3-270m", prompt, 2, seed=5, perturbation="murderer", max_tokens=4)
    command = sample_command(sampler.stored_run(run.run_id))
    assert "--perturbation murderer" in command and "?" not in command, command
    # The command finds every sample of the run in the store: it names the same cache cell.
    assert main([*shlex.split(command)[1:], "--dry-run"]) == 0
    assert "0 of 2 samples to draw (2 cached)" in capsys.readouterr().out
