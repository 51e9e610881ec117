"""Comparing models: divergences with intervals and permutation tests, differences with CIs, the report
of one prompt on several models, and a mode-collapse summary of a model pair across a collection.

Models with different tokenisers are compared on strings (answers, continuations), never on
token ids: every function here takes answers or answer distributions. Estimators and intervals
are those of `workbench.analysis.estimators` (bias-corrected JSD with a normal interval, MOVER for
entropy differences, Newcombe for share differences), each result naming its estimator, its
interval and whether it is in the regime where that interval was checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from workbench.analysis.answers import Normaliser, answers_of
from workbench.analysis.distributions import (
    AnswerDistribution,
    can_be_exact,
    exact_distribution,
    sampled_distribution,
)
from workbench.analysis.estimators import (
    CONFIDENCE,
    NO_INTERVAL,
    Estimate,
    entropy_difference_estimate,
    jsd_estimate,
    share_difference_estimate,
)
from workbench.analysis.statistics import (
    DEFAULT_PERMUTATIONS,
    adjust_pvalues,
    answer_counts,
    jensen_shannon,
    permutation_test,
    smoothed_kl,
)
from workbench.analysis.summaries import (
    ANSWER_METRICS,
    OTHER_WARNING_THRESHOLD,
    answer_estimates,
    distribution_summary,
    other_warning,
    unreliable_note,
)
from workbench.config import SamplingOverrides
from workbench.errors import WorkbenchError
from workbench.prompts import OTHER_ANSWER, AnswerFn, LibraryPrompt, first_line

if TYPE_CHECKING:
    from workbench.sampler import PromptInput, Sampler, SampleRun

CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def compare_answers(answers_a: list[str], answers_b: list[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                    seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Bias-corrected JSD with its interval, plug-in JSD, smoothed KL both ways, and the permutation p-value.

    Keys: jsd, jsd_ci_low, jsd_ci_high, jsd_estimator, jsd_interval, jsd_reliable, jsd_note,
    jsd_plug_in (the permutation test's statistic), kl_ab, kl_ba (add-1/2 smoothed, no interval),
    p_value.
    """
    ca, cb = answer_counts(answers_a), answer_counts(answers_b)
    keys = list(dict.fromkeys([*ca, *cb]))
    jsd = jsd_estimate(np.array([ca.get(k, 0.0) for k in keys]), np.array([cb.get(k, 0.0) for k in keys]),
                       confidence)
    return {
        "jsd": jsd.value, "jsd_ci_low": jsd.ci_low, "jsd_ci_high": jsd.ci_high, "jsd_estimator": jsd.estimator,
        "jsd_interval": jsd.interval, "jsd_reliable": jsd.reliable, "jsd_note": jsd.note,
        "jsd_plug_in": jensen_shannon(ca, cb),
        "kl_ab": smoothed_kl(ca, cb),
        "kl_ba": smoothed_kl(cb, ca),
        "p_value": permutation_test(answers_a, answers_b, n_permutations, seed),
    }


def _labelled_counts(answers: list[str]) -> tuple[list[str], np.ndarray]:
    labels, counts = np.unique(np.array(answers, dtype=object).astype(str), return_counts=True)
    return labels.tolist(), counts.astype(float)


def _in_space(labels: list[str], counts: np.ndarray) -> np.ndarray:
    return counts[[label != OTHER_ANSWER for label in labels]]


