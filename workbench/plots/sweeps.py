"""Temperature sweeps: one line per model of a metric against temperature.

The frame: model, temperature, metric, value [ci_low, ci_high, method].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.style import (
    INK,
    add_legend,
    finish_figure,
    format_temperature,
    literal,
    metric_label,
    model_colours,
    new_figure,
    style_axes,
)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def temperature_sweep_figure(frame: pd.DataFrame, metric: str = "entropy_bits", title: str = "",
                             note: str = "") -> Figure:
    """One line per model of a metric against temperature, CI band shaded, exact points solid, sampled hollow."""
    func, what = "temperature_sweep_figure", "the sweep frame"
    check_frame(frame, func, what, ("model", "temperature", "metric", "value"), ("ci_low", "ci_high", "method"),
                "pass one row per model, temperature and metric")
    chosen = frame[frame["metric"] == metric]
    if chosen.empty:
        available = ", ".join(map(str, dict.fromkeys(frame["metric"])))
        raise WorkbenchError(f"{func}: no rows with metric {metric!r}; pass metric= one of {available}")
    chosen = chosen.assign(temperature=numeric_column(chosen, "temperature", func, what),
                           value=numeric_column(chosen, "value", func, what),
                           ci_low=optional_column(chosen, "ci_low"), ci_high=optional_column(chosen, "ci_high"),
                           method=chosen["method"].fillna("") if "method" in chosen else "")
    no_duplicates(chosen, ["model", "method", "temperature"], func, "average repeats before plotting")
    models = list(dict.fromkeys(chosen["model"]))
    colours = model_colours(models)
    width, height = 6.8, 4.4
    fig = new_figure(width, height)
    ax = fig.subplots()
    for model in models:
        group = chosen[chosen["model"] == model]
        colour = colours[model]
        methods = list(dict.fromkeys(group["method"]))
        for method in methods:
            line = group[group["method"] == method].sort_values("temperature")
            t, v = line["temperature"].to_numpy(), line["value"].to_numpy()
            lo, hi = line["ci_low"].to_numpy(), line["ci_high"].to_numpy()
            # A model measured both ways gets a dashed sampled line, so the two never look like one.
            style = "--" if method == "sampled" and len(methods) > 1 else "-"
            ax.plot(t, v, color=colour, linewidth=1.6, linestyle=style, zorder=3)
            hollow = method == "sampled"
            ax.plot(t, v, linestyle="none", marker="o", markersize=5.5, markeredgewidth=1.4, color=colour,
                    markerfacecolor="white" if hollow else colour, zorder=4)
            for start, stop in _runs(np.isfinite(lo) & np.isfinite(hi)):
                if stop - start > 1:
                    ax.fill_between(t[start:stop], lo[start:stop], hi[start:stop], color=colour, alpha=0.18,
                                    linewidth=0, zorder=2)
                else:  # a band needs two points; a lone interval is a whisker
                    ax.errorbar(t[start], v[start], yerr=[[v[start] - lo[start]], [hi[start] - v[start]]],
                                fmt="none", ecolor=colour, elinewidth=1.0, capsize=3, zorder=2)
    temps = np.sort(chosen["temperature"].unique())
    if len(temps) <= 12:
        ax.set_xticks(temps, [format_temperature(t) for t in temps])
    ax.set_xlabel("temperature")
    ax.set_ylabel(metric_label(metric))
    lows = np.concatenate([chosen["value"].to_numpy(), chosen["ci_low"].dropna().to_numpy()])
    if np.nanmin(lows) >= 0:
        ax.set_ylim(bottom=0)  # entropies, shares and divergences start at 0; a floating axis exaggerates
    style_axes(ax)
    handles: list[Any] = [Line2D([], [], color=colours[m], linewidth=1.6) for m in models]
    labels = [literal(m) for m in models]
    present = list(dict.fromkeys(chosen["method"]))
    for method in ("exact", "sampled"):
        if method in present:
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=5.5, color=INK,
                                  markerfacecolor=INK if method == "exact" else "white", markeredgewidth=1.4))
            labels.append(method)
    if chosen[["ci_low", "ci_high"]].notna().all(axis=1).any():
        handles.append(Line2D([], [], color="#999999", linewidth=6, alpha=0.4))
        labels.append("confidence interval")
    add_legend(ax, handles, labels, width)
    return finish_figure(fig, title, note, width)


