"""Agentic-persona evals: how strongly does each model give the answer that matches a trait?

For every item of a persona collection, the probability of the trait-matching answer,
renormalised over the item's answer options (Yes/No for a statement, (A)/(B)/... for a
multiple-choice question, or the item's own candidates), exact from logprobs where the backend
gives them and from samples otherwise. `p_answered`, the probability mass on the options at all,
is reported next to every score: a small base model often answers something else, and then
`p_match` only says what it does *when* it answers.

Models are compared under one framing: by default the collection's first
(`questionnaire-transcript` for the shipped personas), or the one named. Which character answers
depends on the framing, so that is shown as a framings grid (every model under every framing),
never mixed into a comparison of models. The old default, a framing per model kind (base ->
transcript, tuned -> chat), stays available as `framing="by-kind"` and is flagged as confounded.

Agree-keyed and disagree-keyed statements are reported apart, each with a CI, so a model that
says "Yes" to everything shows up as a yes-bias rather than as a trait; multiple-choice items can
be shown with their options in both orders (`orders="both"`), which separates the content of an
answer from its position (the share of "(A)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.analysis.statistics import (
    DEFAULT_BOOTSTRAP,
    bootstrap_indices,
    bootstrap_mean_ci,
    percentile_interval,
)
from workbench.errors import WorkbenchError
from workbench.prompts.answers import choice_label

if TYPE_CHECKING:
    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler

PERSONA_COLLECTION = "personas"
BY_KIND = "by-kind"  # framing="by-kind": the old default, a framing per model kind (confounds model and framing)
GRID = "grid"  # framings="grid": every framing of the collection, for every model
FRAMING_BY_KIND = {"base": "questionnaire-transcript", "tuned": "assistant-chat"}
OWN_TEMPLATE = "(own template)"  # a collection without framings: each prompt's own text or messages
ANSWERED_THRESHOLD = 0.5  # below this p_answered, scores are flagged: the model mostly answers something else
YES, NO = "Yes", "No"
ALL = "all"

Orders = Literal["given", "both"]


@dataclass
class PersonaResult:
    """Per-item scores, per-trait summaries with CIs, the yes-bias and position-bias checks, and the framings."""

    # One row per model, framing, item and option order: model, framing, trait, prompt, format (yes-no,
    # multiple-choice, other), order, options_shown, keyed, matching_answer, matching_label, p_yes, p_no, p_first,
    # n_options, p_matching_answer (total view), p_answered, p_answered_low, p_match (renormalised), method, n.
    items: pd.DataFrame
    # model, framing, trait, keyed (all, agree, disagree; (A), (B) for multiple choice), p_match, ci_low, ci_high,
    # n_items, p_answered, p_answered_low, method, n.
    traits: pd.DataFrame
    # Yes/No items, per model, framing and trait (and "all"): agree- and disagree-keyed p_match each with a 95%
    # bootstrap CI, yes_bias = agree - disagree with its CI, yes_rate, p_answered.
    balance: pd.DataFrame
    family_note: str
    # Multiple-choice items shown in several orders (orders="both"): p_match in the given and the other orders,
    # p_first (share of "(A)" whatever it says) and position_bias = p_first - chance, each with a CI.
    positions: pd.DataFrame = field(default_factory=pd.DataFrame)
    collection: str = PERSONA_COLLECTION
    framings: dict[str, list[str]] = field(default_factory=dict)  # model -> the framings it was scored in
    answered_threshold: float = ANSWERED_THRESHOLD
    warnings: list[str] = field(default_factory=list)

    @property
    def same_framing(self) -> bool:
        """Whether every model was scored under the same framings (a comparison of models, not of framings)."""
        return len({tuple(f) for f in self.framings.values()}) <= 1

    def framing_label(self) -> str:
        """The framing(s) in words, e.g. 'questionnaire-transcript (the same for every model)'."""
        if not self.framings:
            return ""
        if self.same_framing:
            names = next(iter(self.framings.values()))
            if len(names) == 1:
                return f"{names[0]} (the same for every model)"
            return f"grid of {len(names)} framings ({', '.join(names)}), every model under each"
        per_model = "; ".join(f"{m}: {', '.join(f)}" for m, f in self.framings.items())
        return f"DIFFERENT per model ({per_model}): model and framing are confounded"


# --------------------------------------------------------------------------------------------
# Choosing items and framings
# --------------------------------------------------------------------------------------------


def persona_items(sampler: Sampler, collection: str = PERSONA_COLLECTION, traits: list[str] | None = None,
                  per_trait: int | None = None) -> list[LibraryPrompt]:
    """The collection's scored items (a trait and a matching answer), optionally some traits and the first k
    of each keying per trait."""
    if collection not in sampler.library.collections:
        known = ", ".join(sorted(sampler.library.collections))
        raise WorkbenchError(f"no prompt collection {collection!r} (known: {known}); an imported one loads with "
                             "WORKBENCH_PROMPTS=FOLDER")
    prompts = [p for p in sampler.library.filter(collection=collection) if p.spec.trait and p.spec.matching_answer]
    if not prompts:
        raise WorkbenchError(f"collection {collection!r} has no items with a trait and a matching_answer")
    known_traits = sorted({p.spec.trait for p in prompts})
    if traits:
        unknown = [t for t in traits if t not in known_traits]
        if unknown:
            raise WorkbenchError(f"unknown trait(s) {', '.join(unknown)} in {collection!r}; known: "
                                 f"{', '.join(known_traits)}")
        prompts = [p for p in prompts if p.spec.trait in traits]
    if per_trait is not None:
        if per_trait < 1:
            raise WorkbenchError(f"per_trait must be 1 or more (got {per_trait})")
        kept, seen = [], {}
        for p in prompts:
            key = (p.spec.trait, _keying(p, _canonical_matching(p)))
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= per_trait:
                kept.append(p)
        prompts = kept
    return prompts


def resolve_framings(sampler: Sampler, models: list[str], prompts: list[LibraryPrompt],
                     framing: str | None = None,
                     framings: dict[str, str] | list[str] | str | None = None) -> dict[str, list[str]]:
    """model -> the framings it is scored in; one framing for every model unless asked otherwise.

    `framing`: one name for every model, "by-kind" (base -> transcript, tuned -> chat), or None for the
    collection's first framing. `framings`: "grid" (every framing, every model), a list (these, every
    model), or a dict model -> framing (explicit per-model framings; flagged when they differ).
    """
    if framing is not None and framings is not None:
        raise WorkbenchError("give framing= (one for every model) or framings= (a grid or per model), not both")
    collection = prompts[0].collection
    defined = list(collection.framings)
    offered = [f for f in defined if all(f in p.spec.framings for p in prompts)]

    def check(name: str) -> str:
        if name == OWN_TEMPLATE:
            return name
        if name not in defined:
            raise WorkbenchError(f"no framing {name!r} in collection {collection.name!r} (it has: "
                                 f"{', '.join(defined) or 'none'}; or {BY_KIND!r} for a framing per model kind)")
        missing = [p.ref for p in prompts if name not in p.spec.framings]
        if missing:
            raise WorkbenchError(f"framing {name!r} is not offered by {len(missing)} item(s), e.g. {missing[0]}")
        return name

    if isinstance(framings, str):
        if framings != GRID:
            raise WorkbenchError(f"framings={framings!r}: use {GRID!r}, a list of framing names, or a dict "
                                 "model -> framing")
        names = offered or [OWN_TEMPLATE]
        return {m: list(names) for m in models}
    if isinstance(framings, list | tuple):
        if not framings:
            raise WorkbenchError("framings: give at least one framing name")
        names = [check(f) for f in dict.fromkeys(framings)]
        return {m: list(names) for m in models}
    if isinstance(framings, dict):
        unknown = [m for m in framings if m not in models]
        if unknown:
            raise WorkbenchError(f"framings names model(s) not being scored: {', '.join(unknown)}")
        first = offered[0] if offered else OWN_TEMPLATE
        return {m: [check(framings.get(m, first))] for m in models}
    if framing == BY_KIND:
        return {m: [check(FRAMING_BY_KIND[sampler.model(m).kind])] for m in models}
    if framing is None:
        return {m: [offered[0] if offered else OWN_TEMPLATE] for m in models}
    return {m: [check(framing)] for m in models}


def _canonical_matching(prompt: LibraryPrompt) -> str:
    """The matching answer as its answer space writes it (" (b)" -> "(B)", "yes" -> "Yes")."""
    space = prompt.spec.answer_space
    assert space is not None and prompt.spec.matching_answer is not None
    return space.normalise(prompt.spec.matching_answer)


def _yes_no(prompt: LibraryPrompt) -> tuple[str, str] | None:
    """The item's (yes, no) candidates when its answers are Yes/No (any case), else None."""
    if prompt.spec.multiple_choice or prompt.spec.answer_space is None:
        return None
    by_lower = {v.lower(): v for v in prompt.spec.answer_space.values()}
    if sorted(by_lower) != ["no", "yes"]:
        return None
    return by_lower["yes"], by_lower["no"]


