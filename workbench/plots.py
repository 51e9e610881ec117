"""Figures with matplotlib's object-oriented API (a `Figure`, never pyplot's global state),
exported with provenance: the run ids, models and configs behind every figure.

Every figure function takes tidy pandas DataFrames, returns a `Figure` and shares one house
style: the Okabe-Ito colours, a stable colour per model, small consistent fonts, a light grid
and no top/right spines. The frames (columns in brackets are optional):

- answer_distribution_figure: model, answer, probability [ci_low, ci_high, count, method,
  temperature, n, kind]; NaN CIs (exact distributions) draw no whisker.
- temperature_sweep_figure: model, temperature, metric, value [ci_low, ci_high, method].
- embedding_map_figure: points: model, x, y [text, cluster]; clusters: cluster, label, x, y
  [share_<model>, ignored].
- divergence_heatmap_figure: prompt, pair, <value> (default jsd) [p_adjusted].

`export_figure` writes PNG/SVG/PDF plus a JSON sidecar and embeds the provenance in each file,
after `scrub_secrets` has removed anything that looks like a credential.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation

from workbench import __version__
from workbench.analysis import AnswerFn, answer_distribution, first_line
from workbench.errors import WorkbenchError
from workbench.metrics import wilson_interval
from workbench.secrets import REDACTED, scrub_secrets  # noqa: F401  (re-exported: plots.scrub_secrets)

# -- house style (applied per figure; rcParams stay untouched so notebooks keep their own) ------

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies. Black is left
# out: it is the text colour and a black bar reads as emphasis. Blue and orange come first so the
# usual two-model comparison gets the most distinct pair; yellow is last because it is faint on white.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
INK = "#222222"  # text and error bars: softer than pure black, still high contrast
GRID = "#DDDDDD"
MUTED = "#555555"  # notes and secondary text
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and readable with any colour-vision deficiency
FONT = {"title": 11.0, "label": 9.5, "tick": 8.5, "legend": 8.5, "note": 8.0, "annotation": 7.5}
DPI = 150  # sharp enough to paste into a paper, small enough for a notebook
SIGNIFICANCE = 0.05  # adjusted p below this gets a star in the heatmap
REST = "(rest)"  # the bar that folds every answer beyond `top`

# Shorter names for metrics on axes and colour bars; anything else is shown with "_" as spaces.
METRIC_LABELS = {
    "entropy_bits": "answer entropy (bits)",
    "top_share": "probability of the top answer",
    "distinct_answers": "distinct answers",
    "jsd": "Jensen-Shannon divergence (bits)",
    "kl_bits": "KL divergence (bits)",
}


def model_colours(models: list[str]) -> dict[str, str]:
    """A colour per model, in order of first appearance (the same list always gives the same colours)."""
    unique = list(dict.fromkeys(models))
    # More models than colours cycle: past seven, colour alone cannot tell models apart anyway.
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(unique)}


def _style(ax: Axes, grid: str | None = "both") -> None:
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


def _figure(width: float, height: float) -> Figure:
    """A white figure with constrained layout, so titles, legends and notes never overlap the plot."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")


def _finish(fig: Figure, title: str, note: str, width: float) -> Figure:
    """Add the title on top and the note in small italics under everything."""
    chars = max(40, int(width * 13))  # about what fits on one line at these font sizes
    if title:
        fig.suptitle(_wrap(_literal(title), int(chars * 0.8)), fontsize=FONT["title"], color=INK)
    if note:
        # supxlabel, not fig.text: constrained layout reserves room for it, so it is never cut off.
        fig.supxlabel(_wrap(_literal(note), chars), fontsize=FONT["note"], style="italic", color=MUTED)
    return fig


def _legend(ax: Axes, handles: list[Any], labels: list[str], width: float) -> None:
    """A frameless legend just above the axes: outside them it can never hide data."""
    longest = max((len(label) for label in labels), default=10)
    per_row = max(1, min(len(labels), int(width * 72 / (longest * FONT["legend"] * 0.55 + 36))))
    # An axes legend, not fig.legend(loc="outside ..."): constrained layout stacks an axes legend
    # under the suptitle, while an outside figure legend is drawn over it.
    ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncols=per_row, frameon=False,
              fontsize=FONT["legend"], handlelength=1.6, columnspacing=1.4, borderaxespad=0.2)


