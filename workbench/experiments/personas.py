"""Agentic-persona evals: how strongly does each model endorse statements of a trait?

For every statement of the persona collection, the probability of the trait-matching answer
("Yes" for agree-keyed statements, "No" for disagree-keyed ones), renormalised over the two
answers, exact from logprobs where the backend gives them and from samples otherwise. Base
models read the questionnaire as an interview transcript, tuned models as an assistant chat.
Agree-keyed and disagree-keyed statements are reported apart, so a model that says "Yes" to
everything shows up as a yes-bias rather than as a trait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.analysis.statistics import bootstrap_mean_ci
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.sampler import Sampler

PERSONA_COLLECTION = "personas"
FRAMING_BY_KIND = {"base": "questionnaire-transcript", "tuned": "assistant-chat"}
YES, NO = "Yes", "No"


@dataclass
class PersonaResult:
    """Per-statement scores, per-trait summaries with CIs, and the yes-bias check."""

    # model, framing, trait, prompt, keyed, matching_answer, p_yes, p_no, p_answered, p_match, method
    items: pd.DataFrame
    traits: pd.DataFrame  # model, trait, keyed (all|agree|disagree), p_match, ci_low, ci_high, n_items, p_answered
    balance: pd.DataFrame  # model, yes_rate, agree_p_match, disagree_p_match, yes_bias
    family_note: str


def persona_eval(
    sampler: "Sampler",
    models: list[str],
    traits: list[str] | None = None,
    method: Literal["auto", "exact", "sampled"] = "auto",
    n: int = 20,
    seed: int = 0,
    framings: dict[str, str] | None = None,
    per_trait: int | None = None,
    collection: str = PERSONA_COLLECTION,
) -> PersonaResult:
    """Score every persona statement for each model; `per_trait` keeps the first k of each keying per trait."""
    from workbench.analysis.distributions import can_be_exact, exact_distribution, sampled_distribution

    if not models:
        raise WorkbenchError("give at least one model")
    prompts = [p for p in sampler.library.filter(collection=collection) if p.spec.trait and p.spec.matching_answer]
    if not prompts:
        raise WorkbenchError(f"collection {collection!r} has no statements with trait and matching_answer")
    known = sorted({p.spec.trait for p in prompts})
    if traits:
        unknown = [t for t in traits if t not in known]
        if unknown:
            raise WorkbenchError(f"unknown trait(s) {', '.join(unknown)}; known: {', '.join(known)}")
        prompts = [p for p in prompts if p.spec.trait in traits]
    if per_trait is not None:
        kept, seen = [], {}
        for p in prompts:
            key = (p.spec.trait, p.spec.matching_answer)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= per_trait:
                kept.append(p)
        prompts = kept

    rows = []
    for model in models:
        spec = sampler.model(model)
        framing = (framings or {}).get(model, FRAMING_BY_KIND[spec.kind])
        for prompt in tqdm(prompts, desc=f"{model} personas", unit="statement", disable=not sampler.progress):
            exact = can_be_exact(sampler, model, prompt) and method != "sampled"
            if method == "exact" and not exact:
                raise WorkbenchError(f"{model} gives no logprobs; use method='sampled'")
            if exact:
                dist = exact_distribution(sampler, model, prompt, 1.0, framing=framing)
            else:
                run = sampler.sample(model, prompt, n, seed=seed, framing=framing)
                dist = sampled_distribution(run, prompt.spec.answer_space, seed=seed)
            probs = dist.probabilities()
            p_yes, p_no = probs.get(YES, 0.0), probs.get(NO, 0.0)
            answered = p_yes + p_no
            matching = p_yes if prompt.spec.matching_answer == YES else p_no
            rows.append({
                "model": model, "framing": framing, "trait": prompt.spec.trait, "prompt": prompt.ref,
                "keyed": "agree" if prompt.spec.matching_answer == YES else "disagree",
                "matching_answer": prompt.spec.matching_answer, "p_yes": p_yes, "p_no": p_no,
                "p_answered": answered, "p_match": matching / answered if answered > 0 else np.nan,
                "method": dist.method,
            })
    items = pd.DataFrame(rows)
    trait_rows = []
    for (model, trait), group in items.groupby(["model", "trait"], sort=False):
        for keyed, subset in (("all", group), ("agree", group[group["keyed"] == "agree"]),
                              ("disagree", group[group["keyed"] == "disagree"])):
            values = subset["p_match"].to_numpy(dtype=float)
            low, high = bootstrap_mean_ci(values, seed=seed)
            trait_rows.append({"model": model, "trait": trait, "keyed": keyed,
                               "p_match": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan,
                               "ci_low": low, "ci_high": high, "n_items": len(subset),
                               "p_answered": float(subset["p_answered"].mean())})
    balance_rows = []
    for model, group in items.groupby("model", sort=False):
        yes_rate = float(np.nanmean(group["p_yes"] / group["p_answered"].replace(0, np.nan)))
        agree = float(group.loc[group["keyed"] == "agree", "p_match"].mean())
        disagree = float(group.loc[group["keyed"] == "disagree", "p_match"].mean())
        # With balanced keying, a trait-neutral model that favours "Yes" scores high on agree-keyed
        # and low on disagree-keyed statements: the gap is the yes-bias.
        balance_rows.append({"model": model, "yes_rate": yes_rate, "agree_p_match": agree,
                             "disagree_p_match": disagree, "yes_bias": agree - disagree})
    return PersonaResult(items, pd.DataFrame(trait_rows), pd.DataFrame(balance_rows),
                         sampler.registry.describe_pair(models))


def persona_shift(result: PersonaResult, base: str, tuned: str, correction: str = "holm",
                  seed: int = 0) -> pd.DataFrame:
    """How far `tuned` moved from `base` on each trait, statement by statement (same statements, same framing).

    One row per trait and keying (all, agree, disagree): mean probability of the trait-matching
    answer for each model, the mean paired shift with a bootstrap 95% CI, a sign-flip permutation
    p-value, and the p-value adjusted (`correction`: holm or bh) across the traits of that keying.
    A planted trait moves agree- and disagree-keyed statements the same way; a yes-bias moves them
    in opposite directions.
    """
    from workbench.analysis.statistics import adjust_pvalues, sign_flip_test

    items = result.items
    for model in (base, tuned):
        if model not in set(items["model"]):
            models = ", ".join(items["model"].unique())
            raise WorkbenchError(f"{model!r} is not in this persona result (models: {models})")
    paired = items[items["model"] == base].merge(items[items["model"] == tuned], on=["prompt", "trait", "keyed"],
                                                 suffixes=("_base", "_tuned"))
    rows = []
    for trait, group in paired.groupby("trait", sort=False):
        for keyed, subset in (("all", group), ("agree", group[group["keyed"] == "agree"]),
                              ("disagree", group[group["keyed"] == "disagree"])):
            diff = (subset["p_match_tuned"] - subset["p_match_base"]).to_numpy(dtype=float)
            low, high = bootstrap_mean_ci(diff, seed=seed)
            rows.append({"trait": trait, "keyed": keyed, "n_items": len(subset),
                         "base": base, "tuned": tuned,
                         "p_match_base": float(subset["p_match_base"].mean()),
                         "p_match_tuned": float(subset["p_match_tuned"].mean()),
                         "shift": float(np.nanmean(diff)) if len(diff) else np.nan, "ci_low": low, "ci_high": high,
                         "p_value": sign_flip_test(diff, seed=seed) if len(diff) else np.nan,
                         "framing_base": subset["framing_base"].iloc[0] if len(subset) else "",
                         "framing_tuned": subset["framing_tuned"].iloc[0] if len(subset) else ""})
    frame = pd.DataFrame(rows)
    frame["p_adjusted"] = np.nan
    for _keyed, group in frame.groupby("keyed"):
        frame.loc[group.index, "p_adjusted"] = adjust_pvalues(list(group["p_value"]), correction)
    frame["correction"] = correction
    return frame
