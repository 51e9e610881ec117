"""Distribution analysis: metrics on known distributions, the two views of a distribution and their
warnings, estimators and their regimes, exact scoring against a plain forward pass, sampled against
exact, sweeps, clusters, comparisons and bad input. Coverage by simulation is tests/test_coverage.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.agreement import G_TEST, agreement_with_exact, merge_small_bins
from workbench.analysis.comparisons import collection_summary, compare_answers, compare_runs, paired_difference
from workbench.analysis.distributions import (
    AnswerDistribution,
    exact_distribution,
    exact_distributions,
    sampled_distribution,
)
from workbench.analysis.estimators import (
    entropy_bounds,
    entropy_estimate,
    jsd_bounds,
    jsd_estimate,
    miller_madow_bits,
    proportion_estimate,
    share_bounds,
    top_share_estimate,
)
from workbench.analysis.metrics import (
    answer_metrics,
    count_metrics,
    distinct_n,
    distribution_metrics,
    equivalence_classes,
    semantic_clusters,
    text_metrics,
)
from workbench.analysis.statistics import (
    adjust_pvalues,
    bootstrap_counts,
    bootstrap_indices,
    bootstrap_mean_ci,
    entropy_bits,
    entropy_rows,
    jensen_shannon,
    permutation_test,
    sign_flip_test,
    smoothed_kl,
    wilson_interval,
)
from workbench.analysis.summaries import ANSWER_METRICS, distribution_summary
from workbench.analysis.sweeps import SWEEP_COLUMNS, temperature_sweep
from workbench.errors import WorkbenchError

DIGITS = "mode-collapse/random-digit-sequence"


# -- metrics and divergences on known distributions -----------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_entropy_of_a_uniform_over_k_is_log2_k_plus_the_miller_madow_correction(k):
    n = 7 * k
    frame = count_metrics(np.full(k, 7), "m").set_index("metric")
    # Miller-Madow adds (k - 1) / 2n nats to the plug-in log2(k): the plug-in is biased low.
    assert frame.at["entropy_bits", "value"] == pytest.approx(math.log2(k) + (k - 1) / (2 * n) / math.log(2))
    assert frame.at["top1_mass", "value"] == pytest.approx(1 / k)
    assert frame.at["distinct_answers", "value"] == k
    row = frame.loc["entropy_bits"]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    if k > 1:
        assert row["ci_low"] <= math.log2(k) <= row["ci_high"]
    assert set(frame.index) == set(ANSWER_METRICS)
    assert {"estimator", "interval", "reliable", "method", "n"} <= set(frame.columns)


def test_one_entropy_for_counts_probabilities_and_rows():
    assert entropy_bits([7, 7, 7, 7]) == pytest.approx(2.0) == entropy_bits([0.25] * 4)
    assert entropy_bits([5, 0]) == 0.0 and math.isnan(entropy_bits([]))
    rows = entropy_rows(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    assert rows.tolist() == pytest.approx([1.0, 0.0])


def test_one_bootstrap_resamples_members_and_counts():
    idx = bootstrap_indices(5, 100, seed=3)
    assert idx.shape == (100, 5) and idx.min() >= 0 and idx.max() <= 4
    assert (bootstrap_indices(5, 100, seed=3) == idx).all()  # a seed fixes the resamples
    counts = bootstrap_counts(np.array([6, 3, 1]), 400, seed=0)
    assert counts.shape == (400, 3) and (counts.sum(axis=1) == 10).all()
    assert counts.mean(axis=0) == pytest.approx([6, 3, 1], abs=0.4)
    low, high = bootstrap_mean_ci(np.arange(10.0), n_boot=500)
    assert low < 4.5 < high and math.isnan(bootstrap_mean_ci(np.array([1.0]))[0])


def test_share_interval_narrows_with_more_samples():
    small = count_metrics(np.array([6, 3, 1]), "m").set_index("metric").loc["top1_mass"]
    large = count_metrics(np.array([600, 300, 100]), "m").set_index("metric").loc["top1_mass"]
    assert small["ci_low"] < 0.6 < small["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 5


def test_jensen_shannon_bounds_and_kl():
    p = {"a": 0.5, "b": 0.5}
    assert jensen_shannon(p, p) == pytest.approx(0.0)
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert 0 < jensen_shannon(p, {"a": 0.9, "b": 0.1}) < 1
    assert smoothed_kl({"a": 10}, {"b": 10}) < float("inf")
    assert smoothed_kl({"a": 5, "b": 5}, {"a": 5, "b": 5}) == pytest.approx(0.0)


def test_permutation_test_separates_same_and_different_sources():
    rng = np.random.default_rng(1)
    same_a = list(rng.choice(list("abcd"), 200))
    same_b = list(rng.choice(list("abcd"), 200))
    assert permutation_test(same_a, same_b, 500) > 0.05
    assert permutation_test(["a"] * 150 + ["b"] * 50, ["b"] * 150 + ["a"] * 50, 500) < 0.01
    stats = compare_answers(same_a, same_b, 200)
    expected_keys = {"jsd", "jsd_ci_low", "jsd_ci_high", "jsd_reliable", "jsd_plug_in", "kl_ab", "kl_ba", "p_value"}
    assert expected_keys <= set(stats)
    # Two samples of one distribution: the plug-in JSD is above 0 by chance, the corrected one less so,
    # and both are below 0.05 bits, where the normal interval is not trusted.
    assert stats["jsd"] < stats["jsd_plug_in"] and not stats["jsd_reliable"]


def test_paired_difference_has_the_sign_and_a_ci():
    collapsed, spread = ["x"] * 90 + ["y"] * 10, list("abcdefghij") * 10
    diff = paired_difference(spread, collapsed, "entropy_bits")
    assert diff["difference"] < 0 and diff["ci_low"] <= diff["difference"] <= diff["ci_high"] < 0
    assert diff["interval"].startswith("MOVER") and diff["reliable"]
    top = paired_difference(spread, collapsed, "top1_mass")
    assert top["difference"] == pytest.approx(0.8) and top["ci_low"] <= 0.8 <= top["ci_high"]
    assert top["interval"].startswith("Newcombe")
    assert not top["reliable"]  # the spread sample has no clear top answer (ten answers at 0.1)


def test_sign_flip_and_wilson_come_from_the_libraries_with_the_old_answers():
    # Exact over the 32 sign patterns: |mean| >= 0.14 for the observed signs, for flipping -0.05 alone
    # (mean 0.16), and for the mirror images of both: 4 of 32.
    assert sign_flip_test([0.1, 0.2, -0.05, 0.3, 0.15]) == pytest.approx(4 / 32)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)


def test_holm_and_benjamini_hochberg():
    assert adjust_pvalues([0.01, 0.02, 0.03], "holm") == pytest.approx([0.03, 0.04, 0.04])
    assert adjust_pvalues([0.01, 0.02, 0.03], "bh") == pytest.approx([0.03, 0.03, 0.03])
    assert adjust_pvalues([0.04, 0.5], "bh") == pytest.approx([0.08, 0.5])
    with pytest.raises(WorkbenchError, match="holm or bh"):
        adjust_pvalues([0.1], "bonferroni")


# -- the two views of a distribution, estimators and their regimes ----------------------------


def mostly_other(n_other: int = 90) -> AnswerDistribution:
    """A sampled distribution where most answers fall outside the space (the base model at high temperature)."""
    texts = ["(other)"] * n_other + ["7"] * 30 + ["3"] * 20 + ["9"] * 10
    return sampled_distribution(pd.DataFrame({"model": "base", "text": texts, "temperature": 2.0}),
                                candidates=["1", "3", "7", "9"])


def test_a_zero_count_share_has_an_interval_above_zero_and_is_unreliable():
    # It used to print "0.00 [0.00, 0.00]" while the exact probability was 0.011.
    table = mostly_other().table.set_index("answer")
    assert table.at["1", "count"] == 0 and table.at["1", "ci_low"] == 0.0 and table.at["1", "ci_high"] > 0.01
    assert not table.at["1", "reliable"] and table.at["7", "reliable"]
    assert (table["ci_low"] <= table["probability"]).all() and (table["probability"] <= table["ci_high"]).all()
    assert set(table.index) == {"(other)", "1", "3", "7", "9"}  # zero counts and (other) are rows
    # And with every answer inside the space, P(other) = 0 still gets an interval above 0.
    inside = sampled_distribution(pd.DataFrame({"model": "m", "text": ["3"] * 20, "temperature": 1.0}),
                                  candidates=["3", "7"])
    other = inside.summary()
    assert other["p_other"] == 0.0 and other["p_other_ci_high"] > 0


def test_summary_gives_both_views_and_warns_when_other_dominates():
    summary = mostly_other().summary()
    assert summary["method"] == "sampled" and summary["n"] == 150 and summary["n_in_space"] == 60
    assert summary["top_answer"] == "(other)" and summary["top_is_other"]
    assert summary["top_answer_in_space"] == "7" and summary["top_share_in_space"] == pytest.approx(0.5)
    assert summary["p_other"] == pytest.approx(0.6)
    # The in-space entropy is the entropy of 30/20/10 (plus Miller-Madow), far from the total view's.
    assert summary["entropy_bits_in_space"] == pytest.approx(float(miller_madow_bits(np.array([30, 20, 10]))[0]))
    assert summary["entropy_bits_in_space"] > summary["entropy_bits"] - 0.5
    assert "Widen the answer space" in summary["warning"] and "in-space" in summary["warning"]
    for name in ("p_other", "entropy_bits", "entropy_bits_in_space", "top_share", "top_share_in_space"):
        assert summary[f"{name}_ci_low"] <= summary[name] <= summary[f"{name}_ci_high"], name
        assert summary[f"{name}_estimator"] and summary[f"{name}_interval"]
    assert summary["entropy_bits_estimator"] == "Miller-Madow" and summary["p_other_interval"].startswith("Jeffreys")
    # Under the threshold there is no warning; the threshold is a parameter.
    assert distribution_summary(mostly_other(20))["warning"] == ""
    assert distribution_summary(mostly_other(90), other_warning_threshold=0.7)["warning"] == ""


def test_an_exact_summary_has_no_sampling_error():
    table = pd.DataFrame({"model": "m", "answer": ["(other)", "7", "3", "1"], "probability": [0.9, 0.06, 0.03, 0.01]})
    exact = AnswerDistribution("m", "exact", 2.0, table)
    summary = exact.summary()
    assert summary["method"] == "exact" and summary["n"] is None and summary["top_is_other"]
    for name in ("p_other", "entropy_bits", "entropy_bits_in_space", "top_share", "top_share_in_space"):
        assert summary[f"{name}_ci_low"] == summary[name] == summary[f"{name}_ci_high"]
        assert summary[f"{name}_interval"] == "exact (no sampling error)"
    assert summary["entropy_bits_in_space"] == pytest.approx(entropy_bits([0.6, 0.3, 0.1]))
    assert summary["warning"] and summary["unreliable"] == ""
    rows = distribution_metrics(exact).set_index("metric")
    assert (rows["method"] == "exact").all() and rows.at["p_other", "value"] == pytest.approx(0.9)


def test_estimates_lie_inside_their_intervals():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(8, 0.5), size=300)
    counts = np.array([rng.multinomial(int(rng.integers(5, 300)), p) for p in probabilities], dtype=float)
    value, low, high = entropy_bounds(counts)
    assert ((low <= value + 1e-12) & (value <= high + 1e-12)).all()
    value, low, high = jsd_bounds(counts[:150], counts[150:])
    assert ((low <= value) & (value <= high)).all()
    shares = counts / counts.sum(axis=1, keepdims=True)
    low, high = share_bounds(counts, counts.sum(axis=1, keepdims=True))
    assert ((low <= shares) & (shares <= high)).all() and (high > low).all()  # never zero width


def test_the_entropy_interval_is_bias_corrected():
    # A percentile bootstrap of the plug-in entropy at n=100 missed the exact value: the plug-in is
    # biased low and every resample inherits it. Miller-Madow sits above the plug-in, and the
    # interval of a sample drawn from a known distribution contains the truth.
    counts = np.array([60, 25, 10, 5])
    assert miller_madow_bits(counts)[0] > entropy_bits(counts)
    truth = np.array([0.6, 0.25, 0.1, 0.05])
    estimate = entropy_estimate(counts)
    assert estimate.ci_low <= entropy_bits(truth) <= estimate.ci_high and estimate.reliable


def test_numbers_outside_their_regime_are_marked_unreliable():
    zero = proportion_estimate(0, 30)
    assert not zero.reliable and zero.ci_high > 0 and "fewer than 5" in zero.note
    few_outside_mode = entropy_estimate(np.array([28, 1, 1]))
    assert not few_outside_mode.reliable and "needs 10" in few_outside_mode.note
    assert entropy_estimate(np.array([40, 30, 30])).reliable
    tie = top_share_estimate(np.array([50, 48, 2]))
    assert not tie.reliable and "runner-up" in tie.note
    assert top_share_estimate(np.array([80, 15, 5])).reliable
    same = jsd_estimate(np.array([50, 50]), np.array([52, 48]))
    assert not same.reliable and "0.05" in same.note
    assert jsd_estimate(np.array([80, 20]), np.array([20, 80])).reliable
    # The flags reach the tables: the metric rows and the summary's `unreliable` note.
    rows = count_metrics(np.array([28, 1, 1]), "m").set_index("metric")
    assert not rows.at["entropy_bits", "reliable"] and rows.at["entropy_bits", "note"]
    few = sampled_distribution(pd.DataFrame({"model": "m", "text": ["7"] * 28 + ["3", "9"], "temperature": 1.0}),
                               candidates=["3", "7", "9"])
    assert "entropy_bits:" in few.summary()["unreliable"]


def test_g_test_keeps_every_answer_with_enough_expected_samples():
    bins = merge_small_bins(np.array([50.0, 30.0, 10.0, 6.0, 3.0, 1.0]))
    assert bins[:3] == [[0], [1], [2]] and sorted(bins[-1]) == [3, 4, 5]  # 3 + 1 < 5, so 6 joins them
    probabilities = [0.5, 0.3, 0.1, 0.06, 0.03, 0.01]
    exact = AnswerDistribution("m", "exact", 1.0,
                               pd.DataFrame({"answer": list("abcdef"), "probability": probabilities}))
    texts = ["a"] * 52 + ["b"] * 29 + ["c"] * 9 + ["d"] * 6 + ["e"] * 3 + ["f"] * 1
    sampled = sampled_distribution(pd.DataFrame({"model": "m", "text": texts, "temperature": 1.0}))
    result = agreement_with_exact(sampled, exact)
    assert result.method == G_TEST and result.dof == 3 and result.p_value > 0.5
    assert sorted(result.merged) == ["d", "e", "f"] and result.n == 100 and len(result.table) == 4


def test_distinct_n_and_string_equivalence():
    assert distinct_n(["a b c", "a b c"], 1) == pytest.approx(0.5)
    assert distinct_n(["a b c", "d e f"], 2) == pytest.approx(1.0)
    vectors = np.eye(3, dtype=np.float32)
    assert equivalence_classes(["Hello!", "hello", "Bye"], vectors) == [0, 0, 1]


def test_embedding_equivalence_diversity_and_clusters():
    texts = ["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock markets fell sharply today.",
             "Shares dropped steeply on the stock market today."]
    from workbench.embeddings import embed

    assert equivalence_classes(texts, embed(texts)) == [0, 0, 1, 1]
    samples = pd.DataFrame({"model": ["a", "a", "b", "b"] * 2, "text": texts * 2, "sample_index": range(8)})
    metrics = text_metrics(samples, k=2, n_boot=50).set_index(["model", "metric"])
    assert metrics.loc[("a", "distinct_at_2"), "value"] == pytest.approx(1.0)  # a's texts are paraphrases
    assert metrics.loc[("b", "distinct_at_2"), "value"] == pytest.approx(1.0)
    same = pd.DataFrame({"model": ["c"] * 4, "text": ["same"] * 4, "sample_index": range(4)})
    assert text_metrics(same, k=2, n_boot=20).set_index("metric").at["embedding_diversity", "value"] == pytest.approx(
        0.0, abs=1e-5)
    clusters = semantic_clusters(samples)
    assert clusters.points["cluster"].nunique() == 2
    assert set(clusters.clusters["label"]) <= set(texts)
    assert clusters.shares.groupby("model")["share"].sum().tolist() == pytest.approx([1.0, 1.0])


# -- exact distributions on the real models ---------------------------------------------------


def test_exact_distribution_is_a_distribution_and_separates_prefixes(sampler):
    prompt = sampler.library.get("mode-collapse/random-number-completion")
    dist = exact_distribution(sampler, "gemma-3-270m", prompt)
    probs = dist.probabilities()
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(probs) == {*prompt.spec.answer_space.values(), "(other)"}
    # "1" only counts when a terminator follows, so "10".."19" and "100" keep their own mass.
    assert probs["1"] < dist.start_mass and dist.in_space_mass <= dist.start_mass
    assert distribution_metrics(dist).set_index("metric").at["entropy_bits", "method"] == "exact"


def test_samples_agree_with_the_exact_distribution(sampler):
    """The G-test on the unpooled answers does not reject at p = 0.01 (fixed seed, most mass in the space)."""
    prompt = sampler.library.get(DIGITS)
    exact = exact_distribution(sampler, "gemma-3-270m", prompt)
    assert exact.in_space_mass > 0.8
    run = sampler.sample("gemma-3-270m", prompt, n=400, seed=0)
    sampled = sampled_distribution(run, prompt.spec.answer_space)
    result = agreement_with_exact(sampled, exact)
    assert result.p_value > 0.01, result.table
    # Every answer with 5 expected samples keeps its own degree of freedom (the old test pooled to 1-3).
    expected = 400 * np.array(list(exact.probabilities().values()))
    assert result.dof >= (expected >= 5).sum() - 1, result.table
    # And the test has power: the same samples against another model's exact distribution are rejected.
    other = exact_distribution(sampler, "smollm2-135m-instruct", prompt)
    assert agreement_with_exact(sampled, other).p_value < 0.01


def test_exact_temperature_sweep_flattens_and_sampled_sweep_has_cis(sampler):
    prompt = sampler.library.get(DIGITS)
    frame = temperature_sweep(sampler, ["gemma-3-270m"], prompt, [0.3, 1.0])
    entropy = frame[frame["metric"] == "entropy_bits"].set_index("temperature")["value"]
    assert entropy[1.0] > entropy[0.3] and (frame["method"] == "exact").all()
    # One pass for every temperature equals separate passes.
    single = exact_distributions(sampler, "gemma-3-270m", prompt, [1.0])[0]
    assert distribution_metrics(single).set_index("metric").at["entropy_bits", "value"] == pytest.approx(entropy[1.0])
    assert list(frame.columns) == SWEEP_COLUMNS and set(frame["metric"]) == set(ANSWER_METRICS)
    # Each point says what dominates it: its top answer, P(other), and a warning exactly when P(other) > 0.5.
    assert ((frame["warning"] != "") == (frame["p_other"] > 0.5)).all()
    assert (frame["top_answer"] != "").all()
    sampled = temperature_sweep(sampler, ["smollm2-135m-instruct"], "Name a colour:", [0.5, 1.0], n=8,
                                method="sampled")
    intervals = sampled.dropna(subset=["ci_low"])  # distinct answers is a count of the sample: no interval
    assert (sampled["method"] == "sampled").all() and (intervals["ci_low"] <= intervals["value"]).all()
    assert (sampled["n"] == 8).all() and not sampled["estimator"].isna().any()


def test_collection_summary_corrects_p_values(sampler):
    frame = collection_summary(sampler, ["gemma-3-270m", "smollm2-135m-instruct"], "mode-collapse", n=6,
                               prompts=["random-digit-sequence", "coin-flip-completion"], correction="bh",
                               n_permutations=200)
    assert list(frame["prompt"]) == ["mode-collapse/random-digit-sequence", "mode-collapse/coin-flip-completion"]
    assert (frame["p_adjusted"] >= frame["p_value"]).all() and (frame["correction"] == "Benjamini-Hochberg").all()
    assert {"entropy_gemma-3-270m", "top_smollm2-135m-instruct", "jsd", "entropy_diff"} <= set(frame.columns)
    assert {"entropy_in_space_gemma-3-270m", "top_share_in_space_gemma-3-270m", "p_other_smollm2-135m-instruct",
            "jsd_low", "jsd_high", "unreliable", "warning", "method"} <= set(frame.columns)


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_names_what_to_change(sampler, tmp_path):
    empty = pd.DataFrame(columns=["model", "text", "temperature"])
    with pytest.raises(WorkbenchError, match="no samples"):
        sampled_distribution(empty)
    with pytest.raises(WorkbenchError, match="no answers"):
        answer_metrics([], "m")
    with pytest.raises(WorkbenchError, match="needs temperatures"):
        temperature_sweep(sampler, ["gemma-3-270m"], sampler.library.get(DIGITS), [])
    with pytest.raises(WorkbenchError, match="no answer space"):
        exact_distribution(sampler, "gemma-3-270m", sampler.library.get("mode-collapse/tell-a-joke"))
    a = sampler.sample("gemma-3-270m", "One two", n=2, max_tokens=2)
    b = sampler.sample("smollm2-135m-instruct", "Three four", n=2, max_tokens=2)
    with pytest.raises(WorkbenchError, match="different prompts"):
        compare_runs([a, b])

    from workbench.prompts import load_library

    path = tmp_path / "c.yaml"
    path.write_text("name: c\ndescription: d\nversion: 1\nprompts:\n  - id: p\n    kind: completion\n"
                    "    text: 'Pick:'\n    answer_space: {candidates: ['a', 'b'], scored_as: '{{ answer[5:] }}'}\n")
    prompt = load_library([path]).get("c/p")
    with pytest.raises(WorkbenchError, match="tokenise to nothing"):
        exact_distribution(sampler, "gemma-3-270m", prompt)


def test_exact_distributions_are_kept_in_the_store_and_answered_from_it(sampler, monkeypatch):
    from workbench.backends import hf

    prompt = sampler.library.get("mode-collapse/random-number-completion")
    first = exact_distribution(sampler, "gemma-3-270m", prompt, 1.5)

    def refuse(*args, **kwargs):
        raise AssertionError("scored again although the store holds these scores")

    monkeypatch.setattr(hf.HFBackend, "score_candidates", refuse)
    again = exact_distribution(sampler, "gemma-3-270m", prompt, 1.5)
    pd.testing.assert_frame_equal(first.table, again.table)
    # Another temperature is another key: it is scored, not mistaken for the stored one.
    with pytest.raises(AssertionError, match="scored again"):
        exact_distribution(sampler, "gemma-3-270m", prompt, 1.0)


def test_the_sign_flip_test_above_its_exact_limit_agrees_with_every_sign_pattern():
    # 18 pairs: Monte Carlo (20000 patterns) against the exact p-value from all 2**18 patterns, computed here.
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.15, 0.3):
        d = rng.normal(shift, 0.5, 18)
        signs = 1 - 2 * ((np.arange(2 ** 18)[:, None] >> np.arange(18)) & 1)
        exact = float(np.mean(np.abs((signs * d).mean(axis=1)) >= abs(d.mean()) - 1e-12))
        assert sign_flip_test(d) == pytest.approx(exact, abs=0.01), (shift, exact)
