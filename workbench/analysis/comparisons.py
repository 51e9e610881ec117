"""Comparing models: divergences with permutation tests, paired differences with CIs, the report of
one prompt on several models, and a mode-collapse summary of a model pair across a collection.

Models with different tokenisers are compared on strings (answers, continuations), never on
token ids: every function here takes answers or answer distributions.
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
from workbench.analysis.metrics import ANSWER_METRICS, answer_metric_values, answer_metrics, distribution_metrics
from workbench.analysis.statistics import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    adjust_pvalues,
    answer_counts,
    bootstrap_counts,
    jensen_shannon,
    percentile_interval,
    permutation_test,
    smoothed_kl,
)
from workbench.config import SamplingOverrides
from workbench.errors import WorkbenchError
from workbench.prompts import AnswerFn, LibraryPrompt, first_line

if TYPE_CHECKING:
    from workbench.sampler import PromptInput, Sampler, SampleRun

CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def compare_answers(answers_a: list[str], answers_b: list[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                    seed: int = 0) -> dict[str, float]:
    """JSD, smoothed KL both ways, and the permutation p-value of two samples of answers."""
    ca, cb = answer_counts(answers_a), answer_counts(answers_b)
    return {
        "jsd": jensen_shannon(ca, cb),
        "kl_ab": smoothed_kl(ca, cb),
        "kl_ba": smoothed_kl(cb, ca),
        "p_value": permutation_test(answers_a, answers_b, n_permutations, seed),
    }


def paired_difference(answers_a: list[str], answers_b: list[str], metric: str = "entropy_bits",
                      confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """metric(B) - metric(A) with a bootstrap CI (each model's samples resampled independently)."""
    if metric not in ANSWER_METRICS:
        raise WorkbenchError(f"unknown metric {metric!r}; use {', '.join(ANSWER_METRICS[:-1])} or {ANSWER_METRICS[-1]}")
    if not answers_a or not answers_b:
        raise WorkbenchError("a paired difference needs answers from both models")
    row = ANSWER_METRICS.index(metric)
    rng = np.random.default_rng(seed)  # one stream, so the two samples' resamples are independent

    def point_and_replicates(answers: list[str]) -> tuple[float, np.ndarray]:
        counts = np.array(list(answer_counts(answers).values()))
        n = counts.sum()
        point = answer_metric_values((counts / n)[None, :])[row, 0]
        return float(point), answer_metric_values(bootstrap_counts(counts, n_boot, rng) / n)[row]

    point_a, boot_a = point_and_replicates(answers_a)
    point_b, boot_b = point_and_replicates(answers_b)
    low, high = percentile_interval(boot_b - boot_a, confidence)
    return {"difference": point_b - point_a, "ci_low": low, "ci_high": high}


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


def summary_row(run: SampleRun, dist: AnswerDistribution, seed: int = 0) -> dict[str, Any]:
    """One model's line of a comparison: distinct continuations and answers, entropy with CI, top answer with CI."""
    entropy = distribution_metrics(dist, seed=seed).set_index("metric").loc["entropy_bits"]
    top = dist.table.iloc[0]
    return {
        "model": run.model, "kind": run.samples["model_kind"].iloc[0], "family": run.samples["model_family"].iloc[0],
        "n": run.n, "distinct_continuations": len(set(run.texts)),
        "distinct_answers": int((dist.table["count"] > 0).sum()),
        "entropy_bits": round(float(entropy["value"]), 3),
        "entropy_ci": f"{entropy['ci_low']:.2f}-{entropy['ci_high']:.2f}",
        "top_answer": top["answer"], "top_share": round(float(top["probability"]), 3),
        "top_share_ci": f"{top['ci_low']:.2f}-{top['ci_high']:.2f}",
    }


@dataclass
class PromptComparison:
    """Everything `workbench compare` reports for one prompt on several models."""

    runs: list[SampleRun]
    summary: pd.DataFrame  # one row per model: distinct continuations/answers, entropy with CI, top answer
    distributions: list[AnswerDistribution]  # exact where possible, else sampled (with CIs)
    sampled: list[AnswerDistribution]
    divergence: pd.DataFrame  # one row per model pair: jsd, smoothed KL, permutation p-value
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
    prompt's answer space, sampled ones with bootstrap CIs always, and pairwise divergences on the answers."""
    if len(models) < 2:
        raise WorkbenchError("compare needs two or more models")
    choices: dict[str, Any] = {"variables": variables, "perturbation": perturbation, "framing": framing}
    runs = sampler.compare(models, prompt, n, seed=seed, chat=chat, **choices, **overrides)
    space = prompt.spec.answer_space if isinstance(prompt, LibraryPrompt) else None
    normaliser = answer or space or first_line
    sampled = [sampled_distribution(run, normaliser, seed=seed) for run in runs]
    distributions = list(sampled)
    if exact and space is not None and answer is None:
        for i, (model, run) in enumerate(zip(models, runs, strict=True)):
            if can_be_exact(sampler, model, prompt) and run.config.temperature > 0:
                distributions[i] = exact_distribution(sampler, model, prompt, run.config.temperature, **choices)
    summary = pd.DataFrame([summary_row(run, dist, seed) for run, dist in zip(runs, sampled, strict=True)])
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
    """One row per prompt of a collection for a model pair: entropies, top answers, JSD and corrected p-values.

    Answers are the prompt's answer-space normaliser where it has one, else the first line. The
    p-value is a permutation test of the JSD; `correction` (holm or bh) is applied across the
    prompts and named in the `correction` column.
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
    for prompt in tqdm(chosen, desc=f"{collection} prompts", unit="prompt", disable=not sampler.progress):
        normaliser = prompt.spec.answer_space
        answers = {}
        for model in models:
            run = sampler.sample(model, prompt, n, seed=seed, temperature=temperature)
            answers[model] = answers_of(run.texts, normaliser)
        a, b = answers[models[0]], answers[models[1]]
        stats = compare_answers(a, b, n_permutations, seed)
        diff = paired_difference(a, b, "entropy_bits", n_boot=500, seed=seed)
        row: dict[str, Any] = {"prompt": prompt.ref, "answers": "answer space" if normaliser else "first line", "n": n}
        for model in models:
            metrics = answer_metrics(answers[model], model, n_boot=500, seed=seed).set_index("metric")
            row[f"entropy_{model}"] = metrics.at["entropy_bits", "value"]
            top = pd.Series(answers[model]).value_counts()
            row[f"top_{model}"] = top.index[0]
            row[f"top_share_{model}"] = top.iloc[0] / len(answers[model])
        row.update(entropy_diff=diff["difference"], entropy_diff_low=diff["ci_low"], entropy_diff_high=diff["ci_high"],
                   jsd=stats["jsd"], p_value=stats["p_value"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["p_adjusted"] = adjust_pvalues(list(frame["p_value"]), correction)
    frame["correction"] = CORRECTIONS[correction]
    frame["pair"] = f"{models[0]} vs {models[1]}"
    return frame
