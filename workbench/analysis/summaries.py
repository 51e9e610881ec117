"""Two views of every answer distribution: the total view and the in-space view.

The total view counts "(other)" (everything outside the answer space) as one answer; the in-space
view conditions on answering within the space. They tell different stories when much of the mass
is outside: a base model that puts 97 % of its mass on "(other)" has a total entropy of 0.3 bits
and a top answer "(other)" although it spreads its in-space answers over 3.2 bits. Every table
therefore carries both, with P(other), and a warning when P(other) is above a threshold.

`answer_estimates` computes the numbers once (as `Estimate`s); `distribution_summary` flattens them
into one dict per distribution and `estimate_rows` into tidy metric rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.analysis.estimators import (
    CONFIDENCE,
    NO_INTERVAL,
    SHARE,
    Estimate,
    entropy_estimate,
    exact_estimate,
    proportion_estimate,
    top_share_estimate,
)
from workbench.analysis.statistics import entropy_rows
from workbench.prompts import OTHER_ANSWER

if TYPE_CHECKING:
    from workbench.analysis.distributions import AnswerDistribution

OTHER_WARNING_THRESHOLD = 0.5
# The metrics of an answer distribution, in the order tables show them: total view, then in-space view.
# "top1_mass" is the total view's top share (its name predates the in-space view).
ANSWER_METRICS = ("entropy_bits", "top1_mass", "distinct_answers", "p_other", "entropy_bits_in_space",
                  "top_share_in_space")
# An exact distribution counts an answer as given when its probability is above this.
EXACT_PRESENCE = 1e-3
PLUG_IN_ENTROPY = "plug-in (exact probabilities)"
EXACT_SHARE = "probability (exact)"
OBSERVED_COUNT = "distinct answers observed (grows with n)"
EXACT_COUNT = f"answers with probability > {EXACT_PRESENCE:g}"


def other_warning(model: str, p_other: float, threshold: float = OTHER_WARNING_THRESHOLD) -> str:
    """The visible warning when most answers fall outside the answer space ("" when P(other) <= threshold)."""
    if math.isnan(p_other) or p_other <= threshold:
        return ""
    return (f"{model}: {p_other:.0%} of the answers fall outside the answer space ({OTHER_ANSWER}), so the total "
            f"entropy and top answer mostly describe {OTHER_ANSWER}. Widen the answer space, or read the in-space "
            f"numbers (entropy_bits_in_space, top_share_in_space).")


def _no_space_p_other() -> Estimate:
    # Without an answer space every answer counts: P(other) is 0 by definition, not an estimate.
    return Estimate(0.0, 0.0, 0.0, "none: no answer space (every answer counts)", NO_INTERVAL, True)


def _distinct(value: float, estimator: str) -> Estimate:
    # A count of this sample, not an estimate of how many answers the model gives: no interval.
    return Estimate(float(value), math.nan, math.nan, estimator, NO_INTERVAL, True)


def answer_estimates(labels: Sequence[str], values: Sequence[float] | np.ndarray, method: str,
                     confidence: float = CONFIDENCE, has_space: bool | None = None) -> dict[str, Any]:
    """Every metric of one distribution as an Estimate, plus its top answers.

    `values` are counts (method "sampled") or probabilities (method "exact"), one per label.
    `has_space` says whether answers outside a space exist (default: "(other)" is a label).
    Returns ANSWER_METRICS -> Estimate, and top_answer, top_is_other, top_answer_in_space, n_in_space.
    """
    labels = [str(a) for a in labels]
    values = np.asarray(values, dtype=float)
    has_space = OTHER_ANSWER in labels if has_space is None else has_space
    inside = np.array([a != OTHER_ANSWER for a in labels], dtype=bool)
    total = values.sum()
    other_value = float(values[~inside].sum())
    top = int(np.argmax(values)) if len(values) else -1
    in_space_values = values[inside]
    in_space_labels = [a for a, keep in zip(labels, inside, strict=True) if keep]
    in_top = int(np.argmax(in_space_values)) if in_space_values.sum() > 0 else -1
    result: dict[str, Any] = {
        "top_answer": labels[top] if top >= 0 else "",
        "top_is_other": top >= 0 and labels[top] == OTHER_ANSWER,
        "top_answer_in_space": in_space_labels[in_top] if in_top >= 0 else "",
    }
    if method == "exact":
        p = values / total
        in_space_mass = float(in_space_values.sum())
        conditional = in_space_values / in_space_mass if in_space_mass > 0 else np.full(len(in_space_values), math.nan)
        result["n_in_space"] = None
        result["entropy_bits"] = exact_estimate(entropy_rows(p[None, :])[0], PLUG_IN_ENTROPY)
        result["top1_mass"] = exact_estimate(p.max(), EXACT_SHARE)
        result["distinct_answers"] = _distinct((p > EXACT_PRESENCE).sum(), EXACT_COUNT)
        result["p_other"] = exact_estimate(other_value / total, EXACT_SHARE) if has_space else _no_space_p_other()
        if in_space_mass > 0:
            result["entropy_bits_in_space"] = exact_estimate(entropy_rows(conditional[None, :])[0], PLUG_IN_ENTROPY)
            result["top_share_in_space"] = exact_estimate(conditional.max(), EXACT_SHARE)
        else:
            result["entropy_bits_in_space"] = Estimate(math.nan, math.nan, math.nan, PLUG_IN_ENTROPY, NO_INTERVAL,
                                                       False, "no probability inside the answer space")
            result["top_share_in_space"] = result["entropy_bits_in_space"]
        return result
    n = int(total)
    n_in_space = int(in_space_values.sum())
    result["n_in_space"] = n_in_space
    result["entropy_bits"] = entropy_estimate(values, confidence)
    result["top1_mass"] = top_share_estimate(values, confidence)
    result["distinct_answers"] = _distinct((values > 0).sum(), OBSERVED_COUNT)
    result["p_other"] = proportion_estimate(other_value, n, confidence) if has_space else _no_space_p_other()
    if n_in_space > 0:
        result["entropy_bits_in_space"] = entropy_estimate(in_space_values, confidence)
        result["top_share_in_space"] = top_share_estimate(in_space_values, confidence)
    else:
        empty = Estimate(math.nan, math.nan, math.nan, SHARE, NO_INTERVAL, False,
                         "no sample inside the answer space")
        result["entropy_bits_in_space"] = result["top_share_in_space"] = empty
    return result


def estimates_of(dist: AnswerDistribution, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """answer_estimates of a distribution's table (counts when sampled, probabilities when exact)."""
    column = "probability" if dist.method == "exact" else "count"
    return answer_estimates(list(dist.table["answer"]), dist.table[column].to_numpy(dtype=float), dist.method,
                            confidence)


