"""Temperature sweeps: one line per model of a metric against temperature, in two views.

The frame (`workbench.analysis.sweeps.SWEEP_COLUMNS`): model, temperature, metric, value
[ci_low, ci_high, method, n, estimator, interval, reliable, top_answer, p_other]. At high
temperature a model's mass can leave the answer space: its total-view entropy then *falls* and its
top answer becomes "(other)". So the figure draws the in-space metric beside the total one when the
frame has it, rings the points where P(other) is above the threshold, crosses the top-share points whose
top answer is "(other)", and carries a boxed warning naming the models and temperatures.

`sweep_table`, `sweep_how_made` and `sweep_warning` give the same as text for the terminal and the panels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.analysis.distributions import OTHER
from workbench.analysis.summaries import OTHER_WARNING_THRESHOLD
from workbench.errors import WorkbenchError
from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.distributions import estimate_text, made_by, top_cell
from workbench.plots.style import (
    INK,
    WARNING_EDGE,
    add_legend,
    finish_figure,
    format_temperature,
    literal,
    metric_label,
    model_colours,
    panel_figure,
    panel_title,
    style_axes,
)

# The in-space metric drawn beside each total-view metric.
IN_SPACE_OF = {"entropy_bits": "entropy_bits_in_space", "top1_mass": "top_share_in_space"}
IN_SPACE_METRICS = frozenset(IN_SPACE_OF.values())
TOP_SHARE_METRICS = frozenset({"top1_mass", "top_share"})


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def _prepare(frame: pd.DataFrame, metric: str, func: str, what: str) -> pd.DataFrame:
    chosen = frame[frame["metric"] == metric]
    reliable = chosen["reliable"].map(lambda r: r is None or pd.isna(r) or bool(r)) if "reliable" in chosen \
        else pd.Series(True, index=chosen.index)
    top = chosen["top_answer"].astype(str) if "top_answer" in chosen else pd.Series("", index=chosen.index)
    return chosen.assign(temperature=numeric_column(chosen, "temperature", func, what),
                         value=numeric_column(chosen, "value", func, what),
                         ci_low=optional_column(chosen, "ci_low"), ci_high=optional_column(chosen, "ci_high"),
                         method=chosen["method"].fillna("") if "method" in chosen else "",
                         p_other=optional_column(chosen, "p_other"), reliable=reliable.astype(bool), top_answer=top)


def _over(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per model, method and temperature whose P(other) is above the threshold."""
    if "p_other" not in frame.columns:
        return frame.iloc[:0]
    points = frame.assign(p_other=optional_column(frame, "p_other"))
    points = points[points["p_other"] > threshold]
    keys = [c for c in ("model", "method", "temperature") if c in points.columns]
    return points.drop_duplicates(keys)


def sweep_warning(frame: pd.DataFrame, threshold: float = OTHER_WARNING_THRESHOLD,
                  where: str = "the in-space numbers") -> str:
    """Which models at which temperatures have P(other) above the threshold, and what to do ("" when none)."""
    over = _over(frame, threshold)
    if over.empty:
        return ""
    parts, top_other = [], False
    for model, points in over.groupby("model", sort=False):
        temps = ", ".join(format_temperature(t) for t in sorted(points["temperature"].unique()))
        parts.append(f"{model} at T = {temps} (up to {points['p_other'].max():.1%})")
        top_other |= bool(points["top_answer"].astype(str).eq(OTHER).any()) if "top_answer" in points else False
    return (f"Most answers fall outside the answer space (P(other) > {threshold:g}) for {' and '.join(parts)}. "
            f"There the total-view entropy and top share mostly describe {OTHER}"
            + (f", and the top answer is {OTHER}" if top_other else "")
            + f": widen the answer space, or read {where}.")


def _names(every: pd.DataFrame, threshold: float) -> dict[str, str]:
    """The legend's words for what a sweep figure may draw; each drawn artist carries one of them."""
    return {"exact": "exact (no sampling error)", "sampled": f"sampled ({_ns(every)})",
            "band": "95% interval (see below)" if "interval" in every else "confidence interval",
            "whisker": "95% interval (see below)" if "interval" in every else "confidence interval",
            "faded": "faded: outside the estimator's checked regime", "ring": f"P(other) > {threshold:g}",
            "top_other": f"top answer is {OTHER}"}