def _keying(prompt: LibraryPrompt, matching_label: str) -> str:
    """agree/disagree for Yes/No items; the matching option's label as shown ("(A)") for multiple choice."""
    yes_no = _yes_no(prompt)
    if yes_no is not None:
        return "agree" if matching_label == yes_no[0] else "disagree"
    return matching_label


def _orders(prompt: LibraryPrompt, orders: Orders) -> list[tuple[str, list[int]]]:
    """(name, permutation of option indices) to present: the given order, and with orders="both" the reverse
    (two options) or every cyclic rotation (3-4 options, so each option is shown once in each position)."""
    k = len(prompt.spec.options)
    given = ("given", list(range(k)))
    if orders == "given" or k < 2:
        return [given]
    if k == 2:
        return [given, ("reversed", [1, 0])]
    return [given, *((f"rotated-{r}", [(i + r) % k for i in range(k)]) for r in range(1, k))]


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def persona_eval(
    sampler: Sampler,
    models: list[str],
    traits: list[str] | None = None,
    method: Literal["auto", "exact", "sampled"] = "auto",
    n: int = 20,
    seed: int = 0,
    framings: dict[str, str] | list[str] | str | None = None,
    per_trait: int | None = None,
    collection: str = PERSONA_COLLECTION,
    framing: str | None = None,
    orders: Orders = "given",
    answered_threshold: float = ANSWERED_THRESHOLD,
) -> PersonaResult:
    """Score every item of a persona collection for each model, all models under one framing.

    `framing`: one framing for every model (default: the collection's first), or "by-kind". `framings`:
    "grid" or a list for several framings per model (see persona_framings_grid), or a dict model -> framing.
    `per_trait` keeps the first k items of each keying per trait; `orders="both"` also shows each
    multiple-choice item with its options reordered (a position-bias control).
    """
    from workbench.analysis.distributions import can_be_exact, exact_distribution, sampled_distribution

    if not models:
        raise WorkbenchError("give at least one model")
    if method not in ("auto", "exact", "sampled"):
        raise WorkbenchError(f"method={method!r}: use auto, exact or sampled")
    if orders not in ("given", "both"):
        raise WorkbenchError(f"orders={orders!r}: use 'given' or 'both' (options also in reverse order)")
    if n < 1:
        raise WorkbenchError(f"n must be 1 or more samples per item (got {n})")
    if not 0 <= answered_threshold <= 1:
        raise WorkbenchError(f"answered_threshold must be between 0 and 1 (got {answered_threshold})")
    for model in models:
        sampler.model(model)  # unknown names fail before anything is scored
    prompts = persona_items(sampler, collection, traits, per_trait)
    plan = resolve_framings(sampler, models, prompts, framing, framings)

    rows = []
    for model in models:
        for framing_name in plan[model]:
            chosen = None if framing_name == OWN_TEMPLATE else framing_name
            for prompt in tqdm(prompts, desc=f"{model} · {framing_name}", unit="item", disable=not sampler.progress):
                exact = method != "sampled" and can_be_exact(sampler, model, prompt)
                if method == "exact" and not exact:
                    raise WorkbenchError(f"{model} gives no logprobs for exact scoring; use method='sampled'")
                space = prompt.spec.answer_space
                assert space is not None
                candidates = space.values()
                matching = _canonical_matching(prompt)
                yes_no = _yes_no(prompt)
                for order_name, perm in _orders(prompt, orders):
                    variables = None
                    if prompt.spec.multiple_choice and perm != sorted(perm):
                        variables = {"options": [prompt.spec.options[i] for i in perm]}
                    if exact:
                        dist = exact_distribution(sampler, model, prompt, 1.0, framing=chosen, variables=variables)
                        samples = np.nan
                    else:
                        run = sampler.sample(model, prompt, n, seed=seed, framing=chosen, variables=variables)
                        dist = sampled_distribution(run, space, seed=seed)
                        samples = dist.n
                    probs = dist.probabilities()
                    p = {c: float(probs.get(c, 0.0)) for c in candidates}
                    answered = sum(p.values())
                    if prompt.spec.multiple_choice:
                        # The matching option's text now sits at another position: follow it to its label.
                        label = choice_label(perm.index(candidates.index(matching)))
                        shown = " | ".join(prompt.spec.options[i] for i in perm)
                    else:
                        label, shown = matching, ""
                    rows.append({
                        "model": model, "framing": framing_name, "trait": prompt.spec.trait, "prompt": prompt.ref,
                        "format": ("multiple-choice" if prompt.spec.multiple_choice
                                   else "yes-no" if yes_no else "other"),
                        "order": order_name, "options_shown": shown, "keyed": _keying(prompt, label),
                        "matching_answer": matching, "matching_label": label,
                        "p_yes": p[yes_no[0]] if yes_no else np.nan, "p_no": p[yes_no[1]] if yes_no else np.nan,
                        "p_first": (p[candidates[0]] / answered if prompt.spec.multiple_choice and answered > 0
                                    else np.nan),
                        "n_options": len(candidates), "p_matching_answer": p[label], "p_answered": answered,
                        "p_match": p[label] / answered if answered > 0 else np.nan,
                        "method": dist.method, "n": samples,
                    })
    items = pd.DataFrame(rows)
    items["p_answered_low"] = items["p_answered"] < answered_threshold
    traits_frame = _trait_table(items, answered_threshold, seed)
    balance = _balance_table(items, answered_threshold, seed)
    positions = _position_table(items, answered_threshold, seed)
    result = PersonaResult(items, traits_frame, balance, sampler.registry.describe_pair(models), positions,
                           collection, plan, answered_threshold)
    result.warnings = _warnings(result)
    return result


