"""Figures from small synthetic frames (no models): each renders, exports with its provenance
embedded, never writes a secret, and bad input gives an error that says what to change."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from matplotlib.figure import Figure

from workbench.errors import WorkbenchError
from workbench.plots import (
    PALETTE,
    answer_distribution_figure,
    divergence_heatmap_figure,
    embedding_map_figure,
    export_figure,
    figure_formats_for,
    model_colours,
    persona_figure,
    segue_figure,
    selfchat_figure,
    temperature_sweep_figure,
)
from workbench.secrets import scrub_secrets
from workbench.version import __version__

MODELS = ["gemma-3-270m", "smollm2-135m-instruct"]
RUN_ID = "01JTESTRUNID0000000000000"
# A fake key, assembled at run time so no key-shaped string is committed.
SECRET = "sk-" + "abcdefghijklmnopqrstuvwx"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz0123456789"


def answer_table(answers: int = 6) -> pd.DataFrame:
    """An exact distribution (no CIs) next to a sampled one (with CIs) over the same answers."""
    rng = np.random.default_rng(0)
    names = [str(i) for i in range(answers)]
    rows = []
    for a, p in zip(names, rng.dirichlet(np.ones(answers)), strict=True):
        rows.append({"model": MODELS[0], "answer": a, "probability": p, "ci_low": math.nan, "ci_high": math.nan,
                     "count": math.nan, "method": "exact", "temperature": 1.0, "n": math.nan})
    for a, c in zip(names, rng.multinomial(200, rng.dirichlet(np.ones(answers))), strict=True):
        p = c / 200
        rows.append({"model": MODELS[1], "answer": a, "probability": p, "ci_low": max(0.0, p - 0.05),
                     "ci_high": min(1.0, p + 0.05), "count": c, "method": "sampled", "temperature": 1.0, "n": 200})
    return pd.DataFrame(rows)


def sweep_frame() -> pd.DataFrame:
    """Entropy at three temperatures: exact for one model, sampled with CIs for the other."""
    rows = []
    for model, method in zip(MODELS, ["exact", "sampled"], strict=True):
        for t in (0.5, 1.0, 1.5):
            v = 2 * t + (0 if method == "exact" else 0.5)
            lo, hi = (math.nan, math.nan) if method == "exact" else (v - 0.2, v + 0.2)
            rows.append({"model": model, "temperature": t, "metric": "entropy_bits", "value": v, "ci_low": lo,
                         "ci_high": hi, "method": method})
    return pd.DataFrame(rows)


def embedding_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Twenty points in two clusters, and the clusters' medoids."""
    rng = np.random.default_rng(1)
    centres = {0: (0.0, 0.0), 1: (3.0, 3.0)}
    points = pd.DataFrame([
        {"model": MODELS[i % 2], "text": f"story {i}", "x": centres[i % 2][0] + rng.normal(),
         "y": centres[i % 2][1] + rng.normal(), "cluster": i % 2}
        for i in range(20)
    ])
    clusters = pd.DataFrame([
        {"cluster": c, "label": "Once upon a time there was a very long label that must be shortened", "x": x,
         "y": y, f"share_{MODELS[0]}": 0.5}
        for c, (x, y) in centres.items()
    ])
    return points, clusters


def heatmap_frame(with_p: bool = True) -> pd.DataFrame:
    """Three prompts by one model pair."""
    frame = pd.DataFrame({"prompt": ["Pick a number.", "Once upon a time,", "Favourite colour?"],
                          "pair": [f"{MODELS[0]} vs {MODELS[1]}"] * 3, "jsd": [0.12, 0.5, 0.9],
                          "p_adjusted": [0.2, 0.01, 0.001]})
    return frame if with_p else frame.drop(columns="p_adjusted")


