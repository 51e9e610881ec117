"""The agentic-persona figure: per-trait probability of the trait-matching answer, one bar per model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.style import add_legend, finish_figure, grouped_barh, model_colours, new_figure, style_axes

if TYPE_CHECKING:
    from workbench.experiments.personas import PersonaResult


def persona_figure(result: PersonaResult, title: str = "Agentic-persona statements") -> Figure:
    """Per-trait bars of the probability of the trait-matching answer, one bar per model, with 95% CIs."""
    frame = result.traits[result.traits["keyed"] == "all"]
    if frame.empty:
        raise WorkbenchError("persona_figure: no trait scores; run persona_eval first")
    traits = list(dict.fromkeys(frame["trait"]))
    models = list(dict.fromkeys(frame["model"]))
    colours = model_colours(models)
    width, height = 7.0, 1.2 + 0.55 * len(traits) * max(1, len(models)) ** 0.5
    fig = new_figure(width, height)
    ax = fig.subplots()
    grouped_barh(ax, frame, "trait", "p_match", traits, models)
    ax.axvline(0.5, color="#777777", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of the answer matching the trait (renormalised over Yes/No)")
    style_axes(ax, grid="x")
    methods = result.items.groupby("model")["method"].first().to_dict()
    framings = result.items.groupby("model")["framing"].first().to_dict()
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=8, color=colours[m]) for m in models]
    labels = [f"{m} ({framings.get(m)}, {methods.get(m)})" for m in models]
    add_legend(ax, handles, labels, width)
    bias = "; ".join(f"{r.model}: yes-bias {r.yes_bias:+.2f}" for r in result.balance.itertuples())
    return finish_figure(fig, title, f"{result.family_note}. Dashed line: indifference. {bias}", width)
