"""The notebooks run top to bottom (nbclient, a `workbench` kernel on this interpreter) with
WORKBENCH_NOTEBOOK_QUICK=1 (smaller samples, the same code), each in under 3 minutes, and are
committed without outputs."""

from __future__ import annotations

import json
import os
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
