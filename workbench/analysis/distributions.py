"""Answer distributions: exact (by scoring every candidate) where the model's backend gives logprobs,
sampled (with a Jeffreys confidence interval per answer) for any backend.

Both come back as one tidy table (one row per model and answer) with the same columns, so a
figure or a comparison does not care which method made it:
`model, answer, probability, ci_low, ci_high, count, method, temperature, n, interval, reliable`.
An exact table's intervals are NaN (no sampling error; figures draw no whisker) and its
`interval` column says "exact (no sampling error)". `AnswerDistribution.summary()` gives the
total and in-space views of one distribution (see `workbench.analysis.summaries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from workbench.analysis.answers import Normaliser, answers_of
from workbench.analysis.estimators import CONFIDENCE, EXACT, SHARE_INTERVAL, proportion_regime, share_bounds
from workbench.errors import WorkbenchError
from workbench.prompts import OTHER_ANSWER, AnswerSpace, LibraryPrompt, PromptChoices

if TYPE_CHECKING:
    from workbench.sampler import Sampler, SampleRun

OTHER = OTHER_ANSWER  # the rest of the mass: what the answer space maps an unknown answer to
TABLE_COLUMNS = ["model", "answer", "probability", "ci_low", "ci_high", "count", "method", "temperature", "n",
                 "interval", "reliable"]


@dataclass
class AnswerDistribution:
    """One model's distribution over answers, exact or sampled, with where it came from."""

    model: str
    method: str  # "exact" | "sampled"
    temperature: float
    table: pd.DataFrame  # TABLE_COLUMNS, most probable first
    n: int | None = None  # samples behind a sampled distribution
    in_space_mass: float | None = None  # exact: probability of giving one of the candidates
    start_mass: float | None = None  # exact: probability of starting like one (an upper bound, diagnostic)
    provenance: dict[str, Any] = field(default_factory=dict)

    def probabilities(self) -> dict[str, float]:
        """answer -> probability."""
        return dict(zip(self.table["answer"], self.table["probability"], strict=True))

    def summary(self, confidence: float = CONFIDENCE, other_warning_threshold: float | None = None) -> dict[str, Any]:
        """The total and in-space views with intervals, estimators and warnings (`distribution_summary`)."""
        from workbench.analysis.summaries import OTHER_WARNING_THRESHOLD, distribution_summary

        threshold = OTHER_WARNING_THRESHOLD if other_warning_threshold is None else other_warning_threshold
        return distribution_summary(self, confidence, threshold)


# --------------------------------------------------------------------------------------------
# Exact
# --------------------------------------------------------------------------------------------


def can_be_exact(sampler: Sampler, model: str, prompt: Any) -> bool:
    """Whether an exact distribution exists: a library prompt with an answer space, a model that scores candidates."""
    return (isinstance(prompt, LibraryPrompt) and prompt.spec.answer_space is not None
            and sampler.capabilities(model).candidate_scoring)


def _minimal_prefix_set(token_ids: list[list[int]]) -> list[int]:
    """Indices of candidates no other candidate's tokens are a proper prefix of ("1" covers "10".."19")."""
    as_tuples = [tuple(ids) for ids in token_ids]
    present = set(as_tuples)
    minimal = []
    for i, ids in enumerate(as_tuples):
        if not any(ids[:k] in present for k in range(1, len(ids))):
            minimal.append(i)
    return minimal


def exact_distributions(
    sampler: Sampler,
    model: str,
    prompt: LibraryPrompt,
    temperatures: list[float] | tuple[float, ...] = (1.0,),
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
    answer_space: AnswerSpace | None = None,
) -> list[AnswerDistribution]:
    """The exact answer distribution at each temperature, from one batched scoring pass.

    P(candidate) is the product of its tokens' tempered probabilities times the probability that
    a declared terminator (or end of sequence) follows, so "3" is not counted as the start of
    "37". "(other)" is the rest: 1 - sum of the candidates.

    Why not renormalise the candidates and scale them by the probability of *starting* any
    candidate (also reported, as `start_mass`)? When the space is not closed under extension
    ("1" is a candidate, "12" is not), that estimate hands the mass of "12" to "1"; measured on
    SmolLM2 with digits 0-9 it put 2% outside the space where 13% of samples were. The terminated
    probabilities are exact and agree with sampling (tests/test_analysis.py).
    """
    space = answer_space or prompt.spec.answer_space
    if space is None:
        raise WorkbenchError(f"{prompt.ref} has no answer space; exact distributions need one (use sampling)")
    if not temperatures:
        raise WorkbenchError("give at least one temperature above 0")
    if any(t <= 0 for t in temperatures):
        raise WorkbenchError(
            f"exact distributions need temperatures above 0 (greedy has no distribution): {temperatures}")
    spec = sampler.model(model)
    if not sampler.capabilities(spec.name).candidate_scoring:
        raise WorkbenchError(
            f"model {spec.name!r} ({spec.backend}) gives no logprobs for exact scoring; sample instead")
    rendered = sampler.render(prompt, spec.name, variables=variables, perturbation=perturbation, framing=framing)
    candidates = space.values()
    texts = [space.scored_text(c, after=rendered.text or "") for c in candidates]
    scores = sampler.score_candidates(spec.name, rendered, texts, list(temperatures), space.terminators)
    minimal = _minimal_prefix_set(scores.token_ids)
    identity = sampler.identity(spec.name)
    results = []
    for t, temperature in enumerate(scores.temperatures):
        logp = np.array(scores.logprobs[t])
        probabilities = np.exp(logp + np.array(scores.end_logprobs[t]))
        in_space = float(min(1.0, probabilities.sum()))
        start_mass = float(min(1.0, np.exp(logp[minimal]).sum()))
        table = pd.DataFrame(
            {
                "model": spec.name,
                "answer": [*candidates, OTHER],
                "probability": [*probabilities, max(0.0, 1.0 - in_space)],
                "ci_low": np.nan,
                "ci_high": np.nan,
                "count": np.nan,
                "method": "exact",
                "temperature": temperature,
                "n": np.nan,
                "interval": EXACT,
                "reliable": True,
            }
        )
        table = table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)
        results.append(
            AnswerDistribution(
                spec.name, "exact", temperature, table, in_space_mass=in_space, start_mass=start_mass,
                provenance={"prompt": prompt.ref, "rendered": rendered.display(), "model": spec.name,
                            "identity": identity, "method": "exact", "temperature": temperature,
                            "scoring_dtype": sampler.scoring_dtype(spec.name),
                            "variables": variables, "perturbation": perturbation, "framing": framing},
            )
        )
    return results