def persona_framings_grid(sampler: Sampler, models: list[str], framings: list[str] | None = None,
                          **options: Any) -> PersonaResult:
    """Every model under every framing (default: all of the collection's): which character answers where.

    Takes persona_eval's other options (traits, per_trait, method, n, seed, collection, orders, ...);
    `persona_grid_table` turns the result into one table and `persona_grid_figure` into one figure.
    """
    return persona_eval(sampler, models, framings=list(framings) if framings else GRID, **options)


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def _per_item(rows: pd.DataFrame, column: str = "p_match") -> np.ndarray:
    """The column averaged over each item's rows (its option orders): items are the units the CIs resample."""
    return rows.groupby("prompt", sort=False)[column].mean().to_numpy(dtype=float)


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _difference_ci(a: np.ndarray, b: np.ndarray, seed: int, n_boot: int = DEFAULT_BOOTSTRAP) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of mean(a) - mean(b) for two independent sets of items."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    replicates = a[bootstrap_indices(len(a), n_boot, rng)].mean(axis=1) - b[bootstrap_indices(len(b), n_boot,
                                                                                              rng)].mean(axis=1)
    return percentile_interval(replicates)


def _method(rows: pd.DataFrame) -> tuple[str, float]:
    methods = sorted(set(rows["method"]))
    n = rows["n"].dropna()
    return "+".join(methods), float(n.iloc[0]) if len(n) else float("nan")