def _draw_metric(ax: Axes, chosen: pd.DataFrame, models: list[str], colours: dict[str, str], ring: bool,
                 threshold: float, names: dict[str, str]) -> dict[str, bool]:
    """One metric's lines, markers, bands; rings where P(other) > threshold. Returns what was drawn.

    Every artist a legend entry stands for carries that entry's label (the rest are hidden from legends).
    """
    drawn = {"band": False, "whisker": False, "faded": False, "ring": False}
    span = float(np.nanmax(chosen["value"]) - min(0.0, float(np.nanmin(chosen["value"])))) or 1.0
    for model in models:
        group = chosen[chosen["model"] == model]
        colour = colours[model]
        methods = list(dict.fromkeys(group["method"]))
        for i, method in enumerate(methods):
            line = group[group["method"] == method].sort_values("temperature")
            t, v = line["temperature"].to_numpy(), line["value"].to_numpy()
            lo, hi = line["ci_low"].to_numpy(), line["ci_high"].to_numpy()
            # A model measured both ways gets a dashed sampled line, so the two never look like one.
            style = "--" if method == "sampled" and len(methods) > 1 else "-"
            ax.plot(t, v, color=colour, linewidth=1.6, linestyle=style, zorder=3,
                    label=literal(model) if i == 0 else "_nolegend_")
            hollow = method == "sampled"
            ok = line["reliable"].to_numpy()
            for keep, alpha, name in ((ok, 1.0, names.get(method, "_nolegend_")), (~ok, 0.35, names["faded"])):
                if keep.any():  # faded: outside the estimator's checked regime
                    ax.plot(t[keep], v[keep], linestyle="none", marker="o", markersize=5.5, markeredgewidth=1.4,
                            color=colour, markerfacecolor="white" if hollow else colour, alpha=alpha, zorder=4,
                            label=name)
            drawn["faded"] |= bool((~ok).any())
            # An interval thinner than a line's width is not drawn: a legend entry for it would name nothing seen.
            banded = (np.isfinite(lo) & np.isfinite(hi) & (hi - lo > span * 0.004)) if len(lo) \
                else np.zeros(0, dtype=bool)
            for start, stop in _runs(banded):
                if stop - start > 1:
                    drawn["band"] = True
                    ax.fill_between(t[start:stop], lo[start:stop], hi[start:stop], color=colour, alpha=0.18,
                                    linewidth=0, zorder=2, label=names["band"])
                else:  # a band needs two points; a lone interval is a whisker
                    drawn["whisker"] = True
                    ax.errorbar(t[start], v[start], yerr=[[v[start] - lo[start]], [hi[start] - v[start]]],
                                fmt="none", ecolor=colour, elinewidth=1.0, capsize=3, zorder=2,
                                label=names["whisker"])
    if ring:
        over = chosen[chosen["p_other"] > threshold]
        if len(over):
            drawn["ring"] = True
            ax.plot(over["temperature"], over["value"], linestyle="none", marker="o", markersize=11,
                    markerfacecolor="none", markeredgecolor=WARNING_EDGE, markeredgewidth=1.3, zorder=5,
                    label=names["ring"])
    return drawn


def _temperature_ticks(ax: Axes, temps: np.ndarray) -> None:
    """Ticks at the temperatures measured when they are few, round (0.5, 1.0) and evenly enough spread;
    otherwise round ticks from the house locator (0.5, 1.0, 1.5, never 0.875)."""
    round_ = bool(np.allclose(temps * 10, np.round(temps * 10)))
    spread = len(temps) < 2 or float(np.min(np.diff(temps))) >= (temps[-1] - temps[0]) / 10
    if round_ and spread and len(temps) <= 8:
        ax.set_xticks(temps, [format_temperature(t) for t in temps])


def _panel_n(chosen: pd.DataFrame) -> str:
    """'n = 100 samples per point' / '…; exact points: no sampling' / 'exact: no sampling': what each point rests on."""
    parts = []
    if (chosen["method"] == "sampled").any():
        parts.append(f"{_ns(chosen).replace('n=', 'n = ')} samples per point")
    if (chosen["method"] == "exact").any():
        parts.append("exact points: no sampling" if parts else "exact probabilities, no samples")
    other = [m for m in dict.fromkeys(chosen["method"]) if m not in ("exact", "sampled")]
    if other or not parts:
        n = optional_column(chosen, "n").dropna()
        parts.append(f"n = {int(n.min())}" + (f"-{int(n.max())}" if n.max() > n.min() else "") if len(n)
                     else "n not recorded")
    return "; ".join(parts)


