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

The summary tables (per trait, yes-bias, position bias, framings grid, shift between two models)
are built in `persona_tables`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.experiments.persona_tables import balance_table, position_table, trait_table
from workbench.experiments.persona_tables import persona_grid_table as persona_grid_table  # re-exported for callers
from workbench.experiments.persona_tables import persona_shift as persona_shift  # re-exported for callers
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
                        dist = sampled_distribution(run, space)
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
    traits_frame = trait_table(items, answered_threshold, seed)
    balance = balance_table(items, answered_threshold, seed)
    positions = position_table(items, answered_threshold, seed)
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
# Warnings
# --------------------------------------------------------------------------------------------


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