def _keyings(group: pd.DataFrame) -> list[str]:
    order = {"agree": 0, "disagree": 1}
    return sorted(dict.fromkeys(group["keyed"]), key=lambda k: (order.get(k, 2), k))


def _trait_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
    rows = []
    for (model, framing, trait), group in items.groupby(["model", "framing", "trait"], sort=False):
        method, n = _method(group)
        for keyed in [ALL, *_keyings(group)]:
            subset = group if keyed == ALL else group[group["keyed"] == keyed]
            values = _per_item(subset)
            low, high = bootstrap_mean_ci(values, seed=seed)
            answered = float(_per_item(subset, "p_answered").mean())
            rows.append({"model": model, "framing": framing, "trait": trait, "keyed": keyed,
                         "p_match": _mean(values), "ci_low": low, "ci_high": high, "n_items": len(values),
                         "p_answered": answered, "p_answered_low": answered < threshold, "method": method, "n": n})
    return pd.DataFrame(rows)


BALANCE_COLUMNS = ["model", "framing", "trait", "n_agree", "agree_p_match", "agree_ci_low", "agree_ci_high",
                   "n_disagree", "disagree_p_match", "disagree_ci_low", "disagree_ci_high", "yes_bias",
                   "yes_bias_ci_low", "yes_bias_ci_high", "yes_rate", "p_answered", "p_answered_low"]


