"""Comparing models: divergences with permutation tests, paired differences with CIs, and a
mode-collapse summary of a model pair across a whole collection.

Models with different tokenisers are compared on strings (answers, continuations), never on
token ids: every function here takes answers or answer distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.metrics import answer_metrics

if TYPE_CHECKING:
    from workbench.distributions import AnswerDistribution
    from workbench.sampler import Sampler

DEFAULT_PERMUTATIONS = 2000
SMOOTHING = 0.5  # add-one-half (Jeffreys) smoothing of counts for KL, which is infinite on a zero


def _aligned(p: dict[str, float], q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = list(dict.fromkeys([*p, *q]))
    a = np.array([p.get(k, 0.0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0.0) for k in keys], dtype=float)
    if a.sum() <= 0 or b.sum() <= 0:
        raise WorkbenchError("a distribution to compare is empty")
    return a / a.sum(), b / b.sum()


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float((p[mask] * np.log2(p[mask] / q[mask])).sum())


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence in bits (0 for identical, 1 for disjoint distributions)."""
    a, b = _aligned(p, q)
    m = (a + b) / 2
    return max(0.0, 0.5 * _kl_bits(a, m) + 0.5 * _kl_bits(b, m))


def smoothed_kl(counts_p: dict[str, float], counts_q: dict[str, float], alpha: float = SMOOTHING) -> float:
    """KL(P || Q) in bits after adding `alpha` to every count of the union of answers."""
    keys = list(dict.fromkeys([*counts_p, *counts_q]))
    a = np.array([counts_p.get(k, 0.0) for k in keys], dtype=float) + alpha
    b = np.array([counts_q.get(k, 0.0) for k in keys], dtype=float) + alpha
    return _kl_bits(a / a.sum(), b / b.sum())


def _counts(answers: list[str]) -> dict[str, float]:
    keys, counts = np.unique(np.array(answers, dtype=object).astype(str), return_counts=True)
    return dict(zip(keys.tolist(), counts.astype(float).tolist()))