def figures() -> dict[str, Figure]:
    """One figure of each kind."""
    points, clusters = embedding_frames()
    return {
        "answers": answer_distribution_figure(answer_table(), top=4, title="answers", note="different families"),
        "sweep": temperature_sweep_figure(sweep_frame(), title="sweep", note="different families"),
        "embedding": embedding_map_figure(points, clusters, title="map", note="different families"),
        "heatmap": divergence_heatmap_figure(heatmap_frame(), title="divergence", note="different families"),
    }


def texts(fig: Figure) -> list[str]:
    """Every piece of text drawn in a figure's axes (annotations, tick labels, legend)."""
    found = []
    for ax in fig.axes:
        found += [t.get_text() for t in ax.texts]
        found += [t.get_text() for t in ax.get_yticklabels() + ax.get_xticklabels()]
        if ax.get_legend():
            found += [t.get_text() for t in ax.get_legend().get_texts()]
    return found


@pytest.mark.parametrize("kind", ["answers", "sweep", "embedding", "heatmap"])
def test_each_figure_exports_png_svg_pdf_and_provenance_with_the_run_id_embedded(kind, tmp_path):
    fig = figures()[kind]
    paths = export_figure(fig, tmp_path / kind, {"run_id": RUN_ID, "models": MODELS})
    assert [p.name for p in paths] == [f"{kind}.png", f"{kind}.svg", f"{kind}.pdf", f"{kind}.provenance.json"]
    assert all(p.stat().st_size > 0 for p in paths)
    png, svg, pdf, sidecar = paths
    embedded = json.loads(PIL.Image.open(png).text["Description"])
    assert embedded["run_id"] == RUN_ID and embedded["workbench"] == __version__ and embedded["created_at"]
    assert RUN_ID in svg.read_text(encoding="utf-8")
    # matplotlib writes the PDF info dict uncompressed: Subject (the JSON) and Keywords (the run ids).
    assert pdf.read_bytes().count(RUN_ID.encode()) >= 2
    recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    assert recorded == embedded


def test_secrets_are_redacted_everywhere_and_token_counts_are_kept(tmp_path):
    provenance = {"run_id": RUN_ID, "api_key": SECRET, "config": {"max_tokens": 5, "top_logprobs": 3},
                  "headers": {"Authorization": BEARER}, "usage": {"prompt_tokens": 7, "completion_tokens": 9},
                  "command": f"curl -H 'x-api-key: {SECRET}' https://example.org"}
    paths = export_figure(figures()["heatmap"], tmp_path / "fig", provenance)
    recorded = json.loads(paths[-1].read_text(encoding="utf-8"))
    assert recorded["api_key"] == "[redacted]" and recorded["headers"]["Authorization"] == "[redacted]"
    assert recorded["config"] == {"max_tokens": 5, "top_logprobs": 3}
    assert recorded["usage"] == {"prompt_tokens": 7, "completion_tokens": 9}
    assert recorded["command"] == "curl -H 'x-api-key: [redacted]' https://example.org"
    for path in paths:
        data = path.read_bytes()
        assert b"abcdefghijklmnop" not in data, path.name
        assert b"[redacted]" in data or path.suffix == ".png", path.name
    assert json.loads(PIL.Image.open(paths[0]).text["Description"])["api_key"] == "[redacted]"
    assert provenance["api_key"] == SECRET  # the caller's dict is not modified


def test_scrub_secrets_matches_credential_names_not_counts_and_makes_json_ready_values():
    scrubbed = scrub_secrets({
        "OPENAI_API_KEY": "x" * 20, "apiKey": "abc", "hf_token": "abc", "client_secret": "abc", "password": "abc",
        "Proxy-Authorization": "abc", "tokenizer": "gpt2", "keywords": ["a"], "max_tokens": 8,
        "token_usage": {"prompt_tokens": 3}, "api_key": None,
        "nested": [{"access_token": "abc"}, "sk-ant-" + "api03-abcdefghijklmnopqrstuvwxyz"],
        "note": "hf_abcdefghijklmnopqrstuvwxyz12 in a sentence", "ratio": float("nan"), "count": np.int64(3),
    })
    for key in ("OPENAI_API_KEY", "apiKey", "hf_token", "client_secret", "password", "Proxy-Authorization"):
        assert scrubbed[key] == "[redacted]", key
    assert scrubbed["tokenizer"] == "gpt2" and scrubbed["keywords"] == ["a"] and scrubbed["max_tokens"] == 8
    assert scrubbed["token_usage"] == {"prompt_tokens": 3} and scrubbed["api_key"] is None
    assert scrubbed["nested"] == [{"access_token": "[redacted]"}, "[redacted]"]
    assert scrubbed["note"] == "[redacted] in a sentence"
    assert scrubbed["ratio"] is None and scrubbed["count"] == 3
    json.dumps(scrubbed, allow_nan=False)