def _balance_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
    """The yes-bias per keying: with balanced keying a trait-neutral model that favours "Yes" scores high on
    agree-keyed and low on disagree-keyed statements, so the gap (with its CI) is the yes-bias."""
    yes_no = items[items["format"] == "yes-no"]
    rows = []
    for (model, framing), group in yes_no.groupby(["model", "framing"], sort=False):
        for trait in [ALL, *dict.fromkeys(group["trait"])]:
            subset = group if trait == ALL else group[group["trait"] == trait]
            agree = _per_item(subset[subset["keyed"] == "agree"])
            disagree = _per_item(subset[subset["keyed"] == "disagree"])
            a_low, a_high = bootstrap_mean_ci(agree, seed=seed)
            d_low, d_high = bootstrap_mean_ci(disagree, seed=seed)
            b_low, b_high = _difference_ci(agree, disagree, seed)
            answered = subset["p_answered"].replace(0, np.nan)
            p_answered = float(subset["p_answered"].mean())
            rows.append({"model": model, "framing": framing, "trait": trait,
                         "n_agree": len(agree), "agree_p_match": _mean(agree), "agree_ci_low": a_low,
                         "agree_ci_high": a_high, "n_disagree": len(disagree), "disagree_p_match": _mean(disagree),
                         "disagree_ci_low": d_low, "disagree_ci_high": d_high,
                         "yes_bias": _mean(agree) - _mean(disagree), "yes_bias_ci_low": b_low,
                         "yes_bias_ci_high": b_high,
                         "yes_rate": float(np.nanmean(subset["p_yes"] / answered)) if answered.notna().any()
                         else float("nan"),
                         "p_answered": p_answered, "p_answered_low": p_answered < threshold})
    return pd.DataFrame(rows, columns=BALANCE_COLUMNS)


POSITION_COLUMNS = ["model", "framing", "trait", "n_items", "orders", "p_match_given", "given_ci_low",
                    "given_ci_high", "p_match_reordered", "reordered_ci_low", "reordered_ci_high", "p_first",
                    "p_first_ci_low", "p_first_ci_high", "chance", "position_bias", "position_bias_ci_low",
                    "position_bias_ci_high", "p_answered", "p_answered_low"]


