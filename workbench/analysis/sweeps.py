"""Temperature sweeps: does raising the temperature undo the collapse?

Exact where the distribution is exact (a prompt with an answer space on a model that scores
candidates: one scoring pass gives every temperature, with each token's tempered probability
taken as softmax(logits / T) over the full vocabulary), sampled otherwise.

At high temperature a model's mass can leave the answer space: the total view's entropy then
*falls* and its top answer becomes "(other)". Every row therefore carries the point's top answer
(total view), its P(other) and a warning when P(other) is above the threshold, and the in-space
metrics sit beside the total ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd
from typing_extensions import Unpack

from workbench.analysis.answers import answers_of
from workbench.analysis.distributions import can_be_exact, exact_distributions
from workbench.analysis.summaries import (
    ANSWER_METRICS,
    OTHER_WARNING_THRESHOLD,
    answer_estimates,
    estimate_rows,
    estimates_of,
    other_warning,
)
from workbench.errors import WorkbenchError
from workbench.prompts import LibraryPrompt, PromptChoices

if TYPE_CHECKING:
    from workbench.sampler import PromptInput, Sampler

SWEEP_COLUMNS = ["model", "temperature", "metric", "value", "ci_low", "ci_high", "method", "n", "estimator", "interval",
                 "reliable", "note", "top_answer", "p_other", "warning"]


def temperature_sweep(
    sampler: Sampler,
    models: list[str],
    prompt: PromptInput,
    temperatures: list[float],
    n: int = 100,
    seed: int = 0,
    method: Literal["auto", "exact", "sampled"] = "auto",
    metrics: tuple[str, ...] = ANSWER_METRICS,
    other_warning_threshold: float = OTHER_WARNING_THRESHOLD,
    **choices: Unpack[PromptChoices],
) -> pd.DataFrame:
    """Metrics against temperature for each model, one row per model, temperature and metric (SWEEP_COLUMNS).

    Each row says how it was made (method, n, estimator, interval, reliable, note) and carries its
    point's top answer (total view, "(other)" when that is the most common), P(other) and a
    `warning` when P(other) exceeds `other_warning_threshold`. `choices` are the prompt's
    (variables, perturbation, framing); sampled points also take sampling overrides such as
    max_tokens.
    """
    if not temperatures:
        raise WorkbenchError("a temperature sweep needs temperatures, e.g. 0.5,1.0,1.5")
    if any(t < 0 for t in temperatures):
        raise WorkbenchError(f"temperatures must be 0 or more, got {temperatures}")
    if not models:
        raise WorkbenchError("give at least one model")
    normaliser = prompt.spec.answer_space if isinstance(prompt, LibraryPrompt) else None
    frames = []

    def point(model_name: str, temperature: float, method_name: str, n_samples: float, estimates: dict) -> pd.DataFrame:
        rows = pd.DataFrame(estimate_rows(model_name, method_name, n_samples, estimates))
        p_other = estimates["p_other"].value
        warning = other_warning(f"{model_name} at T={temperature:g}", p_other, other_warning_threshold)
        return rows.assign(temperature=temperature, top_answer=estimates["top_answer"], p_other=p_other,
                           warning=warning)

    for model in models:
        exact = can_be_exact(sampler, model, prompt)
        if method == "exact" and not exact:
            raise WorkbenchError(
                f"no exact distribution for {model} on this prompt (needs an answer space and logprobs)")
        if exact and method != "sampled":
            positive = [t for t in temperatures if t > 0]
            if positive:
                for dist in exact_distributions(sampler, model, prompt, positive, **choices):
                    frames.append(point(dist.model, dist.temperature, "exact", float("nan"), estimates_of(dist)))
            # T = 0 (greedy) has no tempered distribution; it is sampled like any other point.
            sampled_temperatures = [t for t in temperatures if t == 0]
        else:
            sampled_temperatures = list(temperatures)
        for temperature in sampled_temperatures:
            run = sampler.sample(model, prompt, n, seed=seed, temperature=temperature, **choices)
            answers = answers_of(run.texts, normaliser)
            labels = list(dict.fromkeys(answers))
            counts = [answers.count(a) for a in labels]
            estimates = answer_estimates(labels, counts, "sampled", has_space=normaliser is not None)
            frames.append(point(model, temperature, "sampled", float(len(answers)), estimates))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["metric"].isin(metrics)]
    return frame[SWEEP_COLUMNS].sort_values(["model", "metric", "temperature"]).reset_index(drop=True)