# -- text helpers -------------------------------------------------------------------------------


def _literal(text: object) -> str:
    """Text shown as typed: a "$" in an answer ("$5") must not switch matplotlib to mathtext."""
    return str(text).replace("$", r"\$")


def _short(text: object, width: int) -> str:
    """One line of at most `width` characters; long single words are cut too (textwrap.shorten drops them)."""
    flat = " ".join(str(text).split())
    if not flat:
        return '""'  # an empty answer is a real answer: show it, do not leave a blank tick
    if len(flat) > width:
        cut = flat[: width - 1]
        space = cut.rfind(" ")
        flat = (cut[:space] if space > width * 0.6 else cut).rstrip() + "…"
    return _literal(flat)


def _wrap(text: str, width: int) -> str:
    """Wrap each paragraph of `text` to `width` characters."""
    import textwrap

    return "\n".join(textwrap.fill(p, width) if p else "" for p in text.split("\n"))


def _fmt_temperature(t: float) -> str:
    """1 -> "1.0", 0.7 -> "0.7": temperatures read as temperatures, not counts."""
    return f"{t:.1f}" if float(t).is_integer() else f"{t:g}"


def _metric_label(metric: str) -> str:
    """A readable axis label for a metric column."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


# -- input checks -------------------------------------------------------------------------------


def _check_frame(frame: object, func: str, what: str, required: Sequence[str], optional: Sequence[str] = (),
                 hint: str = "") -> pd.DataFrame:
    """Raise a WorkbenchError naming what to change unless `frame` is a non-empty DataFrame with `required`."""
    if not isinstance(frame, pd.DataFrame):
        raise WorkbenchError(f"{func}: {what} must be a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        extra = f" (optional: {', '.join(optional)})" if optional else ""
        raise WorkbenchError(
            f"{func}: {what} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}{extra}"
        )
    if frame.empty:
        raise WorkbenchError(f"{func}: {what} has no rows; {hint or 'pass at least one row'}")
    return frame


def _numeric(frame: pd.DataFrame, column: str, func: str, what: str) -> pd.Series:
    """A column as floats, or an error naming the column when it holds text."""
    try:
        return pd.to_numeric(frame[column]).astype(float)
    except (ValueError, TypeError) as exc:
        raise WorkbenchError(f"{func}: column {column!r} of {what} must be numeric ({exc})") from None


def _no_duplicates(frame: pd.DataFrame, keys: list[str], func: str, advice: str) -> None:
    """One row per key combination: duplicates would be drawn on top of each other silently."""
    dup = frame[frame.duplicated(keys, keep=False)]
    if not dup.empty:
        first = ", ".join(f"{k}={dup.iloc[0][k]!r}" for k in keys)
        raise WorkbenchError(f"{func}: several rows for {first}; keep one row per {', '.join(keys)} ({advice})")


def _optional(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column, or all NaN when it is absent (e.g. exact distributions have no CIs)."""
    if column in frame.columns:
        return pd.to_numeric(frame[column], errors="coerce").astype(float)
    return pd.Series(np.nan, index=frame.index)


# -- figures --------------------------------------------------------------------------------------


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
        n = _optional(rows, "n").dropna()
        if len(n):
            parts.append(f"n={int(n.iloc[0])}")
        elif "count" in rows.columns:
            parts.append(f"n={int(_optional(rows, 'count').sum())}")
    temps = _optional(rows, "temperature").dropna().unique()
    if len(temps):
        parts.append("T=" + "/".join(_fmt_temperature(t) for t in sorted(temps)))
    return f"{name} ({', '.join(parts)})" if parts else name