def test_answer_distribution_keeps_the_top_answers_and_folds_the_rest(tmp_path):
    table = answer_table(answers=6)
    fig = answer_distribution_figure(table, top=4)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 5 and labels[-1].startswith("(rest")
    means = table.groupby("answer")["probability"].mean().sort_values(ascending=False)
    assert labels[:4] == list(means.index[:4])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{MODELS[0]} (exact, T=1.0)", f"{MODELS[1]} (sampled, n=200, T=1.0)"]
    # The rest bar of each model is the sum of its folded answers' probabilities.
    folded = table[table["answer"].isin(means.index[4:])].groupby("model")["probability"].sum()
    rest_widths = sorted(p.get_width() for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - 4) < 0.5)
    assert rest_widths == pytest.approx(sorted(folded[m] for m in MODELS))
    # Whiskers only for the sampled model (the exact one has NaN CIs).
    whiskers = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(whiskers) == 1 and len(whiskers[0].lines[2][0].get_segments()) == 4  # top 4 only, not "(rest)"


def outside_table(p_other: float = 0.97) -> pd.DataFrame:
    """The regression scenario: an exact base that puts most of its mass on "(other)" beside a sampled model."""
    from workbench.analysis.estimators import share_bounds

    names = ["(other)", "7", "42", "1", "25"]
    inside = np.array([0.4, 0.3, 0.2, 0.1]) * (1 - p_other)
    rows = [{"model": MODELS[0], "answer": a, "probability": p, "ci_low": math.nan, "ci_high": math.nan,
             "count": math.nan, "method": "exact", "temperature": 1.0, "n": math.nan,
             "interval": "exact (no sampling error)"} for a, p in zip(names, [p_other, *inside], strict=True)]
    counts = np.array([10, 20, 5, 3, 2], dtype=float)
    low, high = share_bounds(counts, counts.sum())
    rows += [{"model": MODELS[1], "answer": a, "probability": c / counts.sum(), "ci_low": lo, "ci_high": hi,
              "count": c, "method": "sampled", "temperature": 1.0, "n": counts.sum(), "interval": "Jeffreys 95%"}
             for a, c, lo, hi in zip(names, counts, low, high, strict=True)]
    return pd.DataFrame(rows)


