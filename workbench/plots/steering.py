"""The steering-sweep figure: what steering did to the measure, beside the damage it did to ordinary text.

The frame is a steering sweep's (`workbench.lens.sweep.COLUMNS`): one row per (layer, coefficient) with
layer, coefficient, operator, units, measure, value [ci_low, ci_high], nll_change and damaged. Left, the
measure against the coefficient, one line per layer, the unsteered parent as a dashed line; right, the
damage guard: the change of the prose NLL (in %) against the same coefficients, with the threshold as a
line. A point past the threshold is crossed on both panels: its effect is bought with damage.

With the `ablate` operator (no coefficient) each layer is one point: x is the layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.style import (
    INK,
    MUTED,
    WARNING_EDGE,
    WARNING_FILL,
    add_legend,
    finish_figure,
    literal,
    metric_label,
    model_colours,
    panel_figure,
    panel_title,
    style_axes,
    wrapped,
)

# Short y-axis words per measure (the panel title carries the full measure label).
MEASURE_AXES = {
    "persona": "P(trait-matching answer)",
    "answers": metric_label("entropy_bits_in_space"),
    "keywords": "share of continuations with the words",
    "segue": "share back in the prompt's world",
}
SHARE_MEASURES = frozenset({"persona", "keywords", "segue"})
ANSWERED_THRESHOLD = 0.5  # below this p_answered a point is drawn hollow (as `workbench persona` warns)
DAMAGED_MARK = {"marker": "X", "markersize": 9, "markerfacecolor": WARNING_EDGE, "markeredgecolor": "white",
                "markeredgewidth": 0.8, "linestyle": "none", "zorder": 6}


def _labels(threshold: float) -> dict[str, str]:
    """The legend's words; each drawn artist carries one of them (add_legend names nothing undrawn)."""
    percent = f"{threshold * 100:g} %"
    return {"parent": "unsteered parent", "band": "95% interval", "damaged": f"damaged: prose NLL > +{percent}",
            "threshold": f"damage threshold (+{percent})",
            "unanswered": f"hollow: p_answered < {ANSWERED_THRESHOLD:g} (mostly no answer option)"}


def _layer_name(layer: int) -> str:
    return f"after block {layer}"


def _prepare(frame: pd.DataFrame, func: str) -> pd.DataFrame:
    what = "the steering sweep's frame"
    check_frame(frame, func, what, ("layer", "coefficient", "value", "nll_change"),
                ("operator", "units", "measure", "ci_low", "ci_high", "damaged", "kl_neutral"),
                "pass the .frame of a steering sweep")
    damaged = frame["damaged"].map(lambda d: bool(d) if d is not None and not pd.isna(d) else False) \
        if "damaged" in frame else pd.Series(False, index=frame.index)
    return frame.assign(layer=numeric_column(frame, "layer", func, what).astype(int),
                        coefficient=pd.to_numeric(frame["coefficient"], errors="coerce").astype(float),
                        value=numeric_column(frame, "value", func, what),
                        ci_low=optional_column(frame, "ci_low"), ci_high=optional_column(frame, "ci_high"),
                        nll_change=numeric_column(frame, "nll_change", func, what) * 100.0,
                        damaged=damaged.astype(bool))


def _band(ax: Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, v: np.ndarray, colour: str, label: str,
          span: float) -> bool:
    """A shaded interval over the points that have one (a whisker where a point stands alone); whether any."""
    has = np.isfinite(lo) & np.isfinite(hi) & (hi - lo > span * 0.004)
    if not has.any():
        return False
    if has.sum() > 1 and len(x) > 1:
        ax.fill_between(x, np.where(has, lo, v), np.where(has, hi, v), color=colour, alpha=0.16, linewidth=0,
                        zorder=2, label=label)
    else:
        ax.errorbar(x[has], v[has], yerr=[v[has] - lo[has], hi[has] - v[has]], fmt="none", ecolor=colour,
                    elinewidth=1.0, capsize=3, zorder=2, label=label)
    return True


def _coefficient_ticks(ax: Axes, values: np.ndarray) -> None:
    """Ticks at the coefficients measured when they are few and evenly enough spread (the grid is the design)."""
    values = np.unique(values)
    if 1 < len(values) <= 7 and float(np.min(np.diff(values))) >= (values[-1] - values[0]) / 12:
        ax.set_xticks(values, [f"{v:g}".replace("-", "\u2212") for v in values])


