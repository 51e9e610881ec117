"""Experiments on the embedded models (small sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_cli
from workbench.errors import WorkbenchError
from workbench.experiments.personas import persona_eval, persona_figure

PAIR = ["gemma-3-270m", "smollm2-135m-instruct"]


def test_persona_eval_scores_the_matching_answer_per_trait(sampler):
    result = persona_eval(sampler, PAIR, traits=["self-preservation", "corrigibility"], per_trait=2)
    items = result.items
    assert len(items) == 2 * 2 * 4  # models x traits x (2 agree + 2 disagree)
    assert set(items.groupby("model")["framing"].first()) == {"questionnaire-transcript", "assistant-chat"}
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
    stem = tmp_path / "personas"
    result = run_cli("experiment", "personas", "--models", ",".join(PAIR), "--traits", "wide-deployment",
                     "--per-trait", "1", "--out", str(stem), "--formats", "png", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "yes-bias" in result.stdout and "different families" in result.stdout
    assert (tmp_path / "personas.png").stat().st_size > 0 and (tmp_path / "personas.items.csv").is_file()
