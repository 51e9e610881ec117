"""`workbench directions` and `workbench steer` on the embedded base model, the steering-sweep figure from
synthetic frames, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REAL_MODELS_DIR
from workbench import cli
from workbench.plots import export_figure, steering_sweep_figure

# The columns of workbench.lens.sweep.COLUMNS (spelled out: a renamed column must fail here).
SWEEP_COLUMNS = ["parent", "model", "layer", "coefficient", "operator", "units", "measure", "value", "ci_low",
                 "ci_high", "method", "n", "p_answered", "unanswered", "top_answer", "top_share", "wrong_way_share",
                 "n_items", "prose_nll", "nll_change", "kl_neutral", "damaged"]
KEYWORDS = ["--measure", "keywords", "--prompt", "mode-collapse/once-upon-a-time",
            "--labels", "attractors/wedding-toast:celebration"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh WORKBENCH_HOME that reuses the prepared models."""
    path = tmp_path / "home"
    path.mkdir()
    (path / "models").symlink_to(REAL_MODELS_DIR, target_is_directory=True)
    monkeypatch.setenv("WORKBENCH_HOME", str(path))
    return path


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, out: str, err: str, *words: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("workbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for word in words:
        assert word in err, err


# -- the figure ---------------------------------------------------------------------------------------------------


def sweep_frame(operator: str = "add") -> pd.DataFrame:
    rows = []
    grid = [math.nan] if operator == "ablate" else [-0.5, 0.0, 0.5, 1.0]
    for layer in (3, 6):
        for c in grid:
            size = 1.0 if math.isnan(c) else abs(c)
            change = 0.08 * size * layer / 3
            rows.append({"parent": "gemma-3-270m", "model": f"gemma-3-270m@wed@L{layer}@{operator}", "layer": layer,
                         "coefficient": c, "operator": operator, "units": "median-norm", "measure": "persona",
                         "value": 0.5 + 0.1 * (0 if math.isnan(c) else c), "ci_low": 0.4, "ci_high": 0.7,
                         "method": "exact", "n": 20, "p_answered": 0.3 if c == 1.0 else 0.8,
                         "unanswered": c == 1.0, "top_answer": "", "top_share": math.nan,
                         "wrong_way_share": 0.2, "n_items": 20, "prose_nll": 3.0 * (1 + change),
                         "nll_change": change, "kl_neutral": change, "damaged": change > 0.10})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def texts(fig) -> list[str]:
    found = []
    for ax in fig.axes:
        if ax.get_legend():
            found += [t.get_text() for t in ax.get_legend().get_texts()]
    return found


@pytest.mark.parametrize("operator", ["add", "ablate"])
def test_steering_figure_marks_damage_on_both_panels(operator, tmp_path):
    frame = sweep_frame(operator)
    assert frame["damaged"].any() and not frame["damaged"].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = steering_sweep_figure(frame, "self-preservation score (exact, 20 items)", parent_value=0.5)
        paths = export_figure(fig, tmp_path / "fig", {"test": True}, formats=("png",), width="one-column")
    assert paths[0].stat().st_size > 10_000
    legend = texts(fig)
    assert {"after block 3", "after block 6", "unsteered parent", "damaged: prose NLL > +10 %",
            "damage threshold (+10 %)"} <= set(legend)
    measure_ax, damage_ax = fig._workbench_panels
    for ax in (measure_ax, damage_ax):  # the crosses sit on both panels, one per damaged point
        crosses = [line for line in ax.get_lines() if line.get_marker() == "X"]
        assert sum(len(line.get_xdata()) for line in crosses) == int(frame["damaged"].sum())
    assert any(np.allclose(line.get_ydata(), 10.0) for line in damage_ax.get_lines())  # the +10 % line
    if operator == "ablate":
        assert "projected out" in " ".join(measure_ax.get_xlabel().split())
        assert list(measure_ax.get_xticks()) == [3, 6]
    else:
        assert "coefficient" in measure_ax.get_xlabel()
        assert any("p_answered" in label for label in legend)  # hollow points where the answers left the options


# -- bad input: one line, exit 2, no model loaded ------------------------------------------------------------------


def test_steer_and_extract_mistakes_are_one_line(capsys, home):
    base = ["steer", "--model", "gemma-3-270m", "--layers", "1", *KEYWORDS]
    one_line_error(*run_main(capsys, *base, "--direction", "nope", "--coefficients", "0,1"), "unknown direction 'nope'")
    one_line_error(*run_main(capsys, *base, "--direction", "x", "--coefficients", "0,big"), "--coefficients")
    one_line_error(*run_main(capsys, "directions", "extract", "--model", "gemma-3-270m", "--name", "x",
                             "--token", " wedding", "--trait", "self-preservation", "--layers", "1"),
                   "--trait and --token are two sources")
    one_line_error(*run_main(capsys, "directions", "extract", "--model", "gemma-3-270m", "--name", "x",
                             "--positive", str(home / "missing.txt"), "--negative", str(home / "missing.txt"),
                             "--layers", "1"), "--positive", "missing.txt")
    one_line_error(*run_main(capsys, "directions", "show", "nope"), "unknown direction 'nope'")


def test_negative_coefficients_parse_both_ways():
    parser = cli.build_parser()
    for args in (["--coefficients=-1,0,1"], ["--coefficients", "-1,0,1"], ["--coefficients", "-.5"]):
        parsed = parser.parse_args(["steer", "--model", "m", "--direction", "d", "--layers", "1", *KEYWORDS, *args])
        assert parsed.coefficients == args[-1].removeprefix("--coefficients=")


# -- the commands on the embedded base model -----------------------------------------------------------------------


@pytest.mark.models
def test_extract_list_show_export_and_steer(capsys, home, embedded_models, tmp_path):
    code, out, err = run_main(capsys, "directions", "extract", "--model", "gemma-3-270m", "--name", "wedding-tok",
                              "--token", " wedding", "--layers", "1")
    assert code == 0, err
    assert "saved direction wedding-tok: model gemma-3-270m, method embedding, layers 1" in out
    assert (home / "directions" / "wedding-tok.safetensors").is_file()

    code, out, _ = run_main(capsys, "directions", "list")
    assert code == 0 and "wedding-tok" in out and "embedding" in out
    code, out, _ = run_main(capsys, "directions", "show", "wedding-tok")
    assert code == 0 and "token: ' wedding'" in out and "layer  norm" in out
    code, out, _ = run_main(capsys, "directions", "export", "wedding-tok", "--out", str(tmp_path / "shared"))
    assert code == 0 and {p.name for p in (tmp_path / "shared").iterdir()} == {"wedding-tok.safetensors",
                                                                              "wedding-tok.json"}
    one_line_error(*run_main(capsys, "directions", "extract", "--model", "gemma-3-270m", "--name", "wedding-tok",
                             "--token", " wedding", "--layers", "1"), "--overwrite")

    stem = tmp_path / "figs" / "sweep"
    code, out, err = run_main(capsys, "steer", "--model", "gemma-3-270m", "--direction", "wedding-tok", "--layers",
                              "1", "--coefficients", "0,0.02", *KEYWORDS, "--n", "4", "--max-tokens", "8",
                              "--quiet", "--out", str(stem))
    assert code == 0, err
    assert "unsteered parent:" in out and "prose NLL" in out and str(stem.with_suffix(".png")) in out
    for suffix in (".png", ".pdf", ".csv", ".provenance.json"):
        assert (stem.parent / f"sweep{suffix}").is_file(), suffix
    frame = pd.read_csv(stem.with_suffix(".csv"))
    assert list(frame.columns) == SWEEP_COLUMNS
    assert sorted(frame["coefficient"]) == [0.0, 0.02] and set(frame["layer"]) == {1}
    assert frame.loc[frame["coefficient"] == 0, "nll_change"].item() == 0.0