def test_answer_distribution_shows_both_views_and_warns_when_most_mass_is_outside_the_space():
    fig = answer_distribution_figure(outside_table(0.97), title="narrow")
    total, inside = fig.axes[:2]
    # Each panel says its view and its n (in the in-space view: the sampled answers inside the space).
    assert " ".join(total.get_title().split()) == "total view; n = 40 samples; exact: no sampling"
    assert inside.get_title().replace("\n", " ") == "in-space view; n in space = 30 samples; exact: no sampling"
    ticks = [t.get_text() for t in total.get_yticklabels()]
    assert ticks[0] == "(other): outside the answer space"  # never a bare "(other)" bar
    xlabel = " ".join(total.get_xlabel().split())  # wrapped to its panel
    assert "(other) included" in xlabel and "Jeffreys 95% interval" in xlabel
    assert "exact: none, no sampling error" in xlabel and "in-space view" in inside.get_xlabel()
    shown = " ".join(" ".join(texts(fig)).split())  # wrapped lines read as one text
    assert "97%" in shown and "gemma-3-270m (exact)" in shown and "widen the answer space" in shown
    assert "in-space view (right)" in " ".join(shown.split()) and "not in this view" in shown
    assert f"{MODELS[0]} (exact, T=1.0, P(other)=0.97)" in shown and f"{MODELS[1]} (sampled, n=40" in shown
    # In the in-space view each model's shares sum to one (the exact model's 3 % spread over its answers).
    widths = {}
    for patch in inside.patches:
        widths.setdefault(tuple(patch.get_facecolor()), []).append(patch.get_width())
    assert len(widths) == 2 and all(sum(w) == pytest.approx(1.0) for w in widths.values())
    # Below the threshold: both views, no warning; a table without "(other)" keeps one plain panel.
    calm = answer_distribution_figure(outside_table(0.2))
    assert "widen the answer space" not in " ".join(texts(calm)) and calm.axes[1].get_title().startswith("in-space")
    plain = answer_distribution_figure(answer_table())
    assert len(plain.axes) == 1 and plain.axes[0].get_xlabel().startswith("probability\n")
    single = answer_distribution_figure(outside_table(0.97), views="in_space")
    assert "(other): outside the answer space" not in [t.get_text() for t in single.axes[0].get_yticklabels()]
    with pytest.raises(WorkbenchError, match="views must be one of"):
        answer_distribution_figure(outside_table(), views="inside")


def regression_sweep() -> pd.DataFrame:
    """A sweep frame made by the analysis: mass leaves the answer space as the temperature rises."""
    from workbench.analysis.summaries import answer_estimates, estimate_rows

    labels = ["(other)", *[str(i) for i in range(1, 9)]]
    frames = []
    for model, method in zip(MODELS, ["exact", "sampled"], strict=True):
        for t, p_other in ((0.5, 0.3), (1.0, 0.6), (2.0, 0.996)):
            p = np.concatenate([[p_other], (1 - p_other) * np.full(8, 1 / 8)])
            values, n = (p, math.nan) if method == "exact" else (np.round(p * 400), 400.0)
            estimates = answer_estimates(labels, values, method)
            frames.append(pd.DataFrame(estimate_rows(model, method, n, estimates)).assign(
                temperature=t, top_answer=estimates["top_answer"], p_other=estimates["p_other"].value, warning=""))
    return pd.concat(frames, ignore_index=True)


def test_sweep_figure_draws_the_in_space_view_beside_and_marks_points_outside_the_space():
    from workbench.plots.sweeps import sweep_how_made, sweep_table, sweep_warning

    frame = regression_sweep()
    fig = temperature_sweep_figure(frame, "entropy_bits", title="sweep")
    total, inside = fig.axes[:2]
    assert total.get_title().replace("\n", " ").startswith("total view, (other) as one answer; n = 400 samples")
    assert inside.get_title().startswith("in-space view;")
    assert inside.get_ylabel() == "entropy within the answer space (bits)"
    shown = " ".join(" ".join(texts(fig)).split())  # wrapped lines read as one text
    assert "P(other) > 0.5" in shown and "T = 1.0, 2.0" in shown and "T = 0.5" not in shown
    assert "widen the answer space" in shown and "exact (no sampling error)" in shown and "sampled (n=400)" in shown
    note = " ".join(fig.get_supxlabel().split())  # the caption names the metrics as the axes do, not by id
    assert "answer entropy (bits); entropy within the answer space (bits): exact: plug-in" in note
    assert "Miller-Madow" in note and "entropy_bits" not in note
    # The total entropy falls as mass leaves the space; the in-space entropy stays at 3 bits.
    exact = frame[(frame["method"] == "exact") & (frame["metric"] == "entropy_bits_in_space")]
    assert exact["value"].to_numpy() == pytest.approx(3.0)
    rings = [line for line in total.get_lines() if line.get_markersize() == 11]
    assert sum(len(line.get_xdata()) for line in rings) == 4  # two models at T = 1 and 2
    top = temperature_sweep_figure(frame, "top1_mass")
    crosses = [line for line in top.axes[0].get_lines() if line.get_marker() == "x"]
    assert sum(len(line.get_xdata()) for line in crosses) == 6 and "top answer is (other)" in " ".join(texts(top))
    alone = temperature_sweep_figure(frame, "entropy_bits", in_space=False)
    assert alone.axes[0].get_title().startswith("n = 400") and "read the in-space metrics" in " ".join(texts(alone))
    assert "P(other) > 0.5" not in " ".join(texts(temperature_sweep_figure(sweep_frame())))  # no P(other) column
    # The same as text: every number says how it was made, "(other)" says what it is.
    table = sweep_table(frame, ("entropy_bits", "entropy_bits_in_space"))
    assert list(table.columns) == ["model", "temperature", "method", "n", "p_other", "entropy_bits",
                                   "entropy_bits_in_space", "top_answer"]
    assert set(table["top_answer"]) == {"(other) (outside the space)"} and set(table["n"]) == {"–", "400"}
    assert table.loc[table["method"] == "sampled", "p_other"].str.contains(r"\[").all()
    assert any("sampled (n=400): Miller-Madow" in line for line in sweep_how_made(frame))
    assert sweep_warning(frame).startswith("Most answers fall outside the answer space (P(other) > 0.5)")
    assert sweep_warning(frame, threshold=1.0) == ""


