"""The agentic-persona figures: per-trait probability of the trait-matching answer, one bar per model under
one framing (`persona_figure`), and every model under every framing (`persona_grid_figure`).

Both name the framing, show p_answered (the mass on the answer options) next to each score, mark the
scores of a model that mostly answers something else, and give the yes-bias with its CI.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.sizing import KEEP_HEIGHT, keep
from workbench.plots.style import (
    FONT,
    INK,
    MUTED,
    add_legend,
    finish_figure,
    grouped_barh,
    literal,
    model_colours,
    new_figure,
    note_height,
    panel_title,
    style_axes,
    wrapped,
)

if TYPE_CHECKING:
    from workbench.experiments.personas import PersonaResult

WARN = "#B2182B"  # the colour of a p_answered below the threshold
P_MATCH_LABEL = "P(trait-matching answer), renormalised over the answer options"


def _overall(result: PersonaResult) -> pd.DataFrame:
    frame = result.traits[result.traits["keyed"] == "all"]
    if frame.empty:
        raise WorkbenchError("no trait scores to plot; run persona_eval first")
    return frame


def _framings(result: PersonaResult) -> dict[str, list[str]]:
    return {str(m): list(dict.fromkeys(g)) for m, g in result.items.groupby("model", sort=False)["framing"]}


def _bias_note(result: PersonaResult, framing: str | None = None) -> str:
    """yes-bias (agree - disagree) per model with its CI, over all traits."""
    balance = result.balance
    if balance is None or len(balance) == 0:
        return ""
    if "trait" in balance:
        balance = balance[balance["trait"] == "all"]
    if framing is not None and "framing" in balance:
        balance = balance[balance["framing"] == framing]
    parts = []
    for row in balance.to_dict("records"):
        ci = ""
        if not math.isnan(row.get("yes_bias_ci_low", math.nan)):
            ci = f" [{row['yes_bias_ci_low']:+.2f}, {row['yes_bias_ci_high']:+.2f}]"
        where = f" ({row['framing']})" if framing is None and "framing" in row and len(set(balance["framing"])) > 1 \
            else ""
        parts.append(f"{row['model']}{where}: yes-bias {row['yes_bias']:+.2f}{ci}")
    return ("yes-bias = agree-keyed minus disagree-keyed P(match), 95% CI; 0 = none: " + "; ".join(parts) + "."
            if parts else "")


def _position_note(result: PersonaResult) -> str:
    """Position bias (share of "(A)" minus chance) per model with its CI, for items shown in several orders."""
    positions = getattr(result, "positions", None)  # results drawn from saved tables may lack it
    if positions is None or len(positions) == 0:
        return ""
    rows = positions[positions["trait"] == "all"].to_dict("records")
    several = len({r["framing"] for r in rows}) > 1
    parts = []
    for r in rows:
        where = f" ({r['framing']})" if several else ""
        parts.append(f"{r['model']}{where}: {r['position_bias']:+.2f} [{r['position_bias_ci_low']:+.2f}, "
                     f"{r['position_bias_ci_high']:+.2f}]")
    return ("Position bias = share of (A) whatever it says minus chance, options shown in every order, 95% CI: "
            + "; ".join(parts) + ".")


def _answered_note(frame: pd.DataFrame, threshold: float) -> str:
    if "p_answered_low" not in frame or not frame["p_answered_low"].any():
        return ""
    return (f"Red 'answered' values: p_answered < {threshold:g}, the model mostly answers something other than the "
            "options; its bars say what it answers when it does.")


def _items_n(rows: pd.DataFrame) -> str:
    """'n = 12 items per trait' (or a range): how many statements each score averages."""
    column = "n_items" if "n_items" in rows else "n" if "n" in rows else None
    n = pd.to_numeric(rows[column], errors="coerce").dropna() if column else pd.Series(dtype=float)
    if n.empty:
        return "n not recorded"
    low, high = int(n.min()), int(n.max())
    return f"n = {low}{f'-{high}' if high > low else ''} items per score"


def _threshold(result: PersonaResult) -> float:
    return float(getattr(result, "answered_threshold", 0.5))


def persona_figure(result: PersonaResult, title: str = "Agentic-persona statements") -> Figure:
    """Per-trait bars of P(trait-matching answer), one bar per model, with 95% CIs, p_answered and the framing.

    A result with several framings per model (a framings grid) is drawn by persona_grid_figure.
    """
    framings = _framings(result)
    if any(len(f) > 1 for f in framings.values()):
        return persona_grid_figure(result)
    frame = _overall(result)
    traits = list(dict.fromkeys(frame["trait"]))
    models = list(dict.fromkeys(frame["model"]))
    colours = model_colours(models)
    names = {f[0] for f in framings.values()}
    if len(names) == 1:
        title = f"{title} (framing: {next(iter(names))})"
        framing_note = f"Framing {next(iter(names))} for every model."
    else:
        framing_note = ("FRAMINGS DIFFER between models (see legend): model and framing are confounded; "
                        "compare models under one framing.")
    note = " ".join(part for part in (
        f"{result.family_note}.", framing_note, "Dashed line: indifference between two options.",
        _bias_note(result), _position_note(result), _answered_note(frame, _threshold(result))) if part)
    width = 7.5
    # Rows of bars on top of what the title, legend, axis label and the wrapped note take (~13 characters
    # per inch of note): one trait with a long note must not leave the bars no room.
    decorations = 2.2 + note_height(note, width)
    height = decorations + 0.55 * len(traits) * max(1, len(models)) ** 0.5
    fig = keep(new_figure(width, height), KEEP_HEIGHT)  # rows of traits keep their room when resized
    ax = fig.subplots()
    methods = result.items.groupby("model")["method"].first().to_dict()
    labels = {m: literal(f"{m} ({framings.get(m, ['?'])[0]}, {methods.get(m)})") for m in models}
    grouped_barh(ax, frame, "trait", "p_match", traits, models, labels)
    if "p_answered" in frame:
        bar = 0.8 / len(models)
        for m, model in enumerate(models):
            rows = frame[frame["model"] == model].set_index("trait").reindex(traits)
            for i, row in enumerate(rows.itertuples()):
                if math.isnan(row.p_answered):
                    continue
                low = bool(getattr(row, "p_answered_low", False))
                ax.text(1.01, i + (m - (len(models) - 1) / 2) * bar, f"answered {row.p_answered:.2f}",
                        transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=FONT["annotation"],
                        color=WARN if low else MUTED, fontweight="bold" if low else "normal", clip_on=False)
    ax.axvline(0.5, color="#777777", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    wrapped(ax.xaxis.label, f"{P_MATCH_LABEL} (mean over items, 95% bootstrap CI)", 11.0, ax=ax)
    panel_title(ax, _items_n(frame))
    style_axes(ax, grid="x")
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=8, color=colours[m]) for m in models]
    add_legend(ax, handles, [labels[m] for m in models], width)
    return finish_figure(fig, title, note, width)


def persona_grid_figure(result: PersonaResult, title: str = "Agentic personas: every model under every framing",
                        ) -> Figure:
    """One panel per trait: P(trait-matching answer) with its 95% CI for each model (colour) under each
    framing (x), p_answered under each point (hollow markers and red text when below the threshold)."""
    frame = _overall(result)
    traits = list(dict.fromkeys(frame["trait"]))
    models = list(dict.fromkeys(frame["model"]))
    framings = list(dict.fromkeys(frame["framing"]))
    colours = model_colours(models)
    threshold = _threshold(result)
    columns = min(3, len(traits))
    panels_down = math.ceil(len(traits) / columns)
    width = max(6.0, min(13.0, 1.2 + columns * (1.0 + 1.1 * len(framings) * max(1, len(models)) ** 0.5)))
    height = 1.6 + 2.6 * panels_down
    fig = new_figure(width, height)
    axes = np.atleast_1d(fig.subplots(panels_down, columns, sharey=True, squeeze=False)).ravel()
    step = 0.7 / max(1, len(models))
    methods = result.items.groupby("model")["method"].first().to_dict()
    names = {m: literal(f"{m} ({methods.get(m)})") for m in models}
    hollow = f"p_answered < {threshold:g}"
    for ax, trait in zip(axes, traits, strict=False):
        rows = frame[frame["trait"] == trait]
        for m, model in enumerate(models):
            mine = rows[rows["model"] == model].set_index("framing").reindex(framings)
            x = np.arange(len(framings)) + (m - (len(models) - 1) / 2) * step
            y = mine["p_match"].to_numpy(dtype=float)
            errors = np.vstack([(mine["p_match"] - mine["ci_low"]).clip(lower=0).fillna(0),
                                (mine["ci_high"] - mine["p_match"]).clip(lower=0).fillna(0)])
            ax.plot(x, y, color=colours[model], linewidth=0.8, alpha=0.5, linestyle=":")
            ax.errorbar(x, y, yerr=errors, fmt="none", ecolor=colours[model], elinewidth=1.0, capsize=2)
            low = mine["p_answered_low"].fillna(False).to_numpy(dtype=bool) if "p_answered_low" in mine \
                else np.zeros(len(x), dtype=bool)
            ax.scatter(x[~low], y[~low], color=colours[model], s=30, zorder=3, label=names[model])
            if low.any():  # only then does the legend explain hollow markers
                ax.scatter(x[low], y[low], facecolor="white", edgecolor=colours[model], linewidth=1.4, s=30,
                           zorder=3, label=hollow)
            if "p_answered" in mine:
                for xi, answered, flag in zip(x, mine["p_answered"], low, strict=True):
                    if not math.isnan(answered):  # beside the point's bar, never on it
                        ax.text(xi + 0.04, 0.02, f"answered {answered:.2f}", ha="left", va="bottom", rotation=90,
                                fontsize=FONT["annotation"], color=WARN if flag else MUTED,
                                fontweight="bold" if flag else "normal")
        ax.axhline(0.5, color="#777777", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.6, len(framings) - 0.4)
        ax.set_xticks(np.arange(len(framings)), [literal(f) for f in framings], fontsize=FONT["tick"],
                      rotation=15 if len(framings) > 2 else 0)
        # The trait names the panel from below: above it sits the legend.
        ax.xaxis.label.set(fontsize=FONT["label"], color=INK)
        wrapped(ax.xaxis.label, f"{trait}\n{_items_n(rows)}", 11.0, 1 / columns, ax=ax)  # under its own panel
        style_axes(ax, grid="y")
    for ax in axes[len(traits):]:
        ax.set_visible(False)
    fig._workbench_panels = list(axes[: len(traits)])  # type: ignore[attr-defined]  # one column stacks them
    for ax in axes[::columns]:
        ax.set_ylabel("P(trait-matching answer)\nrenormalised over the options", fontsize=FONT["label"])
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=7, color=colours[m]) for m in models]
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7, markerfacecolor="white",
                          markeredgecolor=MUTED))
    add_legend(axes[0], handles, [names[m] for m in models] + [hollow], width)
    note = " ".join(part for part in (
        f"{result.family_note}.",
        "Each point: mean over items with a 95% bootstrap CI. 'answered': p_answered, the probability mass on the "
        f"answer options (red, hollow marker: below {threshold:g}, the model mostly answers something else, and "
        "the point says what it answers when it does). Dashed line: indifference.",
        _bias_note(result), _position_note(result)) if part)
    return finish_figure(fig, title, note, width)