def answer_distribution_figure(table: pd.DataFrame, top: int = 12, title: str = "", note: str = "") -> Figure:
    """Grouped horizontal bars of each model's answer probabilities, with CI whiskers and a "(rest)" bar."""
    func, what = "answer_distribution_figure", "the table"
    optional = ("ci_low", "ci_high", "count", "method", "temperature", "n", "kind")
    _check_frame(table, func, what, ("model", "answer", "probability"), optional,
                 "pass one row per model and answer")
    if top < 1:
        raise WorkbenchError(f"{func}: top must be at least 1, not {top}")
    table = table.assign(answer=table["answer"].astype(str), probability=_numeric(table, "probability", func, what),
                         ci_low=_optional(table, "ci_low"), ci_high=_optional(table, "ci_high"))
    _no_duplicates(table, ["model", "answer"], func, "filter to one temperature and method per model first")
    models = list(dict.fromkeys(table["model"]))
    colours = model_colours(models)

    def grid(column: str) -> pd.DataFrame:
        return table.pivot(index="answer", columns="model", values=column).reindex(columns=models)

    probs = grid("probability").fillna(0.0)  # an answer a model never gave has probability 0
    lows, highs = grid("ci_low"), grid("ci_high")
    # Mean across models (not one model's order) so neither model's favourites are hidden in "(rest)".
    order = probs.mean(axis=1).sort_values(ascending=False, kind="stable").index
    shown, folded = list(order[:top]), list(order[top:])
    labels = [_short(a, 34) for a in shown] + ([f"{REST[:-1]}, {len(folded)} answers)"] if folded else [])

    m, rows = len(models), len(labels)
    width = 7.0
    height = 1.6 + rows * (0.12 + 0.16 * m)
    fig = _figure(width, height)
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
    _style(ax, grid="x")
    ax.tick_params(axis="y", length=0)
    legend = [_distribution_legend(model, table[table["model"] == model]) for model in models]
    _legend(ax, handles, [_literal(label) for label in legend], width)
    return _finish(fig, title, note, width)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def temperature_sweep_figure(frame: pd.DataFrame, metric: str = "entropy_bits", title: str = "",
                             note: str = "") -> Figure:
    """One line per model of a metric against temperature, CI band shaded, exact points solid, sampled hollow."""
    func, what = "temperature_sweep_figure", "the sweep frame"
    _check_frame(frame, func, what, ("model", "temperature", "metric", "value"), ("ci_low", "ci_high", "method"),
                 "pass one row per model, temperature and metric")
    chosen = frame[frame["metric"] == metric]
    if chosen.empty:
        available = ", ".join(map(str, dict.fromkeys(frame["metric"])))
        raise WorkbenchError(f"{func}: no rows with metric {metric!r}; pass metric= one of {available}")
    chosen = chosen.assign(temperature=_numeric(chosen, "temperature", func, what),
                           value=_numeric(chosen, "value", func, what),
                           ci_low=_optional(chosen, "ci_low"), ci_high=_optional(chosen, "ci_high"),
                           method=chosen["method"].fillna("") if "method" in chosen else "")
    _no_duplicates(chosen, ["model", "method", "temperature"], func, "average repeats before plotting")
    models = list(dict.fromkeys(chosen["model"]))
    colours = model_colours(models)
    width, height = 6.8, 4.4
    fig = _figure(width, height)
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
        ax.set_xticks(temps, [_fmt_temperature(t) for t in temps])
    ax.set_xlabel("temperature")
    ax.set_ylabel(_metric_label(metric))
    lows = np.concatenate([chosen["value"].to_numpy(), chosen["ci_low"].dropna().to_numpy()])
    if np.nanmin(lows) >= 0:
        ax.set_ylim(bottom=0)  # entropies, shares and divergences start at 0; a floating axis exaggerates
    _style(ax)
    handles: list[Any] = [Line2D([], [], color=colours[m], linewidth=1.6) for m in models]
    labels = [_literal(m) for m in models]
    present = list(dict.fromkeys(chosen["method"]))
    for method in ("exact", "sampled"):
        if method in present:
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=5.5, color=INK,
                                  markerfacecolor=INK if method == "exact" else "white", markeredgewidth=1.4))
            labels.append(method)
    if chosen[["ci_low", "ci_high"]].notna().all(axis=1).any():
        handles.append(Line2D([], [], color="#999999", linewidth=6, alpha=0.4))
        labels.append("confidence interval")
    _legend(ax, handles, labels, width)
    return _finish(fig, title, note, width)