def test_summary_views_give_both_views_with_intervals_kinds_and_one_warning():
    from workbench.analysis.summaries import answer_estimates, flatten
    from workbench.plots.distributions import estimate_text, how_made, other_warning_text, summary_views

    labels = ["(other)", "7", "42"]
    rows = pd.DataFrame([
        flatten(MODELS[0], "exact", None, 1.0, answer_estimates(labels, [0.97, 0.02, 0.01], "exact")),
        flatten(MODELS[0], "sampled", 40, 1.0, answer_estimates(labels, [36, 3, 1], "sampled")),
        flatten(MODELS[1], "sampled", 40, 1.0, answer_estimates(labels, [4, 30, 6], "sampled")),
    ])
    views = summary_views(rows)
    total, inside = views["total view"], views["in-space view"]
    assert list(total["top_answer"]) == ["(other) (outside the space)"] * 2 + ["7"]
    assert list(inside["top_answer_in_space"]) == ["7", "7", "7"]
    assert total["p_other"][0] == "0.970" and total["p_other"][1].startswith("0.90 [")  # exact vs sampled
    assert list(total["method"]) == ["exact", "sampled", "sampled"] and list(total["n"]) == ["–", "40", "40"]
    made = how_made(rows)
    assert any(line.startswith("entropy_bits, entropy_bits_in_space = exact: plug-in") for line in made)
    assert any("sampled: share (count / n), Jeffreys 95% interval" in line for line in made)
    warning = other_warning_text(rows)
    assert f"{MODELS[0]} 97% (exact), 90% (sampled, n=40)" in warning and MODELS[1] not in warning
    assert "widen the answer space" in warning
    assert estimate_text(0.5, 0.4, 0.6, False) == "0.50 [0.40, 0.60]†" and estimate_text(math.nan) == "–"
    no_space = pd.DataFrame([flatten(MODELS[1], "sampled", 3, 1.0,
                                     answer_estimates(["a", "b"], [2, 1], "sampled", has_space=False))])
    assert list(summary_views(no_space)) == ["total view"]


def test_model_colours_are_okabe_ito_stable_and_never_black():
    assert "#000000" not in PALETTE and len(set(PALETTE)) == len(PALETTE)
    colours = model_colours(MODELS + [MODELS[0]])
    assert list(colours) == MODELS and list(colours.values()) == list(PALETTE[:2])
    assert model_colours(MODELS) == colours


