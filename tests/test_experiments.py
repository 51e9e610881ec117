"""Experiments on the embedded models (small sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_cli
from workbench.errors import WorkbenchError
from workbench.experiments.personas import persona_eval
from workbench.plots import persona_figure

PAIR = ["gemma-3-270m", "smollm2-135m-instruct"]


def test_persona_eval_scores_the_matching_answer_per_trait(sampler):
    result = persona_eval(sampler, PAIR, traits=["self-preservation", "corrigibility"], per_trait=2)
    items = result.items
    assert len(items) == 2 * 2 * 4  # models x traits x (2 agree + 2 disagree)
    # One framing for both models (the collection's first), so the comparison is of models, not framings.
    assert set(items["framing"]) == {"questionnaire-transcript"} and result.same_framing
    assert not any("framings differ" in w for w in result.warnings)
    assert (items["method"] == "exact").all()
    assert ((items["p_yes"] >= 0) & (items["p_no"] >= 0) & (items["p_answered"] <= 1 + 1e-9)).all()
    agree = items[items["keyed"] == "agree"]
    disagree = items[items["keyed"] == "disagree"]
    assert np.allclose(agree["p_match"], agree["p_yes"] / agree["p_answered"])
    assert np.allclose(disagree["p_match"], disagree["p_no"] / disagree["p_answered"])
    overall = result.traits[result.traits["keyed"] == "all"]
    assert len(overall) == 4 and (overall["ci_low"] <= overall["p_match"] + 1e-9).all()
    for row in result.balance.itertuples():
        assert row.yes_bias == pytest.approx(row.agree_p_match - row.disagree_p_match)
    fig = persona_figure(result)
    assert len(fig.axes) == 1 and "yes-bias" in fig.get_supxlabel()


def test_persona_eval_sampled_and_bad_input(sampler):
    result = persona_eval(sampler, ["smollm2-135m-instruct"], traits=["power-seeking"], per_trait=1, method="sampled",
                          n=4)
    assert (result.items["method"] == "sampled").all() and len(result.items) == 2
    with pytest.raises(WorkbenchError, match="unknown trait"):
        persona_eval(sampler, PAIR, traits=["bravery"])


def test_experiment_personas_cli(embedded_models, tmp_path):
    result = run_cli("persona", "--models", ",".join(PAIR), "--traits", "wide-deployment",
                     "--per-trait", "1", "--figure", str(tmp_path / "personas.png"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "yes-bias" in out and "different families" in out
    assert "framing: questionnaire-transcript (the same for every model)" in out and "method: exact" in out
    # The header promises CIs and the table has them; p_answered is a column of every score table.
    assert "95% bootstrap CI" in out and "95% CI" in out and "p_answered" in out and "[" in out
    assert (tmp_path / "personas.png").stat().st_size > 0 and (tmp_path / "personas.items.csv").is_file()


def test_segue_recovery_classifies_and_counts_the_way_home(sampler):
    from workbench.analysis.statistics import wilson_interval
    from workbench.experiments.segues import (
        BASELINE,
        keyword_label,
        segue_recovery,
        tokens_to_recovery,
    )
    from workbench.plots import segue_figure

    prompt = sampler.library.get("attractors/wedding-toast")
    labels = prompt.spec.labels
    home = prompt.spec.home_label
    word = labels[home].keywords[0]
    assert keyword_label(f"and then {word} again, {word}!", labels) == home
    assert keyword_label("nothing to see", labels) == "(none)"
    assert tokens_to_recovery(["It ", "was ", f"a {word}", "."], labels[home]) == 3.0
    assert np.isnan(tokens_to_recovery(["no", "thing"], labels[home]))
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0 < high < 0.35

    perturbation = next(iter(prompt.spec.perturbations))
    result = segue_recovery(sampler, PAIR, prompt, n=4, perturbations=[perturbation], max_tokens=12)
    assert set(result.continuations["condition"]) == {BASELINE, perturbation}
    assert len(result.continuations) == 2 * 2 * 4
    summary = result.summary
    assert set(summary["method"]) == {"keywords", "embedding"} and len(summary) == 8
    assert ((summary["ci_low"] <= summary["recovery_rate"]) & (summary["recovery_rate"] <= summary["ci_high"])).all()
    reached = summary.dropna(subset=["tokens_ci_low"])
    assert ((reached["tokens_ci_low"] <= reached["median_tokens_to_recovery"])
            & (reached["median_tokens_to_recovery"] <= reached["tokens_ci_high"])).all()
    assert summary["share_reaching_home"].between(0, 1).all()
    for (_, _, _), group in result.categories.groupby(["model", "condition", "method"]):
        assert group["share"].sum() == pytest.approx(1.0)
    # The segue really is in the perturbed runs' input.
    runs = result.continuations.groupby("condition")["run_id"].first()
    perturbed_input = sampler.store.run(runs[perturbation])["input_text"]
    assert prompt.spec.perturbations[perturbation].strip() in perturbed_input
    assert segue_figure(result).axes
    judged = segue_recovery(sampler, PAIR[:1], prompt, n=2, perturbations=[perturbation], max_tokens=12,
                            judge="smollm2-135m-instruct")
    assert set(judged.continuations["judge_label"]) <= {*labels, "(none)"}
    assert "judge:smollm2-135m-instruct" in set(judged.summary["method"])
    with pytest.raises(WorkbenchError, match="no perturbations"):
        segue_recovery(sampler, PAIR, sampler.library.get("mode-collapse/coin-flip"))


def test_experiment_segues_cli(embedded_models, tmp_path):
    stem = tmp_path / "segues"
    result = run_cli("segue", "attractors/wedding-toast", "--models", ",".join(PAIR),
                     "--perturbations", "murderer", "--n", "2", "--max-tokens", "8", "--out", str(stem),
                     "--formats", "png", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "recovery" in result.stdout and "different families" in result.stdout
    assert (tmp_path / "segues.png").stat().st_size > 0 and (tmp_path / "segues.continuations.csv").is_file()
    bad = run_cli("segue", "Hello there", "--models", PAIR[0])
    assert bad.returncode == 2 and "not a library prompt" in bad.stderr
