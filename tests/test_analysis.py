"""Distribution analysis: metrics on known distributions, exact scoring against a plain forward pass,
sampled against exact, sweeps, clusters, comparisons and bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.comparisons import collection_summary, compare_answers, compare_runs, paired_difference
from workbench.analysis.distributions import (
    chi_square_against_exact,
    exact_distribution,
    exact_distributions,
    sampled_distribution,
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
    smoothed_kl,
)
from workbench.analysis.sweeps import temperature_sweep
from workbench.errors import WorkbenchError

DIGITS = "mode-collapse/random-digit-sequence"


# -- metrics and divergences on known distributions -----------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_entropy_of_a_uniform_over_k_is_log2_k(k):
    frame = count_metrics(np.full(k, 7), "m").set_index("metric")
    assert frame.at["entropy_bits", "value"] == pytest.approx(math.log2(k))
    assert frame.at["top1_mass", "value"] == pytest.approx(1 / k)
    assert frame.at["distinct_answers", "value"] == k
    assert frame.at["entropy_bits", "ci_low"] <= frame.at["entropy_bits", "value"] + 1e-9


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


def test_bootstrap_interval_narrows_with_more_samples():
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
    assert set(stats) == {"jsd", "kl_ab", "kl_ba", "p_value"}


def test_paired_difference_has_the_sign_and_a_ci():
    collapsed, spread = ["x"] * 90 + ["y"] * 10, list("abcdefghij") * 10
    diff = paired_difference(spread, collapsed, "entropy_bits", n_boot=300)
    assert diff["difference"] < 0 and diff["ci_low"] <= diff["difference"] <= diff["ci_high"] < 0


def test_holm_and_benjamini_hochberg():
    assert adjust_pvalues([0.01, 0.02, 0.03], "holm") == pytest.approx([0.03, 0.04, 0.04])
    assert adjust_pvalues([0.01, 0.02, 0.03], "bh") == pytest.approx([0.03, 0.03, 0.03])
    assert adjust_pvalues([0.04, 0.5], "bh") == pytest.approx([0.08, 0.5])
    with pytest.raises(WorkbenchError, match="holm or bh"):
        adjust_pvalues([0.1], "bonferroni")


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
    """Chi-square goodness of fit does not reject at p = 0.01 (fixed seed, most mass in the space)."""
    prompt = sampler.library.get(DIGITS)
    exact = exact_distribution(sampler, "gemma-3-270m", prompt)
    assert exact.in_space_mass > 0.8
    run = sampler.sample("gemma-3-270m", prompt, n=400, seed=0)
    sampled = sampled_distribution(run, prompt.spec.answer_space)
    result, table = chi_square_against_exact(sampled, exact)
    assert result.pvalue > 0.01, table
    # And the test has power: the same samples against another model's exact distribution are rejected.
    other = exact_distribution(sampler, "smollm2-135m-instruct", prompt)
    assert chi_square_against_exact(sampled, other)[0].pvalue < 0.01


def test_exact_temperature_sweep_flattens_and_sampled_sweep_has_cis(sampler):
    prompt = sampler.library.get(DIGITS)
    frame = temperature_sweep(sampler, ["gemma-3-270m"], prompt, [0.3, 1.0])
    entropy = frame[frame["metric"] == "entropy_bits"].set_index("temperature")["value"]
    assert entropy[1.0] > entropy[0.3] and (frame["method"] == "exact").all()
    # One pass for every temperature equals separate passes.
    single = exact_distributions(sampler, "gemma-3-270m", prompt, [1.0])[0]
    assert distribution_metrics(single).set_index("metric").at["entropy_bits", "value"] == pytest.approx(entropy[1.0])
    sampled = temperature_sweep(sampler, ["smollm2-135m-instruct"], "Name a colour:", [0.5, 1.0], n=8,
                                method="sampled")
    assert (sampled["method"] == "sampled").all() and (sampled["ci_low"] <= sampled["value"]).all()


def test_collection_summary_corrects_p_values(sampler):
    frame = collection_summary(sampler, ["gemma-3-270m", "smollm2-135m-instruct"], "mode-collapse", n=6,
                               prompts=["random-digit-sequence", "coin-flip-completion"], correction="bh",
                               n_permutations=200)
    assert list(frame["prompt"]) == ["mode-collapse/random-digit-sequence", "mode-collapse/coin-flip-completion"]
    assert (frame["p_adjusted"] >= frame["p_value"]).all() and (frame["correction"] == "Benjamini-Hochberg").all()
    assert {"entropy_gemma-3-270m", "top_smollm2-135m-instruct", "jsd", "entropy_diff"} <= set(frame.columns)


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