def difference_estimate(answers_a: list[str], answers_b: list[str], metric: str = "entropy_bits",
                        confidence: float = CONFIDENCE) -> Estimate:
    """metric(B) − metric(A) of two independent samples of answers, as an Estimate (see paired_difference)."""
    if metric not in ANSWER_METRICS:
        raise WorkbenchError(f"unknown metric {metric!r}; use {', '.join(ANSWER_METRICS[:-1])} or {ANSWER_METRICS[-1]}")
    if not answers_a or not answers_b:
        raise WorkbenchError("a paired difference needs answers from both models")
    labels_a, counts_a = _labelled_counts(answers_a)
    labels_b, counts_b = _labelled_counts(answers_b)
    if metric == "entropy_bits":
        return entropy_difference_estimate(counts_a, counts_b, confidence)
    if metric == "entropy_bits_in_space":
        return entropy_difference_estimate(_in_space(labels_a, counts_a), _in_space(labels_b, counts_b), confidence)
    estimates_a = answer_estimates(labels_a, counts_a, "sampled", confidence)
    estimates_b = answer_estimates(labels_b, counts_b, "sampled", confidence)
    if metric == "distinct_answers":
        difference = estimates_b[metric].value - estimates_a[metric].value
        return Estimate(difference, np.nan, np.nan, "difference of distinct answers observed (grows with n)",
                        NO_INTERVAL, True)
    if metric == "p_other":
        def count_and_n(labels: list[str], counts: np.ndarray) -> tuple[float, float]:
            return float(counts.sum() - _in_space(labels, counts).sum()), float(counts.sum())
    elif metric == "top1_mass":
        def count_and_n(labels: list[str], counts: np.ndarray) -> tuple[float, float]:
            return float(counts.max()), float(counts.sum())
    else:  # top_share_in_space
        def count_and_n(labels: list[str], counts: np.ndarray) -> tuple[float, float]:
            inside = _in_space(labels, counts)
            return (float(inside.max()) if len(inside) else 0.0), float(inside.sum())
    (count_a, n_a), (count_b, n_b) = count_and_n(labels_a, counts_a), count_and_n(labels_b, counts_b)
    if n_a == 0 or n_b == 0:
        return Estimate(np.nan, np.nan, np.nan, f"difference of {metric}", NO_INTERVAL, False,
                        "no answers inside the answer space")
    both_reliable = estimates_a[metric].reliable and estimates_b[metric].reliable
    return share_difference_estimate(count_a, n_a, count_b, n_b, confidence, reliable=both_reliable)