def temperature_sweep_figure(frame: pd.DataFrame, metric: str = "entropy_bits", title: str = "",
                             note: str = "", in_space: bool | None = None,
                             other_warning_threshold: float = OTHER_WARNING_THRESHOLD) -> Figure:
    """One line per model of a metric against temperature, CI band shaded, exact points solid, sampled hollow.

    With `in_space` (default: when the frame has the metric's in-space partner, IN_SPACE_OF) the
    in-space metric is drawn in a second panel. Points whose P(other) is above
    `other_warning_threshold` are ringed and named in a boxed warning; top-share points whose top
    answer is "(other)" carry a cross; faded points are outside their estimator's checked regime.
    """
    func, what = "temperature_sweep_figure", "the sweep frame"
    check_frame(frame, func, what, ("model", "temperature", "metric", "value"),
                ("ci_low", "ci_high", "method", "n", "estimator", "interval", "reliable", "top_answer", "p_other"),
                "pass one row per model, temperature and metric")
    if not (frame["metric"] == metric).any():
        available = ", ".join(map(str, dict.fromkeys(frame["metric"])))
        raise WorkbenchError(f"{func}: no rows with metric {metric!r}; pass metric= one of {available}")
    partner = IN_SPACE_OF.get(metric)
    has_partner = partner is not None and bool((frame["metric"] == partner).any())
    if in_space and not has_partner:
        raise WorkbenchError(f"{func}: the frame has no in-space rows for {metric!r}; sweep with the metric "
                             f"{partner or 'in-space partner'} too, or pass in_space=False")
    metrics = [metric] + ([partner] if has_partner and in_space is not False else [])
    panels = [_prepare(frame, m, func, what) for m in metrics]
    for chosen in panels:
        no_duplicates(chosen, ["model", "method", "temperature"], func, "average repeats before plotting")
    every = pd.concat(panels, ignore_index=True)
    models = list(dict.fromkeys(every["model"]))
    colours = model_colours(models)
    width = 6.8 if len(metrics) == 1 else 10.0
    where = "the in-space view (right)" if len(metrics) > 1 else (
        "the in-space metrics" if metric not in IN_SPACE_METRICS else "these in-space numbers")
    warning = sweep_warning(panels[0], other_warning_threshold, where)
    # Each panel its own y range: the in-space entropy can be 30 times the total one, and both must be readable.
    fig, axes, legend_ax = panel_figure(width, 3.6, len(metrics), warning)
    drawn = {"band": False, "whisker": False, "faded": False, "ring": False, "top_other": False}
    names = _names(every, other_warning_threshold)
    for ax, name, chosen in zip(axes, metrics, panels, strict=True):
        ring = name not in IN_SPACE_METRICS and name != "p_other"
        for key, value in _draw_metric(ax, chosen, models, colours, ring, other_warning_threshold, names).items():
            drawn[key] |= value
        if name in TOP_SHARE_METRICS:  # the share of "(other)" is no answer's share: say so at the point
            top_other = chosen[chosen["top_answer"] == OTHER]
            if len(top_other):
                drawn["top_other"] = True
                ax.plot(top_other["temperature"], top_other["value"], linestyle="none", marker="x", markersize=7,
                        markeredgewidth=1.6, color=WARNING_EDGE, zorder=6, label=names["top_other"])
        _temperature_ticks(ax, np.sort(chosen["temperature"].unique()))
        ax.set_xlabel("temperature")
        label = metric_label(name)
        view = ""
        if len(metrics) > 1 or name in IN_SPACE_METRICS:
            view = "in-space view" if name in IN_SPACE_METRICS else f"total view, {OTHER} as one answer"
        panel_title(ax, "; ".join(p for p in (view, _panel_n(chosen)) if p), 1 / len(metrics))
        ax.set_ylabel(label)
        lows = np.concatenate([chosen["value"].to_numpy(), chosen["ci_low"].dropna().to_numpy()])
        highs = np.concatenate([chosen["value"].to_numpy(), chosen["ci_high"].dropna().to_numpy()])
        if np.nanmin(lows) >= 0:
            # Entropies, shares and divergences start at 0 (a floating axis exaggerates), with room above
            # the highest point so its marker and ring are not cut off.
            top = float(np.nanmax(highs))
            ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
        style_axes(ax)
    handles, labels = _legend_entries(every, models, colours, drawn, names)
    add_legend(legend_ax, handles, labels, width, header=len(metrics) > 1)
    made = sweep_how_made(every, tuple(metrics), words=True)
    return finish_figure(fig, title, "\n".join([*made, *([note] if note else [])]), width)