def _x_label(rows: pd.DataFrame) -> str:
    operator = str(rows["operator"].iloc[0]) if "operator" in rows else "add"
    units = str(rows["units"].iloc[0]) if "units" in rows else "median-norm"
    unit = "\u00d7 the layer's median residual norm" if units == "median-norm" else "raw units"
    what = "coefficient added after projecting out" if operator == "ablate-add" else "steering coefficient"
    return f"{what} ({unit})"


def _draw_sweep(measure_ax: Axes, damage_ax: Axes, rows: pd.DataFrame, layers: list[int],
                colours: dict[str, str], names: dict[str, str]) -> dict[str, bool]:
    """Lines of the measure and the NLL change against the coefficient, one per layer."""
    drawn = {"band": False, "damaged": False}
    values = np.concatenate([rows["value"], rows["ci_low"].dropna(), rows["ci_high"].dropna()])
    span = float(np.nanmax(values) - np.nanmin(values)) if np.isfinite(values).any() else 1.0
    for layer in layers:
        line = rows[rows["layer"] == layer].sort_values("coefficient")
        colour = colours[_layer_name(layer)]
        x = line["x"].to_numpy()
        for ax, column in ((measure_ax, "value"), (damage_ax, "nll_change")):
            ax.plot(x, line[column], color=colour, linewidth=1.6, marker="o", markersize=4.5, zorder=4,
                    label=_layer_name(layer))
        drawn["band"] |= _band(measure_ax, x, line["ci_low"].to_numpy(), line["ci_high"].to_numpy(),
                               line["value"].to_numpy(), colour, names["band"], span or 1.0)
    _coefficient_ticks(measure_ax, rows["coefficient"].to_numpy())
    _coefficient_ticks(damage_ax, rows["coefficient"].to_numpy())
    for ax in (measure_ax, damage_ax):
        wrapped(ax.xaxis.label, _x_label(rows), 11.0, 0.5, ax=ax)
    return drawn


def _draw_ablation(measure_ax: Axes, damage_ax: Axes, rows: pd.DataFrame, layers: list[int],
                   colours: dict[str, str], names: dict[str, str]) -> dict[str, bool]:
    """One point per layer (the direction projected out after that block): the measure with its interval,
    the NLL change as a bar."""
    drawn = {"band": False, "damaged": False}
    for layer in layers:
        row = rows[rows["layer"] == layer].iloc[0]
        colour = colours[_layer_name(layer)]
        v, lo, hi = float(row["value"]), float(row["ci_low"]), float(row["ci_high"])
        measure_ax.plot([layer], [v], color=colour, marker="o", markersize=6, linestyle="none", zorder=4,
                        label=_layer_name(layer))
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            drawn["band"] = True
            measure_ax.errorbar([layer], [v], yerr=[[v - lo], [hi - v]], fmt="none", ecolor=colour, elinewidth=1.0,
                                capsize=3, zorder=3, label=names["band"])
        damage_ax.bar([layer], [float(row["nll_change"])], width=0.45, color=colour, zorder=3,
                      label=_layer_name(layer))
    for ax in (measure_ax, damage_ax):
        ax.set_xticks(layers, [str(layer) for layer in layers])
        ax.set_xlim(min(layers) - 0.8, max(layers) + 0.8)
        wrapped(ax.xaxis.label, "block after which the direction is projected out", 11.0, 0.5, ax=ax)
    return drawn


def _mark_damaged(measure_ax: Axes, damage_ax: Axes, rows: pd.DataFrame, x: str, label: str) -> bool:
    """A cross over every damaged point, on both panels (the same label: one legend entry)."""
    hurt = rows[rows["damaged"]]
    if hurt.empty:
        return False
    measure_ax.plot(hurt[x], hurt["value"], label=label, **DAMAGED_MARK)
    damage_ax.plot(hurt[x], hurt["nll_change"], label=label, **DAMAGED_MARK)
    return True