def test_heatmap_stars_significant_cells_only_when_p_adjusted_is_given():
    starred = texts(divergence_heatmap_figure(heatmap_frame()))
    assert {"0.12", "0.50*", "0.90*"} <= set(starred)
    plain = texts(divergence_heatmap_figure(heatmap_frame(with_p=False)))
    assert {"0.12", "0.50", "0.90"} <= set(plain) and not any(t.endswith("*") for t in plain)
    fig = divergence_heatmap_figure(heatmap_frame())
    assert fig.axes[1].get_ylabel() == "Jensen-Shannon\ndivergence (bits)"  # two lines beside a short map
    taller = divergence_heatmap_figure(pd.concat([heatmap_frame()] * 3).assign(prompt=[f"p{i}" for i in range(9)]))
    assert taller.get_figheight() > fig.get_figheight()


def test_cluster_labels_are_shortened_and_text_is_shown_literally():
    points, clusters = embedding_frames()
    labels = [t for t in texts(embedding_map_figure(points, clusters)) if t.startswith("#")]
    assert len(labels) == 2 and all(len(t) <= 45 and t.endswith("…") for t in labels)
    table = answer_table().assign(answer=lambda f: f["answer"].replace({"0": "$5 or $10"}))
    shown = texts(answer_distribution_figure(table))
    assert r"\$5 or \$10" in shown  # escaped, so matplotlib prints dollars instead of parsing mathtext


def test_a_format_suffix_picks_the_format_and_any_other_suffix_stays_in_the_stem(tmp_path):
    assert figure_formats_for("out/fig.PDF") == (Path("out/fig"), ("pdf",))
    assert figure_formats_for("out/fig") == (Path("out/fig"), ("png", "svg", "pdf"))
    assert figure_formats_for("out/v1.2", default=("png", "svg")) == (Path("out/v1.2"), ("png", "svg"))
    with pytest.raises(WorkbenchError, match=r"give a path ending in \.png, \.svg or \.pdf"):
        figure_formats_for("out/fig.jpg", default=None)
    fig = figures()["heatmap"]
    # export_figure reads a format suffix as part of the path, not of the stem ...
    assert [p.name for p in export_figure(fig, tmp_path / "fig.png", {}, formats=("svg",))] == [
        "fig.svg", "fig.provenance.json"]
    # ... and a stem with a dot keeps it (with_suffix would have turned "v1.2" into "v1.png").
    assert export_figure(fig, tmp_path / "v1.2", {}, formats=("png",))[0].name == "v1.2.png"


def persona_result() -> SimpleNamespace:
    """What persona_figure reads of a PersonaResult: trait scores, items and the yes-bias check."""
    traits = pd.DataFrame([{"model": m, "trait": t, "keyed": k, "p_match": p, "ci_low": p - 0.1, "ci_high": p + 0.1}
                           for m, p in zip(MODELS, (0.4, 0.7), strict=True)
                           for t in ("power-seeking", "self-preservation") for k in ("all", "agree")])
    items = pd.DataFrame({"model": MODELS, "method": ["exact", "sampled"], "framing": ["transcript", "chat"]})
    balance = pd.DataFrame({"model": MODELS, "yes_bias": [0.05, -0.2]})
    return SimpleNamespace(traits=traits, items=items, balance=balance, family_note="different families")


def segue_result() -> SimpleNamespace:
    """What segue_figure reads of a SegueResult: the recovery summary per model, condition and method."""
    summary = pd.DataFrame([{"model": m, "condition": c, "method": "keywords", "recovery_rate": 0.5, "ci_low": 0.3,
                             "ci_high": 0.7} for m in MODELS for c in ("(no segue)", "dragon")])
    return SimpleNamespace(summary=summary, home_label="office", prompt="segues/office",
                           family_note="different families")


def test_experiment_figures_draw_one_bar_per_model_and_category():
    personas = persona_figure(persona_result())
    ax = personas.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["power-seeking", "self-preservation"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{MODELS[0]} (transcript, exact)",
                                                                  f"{MODELS[1]} (chat, sampled)"]
    assert "yes-bias -0.20" in personas.get_supxlabel()
    segues = segue_figure(segue_result())
    assert segues.get_suptitle() == "Segue recovery: office (segues)"  # the prompt's id in words; the id in the note
    assert "segues/office" in segues.get_supxlabel()
    assert len(segues.axes[0].patches) == 4  # two conditions by two models
    with pytest.raises(WorkbenchError, match="no rows for method 'embedding'"):
        segue_figure(segue_result(), method="embedding")


