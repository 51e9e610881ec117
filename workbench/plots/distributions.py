"""Answer distributions: each model's answer probabilities as grouped horizontal bars.

The table: model, answer, probability [ci_low, ci_high, count, method, temperature, n, kind];
NaN CIs (exact distributions) draw no whisker.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.errors import WorkbenchError
from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.style import (
    INK,
    add_legend,
    finish_figure,
    format_temperature,
    literal,
    model_colours,
    new_figure,
    shorten,
    style_axes,
)

REST = "(rest)"  # the bar that folds every answer beyond `top`


def _distribution_legend(model: str, rows: pd.DataFrame) -> str:
    """'gemma-3-270m (exact, T=1.0)' or 'smollm2 (sampled, n=200, T=1.0)': how the numbers were made."""
    name = model
    if "kind" in rows.columns and rows["kind"].notna().any():
        name += f", {rows['kind'].dropna().iloc[0]}"
    parts: list[str] = []
    methods = list(dict.fromkeys(rows["method"].dropna())) if "method" in rows.columns else []
    if methods:
        parts.append("/".join(str(m) for m in methods))
    if "sampled" in methods:
        n = optional_column(rows, "n").dropna()
        if len(n):
            parts.append(f"n={int(n.iloc[0])}")
        elif "count" in rows.columns:
            parts.append(f"n={int(optional_column(rows, 'count').sum())}")
    temps = optional_column(rows, "temperature").dropna().unique()
    if len(temps):
        parts.append("T=" + "/".join(format_temperature(t) for t in sorted(temps)))
    return f"{name} ({', '.join(parts)})" if parts else name


def answer_distribution_figure(table: pd.DataFrame, top: int = 12, title: str = "", note: str = "") -> Figure:
    """Grouped horizontal bars of each model's answer probabilities, with CI whiskers and a "(rest)" bar."""
    func, what = "answer_distribution_figure", "the table"
    optional = ("ci_low", "ci_high", "count", "method", "temperature", "n", "kind")
    check_frame(table, func, what, ("model", "answer", "probability"), optional,
                "pass one row per model and answer")
    if top < 1:
        raise WorkbenchError(f"{func}: top must be at least 1, not {top}")
    table = table.assign(answer=table["answer"].astype(str),
                         probability=numeric_column(table, "probability", func, what),
                         ci_low=optional_column(table, "ci_low"), ci_high=optional_column(table, "ci_high"))
    no_duplicates(table, ["model", "answer"], func, "filter to one temperature and method per model first")
    models = list(dict.fromkeys(table["model"]))
    colours = model_colours(models)

    def grid(column: str) -> pd.DataFrame:
        return table.pivot(index="answer", columns="model", values=column).reindex(columns=models)

    probs = grid("probability").fillna(0.0)  # an answer a model never gave has probability 0
    lows, highs = grid("ci_low"), grid("ci_high")
    # Mean across models (not one model's order) so neither model's favourites are hidden in "(rest)".
    order = probs.mean(axis=1).sort_values(ascending=False, kind="stable").index
    shown, folded = list(order[:top]), list(order[top:])
    labels = [shorten(a, 34) for a in shown] + ([f"{REST[:-1]}, {len(folded)} answers)"] if folded else [])

    m, rows = len(models), len(labels)
    width = 7.0
    height = 1.6 + rows * (0.12 + 0.16 * m)
    fig = new_figure(width, height)
    ax = fig.subplots()
    y = np.arange(rows, dtype=float)
    bar = 0.8 / m
    handles = []
    for j, model in enumerate(models):
        offset = (j - (m - 1) / 2) * bar
        colour = colours[model]
        values = probs.loc[shown, model].to_numpy()
        handles.append(ax.barh(y[: len(shown)] + offset, values, height=bar * 0.9, color=colour))
        lo, hi = lows.loc[shown, model].to_numpy(), highs.loc[shown, model].to_numpy()
        has_ci = np.isfinite(lo) & np.isfinite(hi)  # exact distributions carry NaN: no whisker
        if has_ci.any():
            xerr = np.vstack([values - lo, hi - values])[:, has_ci].clip(min=0)
            ax.errorbar(values[has_ci], y[: len(shown)][has_ci] + offset, xerr=xerr, fmt="none",
                        ecolor=INK, elinewidth=0.8, capsize=2, capthick=0.8)
        if folded:
            # Hatched and paler: a sum over many answers, not one answer; no CI for a sum.
            ax.barh(y[-1] + offset, probs.loc[folded, model].sum(), height=bar * 0.9, color=colour, alpha=0.45,
                    hatch="///", edgecolor=colour, linewidth=0.6)
    if folded:
        ax.axhline(rows - 1.5, color="#BBBBBB", linewidth=0.6, linestyle=":")
    ax.set_yticks(y, labels)
    ax.set_ylim(rows - 0.5, -0.5)  # inverted: the most probable answer on top
    rest = probs.loc[folded].sum().to_numpy() if folded else np.zeros(0)
    upper = np.nanmax(np.concatenate([probs.to_numpy().ravel(), highs.to_numpy().ravel(), rest, [0.0]]))
    ax.set_xlim(0, min(1.0, upper * 1.08) if upper > 0 else 1.0)
    whiskers = bool(np.isfinite(highs.to_numpy()).any())
    ax.set_xlabel("probability" + (" (whiskers: confidence interval)" if whiskers else ""))
    style_axes(ax, grid="x")
    ax.tick_params(axis="y", length=0)
    legend = [_distribution_legend(model, table[table["model"] == model]) for model in models]
    add_legend(ax, handles, [literal(label) for label in legend], width)
    return finish_figure(fig, title, note, width)