def _mark_unanswered(measure_ax: Axes, rows: pd.DataFrame, x: str, colours: dict[str, str], label: str) -> bool:
    """Hollow markers where most probability is on no answer option (p_answered below ANSWERED_THRESHOLD): the
    measure is renormalised over the options there and says little."""
    low = rows[optional_column(rows, "p_answered") < ANSWERED_THRESHOLD]
    for i, (_, row) in enumerate(low.iterrows()):
        # A ring around the point (over a damage cross too, which shows through it: both can be true at once).
        measure_ax.plot([row[x]], [row["value"]], marker="o", markersize=12, markerfacecolor="none",
                        markeredgewidth=1.6, markeredgecolor=colours[_layer_name(int(row["layer"]))],
                        linestyle="none", zorder=7, label=label if i == 0 else "_nolegend_")
    return not low.empty


def _measure_limits(ax: Axes, rows: pd.DataFrame, measure: str, parent_value: float | None) -> None:
    if measure in SHARE_MEASURES:  # a share: the whole 0-1 range, so a small effect looks small
        ax.set_ylim(-0.03, 1.03)
        return
    highs = np.concatenate([rows["value"], rows["ci_high"].dropna(), [parent_value or 0.0]])
    lows = np.concatenate([rows["value"], rows["ci_low"].dropna(), [parent_value or 0.0]])
    if np.isfinite(lows).any() and np.nanmin(lows) >= 0:  # entropies start at 0
        top = float(np.nanmax(highs))
        ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)


def _plain_number(value: float, _position: int) -> str:
    """A tick as a plain number (1000, not 10^3); a module-level function, so the figure pickles for export."""
    return f"{value:g}".replace("-", "\u2212")


def _damage_limits(ax: Axes, rows: pd.DataFrame, threshold: float) -> bool:
    """0 and the threshold always in view, with room above the highest point for its cross. When the worst point
    is far past the threshold (x20) the axis is linear up to the threshold and logarithmic above it, so the
    threshold does not sink into 0; returns whether it is."""
    changes = rows["nll_change"].to_numpy()
    finite = changes[np.isfinite(changes)]
    line = threshold * 100
    high = float(finite.max()) if len(finite) else 0.0
    low = min(0.0, float(finite.min()) if len(finite) else 0.0)
    if line > 0 and high > 20 * line:
        ax.set_yscale("symlog", linthresh=line, linscale=1.0)
        ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        ax.set_ylim(low * 1.5 if low < -line else -line * 0.1, high * 2.0)
        return True
    top = max(line * 1.5, high * 1.1)
    ax.set_ylim(low - 0.05 * (top - low), top)
    return False