def _spread_labels(fig: Figure, ax: Axes, labels: list[Annotation], pad_px: float) -> list[bool]:
    """Nudge overlapping labels apart vertically and back inside the axes; True for each label moved."""
    fig.draw_without_rendering()  # settles the constrained layout, so pixel positions are final
    frame = ax.get_window_extent()
    to_points = 72.0 / fig.dpi  # offsets are in points, extents in pixels
    placed = []
    moved = []
    for label in labels:
        shifted = False
        for _ in range(60):
            box = label.get_window_extent().padded(pad_px)  # no arrow yet: this is the text's box
            dx = max(0.0, frame.x0 - box.x0) - max(0.0, box.x1 - frame.x1)
            dy = max(0.0, frame.y0 - box.y0) - max(0.0, box.y1 - frame.y1)
            hit = next((b for b in placed if b.overlaps(box)), None)
            if hit is not None and dy == 0:
                # Move the shorter way out of the box already placed, staying inside the axes.
                up, down = hit.y1 - box.y0 + 1, hit.y0 - box.y1 - 1
                dy = up if (box.y1 + up <= frame.y1 and (abs(up) <= abs(down) or box.y0 + down < frame.y0)) else down
            if dx == 0 and dy == 0:
                break
            x, y = label.xyann
            label.xyann = (x + dx * to_points, y + dy * to_points)
            shifted = True
        placed.append(label.get_window_extent().padded(pad_px))
        moved.append(shifted)
    return moved


def embedding_map_figure(points: pd.DataFrame, clusters: pd.DataFrame | None, title: str = "",
                         note: str = "", max_labels: int = 8) -> Figure:
    """A 2-D map of continuation embeddings coloured by model, the largest clusters labelled at their medoids."""
    func = "embedding_map_figure"
    _check_frame(points, func, "the points frame", ("model", "x", "y"), ("text", "cluster"),
                 "pass one row per embedded continuation")
    points = points.assign(x=_numeric(points, "x", func, "the points frame"),
                           y=_numeric(points, "y", func, "the points frame"))
    if points[["x", "y"]].isna().any().any():
        raise WorkbenchError(f"{func}: the points frame has missing x/y; drop those rows or project them first")
    if clusters is not None:
        _check_frame(clusters, func, "the clusters frame", ("cluster", "label", "x", "y"), ("share_<model>",),
                     "pass one row per cluster, or clusters=None for no labels")
        clusters = clusters.assign(x=_numeric(clusters, "x", func, "the clusters frame"),
                                   y=_numeric(clusters, "y", func, "the clusters frame")).dropna(subset=["x", "y"])
        # Free text from small models makes many singleton clusters; labelling them all buries the
        # map, so only the largest clusters (more than one member, when sizes are known) get a label.
        if "size" in clusters:
            clusters = clusters[clusters["size"] > 1].sort_values("size", ascending=False, kind="stable")
        clusters = clusters.head(max_labels)
    models = list(dict.fromkeys(points["model"]))
    colours = model_colours(models)
    width, height = 7.0, 5.6
    fig = _figure(width, height)
    ax = fig.subplots()
    handles, labels = [], []
    for model in models:
        group = points[points["model"] == model]
        ax.scatter(group["x"], group["y"], s=18, color=colours[model], alpha=0.6, linewidths=0, zorder=2)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=6, color=colours[model]))
        labels.append(_literal(f"{model} ({len(group)})"))
    ax.margins(0.08)
    if clusters is not None and len(clusters):
        box = {"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#888888", "linewidth": 0.6,
               "alpha": 0.88}
        texts = []
        for row in clusters.itertuples(index=False):
            text = ax.annotate(f"#{row.cluster}: {_short(row.label, 40)}", (row.x, row.y), xytext=(0, 0),
                               textcoords="offset points", ha="center", va="center", fontsize=FONT["annotation"],
                               color=INK, bbox=box, zorder=5, annotation_clip=False)
            text.set_in_layout(False)  # labels are placed after layout; they must not move it
            texts.append(text)
        moved = _spread_labels(fig, ax, texts, pad_px=0.3 * FONT["annotation"] * fig.dpi / 72)
        for text, shifted in zip(texts, moved):
            if shifted:  # a leader line back to the medoid, drawn under the label's box
                ax.annotate("", text.xy, xytext=text.xyann, textcoords="offset points", zorder=4,
                            arrowprops={"arrowstyle": "-", "color": "#666666", "linewidth": 0.7,
                                        "shrinkA": 0, "shrinkB": 2})
                ax.plot(*text.xy, marker="o", markersize=3, color=INK, zorder=4)
    # Projection axes (UMAP, PCA, t-SNE) have no units: ticks would suggest a scale that is not there.
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("embedding map (2-D projection; labels: cluster medoids)")
    _style(ax, grid=None)
    _legend(ax, handles, labels, width)
    return _finish(fig, title, note, width)


