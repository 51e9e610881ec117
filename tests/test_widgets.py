"""The panels without a browser: construct, set values, run in the background, inspect .results;
Stop, a second Run while one is running, errors inside the panel, export with provenance."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from tests.conftest import EMBEDDED, NARROW
from workbench.widgets import ComparePanel, SweepPanel, TreeExplorer, tokens_html
from workbench.widgets.layout import CELL_CHARS, html_table

pytestmark = pytest.mark.models

TYPED = "The weather today is"


def narrow_library(tmp_path, monkeypatch) -> str:
    """Put the narrow collection on WORKBENCH_PROMPTS (before a Sampler loads its library); its prompt's address."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "narrow.yaml").write_text(NARROW)
    monkeypatch.setenv("WORKBENCH_PROMPTS", str(folder))
    return "narrow/number-1-50"


def wait_until(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_compare_panel_runs_in_the_background_and_fills_results(sampler, tmp_path):
    panel = ComparePanel(sampler, prompt="mode-collapse/random-digit-sequence", n=4)
    assert panel.picker.ref.value == "mode-collapse/random-digit-sequence"
    assert list(panel.models.value) == list(EMBEDDED)
    assert panel.max_tokens.value == 3  # the prompt's suggested max_tokens fills the control
    panel.seed.value = 3
    panel.temperature.value = 0.8
    assert panel.run(wait=True), panel.message.value
    assert panel.error is None, panel.last_traceback
    summary = panel.results["summary"]
    assert list(summary["model"]) == list(EMBEDDED)
    assert set(summary["n"]) == {4}
    assert {"entropy_bits", "entropy_ci", "top_share_ci"} <= set(summary.columns)
    assert list(panel.results["divergence"]["pair"]) == [f"{EMBEDDED[0]} vs {EMBEDDED[1]}"]
    distributions = panel.results["distributions"]
    assert set(distributions["method"]) == {"exact"} and set(distributions["temperature"]) == {0.8}
    samples = panel.results["samples"]
    assert len(samples) == 8 and {"answer", "cluster", "tokens", "token_logprobs"} <= set(samples.columns)
    assert set(samples["seed"]) == {3}
    assert isinstance(panel.figure, Figure)
    assert len(panel.figure_box.children) == 1 and panel.figure_box.children[0].value[:4] == b"\x89PNG"
    assert "<table" in panel.summary_html.value and EMBEDDED[1] in panel.summary_html.value
    # Settings fold after a run (the figure comes first), and one click re-opens them.
    assert panel.settings.selected_index is None
    assert list(panel.children).index(panel.figure_box) < list(panel.children).index(panel.browser)
    # The sample browser: filters and a sample's tokens coloured by logprob.
    labels = [label for label, _ in panel.browse_cluster.options]
    assert labels[0] == "(all)" and all(isinstance(label, str) and not label.startswith("(") for label in labels[1:])
    chosen = panel.browse_cluster.options[1][1]
    panel.browse_cluster.value = chosen
    assert panel.error is None, panel.last_traceback
    in_cluster = (samples["cluster"] == chosen).sum()
    assert isinstance(chosen, int) and 0 < len(panel.sample_list.options) == in_cluster
    panel.browse_cluster.value = "(all)"
    panel.browse_model.value = EMBEDDED[1]
    assert len(panel.sample_list.options) == 4
    html = panel.select_sample(EMBEDDED[0], 2)
    assert "workbench-token" in html and "hsl(" in html and EMBEDDED[0] in html
    # The main thread's store is still usable (the worker had its own connection).
    assert len(sampler.store.runs()) == 2
    # A second run answers from the store.
    assert panel.run(wait=True)
    assert "n=4, T=0.8, top-p=1, seed=3" in panel.status.value and "0 drawn, 4 from the store" in panel.status.value


def test_compare_panel_labels_exact_and_sampled_and_warns_when_most_answers_fall_outside(sampler, tmp_path,
                                                                                          monkeypatch):
    prompt = narrow_library(tmp_path, monkeypatch)
    panel = ComparePanel(sampler, prompt=prompt, n=4, clusters=False)
    assert panel.run(wait=True), panel.message.value
    assert panel.error is None, panel.last_traceback
    views = panel.results["views"]
    assert list(views["model"]) == [EMBEDDED[0]] * 2 + [EMBEDDED[1]] * 2
    assert list(views["method"]) == ["exact", "sampled"] * 2
    assert (views.loc[views["method"] == "exact", "p_other"] > 0.5).all()
    assert list(panel.results["summary"]["method"]) == ["sampled"] * 2  # compare_prompt's table, unchanged
    html = panel.summary_html.value
    # A visible warning that names what to do, both views, and how every number was made.
    assert "workbench-warning" in html and "widen the answer space" in html and "in-space numbers" in html
    # Short headers that fit the panel; each names its full .results column on hover and in the legend line.
    for column in ("p_other", "entropy_bits", "entropy_bits_in_space", "top_answer_in_space", "top_share_in_space"):
        assert f"<th title='{column}'>" in html and f"= {column}" in html
    assert "(other) (outside the space)" in html and "<td>(other)</td>" not in html
    assert "total view" in html and "in-space view" in html
    assert "no sampling error" in html and "Jeffreys 95% interval" in html and "Miller-Madow" in html
    assert "sampled: share (count / n)" in html and "exact: plug-in" in html
    # The figure is exact and says so; so does the label above it.
    assert f"{EMBEDDED[0]}: exact (scored, no sampling error" in panel.note.value
    assert "different families" not in panel.note.value  # said once, under the figure (and in the export)
    assert panel.results["distributions"]["method"].eq("exact").all()
    labels = [t.get_text() for ax in panel.figure.axes for t in ax.texts]
    assert any("widen the answer space" in " ".join(t.split()) for t in labels)  # however the box wraps it
    titles = [ax.get_title() for ax in panel.figure.axes[:2]]  # the view first (workbench.plots may add its n)
    assert titles[0].startswith("total view") and titles[1].startswith("in-space view")
    assert "plug-in minus second-order bias" in panel.divergence_html.value


def test_export_button_writes_every_format_with_provenance(sampler):
    from workbench.home import exports_dir

    folder = exports_dir() / "widgets"  # in the test session's temporary WORKBENCH_HOME
    shutil.rmtree(folder, ignore_errors=True)
    panel = ComparePanel(sampler, prompt=TYPED, models=list(EMBEDDED), n=2, max_tokens=3, clusters=False)
    assert panel.export_button.disabled
    panel.run(wait=True)
    assert panel.error is None, panel.last_traceback
    panel.export_formats.value = ("png", "svg", "pdf")
    panel.export_button.click()
    # The name holds the seed and a run id, so exports of other seeds or runs never overwrite this one.
    stem = f"compare-the-weather-today-is-seed0-{panel.provenance['runs'][0]['run_id'][-8:].lower()}"
    written = sorted(p.name for p in folder.iterdir())
    assert written == [f"{stem}.pdf", f"{stem}.png", f"{stem}.provenance.json", f"{stem}.svg"]
    provenance = json.loads((folder / f"{stem}.provenance.json").read_text())
    assert provenance["models"] == list(EMBEDDED)
    assert {r["run_id"] for r in provenance["runs"]} == set(panel.results["samples"]["run_id"])
    assert "wrote" in panel.export_status.value
    panel.export_button.click()  # the same figure again: a new name, the first export is kept
    assert (folder / f"{stem}-2.png").exists() and len(list(folder.iterdir())) == 8
    panel.seed.value = 1
    panel.run(wait=True)
    assert "seed1" in panel.export(formats=("png",))[0].name


def test_a_typed_prompt_goes_as_chat_when_a_tuned_model_is_chosen_and_says_so(sampler):
    panel = ComparePanel(sampler, prompt=TYPED, models=list(EMBEDDED), n=2, clusters=False)
    assert panel.picker.chat.value is True and "tuned model is chosen" in panel.picker.chat_note.value
    panel.models.value = (EMBEDDED[0],)  # the base model alone continues the text as written
    assert panel.picker.chat.value is False and "only base models" in panel.picker.chat_note.value
    panel.picker.chat.value = True  # the user decides: the box no longer follows the models
    panel.models.value = tuple(EMBEDDED)
    panel.models.value = (EMBEDDED[0],)
    assert panel.picker.chat.value is True and panel.picker.chat_note.value == ""
    assert ComparePanel(sampler, prompt=TYPED, n=2, chat=False, clusters=False).picker.chat.value is False


def test_the_prompt_preview_shows_the_filled_prompt_with_its_segue(sampler):
    panel = TreeExplorer(sampler, prompt="attractors/wedding-toast")
    assert "<details" in panel.picker.preview.value and "{{" not in panel.picker.preview.value
    panel.picker.perturbation.value = "murderer"
    preview = panel.picker.preview.value
    assert "is a murderer" in preview.split("<details")[0]  # the segue is in the visible end of the prompt
    assert "the whole prompt as filled" in preview and "{%" not in preview and "{{" not in preview
    # Narrowing the list keeps the chosen segue, and no box is left without a selection (it shows blank).
    panel.picker.filter.value = "toast"
    assert panel.picker.perturbation.value == "murderer" and panel.picker.framing.index == 0


def test_tables_fit_the_panel_with_short_headers_and_a_legend():
    frame = pd.DataFrame({"model": ["smollm2-135m-instruct-with-a-long-name"], "p_other": ["0.12 [0.01, 0.45]†"],
                          "entropy_bits_in_space": ["2.26 [1.65, 2.75]"], "top_answer": ["x" * 60], "n": [8]})
    html = html_table(frame)
    assert "overflow-x:auto;max-width:100%" in html  # too wide still: it scrolls inside the panel, not past it
    assert "<th title='p_other'>P(other)</th>" in html and "<th title='entropy_bits_in_space'>H in</th>" in html
    assert "P(other) = p_other" in html and "H in = entropy_bits_in_space" in html
    assert "model = " not in html and " n = " not in html  # only shortened headers are explained
    assert "[0.01,\u00a00.45]" in html  # an interval never breaks inside its brackets
    assert "smollm2-135m-instruct-with-a-long-name" in html  # the row's name stays whole (one line, nowrap)
    assert "x" * 60 not in html and "x" * (CELL_CHARS - 1) + "…" in html  # long text is shortened on screen


def test_panel_callback_errors_show_in_the_panel(sampler, monkeypatch):
    def broken(self, *_):
        raise ValueError("operands could not be broadcast together with shapes (96,) (2,)")

    monkeypatch.setattr(ComparePanel, "_refresh_samples", broken)
    panel = ComparePanel(sampler, prompt=TYPED, n=2, clusters=False)
    panel.browse_model.options = ["(all)", "a model"]
    panel.browse_model.value = "a model"  # the observer raises: one line in the panel, not the log console
    assert "ValueError: operands could not be broadcast" in panel.message.value
    assert isinstance(panel.error, ValueError) and "Traceback" in panel.last_traceback


def test_stop_ends_a_run_cleanly_and_keeps_what_was_sampled(sampler):
    panel = ComparePanel(sampler, prompt=TYPED, n=48, max_tokens=16, clusters=False)
    assert panel.run()
    wait_until(lambda: panel.progress.value >= 8)  # the first chunk is stored
    panel.stop()
    panel.wait(120)
    assert not panel.running
    assert "stopped" in panel.status.value
    assert panel.results == {} and panel.error is None
    kept = sum(len(sampler.store.sample_indices(r)) for r in sampler.store.runs()["id"])
    assert 8 <= kept < 96
    assert not panel.run_button.disabled and panel.stop_button.disabled


def test_a_second_run_click_while_running_is_refused_politely(sampler):
    panel = ComparePanel(sampler, prompt=TYPED, n=16, max_tokens=8, clusters=False)
    assert panel.run()
    assert panel.run() is False
    assert "already in progress" in panel.status.value
    panel.run_button.click()  # the button says the same, and starts nothing
    panel.wait(300)
    assert panel.error is None, panel.last_traceback
    assert panel.runs_finished == 1


def test_bad_input_and_failures_appear_as_a_message_in_the_panel(sampler, tmp_path):
    panel = ComparePanel(sampler, prompt="", n=2, clusters=False)
    assert panel.picker.source.value == "my prompt"
    assert panel.run() is False
    assert "prompt is empty" in panel.message.value and "workbench-error" in panel.message.value
    panel.picker.text.value = TYPED
    panel.models.value = (EMBEDDED[0],)
    assert panel.run() is False and "two or more models" in panel.message.value

    # A failure inside the worker thread: a model whose weights are missing.
    from workbench.registry import load_registry
    from workbench.sampler import Sampler

    user = tmp_path / "models.yaml"
    user.write_text(json.dumps({"models": {"broken": {"backend": "hf", "kind": "tuned", "family": "x",
                                                      "source": {"path": str(tmp_path / "no-such-model")}}}}))
    broken = Sampler(store=sampler.store.path, registry=load_registry(user), progress=False)
    panel = ComparePanel(broken, prompt=TYPED, models=[EMBEDDED[1], "broken"], n=2, max_tokens=2, clusters=False)
    assert panel.run(wait=True)
    assert panel.error is not None
    assert "workbench-error" in panel.message.value and "Traceback" not in panel.message.value
    assert "no-such-model" in panel.message.value or "broken" in panel.message.value
    assert "Traceback" in panel.last_traceback
    assert not panel.run_button.disabled
    with pytest.raises(Exception, match="unknown model"):
        ComparePanel(sampler, models=["no-such-model", EMBEDDED[0]])


def test_tokens_html_escapes_and_colours_by_probability():
    html = tokens_html(["<script>", " a&b", "\n"], [-0.01, -5.0, None], title="<b>")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp;" in html and "&lt;b&gt;" in html
    assert "hsl(118" in html or "hsl(119" in html  # p ~ 0.99: green
    assert "hsl(0," in html  # p ~ 0.007: red
    assert "#e0e0e0" in html  # unknown logprob


def test_sweep_panel_plots_the_chosen_metrics_against_temperature(sampler, tmp_path):
    panel = SweepPanel(sampler, prompt="mode-collapse/random-digit-sequence", temperatures=(0.5, 1.5), points=3, n=4,
                       method="sampled", metrics=("entropy_bits", "distinct_answers"))
    assert panel.run(wait=True)
    assert panel.error is None, panel.last_traceback
    sweep = panel.results["sweep"]
    assert set(sweep["temperature"]) == {0.5, 1.0, 1.5}
    assert set(sweep["model"]) == set(EMBEDDED) and {"entropy_bits", "distinct_answers"} <= set(sweep["metric"])
    assert set(sweep["method"]) == {"sampled"}
    assert list(panel.figures) == ["entropy_bits", "distinct_answers"]
    assert "sampled (n=4)" in panel.status.value and "Miller-Madow" in panel.table_html.value
    paths = panel.export(tmp_path / "sweep", formats=("png",))
    assert sorted(p.name for p in paths) == ["sweep-distinct-answers.png", "sweep-distinct-answers.provenance.json",
                                             "sweep-entropy-bits.png", "sweep-entropy-bits.provenance.json"]
    panel.method.value = "auto"  # exact where the backend scores the answer space
    panel.metrics.value = ("top1_mass",)
    assert panel.run(wait=True) and panel.error is None, panel.last_traceback
    assert set(panel.results["sweep"]["method"]) == {"exact"}


def test_sweep_panel_draws_in_space_views_and_warns_where_most_answers_fall_outside(sampler, tmp_path, monkeypatch):
    prompt = narrow_library(tmp_path, monkeypatch)
    panel = SweepPanel(sampler, prompt=prompt, temperatures=(1.0, 2.0), points=2, n=4,
                       metrics=("entropy_bits", "top1_mass", "entropy_bits_in_space"))
    assert panel.run(wait=True), panel.message.value
    assert panel.error is None, panel.last_traceback
    sweep = panel.results["sweep"]
    assert set(sweep["method"]) == {"exact"} and {"p_other", "entropy_bits_in_space"} <= set(sweep["metric"])
    # entropy_bits_in_space is drawn beside entropy_bits, not in a figure of its own.
    assert list(panel.figures) == ["entropy_bits", "top1_mass"]
    # Each panel's title names its view first (workbench.plots may add what the points rest on after it).
    titles = [ax.get_title() for ax in panel.figures["entropy_bits"].axes[:2]]
    assert titles[0].startswith("total view, (other) as one answer") and titles[1].startswith("in-space view")
    assert "workbench-warning" in panel.warning.value and "T = 1.0, 2.0" in panel.warning.value
    assert "widen the answer space" in panel.warning.value
    # One metric's figure and table at a time (every figure is still in .figures and exported).
    assert list(panel.shown.options) == ["entropy_bits", "top1_mass"] and panel.shown.value == "entropy_bits"
    assert list(panel.figure_box.children) == [panel.images["entropy_bits"]]
    table = panel.table_html.value
    assert "<th title='entropy_bits_in_space'>" in table and "H in = entropy_bits_in_space" in table
    assert "exact: plug-in (exact probabilities), no sampling error" in table
    assert table.count("<tr>") == 2 * 2  # one body row per model and temperature (the header row has a style)
    panel.shown.value = "top1_mass"
    assert list(panel.figure_box.children) == [panel.images["top1_mass"]]
    table = panel.table_html.value
    assert "<th title='top_share_in_space'>" in table and "<th title='top1_mass'>" in table
    assert "(other) (outside the space)" in table and "exact: probability (exact), no sampling error" in table
    assert "exact (no sampling error)" in panel.status.value


def test_tree_explorer_expands_on_click_compares_and_exports(sampler, tmp_path):
    panel = TreeExplorer(sampler, prompt="mode-collapse/random-number-completion", model=EMBEDDED[0], k=2)
    assert panel.run(wait=True), panel.message.value  # expands the root
    assert panel.error is None, panel.last_traceback
    nodes = panel.results["nodes"]
    assert len(nodes) == 3 and set(nodes["method"]) == {"root", "topk"}
    first = int(nodes[nodes["rank"] == 0]["node_id"].iloc[0])
    panel.nodes.value = first  # a click: selects and expands the node
    panel.wait(120)
    assert len(panel.results["nodes"]) == 5
    assert "p(edge | parent)" in panel.details.value
    panel.compare_with.value = EMBEDDED[1]
    panel.mode.value = "sampled chunks"
    panel.n.value, panel.m.value = 3, 2
    assert panel.expand(first, wait=True)
    assert panel.error is None, panel.last_traceback
    comparison = panel.results["comparison"]
    assert "different families" not in panel.comparison_html.value  # said once, under the figure
    assert {"p_a", "p_b", "log_ratio", "in_topk_b"} <= set(comparison.columns)
    assert "chunk" in set(panel.results["nodes"]["method"])
    assert any(EMBEDDED[1] in label for label, _ in panel.nodes.options)
    assert isinstance(panel.figure, Figure)
    paths = panel.export_tree(tmp_path / "tree.json")
    assert [p.suffix for p in paths] == [".json", ".csv"]
    data = json.loads(Path(paths[0]).read_text())
    assert data["format"] == "workbench-branch-tree/1" and len(data["nodes"]) == len(panel.tree.nodes)
    # The tree keeps working from the notebook's thread.
    assert panel.tree.sampler is sampler
    assert len(panel.tree.expand(0, k=1)) == 1