def steering_sweep_figure(frame: pd.DataFrame, measure_label: str, parent_value: float | None = None,
                          threshold: float = 0.10, title: str | None = None, note: str = "") -> Figure:
    """The measure against the coefficient per layer (left) beside the prose-NLL damage guard (right).

    `frame`: a steering sweep's `.frame`; `measure_label`: what the measure is, in words (the sweep's
    `.measure_label`); `parent_value`: the unsteered parent's measure, drawn dashed; `threshold`: the relative
    NLL rise that counts as damage (0.10 = +10 %). Damaged points are crossed on both panels. With operator
    "ablate" (coefficient NaN) x is the layer, one point per layer.
    """
    func = "steering_sweep_figure"
    rows = _prepare(frame, func)
    operator = str(rows["operator"].iloc[0]) if "operator" in rows else "add"
    ablate = operator == "ablate" or bool(rows["coefficient"].isna().all())
    no_duplicates(rows, ["layer"] if ablate else ["layer", "coefficient"], func, "one row per point of the sweep")
    measure = str(rows["measure"].iloc[0]) if "measure" in rows else ""
    layers = sorted(rows["layer"].unique().tolist())
    grid = np.unique(rows["coefficient"].dropna().to_numpy())
    # Layers a little apart around each coefficient: equal values at two layers stay visible.
    dodge = 0.012 * float(grid[-1] - grid[0]) if len(grid) > 1 else 0.0
    rows["x"] = rows["coefficient"] + (rows["layer"].map(layers.index) - (len(layers) - 1) / 2) * dodge
    colours = model_colours([_layer_name(layer) for layer in layers])
    names = _labels(threshold)
    width = 10.0
    fig, (measure_ax, damage_ax), legend_ax = panel_figure(width, 3.4, 2)
    draw = _draw_ablation if ablate else _draw_sweep
    drawn = draw(measure_ax, damage_ax, rows, layers, colours, names)
    drawn["unanswered"] = _mark_unanswered(measure_ax, rows, "layer" if ablate else "x", colours,
                                           names["unanswered"])
    drawn["damaged"] = _mark_damaged(measure_ax, damage_ax, rows, "layer" if ablate else "x", names["damaged"])
    if parent_value is not None and math.isfinite(parent_value):
        measure_ax.axhline(parent_value, color=INK, linestyle="--", linewidth=1.1, zorder=3, label=names["parent"])
    # The guard: the line at the threshold and the damaged zone above it, pale so the points stay in front.
    damage_ax.axhline(threshold * 100, color=WARNING_EDGE, linestyle=":", linewidth=1.3, zorder=3,
                      label=names["threshold"])
    damage_ax.axhspan(threshold * 100, 1e9, color=WARNING_FILL, alpha=0.6, linewidth=0, zorder=1)
    damage_ax.axhline(0, color=MUTED, linewidth=0.8, zorder=2)
    _measure_limits(measure_ax, rows, measure, parent_value)
    log = _damage_limits(damage_ax, rows, threshold)
    measure_ax.set_ylabel(MEASURE_AXES.get(measure, "measure"))
    damage_ax.set_ylabel("prose NLL change (%)")
    # The measure in words once: in the default title, or over its panel when the caller names the figure.
    panel_title(measure_ax, "effect on the measure" if title is None else literal(measure_label), 0.5)
    panel_title(damage_ax, "damage guard: prose NLL" + (f" (log scale above +{threshold * 100:g} %)" if log else ""),
                0.5)
    for ax in (measure_ax, damage_ax):
        style_axes(ax)
    handles, labels = _legend(layers, colours, names, drawn, ablate)
    add_legend(legend_ax, handles, labels, width, header=True)
    if title is None:
        title = f"{_default_title(rows, operator)}: {literal(measure_label)}"
    caption = (f"Damage guard: mean token NLL of ordinary prose, change from the unsteered parent (shaded above "
               f"+{threshold * 100:g} %: there an effect is bought with damage).")
    return finish_figure(fig, title, "\n".join(p for p in (caption, note) if p), width)


def _legend(layers: list[int], colours: dict[str, str], names: dict[str, str], drawn: dict[str, bool],
            ablate: bool) -> tuple[list[Any], list[str]]:
    handles: list[Any] = [Line2D([], [], color=colours[_layer_name(layer)], linewidth=0 if ablate else 1.6,
                                 marker="o", markersize=5) for layer in layers]
    labels = [_layer_name(layer) for layer in layers]
    handles.append(Line2D([], [], color=INK, linestyle="--", linewidth=1.1))
    labels.append(names["parent"])
    if drawn["band"]:
        handles.append(Line2D([], [], color="#999999", linewidth=6, alpha=0.4) if not ablate else
                       Line2D([], [], color="#777777", linewidth=1.0, marker="_", markersize=6))
        labels.append(names["band"])
    if drawn["unanswered"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=6.5, markerfacecolor="white",
                              markeredgewidth=1.6, markeredgecolor=INK))
        labels.append(names["unanswered"])
    handles.append(Line2D([], [], color=WARNING_EDGE, linestyle=":", linewidth=1.3))
    labels.append(names["threshold"])
    if drawn["damaged"]:
        handles.append(Line2D([], [], **DAMAGED_MARK))
        labels.append(names["damaged"])
    return handles, labels


def _default_title(rows: pd.DataFrame, operator: str) -> str:
    """'Steering gemma-3-270m along wedding-embedding' from the parent and a steered model's name."""
    parent = str(rows["parent"].iloc[0]) if "parent" in rows else "the model"
    direction = ""
    if "model" in rows:
        steered = [m for m in rows["model"].astype(str) if m.count("@") >= 3]
        direction = steered[0].split("@")[1] if steered else ""
    if operator == "ablate":
        return f"Projecting {direction or 'a direction'} out of {literal(parent)}"
    return f"Steering {literal(parent)}" + (f" along {direction}" if direction else "")


__all__ = ["steering_sweep_figure"]