def _legend_entries(every: pd.DataFrame, models: list[str], colours: dict[str, str], drawn: dict[str, bool],
                    names: dict[str, str]) -> tuple[list[Any], list[str]]:
    """Black proxies for what was drawn (the colours belong to the models); add_legend drops any entry no
    drawn artist carries."""
    handles: list[Any] = [Line2D([], [], color=colours[m], linewidth=1.6) for m in models]
    labels = [literal(m) for m in models]
    present = list(dict.fromkeys(every["method"]))
    for method in ("exact", "sampled"):
        if method in present:
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=5.5, color=INK,
                                  markerfacecolor=INK if method == "exact" else "white", markeredgewidth=1.4))
            labels.append(names[method])
    if drawn["band"]:
        handles.append(Line2D([], [], color="#999999", linewidth=6, alpha=0.4))
        labels.append(names["band"])
    elif drawn["whisker"]:  # only lone intervals were drawn: the key shows a whisker, not a band
        handles.append(Line2D([], [], color="#777777", linewidth=1.0, marker="_", markersize=6))
        labels.append(names["whisker"])
    if drawn["faded"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=5.5, color=INK, alpha=0.35))
        labels.append(names["faded"])
    if drawn["ring"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                              markeredgecolor=WARNING_EDGE, markeredgewidth=1.3))
        labels.append(names["ring"])
    if drawn["top_other"]:
        handles.append(Line2D([], [], linestyle="none", marker="x", markersize=7, markeredgewidth=1.6,
                              color=WARNING_EDGE))
        labels.append(names["top_other"])
    return handles, labels


def _ns(rows: pd.DataFrame) -> str:
    """'n=100' (or 'n=32-100') of the sampled rows."""
    n = optional_column(rows[rows["method"] == "sampled"], "n").dropna()
    if n.empty:
        return "n unknown"
    low, high = int(n.min()), int(n.max())
    return f"n={low}" if low == high else f"n={low}-{high}"


def sweep_how_made(frame: pd.DataFrame, metrics: tuple[str, ...] | None = None, words: bool = False) -> list[str]:
    """'entropy_bits, entropy_bits_in_space = exact: plug-in (...), no sampling error; sampled (n=100):
    Miller-Madow, score (...) 95% interval': one line per group of metrics made the same way
    (`words`: the metrics named as on the figure's axes, for a caption)."""
    if "estimator" not in frame.columns:
        return []
    groups: dict[str, list[str]] = {}
    for metric in metrics or tuple(dict.fromkeys(frame["metric"])):
        rows = frame[(frame["metric"] == metric) & pd.to_numeric(frame["value"], errors="coerce").notna()]
        intervals = rows["interval"].astype(str) if "interval" in rows else pd.Series("", index=rows.index)
        made = []
        for method, group in rows.groupby("method", sort=False):
            name = f"{method} ({_ns(group)})" if method == "sampled" else str(method)
            for estimator, interval in dict.fromkeys(zip(group["estimator"].astype(str), intervals[group.index],
                                                         strict=True)):
                made.append(made_by(name, estimator, interval))
        if made:
            groups.setdefault("; ".join(made), []).append(metric)
    if words:
        return [f"{'; '.join(metric_label(n) for n in names)}: {made}" for made, names in groups.items()]
    return [f"{', '.join(names)} = {made}" for made, names in groups.items()]


def sweep_table(frame: pd.DataFrame, metrics: tuple[str, ...] | None = None, digits: int = 2) -> pd.DataFrame:
    """One text line per model, temperature and method: n, p_other, each metric as 'value [low, high]'
    († outside its regime; exact: the value alone), and the top answer ("(other)" says what it is)."""
    metrics = metrics or tuple(m for m in dict.fromkeys(frame["metric"]) if m != "p_other")
    keys = ["model", "temperature", "method"]
    lines = []
    for (model, temperature, method), group in frame.groupby(keys, sort=False):
        by_metric = group.set_index("metric")
        n = group["n"].iloc[0] if "n" in group else math.nan
        line: dict[str, Any] = {"model": model, "temperature": format_temperature(temperature), "method": method,
                                "n": "–" if pd.isna(n) else str(int(n))}
        if "p_other" in by_metric.index:
            row = by_metric.loc["p_other"]
            line["p_other"] = estimate_text(row["value"], row.get("ci_low"), row.get("ci_high"),
                                            row.get("reliable", True), digits)
        elif "p_other" in group:
            line["p_other"] = estimate_text(group["p_other"].iloc[0], digits=digits)
        for metric in metrics:
            if metric in by_metric.index:
                row = by_metric.loc[metric]
                line[metric] = estimate_text(row["value"], row.get("ci_low"), row.get("ci_high"),
                                             row.get("reliable", True), digits)
        if "top_answer" in group:
            line["top_answer"] = top_cell(group["top_answer"].iloc[0])
        lines.append(line)
    return pd.DataFrame(lines)