def permutation_test(answers_a: list[str], answers_b: list[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                     seed: int = 0) -> float:
    """p-value of the JSD between two samples of answers under the null that both come from one distribution."""
    if not answers_a or not answers_b:
        raise WorkbenchError("a permutation test needs answers from both models")
    observed = jensen_shannon(_counts(answers_a), _counts(answers_b))
    pooled = np.array([*answers_a, *answers_b], dtype=object).astype(str)
    categories, codes = np.unique(pooled, return_inverse=True)
    k, n_a = len(categories), len(answers_a)
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(n_permutations):
        shuffled = rng.permutation(codes)
        a = np.bincount(shuffled[:n_a], minlength=k).astype(float)
        b = np.bincount(shuffled[n_a:], minlength=k).astype(float)
        a, b = a / a.sum(), b / b.sum()
        m = (a + b) / 2
        jsd = 0.5 * _kl_bits(a, m) + 0.5 * _kl_bits(b, m)
        at_least += jsd >= observed - 1e-12
    return (at_least + 1) / (n_permutations + 1)


def compare_answers(answers_a: list[str], answers_b: list[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                    seed: int = 0) -> dict[str, float]:
    """JSD, smoothed KL both ways, and the permutation p-value of two samples of answers."""
    ca, cb = _counts(answers_a), _counts(answers_b)
    return {
        "jsd": jensen_shannon(ca, cb),
        "kl_ab": smoothed_kl(ca, cb),
        "kl_ba": smoothed_kl(cb, ca),
        "p_value": permutation_test(answers_a, answers_b, n_permutations, seed),
    }


def compare_distributions(a: "AnswerDistribution", b: "AnswerDistribution") -> dict[str, float]:
    """JSD and KL both ways between two distributions (exact or sampled); KL is smoothed for sampled counts."""
    pa, pb = a.probabilities(), b.probabilities()
    result = {"jsd": jensen_shannon(pa, pb)}
    if a.method == "sampled" and b.method == "sampled":
        ca = dict(zip(a.table["answer"], a.table["count"]))
        cb = dict(zip(b.table["answer"], b.table["count"]))
        result.update(kl_ab=smoothed_kl(ca, cb), kl_ba=smoothed_kl(cb, ca))
    else:
        tiny = 1e-12  # exact probabilities can be 0 for answers the other model gives
        x, y = _aligned(pa, pb)
        result.update(kl_ab=_kl_bits(x, np.maximum(y, tiny)), kl_ba=_kl_bits(y, np.maximum(x, tiny)))
    return result


def paired_difference(answers_a: list[str], answers_b: list[str], metric: str = "entropy_bits",
                      confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """metric(B) - metric(A) with a bootstrap CI (each model's samples resampled independently)."""
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2

    def value(answers: list[str]) -> float:
        frame = answer_metrics(answers, "x", n_boot=1)
        return float(frame.loc[frame["metric"] == metric, "value"].iloc[0])

    if metric not in ("entropy_bits", "top1_mass", "distinct_answers"):
        raise WorkbenchError(f"unknown metric {metric!r}; use entropy_bits, top1_mass or distinct_answers")
    a, b = np.array(answers_a, dtype=object), np.array(answers_b, dtype=object)
    diffs = [value(list(b[rng.integers(0, len(b), len(b))])) - value(list(a[rng.integers(0, len(a), len(a))]))
             for _ in range(n_boot)]
    return {"difference": value(answers_b) - value(answers_a), "ci_low": float(np.quantile(diffs, alpha)),
            "ci_high": float(np.quantile(diffs, 1 - alpha))}


def sign_flip_test(differences: list[float] | np.ndarray, n_permutations: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value that paired differences have mean 0 (sign-flip permutation test).

    Exact (every sign pattern) up to 20 pairs, Monte Carlo above that. Paired items (one
    statement scored by two models) vary far more between items than between models, so a
    paired test sees shifts an unpaired one misses.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        raise WorkbenchError("a sign-flip test needs at least one paired difference")
    observed = abs(d.mean())
    if len(d) <= 20:
        at_least, total = 0, 0
        for start in range(0, 2 ** len(d), 1 << 16):  # chunks of sign patterns keep memory small
            codes = np.arange(start, min(start + (1 << 16), 2 ** len(d)))[:, None]
            signs = 1 - 2 * ((codes >> np.arange(len(d))) & 1)
            at_least += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
            total += len(codes)
        return at_least / total
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_permutations, len(d)))
    at_least = int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (at_least + 1) / (n_permutations + 1)


def adjust_pvalues(p_values: list[float], method: str = "holm") -> list[float]:
    """Holm (family-wise error) or Benjamini-Hochberg ("bh", false discovery rate) adjusted p-values."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.empty(m)
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (m - rank) * p[i])
            adjusted[i] = min(1.0, running)
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, p[i] * m / (rank + 1))
            adjusted[i] = min(1.0, running)
    else:
        raise WorkbenchError(f"unknown correction {method!r}; use holm or bh")
    return adjusted.tolist()


def collection_summary(
    sampler: "Sampler",
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
    if correction not in ("holm", "bh"):
        raise WorkbenchError(f"unknown correction {correction!r}; use holm or bh")
    from workbench.distributions import answers_of

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
    frame["correction"] = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[correction]
    frame["pair"] = f"{models[0]} vs {models[1]}"
    return frame


def check_same_prompt(runs: list[Any]) -> None:
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


def compare_runs(runs: list[Any], normaliser: Any = None, n_permutations: int = DEFAULT_PERMUTATIONS,
                 seed: int = 0) -> pd.DataFrame:
    """Pairwise JSD, smoothed KL and permutation p-values between runs of the same prompt (one row per pair)."""
    from workbench.distributions import answers_of

    if len(runs) < 2:
        raise WorkbenchError("compare at least two runs")
    check_same_prompt(runs)
    answers = [answers_of(run.texts, normaliser) for run in runs]
    rows = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            stats = compare_answers(answers[i], answers[j], n_permutations, seed)
            rows.append({"a": runs[i].model, "b": runs[j].model, "pair": f"{runs[i].model} vs {runs[j].model}", **stats})
    return pd.DataFrame(rows)


@dataclass
class PromptComparison:
    """Everything `workbench compare` reports for one prompt on several models."""

    runs: list[Any]
    summary: pd.DataFrame  # one row per model: distinct continuations/answers, entropy with CI, top answer
    distributions: list["AnswerDistribution"]  # exact where possible, else sampled (with CIs)
    sampled: list["AnswerDistribution"]
    divergence: pd.DataFrame  # one row per model pair: jsd, smoothed KL, permutation p-value
    family_note: str


def compare_prompt(
    sampler: "Sampler",
    models: list[str],
    prompt: Any,
    n: int,
    seed: int = 0,
    answer: Callable[[str], str] | None = None,
    exact: bool = True,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    chat: bool = False,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
    **config_fields: Any,
) -> PromptComparison:
    """Sample one prompt on several models and compare: exact distributions where the backend can score the
    prompt's answer space, sampled ones with bootstrap CIs always, and pairwise divergences on the answers."""
    from workbench.analysis import first_line
    from workbench.distributions import exact_distribution, sampled_distribution
    from workbench.sweeps import can_be_exact

    if len(models) < 2:
        raise WorkbenchError("compare needs two or more models")
    choices = {"variables": variables, "perturbation": perturbation, "framing": framing}
    runs = sampler.compare(models, prompt, n, seed=seed, chat=chat, **choices, **config_fields)
    space = getattr(getattr(prompt, "spec", None), "answer_space", None)
    normaliser = answer or space or first_line
    sampled = [sampled_distribution(run, normaliser, seed=seed) for run in runs]
    distributions = list(sampled)
    if exact and space is not None and answer is None:
        for i, (model, run) in enumerate(zip(models, runs)):
            if can_be_exact(sampler, model, prompt) and run.config.temperature > 0:
                distributions[i] = exact_distribution(sampler, model, prompt, run.config.temperature, **choices)
    rows = []
    for run, dist in zip(runs, sampled):
        metrics = distribution_metrics_frame(dist, seed)
        entropy = metrics.loc["entropy_bits"]
        rows.append({
            "model": run.model, "kind": run.samples["model_kind"].iloc[0], "family": run.samples["model_family"].iloc[0],
            "n": run.n, "distinct_continuations": len(set(run.texts)), "distinct_answers": int((dist.table["count"] > 0).sum()),
            "entropy_bits": round(entropy["value"], 3),
            "entropy_ci": f"{entropy['ci_low']:.2f}-{entropy['ci_high']:.2f}",
            "top_answer": dist.table["answer"].iloc[0], "top_share": round(float(dist.table["probability"].iloc[0]), 3),
            "top_share_ci": f"{dist.table['ci_low'].iloc[0]:.2f}-{dist.table['ci_high'].iloc[0]:.2f}",
        })
    divergence = compare_runs(runs, normaliser, n_permutations, seed)
    return PromptComparison(runs, pd.DataFrame(rows), distributions, sampled, divergence,
                            sampler.registry.describe_pair(models))


def distribution_metrics_frame(dist: "AnswerDistribution", seed: int = 0) -> pd.DataFrame:
    """distribution_metrics indexed by metric name."""
    from workbench.metrics import distribution_metrics

    return distribution_metrics(dist, seed=seed).set_index("metric")