def divergence_heatmap_figure(frame: pd.DataFrame, value: str = "jsd", title: str = "", note: str = "") -> Figure:
    """Prompts by model pairs, coloured and annotated by divergence; "*" marks adjusted p < 0.05."""
    func, what = "divergence_heatmap_figure", "the divergence frame"
    _check_frame(frame, func, what, ("prompt", "pair", value), ("p_adjusted",), "pass one row per prompt and pair")
    frame = frame.assign(**{value: _numeric(frame, value, func, what)}, prompt=frame["prompt"].astype(str),
                         pair=frame["pair"].astype(str))
    _no_duplicates(frame, ["prompt", "pair"], func, "one divergence per prompt and model pair")
    prompts = list(dict.fromkeys(frame["prompt"]))
    pairs = list(dict.fromkeys(frame["pair"]))
    matrix = frame.pivot(index="prompt", columns="pair", values=value).reindex(index=prompts, columns=pairs)
    stars = "p_adjusted" in frame.columns
    if stars:
        p = frame.assign(p_adjusted=_optional(frame, "p_adjusted"))
        p_matrix = p.pivot(index="prompt", columns="pair", values="p_adjusted").reindex(index=prompts, columns=pairs)
    values = matrix.to_numpy(dtype=float)
    # JSD in bits lies in [0, 1]: a fixed scale keeps colours comparable across figures.
    vmax = 1.0 if value == "jsd" else max(float(np.nanmax(values)) if np.isfinite(values).any() else 1.0, 1e-9)
    norm = Normalize(0.0, vmax)
    width = 4.2 + 1.9 * len(pairs)
    height = 1.7 + 0.42 * len(prompts)
    fig = _figure(width, height)
    ax = fig.subplots()
    cmap = colormaps[SEQUENTIAL_CMAP].with_extremes(bad="#EEEEEE")  # a missing cell reads as missing, not 0
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(prompts)):
        for j in range(len(pairs)):
            v = values[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=FONT["annotation"], color=MUTED)
                continue
            r, g, b, _ = cmap(norm(v))
            # Dark cells get white text: contrast by luminance, not by a guess about the colormap.
            colour = "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"
            star = "*" if stars and float(p_matrix.iat[i, j]) < SIGNIFICANCE else ""
            ax.text(j, i, f"{v:.2f}{star}", ha="center", va="center", fontsize=FONT["tick"], color=colour)
    # Long pair names break at " vs " so that neighbouring columns' labels never run into each other.
    pair_labels = [" vs\n".join(_short(part, 26) for part in pair.split(" vs ")) if len(pair) > 26 else _short(pair, 26)
                   for pair in pairs]
    ax.set_xticks(range(len(pairs)), pair_labels)
    ax.set_yticks(range(len(prompts)), [_short(prompt, 48) for prompt in prompts])
    ax.xaxis.tick_top()  # pair names stay next to the first rows however many prompts follow
    bar = fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03, aspect=max(8, 4 * len(prompts)))
    bar.set_label(_metric_label(value), fontsize=FONT["label"], color=INK)
    bar.ax.tick_params(labelsize=FONT["tick"], colors=INK)
    bar.outline.set_visible(False)
    _style(ax, grid=None)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    if stars and (p_matrix.to_numpy(dtype=float) < SIGNIFICANCE).any():
        note = (note + "\n" if note else "") + f"* adjusted p < {SIGNIFICANCE:g}"
    return _finish(fig, title, note, width)


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
    ax.set_yticks(np.arange(len(categories)), [_literal(c) for c in categories], fontsize=FONT["tick"])
    ax.invert_yaxis()


