"""The house style every figure shares: the Okabe-Ito colours, a stable colour per model, small
consistent fonts, a light grid and no top/right spines, and the helpers that apply it.

The style is applied per figure; matplotlib's rcParams stay untouched so notebooks keep their own.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies. Black is left
# out: it is the text colour and a black bar reads as emphasis. Blue and orange come first so the
# usual two-model comparison gets the most distinct pair; yellow is last because it is faint on white.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
INK = "#222222"  # text and error bars: softer than pure black, still high contrast
GRID = "#DDDDDD"
MUTED = "#555555"  # notes and secondary text
# The boxed warning a figure carries when its numbers mislead read alone (e.g. most mass outside the
# answer space): dark orange on pale orange, readable in greyscale too.
WARNING_INK = "#7A3300"
WARNING_FILL = "#FDEBD3"
WARNING_EDGE = "#D55E00"
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and readable with any colour-vision deficiency
FONT = {"title": 11.0, "label": 9.5, "tick": 8.5, "legend": 8.5, "note": 8.0, "annotation": 7.5}
DPI = 150  # sharp enough to paste into a paper, small enough for a notebook

# Shorter names for metrics on axes and colour bars; anything else is shown with "_" as spaces.
METRIC_LABELS = {
    "entropy_bits": "answer entropy (bits)",
    "top_share": "probability of the top answer",
    "top1_mass": "share of the top answer",
    "p_other": "P(other): mass outside the answer space",
    "entropy_bits_in_space": "entropy within the answer space (bits)",
    "top_share_in_space": "top answer's share within the space",
    "distinct_answers": "distinct answers",
    "jsd": "Jensen-Shannon divergence (bits)",
    "kl_bits": "KL divergence (bits)",
}


def model_colours(models: list[str]) -> dict[str, str]:
    """A colour per model, in order of first appearance (the same list always gives the same colours)."""
    unique = list(dict.fromkeys(models))
    # More models than colours cycle: past seven, colour alone cannot tell models apart anyway.
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(unique)}


def style_axes(ax: Axes, grid: str | None = "both") -> None:
    """The house look for one axes: no top/right spines, grey frame, light grid behind the data."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#999999")
    ax.tick_params(labelsize=FONT["tick"], colors=INK, length=3, color="#999999")
    ax.xaxis.label.set_fontsize(FONT["label"])
    ax.yaxis.label.set_fontsize(FONT["label"])
    ax.xaxis.label.set_color(INK)
    ax.yaxis.label.set_color(INK)
    if grid:
        ax.grid(True, axis=grid, color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)