def selfchat_result(pairing: str, runs: int = 3, turns: int = 3) -> SimpleNamespace:
    """What selfchat_figure reads of a SelfChatResult: turns with their embeddings, dispersion and the summary."""
    rng = np.random.default_rng(len(pairing))
    turn_rows = pd.DataFrame([{"run": r, "turn": t} for r in range(runs) for t in range(1, turns + 1)])
    dispersion = pd.DataFrame({"turn": range(1, turns + 1), "speaker": ["A", "B", "A"][:turns],
                               "dispersion": [0.5, 0.4, 0.3][:turns], "ci_low": 0.2, "ci_high": 0.6})
    summary = pd.DataFrame([{"largest_cluster_share": 2 / 3, "runs": runs, "change": -0.2, "change_ci_low": -0.3,
                             "change_ci_high": -0.1}])
    return SimpleNamespace(turns=turn_rows, embeddings=rng.normal(size=(runs * turns, 8)),
                           seed_embedding=rng.normal(size=8), dispersion=dispersion, summary=summary,
                           pairing=pairing, prompt="self-conversations/two-ais-meet", family_note="one family")


def test_selfchat_figure_draws_each_run_and_one_dispersion_band_per_pairing():
    fig = selfchat_figure(selfchat_result(MODELS[0]))
    paths, curve = fig.axes
    assert len(paths.get_lines()) == 3 * 3 + 1  # a path, start and end marker per run, the opening line
    assert [t.get_text() for t in curve.get_xticklabels()] == ["1\nA", "2\nB", "3\nA"]
    assert "largest final-turn cluster 2/3 runs" in fig.get_supxlabel()
    both = selfchat_figure([selfchat_result(MODELS[0]), selfchat_result(f"{MODELS[0]} + {MODELS[1]}")])
    assert len(both.axes[1].collections) == 2 and both.get_suptitle().startswith("Self-conversations from")
    with pytest.raises(WorkbenchError, match="at least one"):
        selfchat_figure([])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: answer_distribution_figure(pd.DataFrame()), "lacks column(s) model, answer, probability"),
        (lambda: answer_distribution_figure(answer_table().iloc[:0]), "has no rows"),
        (lambda: answer_distribution_figure(answer_table().drop(columns="probability")), "probability"),
        (lambda: answer_distribution_figure(pd.concat([answer_table()] * 2)), "one row per model, answer"),
        (lambda: temperature_sweep_figure(pd.DataFrame()), "lacks column(s) model, temperature, metric, value"),
        (lambda: temperature_sweep_figure(sweep_frame(), metric="jsd"), "metric= one of entropy_bits"),
        (lambda: embedding_map_figure(pd.DataFrame(), None), "lacks column(s) model, x, y"),
        (lambda: embedding_map_figure(embedding_frames()[0], pd.DataFrame()), "clusters frame lacks column(s)"),
        (lambda: divergence_heatmap_figure(pd.DataFrame()), "lacks column(s) prompt, pair, jsd"),
        (lambda: divergence_heatmap_figure(heatmap_frame(), value="kl"), "lacks column(s) kl"),
        (lambda: export_figure(Figure(), "/tmp/never", {}, formats=("jpg",)), "cannot export figures as jpg"),
    ],
)
def test_bad_input_raises_a_workbench_error_that_names_what_to_change(call, message):
    with pytest.raises(WorkbenchError) as info:
        call()
    assert message in str(info.value)


def test_the_package_uses_neither_pyplot_nor_torch_nor_the_sampler_stack():
    code = ("import sys, workbench.plots; "
            "loaded = [m for m in ('matplotlib.pyplot', 'torch', 'workbench.sampler', 'workbench.backends') "
            "if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