def paired_difference(answers_a: list[str], answers_b: list[str], metric: str = "entropy_bits",
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """metric(B) − metric(A) of two models' samples with its interval: entropies by MOVER from their score
    intervals, shares (top1_mass, top_share_in_space, p_other) by Newcombe's hybrid score interval.

    Returns difference, ci_low, ci_high, estimator, interval, reliable, note.
    """
    estimate = difference_estimate(answers_a, answers_b, metric, confidence)
    return {"difference": estimate.value, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
            "estimator": estimate.estimator, "interval": estimate.interval, "reliable": estimate.reliable,
            "note": estimate.note}


def check_same_prompt(runs: list[SampleRun]) -> None:
    """Refuse to compare runs of different prompts (different library refs or different inputs)."""
    keys = set()
    for run in runs:
        ref = run.samples["prompt_ref"].iloc[0] if "prompt_ref" in run.samples and len(run.samples) else None
        if isinstance(ref, str) and ref:
            keys.add(("ref", ref))  # collection/prompt-id with its choices (variables, perturbation, framing)
        else:
            keys.add(("messages", str(run.rendered.messages)) if run.rendered.messages else ("text", run.rendered.text))
    if len(keys) > 1:
        raise WorkbenchError(
            "these runs are of different prompts; compare runs of one prompt (same library prompt and choices, "
            "or the same text)"
        )


def compare_runs(runs: list[SampleRun], normaliser: Normaliser = None, n_permutations: int = DEFAULT_PERMUTATIONS,
                 seed: int = 0) -> pd.DataFrame:
    """Pairwise JSD, smoothed KL and permutation p-values between runs of the same prompt (one row per pair)."""
    if len(runs) < 2:
        raise WorkbenchError("compare at least two runs")
    check_same_prompt(runs)
    answers = [answers_of(run.texts, normaliser) for run in runs]
    rows = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            stats = compare_answers(answers[i], answers[j], n_permutations, seed)
            a, b = runs[i].model, runs[j].model
            rows.append({"a": a, "b": b, "pair": f"{a} vs {b}", **stats})
    return pd.DataFrame(rows)


def _ci_text(low: float, high: float) -> str:
    return "" if np.isnan(low) or np.isnan(high) else f"{low:.2f}-{high:.2f}"


def summary_row(run: SampleRun, dist: AnswerDistribution) -> dict[str, Any]:
    """One model's line of a comparison: both views of its sampled answers (`distribution_summary`) with the run.

    Adds kind, family, distinct_continuations and the CIs as text (entropy_ci, top_share_ci,
    p_other_ci, entropy_in_space_ci, top_share_in_space_ci) to the summary's keys.
    """
    summary = distribution_summary(dist)
    row: dict[str, Any] = {
        "model": run.model, "kind": run.samples["model_kind"].iloc[0], "family": run.samples["model_family"].iloc[0],
        "distinct_continuations": len(set(run.texts)),
    }
    row.update(summary)
    row["model"] = run.model
    row["n"] = run.n
    for name, text in (("entropy_bits", "entropy_ci"), ("top_share", "top_share_ci"), ("p_other", "p_other_ci"),
                       ("entropy_bits_in_space", "entropy_in_space_ci"),
                       ("top_share_in_space", "top_share_in_space_ci")):
        row[text] = _ci_text(summary[f"{name}_ci_low"], summary[f"{name}_ci_high"])
    return row


@dataclass
class PromptComparison:
    """Everything `workbench compare` reports for one prompt on several models."""

    runs: list[SampleRun]
    summary: pd.DataFrame  # one row per model: both views of its sampled answers (summary_row), method and n
    distributions: list[AnswerDistribution]  # exact where possible, else sampled (with CIs)
    sampled: list[AnswerDistribution]
    divergence: pd.DataFrame  # one row per model pair: compare_answers (corrected JSD with CI, KL, permutation p)
    family_note: str


def compare_prompt(
    sampler: Sampler,
    models: list[str],
    prompt: PromptInput,
    n: int,
    seed: int = 0,
    answer: AnswerFn | None = None,
    exact: bool = True,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    chat: bool = False,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
    **overrides: Unpack[SamplingOverrides],
) -> PromptComparison:
    """Sample one prompt on several models and compare: exact distributions where the backend can score the
    prompt's answer space, sampled ones with Jeffreys CIs always, and pairwise divergences on the answers.

    `summary` is built from the sampled distributions (its `method` column says so); `distributions`
    holds the exact ones where they exist."""
    if len(models) < 2:
        raise WorkbenchError("compare needs two or more models")
    choices: dict[str, Any] = {"variables": variables, "perturbation": perturbation, "framing": framing}
    runs = sampler.compare(models, prompt, n, seed=seed, chat=chat, **choices, **overrides)
    space = prompt.spec.answer_space if isinstance(prompt, LibraryPrompt) else None
    normaliser = answer or space or first_line
    sampled = [sampled_distribution(run, normaliser) for run in runs]
    distributions = list(sampled)
    if exact and space is not None and answer is None:
        for i, (model, run) in enumerate(zip(models, runs, strict=True)):
            if can_be_exact(sampler, model, prompt) and run.config.temperature > 0:
                distributions[i] = exact_distribution(sampler, model, prompt, run.config.temperature, **choices)
    summary = pd.DataFrame([summary_row(run, dist) for run, dist in zip(runs, sampled, strict=True)])
    divergence = compare_runs(runs, normaliser, n_permutations, seed)
    return PromptComparison(runs, summary, distributions, sampled, divergence, sampler.registry.describe_pair(models))


def collection_summary(
    sampler: Sampler,
    models: list[str],
    collection: str,
    n: int = 100,
    temperature: float = 1.0,
    seed: int = 0,
    correction: str = "holm",
    prompts: list[str] | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
) -> pd.DataFrame:
    """One row per prompt of a collection for a model pair: both views per model, differences, JSD, p-values.

    Answers are the prompt's answer-space normaliser where it has one, else the first line. Per
    model: entropy_<m> (Miller-Madow, total view), entropy_in_space_<m>, top_<m> (may be
    "(other)"), top_share_<m>, top_in_space_<m>, top_share_in_space_<m>, p_other_<m>. Then
    entropy_diff (B − A) with its MOVER interval, the bias-corrected JSD with its interval, the
    `*_reliable` flags, `unreliable` notes and the P(other) `warning`. The p-value is a
    permutation test of the plug-in JSD; `correction` (holm or bh) is applied across the prompts
    and named in the `correction` column.
    """
    if len(models) != 2:
        raise WorkbenchError(f"a collection summary compares two models (base, tuned); got {len(models)}")
    if correction not in CORRECTIONS:
        raise WorkbenchError(f"unknown correction {correction!r}; use holm or bh")
    chosen = sampler.library.filter(collection=collection)
    if prompts:
        chosen = [p for p in chosen if p.spec.id in prompts or p.ref in prompts]
    if not chosen:
        raise WorkbenchError(f"no prompts in collection {collection!r}; see `workbench prompts list`")
    from tqdm.auto import tqdm

    rows = []
    for prompt in tqdm(chosen, desc=f"{collection} prompts", unit="prompt", leave=False, disable=not sampler.progress):
        normaliser = prompt.spec.answer_space
        answers = {}
        for model in models:
            run = sampler.sample(model, prompt, n, seed=seed, temperature=temperature)
            answers[model] = answers_of(run.texts, normaliser)
        a, b = answers[models[0]], answers[models[1]]
        stats = compare_answers(a, b, n_permutations, seed)
        diff = difference_estimate(a, b, "entropy_bits")
        row: dict[str, Any] = {"prompt": prompt.ref, "answers": "answer space" if normaliser else "first line", "n": n,
                               "method": "sampled"}
        notes, warnings = [], []
        for model in models:
            labels, counts = _labelled_counts(answers[model])
            estimates = answer_estimates(labels, counts, "sampled", has_space=normaliser is not None)
            row[f"entropy_{model}"] = estimates["entropy_bits"].value
            row[f"entropy_in_space_{model}"] = estimates["entropy_bits_in_space"].value
            row[f"top_{model}"] = estimates["top_answer"]
            row[f"top_share_{model}"] = estimates["top1_mass"].value
            row[f"top_in_space_{model}"] = estimates["top_answer_in_space"]
            row[f"top_share_in_space_{model}"] = estimates["top_share_in_space"].value
            row[f"p_other_{model}"] = estimates["p_other"].value
            if note := unreliable_note(estimates):
                notes.append(f"{model}: {note}")
            if warning := other_warning(model, estimates["p_other"].value, OTHER_WARNING_THRESHOLD):
                warnings.append(warning)
        row.update(entropy_diff=diff.value, entropy_diff_low=diff.ci_low, entropy_diff_high=diff.ci_high,
                   entropy_diff_reliable=diff.reliable, jsd=stats["jsd"], jsd_low=stats["jsd_ci_low"],
                   jsd_high=stats["jsd_ci_high"], jsd_reliable=stats["jsd_reliable"], p_value=stats["p_value"],
                   entropy_estimator=diff.estimator, entropy_interval=diff.interval,
                   jsd_estimator=stats["jsd_estimator"], jsd_interval=stats["jsd_interval"],
                   unreliable="; ".join(notes), warning=" ".join(warnings))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["p_adjusted"] = adjust_pvalues(list(frame["p_value"]), correction)
    frame["correction"] = CORRECTIONS[correction]
    frame["pair"] = f"{models[0]} vs {models[1]}"
    return frame