def unreliable_note(estimates: dict[str, Any]) -> str:
    """'metric: why; ...' for every metric outside its regime ("" when all are reliable)."""
    return "; ".join(f"{metric}: {estimates[metric].note}" for metric in ANSWER_METRICS
                     if not estimates[metric].reliable)


def flatten(model: str, method: str, n: int | None, temperature: float, estimates: dict[str, Any],
            threshold: float = OTHER_WARNING_THRESHOLD) -> dict[str, Any]:
    """One flat dict of a distribution's views (the keys `distribution_summary` documents)."""
    row: dict[str, Any] = {"model": model, "method": method, "n": n, "n_in_space": estimates["n_in_space"],
                           "temperature": temperature}
    for metric in ("p_other", "entropy_bits", "entropy_bits_in_space"):
        row.update(_columns(metric, estimates[metric]))
    row["top_answer"] = estimates["top_answer"]
    row["top_is_other"] = estimates["top_is_other"]
    row.update(_columns("top_share", estimates["top1_mass"]))
    row["top_answer_in_space"] = estimates["top_answer_in_space"]
    row.update(_columns("top_share_in_space", estimates["top_share_in_space"]))
    distinct = estimates["distinct_answers"].value
    row["distinct_answers"] = int(distinct) if math.isfinite(distinct) else distinct
    row["unreliable"] = unreliable_note(estimates)
    row["warning"] = other_warning(model, estimates["p_other"].value, threshold)
    return row


def _columns(name: str, estimate: Estimate) -> dict[str, Any]:
    return {name: estimate.value, f"{name}_ci_low": estimate.ci_low, f"{name}_ci_high": estimate.ci_high,
            f"{name}_estimator": estimate.estimator, f"{name}_interval": estimate.interval,
            f"{name}_reliable": estimate.reliable}


def distribution_summary(dist: AnswerDistribution, confidence: float = CONFIDENCE,
                         other_warning_threshold: float = OTHER_WARNING_THRESHOLD) -> dict[str, Any]:
    """The total and in-space views of one distribution, each number with its interval and kind.

    Keys: model, method ("exact" | "sampled"), n (None when exact), n_in_space, temperature;
    for each of p_other, entropy_bits, entropy_bits_in_space, top_share, top_share_in_space:
    the value and `<name>_ci_low`, `<name>_ci_high`, `<name>_estimator`, `<name>_interval`,
    `<name>_reliable`; top_answer (may be "(other)"), top_is_other, top_answer_in_space,
    distinct_answers; `unreliable` ("metric: why; ..." for numbers outside their estimator's
    regime, "" when none) and `warning` (a sentence naming what to do when P(other) is above
    the threshold, "" otherwise). An exact distribution's intervals are its values.
    """
    estimates = estimates_of(dist, confidence)
    return flatten(dist.model, dist.method, dist.n, dist.temperature, estimates, other_warning_threshold)


def estimate_rows(model: str, method: str, n: float, estimates: dict[str, Any],
                  metrics: Sequence[str] = ANSWER_METRICS) -> list[dict[str, Any]]:
    """Tidy metric rows (METRIC_COLUMNS) of a distribution's estimates."""
    return [{"model": model, "metric": metric, "value": float(estimates[metric].value),
             "ci_low": float(estimates[metric].ci_low), "ci_high": float(estimates[metric].ci_high), "n": n,
             "method": method, "estimator": estimates[metric].estimator, "interval": estimates[metric].interval,
             "reliable": bool(estimates[metric].reliable), "note": estimates[metric].note}
            for metric in metrics]