def exact_distribution(sampler: Sampler, model: str, prompt: LibraryPrompt, temperature: float = 1.0,
                       **choices: Unpack[PromptChoices]) -> AnswerDistribution:
    """The exact answer distribution at one temperature (see exact_distributions)."""
    return exact_distributions(sampler, model, prompt, [temperature], **choices)[0]


# --------------------------------------------------------------------------------------------
# Sampled
# --------------------------------------------------------------------------------------------


def sampled_distribution(
    run: SampleRun | pd.DataFrame,
    normaliser: Normaliser = None,
    confidence: float = CONFIDENCE,
    candidates: list[str] | None = None,
) -> AnswerDistribution:
    """The distribution of answers in a run's samples (or a samples frame), with a Jeffreys interval per answer.

    With an answer space (or `candidates`), every candidate and "(other)" get a row, zero counts
    included: a zero count's interval is [0, > 0], never [0, 0]. `reliable` is False where the
    count or its complement is below 5 (the interval's coverage was checked from there).
    """
    samples = run if isinstance(run, pd.DataFrame) else run.samples
    if samples is None or len(samples) == 0:
        raise WorkbenchError("no samples to make a distribution from; sample with n >= 1 first")
    models = samples["model"].unique()
    if len(models) != 1:
        raise WorkbenchError(f"a distribution is of one model's samples; got {', '.join(map(str, models))}")
    answers = answers_of(list(samples["text"]), normaliser)
    labels = list(dict.fromkeys(answers))
    if candidates is None and isinstance(normaliser, AnswerSpace):
        candidates = normaliser.values()
    if candidates:
        # Zero counts are part of the distribution, and so is "(other)": P(other) = 0 is an estimate too.
        labels += [c for c in [*candidates, OTHER] if c not in labels]
    counts = np.array([answers.count(a) for a in labels], dtype=float)
    n = int(counts.sum())
    low, high = share_bounds(counts, n, confidence)
    temperature = float(samples["temperature"].iloc[0]) if "temperature" in samples else math.nan
    table = pd.DataFrame(
        {
            "model": models[0],
            "answer": labels,
            "probability": counts / n,
            "ci_low": low,
            "ci_high": high,
            "count": counts.astype(int),
            "method": "sampled",
            "temperature": temperature,
            "n": n,
            "interval": f"{SHARE_INTERVAL} {confidence:.0%}",
            "reliable": proportion_regime(counts, n),
        }
    ).sort_values(["probability", "answer"], ascending=[False, True], kind="stable").reset_index(drop=True)
    provenance: dict[str, Any] = {"model": str(models[0]), "method": "sampled", "n": n, "confidence": confidence,
                                  "interval": SHARE_INTERVAL}
    if not isinstance(run, pd.DataFrame):
        provenance.update(run_id=run.run_id, config=run.config.model_dump(mode="json"), seed=run.seed)
    elif "run_id" in samples:
        provenance["run_ids"] = sorted(samples["run_id"].unique().tolist())
    return AnswerDistribution(str(models[0]), "sampled", temperature, table, n=n, provenance=provenance)


def distribution_table(distributions: list[AnswerDistribution]) -> pd.DataFrame:
    """The tables of several distributions stacked (for figures and exports)."""
    if not distributions:
        raise WorkbenchError("no distributions given")
    return pd.concat([d.table.reindex(columns=TABLE_COLUMNS) for d in distributions], ignore_index=True)