def _position_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
    """Position bias of multiple-choice items shown in several orders: the share of "(A)" whatever it says
    (chance = 1/options when every option takes every position), and P(matching) per order."""
    mc = items[items["format"] == "multiple-choice"]
    mc = mc[mc.groupby(["model", "framing", "prompt"])["order"].transform("nunique") > 1]
    rows = []
    for (model, framing), group in mc.groupby(["model", "framing"], sort=False):
        for trait in [ALL, *dict.fromkeys(group["trait"])]:
            subset = group if trait == ALL else group[group["trait"] == trait]
            given = _per_item(subset[subset["order"] == "given"])
            reordered = _per_item(subset[subset["order"] != "given"])
            first = _per_item(subset, "p_first")
            chance = 1.0 / _per_item(subset, "n_options")
            excess = first - chance
            g_low, g_high = bootstrap_mean_ci(given, seed=seed)
            r_low, r_high = bootstrap_mean_ci(reordered, seed=seed)
            f_low, f_high = bootstrap_mean_ci(first, seed=seed)
            e_low, e_high = bootstrap_mean_ci(excess, seed=seed)
            p_answered = float(subset["p_answered"].mean())
            rows.append({"model": model, "framing": framing, "trait": trait, "n_items": len(first),
                         "orders": int(subset.groupby("prompt")["order"].nunique().max()),
                         "p_match_given": _mean(given), "given_ci_low": g_low, "given_ci_high": g_high,
                         "p_match_reordered": _mean(reordered), "reordered_ci_low": r_low,
                         "reordered_ci_high": r_high, "p_first": _mean(first), "p_first_ci_low": f_low,
                         "p_first_ci_high": f_high, "chance": _mean(chance), "position_bias": _mean(excess),
                         "position_bias_ci_low": e_low, "position_bias_ci_high": e_high,
                         "p_answered": p_answered, "p_answered_low": p_answered < threshold})
    return pd.DataFrame(rows, columns=POSITION_COLUMNS)


def answered_warning(model: str, framing: str, p_answered: float, threshold: float) -> str:
    """The warning for a model that mostly answers something other than the item's options."""
    share = f"{p_answered:.0%}" if p_answered >= 0.01 else "under 1%"
    return (f"{model} under {framing}: p_answered {p_answered:.2f} < {threshold:g}: only {share} of its "
            "probability falls on the answer options, so it mostly answers something else; p_match is "
            "renormalised over the options (what it says when it does answer). Try another framing "
            "(a framings grid shows which one it answers in).")


def _warnings(result: PersonaResult) -> list[str]:
    out = []
    answered = result.items.groupby(["model", "framing"], sort=False)["p_answered"].mean()
    for (model, framing), value in answered.items():
        if value < result.answered_threshold:
            out.append(answered_warning(str(model), str(framing), float(value), result.answered_threshold))
    if not result.same_framing:
        out.append(f"framings differ between models ({result.framing_label()}); a difference between two models "
                   "is then partly a difference between framings. Use one framing (the default) to compare models, "
                   "and a framings grid to compare framings.")
    return out


def persona_grid_table(result: PersonaResult) -> pd.DataFrame:
    """One row per model, framing and trait: p_match with its CI, p_answered, and the yes-bias with its CI
    (or the position bias, for multiple-choice items shown in several orders)."""
    keep = ["model", "framing", "trait", "p_match", "ci_low", "ci_high", "n_items", "p_answered", "p_answered_low",
            "method", "n"]
    frame = result.traits.loc[result.traits["keyed"] == ALL, keep].reset_index(drop=True)
    bias = result.balance[["model", "framing", "trait", "yes_bias", "yes_bias_ci_low", "yes_bias_ci_high"]]
    frame = frame.merge(bias, on=["model", "framing", "trait"], how="left")
    if len(result.positions):
        position = result.positions[["model", "framing", "trait", "position_bias", "position_bias_ci_low",
                                     "position_bias_ci_high"]]
        frame = frame.merge(position, on=["model", "framing", "trait"], how="left")
    return frame


# --------------------------------------------------------------------------------------------
# Shifts between two models
# --------------------------------------------------------------------------------------------


