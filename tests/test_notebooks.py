"""The notebooks run top to bottom (nbclient, a `workbench` kernel on this interpreter) with
WORKBENCH_NOTEBOOK_QUICK=1 (smaller samples, the same code), each in under 3 minutes, and are
committed without outputs. Their outputs carry no library warnings or loading bars, and the
research notebooks (02-04) end by stating what they found: the planted pair against its planted
answer (FOUND / NOT FOUND) and the cross-family pair labelled as such, under a banner in quick mode."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.models

NOTEBOOKS = ["01_quickstart", "02_mode_collapse", "03_attractor_states", "04_agentic_personas",
             "05_api_and_vllm_models"]
# nbclient's per-cell timeout: a safety net against a hung kernel, not a speed target (the suite
# never asserts wall-clock times; with WORKBENCH_NOTEBOOK_QUICK=1 each notebook takes 1-3 minutes here).
CELL_TIMEOUT_S = 600

# Library noise that must never reach a notebook's outputs (the workbench silences it at its source:
# workbench/quiet.py around every load). Markers chosen before any output was read.
NOISE = ("Loading weights", "FutureWarning", "DeprecationWarning", "UserWarning", "RuntimeWarning", "warnings.warn(")
# The research notebooks and the planted variant each must report on (its answer is known in advance).
PLANTED = {"02_mode_collapse": "gemma-3-270m-favourite-number", "03_attractor_states": "gemma-3-270m-wedding-attractor",
           "04_agentic_personas": "gemma-3-270m-self-preservation"}
FINDINGS_HEADER = "What we found"
QUICK_BANNER = "QUICK MODE: n="
QUICK_NOTE = "these numbers are noise, not findings; unset WORKBENCH_NOTEBOOK_QUICK for the full run"
VERDICT = re.compile(r"-> (FOUND|NOT FOUND)$")


def install_kernelspec(data_dir: Path, env: dict[str, str] | None = None) -> None:
    """A `workbench` kernel that runs this interpreter (the project's venv), in a Jupyter data dir."""
    folder = data_dir / "kernels" / "workbench"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (workbench)", "language": "python", "env": env or {}}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch, embedded_models):
    for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(name, str(folder))
    install_kernelspec(tmp_path / "jupyter_data_dir")
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return tmp_path


def test_notebooks_are_committed_without_outputs_and_name_the_workbench_kernel():
    found = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert found == NOTEBOOKS
    for name in NOTEBOOKS:
        book = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        nbformat.validate(book)
        assert book.metadata.kernelspec.name == "workbench"
        assert book.metadata.kernelspec.display_name == "Python (workbench)"
        assert book.cells[0].cell_type == "markdown"
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs: clear them"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, jupyter_env):
    from nbclient import NotebookClient

    book = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(book, kernel_name="workbench", timeout=CELL_TIMEOUT_S, startup_timeout=120,
                            resources={"metadata": {"path": str(REPO / "notebooks")}})
    started = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - started
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    print(f"{name}: {elapsed:.0f} s with WORKBENCH_NOTEBOOK_QUICK=1")
    text = json.dumps([c.outputs for c in book.cells if c.cell_type == "code"])
    if name == "01_quickstart":
        assert "smollm2-135m-instruct" in text and "application/vnd.jupyter.widget-view+json" in text
    if name == "05_api_and_vllm_models":
        if not os.environ.get("OPENAI_API_KEY"):
            assert "skipped: set OPENAI_API_KEY" in text
    noise = library_noise(book)
    assert not noise, f"{name}: library warnings or loading bars in the outputs: {noise}"
    if name in PLANTED:
        check_findings(name, book)


def output_text(output: dict) -> str:
    """Everything an output shows as text: a stream, an error, or a result's plain text."""
    if output["output_type"] == "stream":
        return output["text"]
    if output["output_type"] == "error":
        return "\n".join([output["ename"], output["evalue"], *output["traceback"]])
    return str(output.get("data", {}).get("text/plain", ""))


def library_noise(book) -> list[str]:
    """Warnings and loading bars in a notebook's outputs: a stderr stream naming a Warning, or any NOISE marker."""
    found = []
    for index, cell in enumerate(book.cells):
        for output in cell.get("outputs", []):
            text = output_text(output)
            stderr_warning = output["output_type"] == "stream" and output["name"] == "stderr" and "Warning" in text
            if stderr_warning or any(marker in text for marker in NOISE):
                found.append(f"cell {index}: {text[:300]!r}")
    return found


def printed(cell) -> str:
    return "".join(o["text"] for o in cell.get("outputs", []) if o["output_type"] == "stream" and o["name"] == "stdout")


def check_findings(name: str, book) -> None:
    """The notebook ends with a "What we found" section whose code cell prints each finding."""
    code = [c for c in book.cells if c.cell_type == "code"]
    headings = [c.source.splitlines()[0] for c in book.cells if c.cell_type == "markdown" and c.source]
    assert f"## {FINDINGS_HEADER}" in headings, f"{name} has no '## {FINDINGS_HEADER}' section"
    lines = printed(code[-1]).splitlines()
    assert lines and lines[0].startswith(FINDINGS_HEADER), f"{name}: the last cell does not state the findings"
    if os.environ.get("WORKBENCH_NOTEBOOK_QUICK") == "1":
        # The banner heads the notebook and the findings: quick-mode numbers are noise, not findings.
        for where, text in (("the first code cell", printed(code[0])), ("the findings", "\n".join(lines[:2]))):
            assert QUICK_BANNER in text and QUICK_NOTE in text, f"{name}: no quick-mode banner in {where}"
    variant = PLANTED[name]
    assert any(line.startswith("Planted pair") and variant in line for line in lines), (name, lines)
    verdicts = [line for line in lines if VERDICT.search(line)]
    assert any(line.strip().startswith("planted answer:") for line in verdicts), (name, lines)
    assert any(line.startswith("Cross-family pair") and "not attributable to fine-tuning" in line for line in lines), \
        (name, lines)
    if name == "02_mode_collapse":
        # Exact findings are not noise, quick mode or not: the planted number is found, and the digits finding is said.
        planted = next(line for line in verdicts if line.strip().startswith("planted answer:"))
        assert planted.endswith("-> FOUND"), lines
        assert any(line.startswith("Digits, exact") and "absent" in line for line in lines), lines
