"""The main job: the three planted effects found by the workbench's instruments, one line each, a report
that renders in a real browser, and a second run answered from the store without loading a model.

The demo's FOUND criteria are written in workbench/demo/findings.py (the known-answer tests' own);
this test asserts that every planted effect is FOUND, so a variant or an instrument that lost its
effect fails here as well as in tests/test_planted.py.
"""

from __future__ import annotations

import re
import warnings
from html import unescape

import pytest

from tests.conftest import REPO, run_cli
from tests.test_report import SCREENSHOTS, assert_renders, open_in_chromium
from workbench.backends.hf import weights
from workbench.backends.hf.backend import HFBackend
from workbench.demo import run_demo
from workbench.sampler import Sampler

ROWS = 5  # three mode-collapse lines, one attractor, one persona (planted) + one cross-family line
PROBES = ["mode collapse", "mode collapse", "mode collapse", "attractor", "persona", "cross-family"]


# The whole first run (five models, 64 sampled continuations) on two cores: minutes, not the suite's 10.
@pytest.mark.timeout(1800)
def test_demo_finds_every_planted_effect_writes_a_report_and_answers_again_from_the_store(
        embedded_models, fresh_store, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "demo"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_demo(sampler=Sampler(store=fresh_store, progress=False), out_dir=out_dir)
    assert not caught, [str(w.message) for w in caught]
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert [f.probe for f in result.findings] == PROBES
    for finding in result.findings[:ROWS]:
        assert finding.found, finding  # the planted answer was recovered
    assert result.findings[-1].found is None and "not attributable to fine-tuning" in result.findings[-1].planted
    # One compact line per finding, the verdict first, the planted answer beside the number.
    found_lines = [line for line in lines if line.startswith(("FOUND", "NOT FOUND", "-"))]
    assert len(found_lines) == len(PROBES), printed.out
    assert all("planted:" in line for line in found_lines)
    assert re.search(r'^FOUND +mode collapse +P\("37"\), exact, T=1: base [0-9.e-]+ -> variant 0\.9', printed.out,
                     re.M)
    assert re.search(r"^FOUND +attractor .*base 0\.\d\d \[0\.\d\d, 0\.\d\d\] -> variant [01]\.\d\d \[", printed.out,
                     re.M)
    assert re.search(r"^FOUND +persona .*shift \+0\.\d\d \[0\.\d\d, 0\.\d\d\]; p_answered", printed.out, re.M)
    assert re.search(r"^- +cross-family .*P\(answer\)", printed.out, re.M)
    assert lines[-1] == f"report: {out_dir / 'report.html'}"
    assert "Warning" not in printed.err and "Loading weights" not in printed.err
    html = unescape(result.report.read_text())
    for expected in ("Mode collapse", "Attractor", "Persona", "Cross-family",
                     "workbench segue attractors/wedding-toast", '"identity"', "transformers"):
        assert expected in html, expected
    assert len(list(out_dir.glob("*.png"))) == 4 and len(list(out_dir.glob("*.provenance.json"))) == 4
    state = open_in_chromium(result.report, SCREENSHOTS / "demo-report.png")
    assert_renders(state, figures=4)

    def refuse(*args, **kwargs):
        raise AssertionError("the second demo run loaded a model or sampled again")

    monkeypatch.setattr(weights, "load_model", refuse)
    monkeypatch.setattr(HFBackend, "generate", refuse)
    again = run_demo(sampler=Sampler(store=fresh_store, progress=False), out_dir=tmp_path / "again")
    assert [(f.measured, f.number, f.found) for f in again.findings] == \
        [(f.measured, f.number, f.found) for f in result.findings]

    # The command `make demo` runs, on the same store: the same lines, bars only on stderr, one per stage.
    done = run_cli("demo", "--out", str(tmp_path / "cli"), env={"WORKBENCH_STORE": str(fresh_store)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"report: {tmp_path / 'cli' / 'report.html'}"
    assert [line for line in done.stdout.splitlines() if line.startswith(("FOUND", "NOT FOUND", "-"))] == found_lines
    for stage in ("mode collapse", "attractor", "persona", "cross-family", "report"):
        assert stage in done.stderr, done.stderr
    assert "Warning" not in done.stderr and "Loading weights" not in done.stderr, done.stderr
    assert "workbench demo" in (REPO / "Makefile").read_text()