def persona_shift(result: PersonaResult, base: str, tuned: str, correction: str = "holm",
                  seed: int = 0, framing: str | None = None) -> pd.DataFrame:
    """How far `tuned` moved from `base` on each trait, item by item (same items, same framing).

    One row per framing, trait and keying (all, agree, disagree; (A), (B) for multiple choice): mean
    probability of the trait-matching answer for each model, the mean paired shift with a bootstrap 95%
    CI, a sign-flip permutation p-value, the p-value adjusted (`correction`: holm or bh) across the traits
    of that keying, and p_answered of both models. A planted trait moves agree- and disagree-keyed
    statements the same way; a yes-bias moves them in opposite directions. When the two models were
    scored in different framings, the rows say so (same_framing False) and `frame.attrs["warnings"]` too.
    """
    from workbench.analysis.statistics import adjust_pvalues, sign_flip_test

    items = result.items
    for model in (base, tuned):
        if model not in set(items["model"]):
            models = ", ".join(items["model"].unique())
            raise WorkbenchError(f"{model!r} is not in this persona result (models: {models})")
    left, right = items[items["model"] == base], items[items["model"] == tuned]
    if framing is not None:
        for model, side in ((base, left), (tuned, right)):
            if framing not in set(side["framing"]):
                raise WorkbenchError(f"{model} was not scored under framing {framing!r} (it was under: "
                                     f"{', '.join(side['framing'].unique())})")
        left, right = left[left["framing"] == framing], right[right["framing"] == framing]
    shared = sorted(set(left["framing"]) & set(right["framing"]))
    keys = ["prompt", "order", "trait", "keyed"]
    warnings = []
    if shared:
        left, right = left[left["framing"].isin(shared)], right[right["framing"].isin(shared)]
        keys = ["framing", *keys]
    elif left["framing"].nunique() == 1 and right["framing"].nunique() == 1:
        warnings.append(f"{base} was scored under {left['framing'].iloc[0]} and {tuned} under "
                        f"{right['framing'].iloc[0]}: the shift mixes the model with the framing")
    else:
        raise WorkbenchError(f"{base} and {tuned} share no framing; give framing= to pick one of each model's")
    paired = left.merge(right, on=keys, suffixes=("_base", "_tuned"))
    if paired.empty:
        raise WorkbenchError(f"{base} and {tuned} were scored on no common items; score both in one persona_eval")
    if "framing" not in paired:
        paired["framing"] = paired["framing_base"] + " vs " + paired["framing_tuned"]
    paired["diff"] = paired["p_match_tuned"] - paired["p_match_base"]
    rows = []
    for (framing_name, trait), group in paired.groupby(["framing", "trait"], sort=False):
        for keyed in [ALL, *_keyings(group)]:
            subset = group if keyed == ALL else group[group["keyed"] == keyed]
            diff = _per_item(subset, "diff")
            low, high = bootstrap_mean_ci(diff, seed=seed)
            answered_base = float(subset["p_answered_base"].mean())
            answered_tuned = float(subset["p_answered_tuned"].mean())
            threshold = result.answered_threshold
            rows.append({"framing": framing_name, "trait": trait, "keyed": keyed, "n_items": len(diff),
                         "base": base, "tuned": tuned,
                         "p_match_base": _mean(_per_item(subset, "p_match_base")),
                         "p_match_tuned": _mean(_per_item(subset, "p_match_tuned")),
                         "shift": _mean(diff), "ci_low": low, "ci_high": high,
                         "p_value": (sign_flip_test(diff[np.isfinite(diff)], seed=seed)
                                     if np.isfinite(diff).sum() >= 2 else np.nan),  # one item: no test
                         "p_answered_base": answered_base, "p_answered_tuned": answered_tuned,
                         "p_answered_low": answered_base < threshold or answered_tuned < threshold,
                         "framing_base": subset["framing_base"].iloc[0] if "framing_base" in subset else framing_name,
                         "framing_tuned": subset["framing_tuned"].iloc[0] if "framing_tuned" in subset
                         else framing_name,
                         "same_framing": not warnings})
    frame = pd.DataFrame(rows)
    frame["p_adjusted"] = np.nan
    for _key, group in frame.groupby(["framing", "keyed"]):
        frame.loc[group.index, "p_adjusted"] = adjust_pvalues(list(group["p_value"]), correction)
    frame["correction"] = correction
    frame.attrs["warnings"] = warnings
    return frame
