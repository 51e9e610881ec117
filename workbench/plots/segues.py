"""The segue-recovery figure: the share of continuations back in the prompt's world, per condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.checks import optional_column
from workbench.plots.sizing import KEEP_HEIGHT, keep
from workbench.plots.style import (
    add_legend,
    finish_figure,
    grouped_barh,
    literal,
    model_colours,
    new_figure,
    panel_title,
    prompt_words,
    style_axes,
    wrapped,
)

if TYPE_CHECKING:
    from workbench.experiments.segues import SegueResult


def _bar_n(frame: pd.DataFrame) -> str:
    """'n = 16 continuations per bar' (or 'n = 12-16 …'): what each bar's share is a share of."""
    n = optional_column(frame, "n").dropna()
    if n.empty:
        return "n not recorded"
    low, high = int(n.min()), int(n.max())
    return f"n = {low}{f'-{high}' if high > low else ''} continuations per bar"


def segue_figure(result: SegueResult, method: str = "keywords") -> Figure:
    """Recovery rate per condition, one bar per model side by side, with 95% Wilson intervals; n over the plot."""
    frame = result.summary[result.summary["method"] == method]
    if frame.empty:
        raise WorkbenchError(f"segue_figure: no rows for method {method!r} (keywords or embedding)")
    conditions = list(dict.fromkeys(frame["condition"]))
    models = list(dict.fromkeys(frame["model"]))
    colours = model_colours(models)
    width = 7.0
    fig = keep(new_figure(width, 1.4 + 0.6 * len(conditions)), KEEP_HEIGHT)
    ax = fig.subplots()
    grouped_barh(ax, frame, "condition", "recovery_rate", conditions, models)
    ax.set_xlim(0, 1)
    wrapped(ax.xaxis.label, f"share of continuations back in the '{result.home_label}' world ({method}), "
            "95% Wilson interval", 11.0, ax=ax)
    panel_title(ax, _bar_n(frame))
    style_axes(ax, grid="x")
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=8, color=colours[m]) for m in models]
    add_legend(ax, handles, [literal(m) for m in models], width)
    note = f"{result.family_note}. Prompt: {result.prompt}" if result.family_note else f"Prompt: {result.prompt}"
    return finish_figure(fig, f"Segue recovery: {prompt_words(result.prompt)}", note, width)
