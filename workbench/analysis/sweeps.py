"""Temperature sweeps: does raising the temperature undo the collapse?

Exact where the distribution is exact (a prompt with an answer space on a model that scores
candidates: one scoring pass gives every temperature, with each token's tempered probability
taken as softmax(logits / T) over the full vocabulary), sampled otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd
from typing_extensions import Unpack

from workbench.analysis.answers import answers_of
from workbench.analysis.distributions import can_be_exact, exact_distributions
from workbench.analysis.metrics import ANSWER_METRICS, answer_metrics, distribution_metrics
from workbench.errors import WorkbenchError
from workbench.prompts import LibraryPrompt, PromptChoices

if TYPE_CHECKING:
    from workbench.sampler import PromptInput, Sampler

SWEEP_COLUMNS = ["model", "temperature", "metric", "value", "ci_low", "ci_high", "method"]


def temperature_sweep(
    sampler: Sampler,
    models: list[str],
    prompt: PromptInput,
    temperatures: list[float],
    n: int = 100,
    seed: int = 0,
    method: Literal["auto", "exact", "sampled"] = "auto",
    metrics: tuple[str, ...] = ANSWER_METRICS,
    **choices: Unpack[PromptChoices],
) -> pd.DataFrame:
    """Metrics against temperature for each model: `model, temperature, metric, value, ci_low, ci_high, method`.

    `choices` are the prompt's (variables, perturbation, framing); sampled points also take
    sampling overrides such as max_tokens.
    """
    if not temperatures:
        raise WorkbenchError("a temperature sweep needs temperatures, e.g. 0.5,1.0,1.5")
    if any(t < 0 for t in temperatures):
        raise WorkbenchError(f"temperatures must be 0 or more, got {temperatures}")
    if not models:
        raise WorkbenchError("give at least one model")
    normaliser = prompt.spec.answer_space if isinstance(prompt, LibraryPrompt) else None
    frames = []
    for model in models:
        exact = can_be_exact(sampler, model, prompt)
        if method == "exact" and not exact:
            raise WorkbenchError(
                f"no exact distribution for {model} on this prompt (needs an answer space and logprobs)")
        if exact and method != "sampled":
            positive = [t for t in temperatures if t > 0]
            if positive:
                for dist in exact_distributions(sampler, model, prompt, positive, **choices):
                    frames.append(distribution_metrics(dist).assign(temperature=dist.temperature))
            # T = 0 (greedy) has no tempered distribution; it is sampled like any other point.
            sampled_temperatures = [t for t in temperatures if t == 0]
        else:
            sampled_temperatures = list(temperatures)
        for temperature in sampled_temperatures:
            run = sampler.sample(model, prompt, n, seed=seed, temperature=temperature, **choices)
            answers = answers_of(run.texts, normaliser)
            frames.append(answer_metrics(answers, model, seed=seed).assign(temperature=temperature))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["metric"].isin(metrics)]
    return frame[SWEEP_COLUMNS].sort_values(["model", "metric", "temperature"]).reset_index(drop=True)