def distribution_figure(
    samples: pd.DataFrame,
    answer: AnswerFn = first_line,
    title: str = "",
    top: int = 8,
    family_note: str = "",
) -> Figure:
    """Grouped bars of each model's answer shares in a samples frame (model, model_kind, text[, temperature])."""
    _check_frame(samples, "distribution_figure", "the samples frame", ("model", "text"), ("model_kind", "temperature"),
                 "draw some samples first")
    rows = []
    for model, group in samples.groupby("model", sort=False):
        n = len(group)
        temperature = float(group["temperature"].iloc[0]) if "temperature" in group else float("nan")
        kind = group["model_kind"].iloc[0] if "model_kind" in group else None
        for item in answer_distribution(group["text"], answer).itertuples(index=False):
            low, high = wilson_interval(int(item.count), n)
            rows.append({"model": model, "kind": kind, "answer": item.answer, "probability": item.share,
                         "ci_low": low, "ci_high": high, "count": int(item.count), "method": "sampled",
                         "temperature": temperature, "n": n})
    note = family_note + ("\n" if family_note else "") + "Whiskers: 95% Wilson intervals."
    return answer_distribution_figure(pd.DataFrame(rows), top=top, title=title, note=note)


# -- export ---------------------------------------------------------------------------------------

FORMATS = ("png", "svg", "pdf")


def _run_ids(obj: Any) -> list[str]:
    """Every value under a "run_id"/"run_ids" key, in order: the PDF/SVG keywords to search by."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, item in obj.items():
            if key in ("run_id", "run_ids"):
                found += [str(i) for i in (item if isinstance(item, list) else [item]) if i is not None]
            else:
                found += _run_ids(item)
    elif isinstance(obj, list):
        for item in obj:
            found += _run_ids(item)
    return list(dict.fromkeys(found))


def export_figure(fig: Figure, stem: str | Path, provenance: Mapping[str, Any],
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `<stem>.<format>` for each format plus `<stem>.provenance.json`, provenance embedded, secrets scrubbed."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise WorkbenchError(f"cannot export figures as {', '.join(unknown)}; use formats from {', '.join(FORMATS)}")
    stem = Path(stem)
    if stem.suffix.lstrip(".").lower() in FORMATS:
        stem = stem.with_suffix("")  # "out/fig.png" means the stem "out/fig"
    stem.parent.mkdir(parents=True, exist_ok=True)
    record = scrub_secrets(dict(provenance))
    record.setdefault("workbench", __version__)
    record.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # ASCII-only JSON in the files: PNG tEXt chunks are Latin-1 and PDF strings stay greppable.
    blob = json.dumps(record, ensure_ascii=True, sort_keys=True)
    software = f"workbench {__version__}"
    title = fig.get_suptitle()
    run_ids = _run_ids(record)
    written = []
    for fmt in formats:
        # Each backend accepts its own metadata keys (see Figure.savefig).
        if fmt == "png":
            metadata: dict[str, Any] = {"Software": software, "Description": blob}
        elif fmt == "svg":
            metadata = {"Creator": software, "Description": blob}
            if run_ids:
                metadata["Keywords"] = run_ids
        else:
            metadata = {"Creator": software, "Subject": blob}
            if run_ids:
                metadata["Keywords"] = ", ".join(run_ids)
        if title:
            metadata["Title"] = title
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: a stem "v1.2" must keep its ".2"
        fig.savefig(path, format=fmt, dpi=DPI, bbox_inches="tight", facecolor="white", metadata=metadata)
        written.append(path)
    sidecar = stem.parent / f"{stem.name}.provenance.json"
    sidecar.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append(sidecar)
    return written


def save_figure(fig: Figure, stem: str | Path, provenance: Mapping[str, Any],
                formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """`export_figure` with PNG and SVG only (the formats older callers expect)."""
    return export_figure(fig, stem, provenance, formats)
