"""The segue-recovery figure: the share of continuations back in the prompt's world, per condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.style import add_legend, finish_figure, grouped_barh, model_colours, new_figure, style_axes

if TYPE_CHECKING:
    from workbench.experiments.segues import SegueResult


def segue_figure(result: SegueResult, method: str = "keywords") -> Figure:
    """Recovery rate per condition, one bar per model side by side, with 95% Wilson intervals."""
    frame = result.summary[result.summary["method"] == method]
    if frame.empty:
        raise WorkbenchError(f"segue_figure: no rows for method {method!r} (keywords or embedding)")
    conditions = list(dict.fromkeys(frame["condition"]))
    models = list(dict.fromkeys(frame["model"]))
    colours = model_colours(models)
    width = 7.0
    fig = new_figure(width, 1.4 + 0.6 * len(conditions))
    ax = fig.subplots()
    grouped_barh(ax, frame, "condition", "recovery_rate", conditions, models)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of continuations back in the '{result.home_label}' world ({method})")
    style_axes(ax, grid="x")
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=8, color=colours[m]) for m in models]
    add_legend(ax, handles, models, width)
    return finish_figure(fig, f"Segue recovery: {result.prompt}", result.family_note, width)