def new_figure(width: float, height: float) -> Figure:
    """A white figure with constrained layout, so titles, legends and notes never overlap the plot."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")


def finish_figure(fig: Figure, title: str, note: str, width: float) -> Figure:
    """Add the title on top and the note in small italics under everything."""
    chars = max(40, int(width * 13))  # about what fits on one line at these font sizes
    if title:
        fig.suptitle(wrap(literal(title), int(chars * 0.8)), fontsize=FONT["title"], color=INK)
    if note:
        # supxlabel, not fig.text: constrained layout reserves room for it, so it is never cut off.
        fig.supxlabel(wrap(literal(note), chars), fontsize=FONT["note"], style="italic", color=MUTED)
    return fig


def add_legend(ax: Axes, handles: list[Any], labels: list[str], width: float, header: bool = False) -> None:
    """A frameless legend just above the axes: outside them it can never hide data.

    `header=True` puts it in the middle of a header axes (see `panel_figure`) instead.
    """
    longest = max((len(label) for label in labels), default=10)
    per_row = max(1, min(len(labels), int(width * 72 / (longest * FONT["legend"] * 0.55 + 36))))
    # An axes legend, not fig.legend(loc="outside ..."): constrained layout stacks an axes legend
    # under the suptitle, while an outside figure legend is drawn over it.
    where = {"loc": "center"} if header else {"loc": "lower center", "bbox_to_anchor": (0.5, 1.01)}
    ax.legend(handles, labels, ncols=per_row, frameon=False, fontsize=FONT["legend"], handlelength=1.6,
              columnspacing=1.4, borderaxespad=0.2, **where)


def panel_figure(width: float, plot_height: float, ncols: int = 1, warning: str = "",
                 sharey: bool = False) -> tuple[Figure, list[Axes], Axes]:
    """A figure of `ncols` plot axes side by side, under a boxed warning when `warning` is not empty.

    Returns the figure, the plot axes and the axes the legend belongs on: the plot axes itself when
    there is one (`add_legend(..., header=False)`), else a header row spanning the plots
    (`header=True`), so one legend serves every panel. Header rows have no axis; constrained layout
    makes room for what they hold.
    """
    chars = max(40, int(width * 12))
    lines = wrap("\u26a0 " + warning, chars) if warning else ""
    heights = ([0.16 * (lines.count("\n") + 1)] if warning else []) + ([0.3] if ncols > 1 else []) + [plot_height]
    fig = new_figure(width, sum(heights) + 0.6)
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    axes: list[Axes] = []
    for j in range(ncols):  # the plots first: fig.axes[0] is the (first) plot
        axes.append(fig.add_subplot(grid[-1, j], sharey=axes[0] if sharey and axes else None))
    legend_ax = axes[0]
    if ncols > 1:
        legend_ax = fig.add_subplot(grid[-2, :])
        legend_ax.axis("off")
    if warning:
        box = fig.add_subplot(grid[0, :])
        box.axis("off")
        box.text(0.0, 0.5, literal(lines), transform=box.transAxes, ha="left", va="center",
                 fontsize=FONT["note"] + 0.5, color=WARNING_INK, linespacing=1.3,
                 bbox={"boxstyle": "round,pad=0.45", "facecolor": WARNING_FILL, "edgecolor": WARNING_EDGE,
                       "linewidth": 0.9})
    return fig, axes, legend_ax


def grouped_barh(ax: Axes, frame: pd.DataFrame, category: str, value: str, categories: list[str],
                 models: list[str]) -> None:
    """Horizontal bars of `value` per category, the models side by side, with ci_low/ci_high whiskers."""
    colours = model_colours(models)
    bar = 0.8 / len(models)
    for m, model in enumerate(models):
        rows = frame[frame["model"] == model].set_index(category).reindex(categories)
        y = np.arange(len(categories)) + (m - (len(models) - 1) / 2) * bar
        errors = np.vstack([(rows[value] - rows["ci_low"]).clip(lower=0).fillna(0),
                            (rows["ci_high"] - rows[value]).clip(lower=0).fillna(0)])
        ax.barh(y, rows[value], height=bar * 0.9, color=colours[model], xerr=errors,
                error_kw={"ecolor": INK, "elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(np.arange(len(categories)), [literal(c) for c in categories], fontsize=FONT["tick"])
    ax.invert_yaxis()


# -- text -----------------------------------------------------------------------------------------


def literal(text: object) -> str:
    """Text shown as typed: a "$" in an answer ("$5") must not switch matplotlib to mathtext."""
    return str(text).replace("$", r"\$")


def shorten(text: object, width: int) -> str:
    """One line of at most `width` characters; long single words are cut too (textwrap.shorten drops them)."""
    flat = " ".join(str(text).split())
    if not flat:
        return '""'  # an empty answer is a real answer: show it, do not leave a blank tick
    if len(flat) > width:
        cut = flat[: width - 1]
        space = cut.rfind(" ")
        flat = (cut[:space] if space > width * 0.6 else cut).rstrip() + "…"
    return literal(flat)


def wrap(text: str, width: int) -> str:
    """Wrap each paragraph of `text` to `width` characters."""
    return "\n".join(textwrap.fill(p, width) if p else "" for p in text.split("\n"))


def format_temperature(t: float) -> str:
    """1 -> "1.0", 0.7 -> "0.7": temperatures read as temperatures, not counts."""
    return f"{t:.1f}" if float(t).is_integer() else f"{t:g}"


def metric_label(metric: str) -> str:
    """A readable axis label for a metric column."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))
