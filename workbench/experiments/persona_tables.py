"""The summary tables of a persona eval: per trait and keying, the yes-bias, the position bias, the
framings grid, and the shift between two models.

All are built from the per-item scores of `persona_eval` (`PersonaResult.items`, one row per
model, framing, item and option order) and report means with percentile-bootstrap 95% CIs over
items: an item's option orders are averaged first, so items are the units the CIs resample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.analysis.statistics import (
    DEFAULT_BOOTSTRAP,
    bootstrap_indices,
    bootstrap_mean_ci,
    percentile_interval,
)
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.experiments.personas import PersonaResult

ALL = "all"  # the row over every keying (or every trait) next to the rows per keying (or trait)


# --------------------------------------------------------------------------------------------
# Per trait, yes-bias and position bias
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


def trait_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
    """P(matching) per model, framing, trait and keying (and over all keyings), with its CI and p_answered."""
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


def balance_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
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


def position_table(items: pd.DataFrame, threshold: float, seed: int) -> pd.DataFrame:
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


# --------------------------------------------------------------------------------------------
# The framings grid
# --------------------------------------------------------------------------------------------


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
