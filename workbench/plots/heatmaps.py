"""Divergence heatmaps: prompts by model pairs, coloured and annotated by divergence.

The frame: prompt, pair, <value> (default jsd) [p_adjusted, n]; n (samples per model and prompt) is
stated over the map.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from workbench.plots.checks import check_frame, no_duplicates, numeric_column, optional_column
from workbench.plots.sizing import KEEP_HEIGHT, keep
from workbench.plots.style import (
    FONT,
    INK,
    MUTED,
    ROUND_STEPS,
    SEQUENTIAL_CMAP,
    finish_figure,
    metric_label,
    new_figure,
    panel_title,
    shorten,
    style_axes,
    wrap,
)

SIGNIFICANCE = 0.05  # adjusted p below this gets a star in the heatmap


def divergence_heatmap_figure(frame: pd.DataFrame, value: str = "jsd", title: str = "", note: str = "") -> Figure:
    """Prompts by model pairs, coloured and annotated by divergence; "*" marks adjusted p < 0.05."""
    func, what = "divergence_heatmap_figure", "the divergence frame"
    check_frame(frame, func, what, ("prompt", "pair", value), ("p_adjusted", "n"), "pass one row per prompt and pair")
    frame = frame.assign(**{value: numeric_column(frame, value, func, what)}, prompt=frame["prompt"].astype(str),
                         pair=frame["pair"].astype(str))
    no_duplicates(frame, ["prompt", "pair"], func, "one divergence per prompt and model pair")
    prompts = list(dict.fromkeys(frame["prompt"]))
    pairs = list(dict.fromkeys(frame["pair"]))
    matrix = frame.pivot(index="prompt", columns="pair", values=value).reindex(index=prompts, columns=pairs)
    stars = "p_adjusted" in frame.columns
    if stars:
        p = frame.assign(p_adjusted=optional_column(frame, "p_adjusted"))
        p_matrix = p.pivot(index="prompt", columns="pair", values="p_adjusted").reindex(index=prompts, columns=pairs)
    values = matrix.to_numpy(dtype=float)
    # JSD in bits lies in [0, 1]: a fixed scale keeps colours comparable across figures.
    vmax = 1.0 if value == "jsd" else max(float(np.nanmax(values)) if np.isfinite(values).any() else 1.0, 1e-9)
    norm = Normalize(0.0, vmax)
    width = 4.2 + 1.9 * len(pairs)
    height = 1.7 + 0.42 * len(prompts)
    fig = keep(new_figure(width, height), KEEP_HEIGHT)  # rows of prompts keep their room when resized
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
    pair_labels = [" vs\n".join(shorten(part, 26) for part in pair.split(" vs ")) if len(pair) > 26
                   else shorten(pair, 26) for pair in pairs]
    ax.set_xticks(range(len(pairs)), pair_labels)
    ax.set_yticks(range(len(prompts)), [shorten(prompt, 48) for prompt in prompts])
    ax.xaxis.tick_top()  # pair names stay next to the first rows however many prompts follow
    bar = fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03, aspect=max(8, 4 * len(prompts)))
    # Two lines: a short map (few prompts) must still have room for the label beside its colour bar.
    bar.set_label(wrap(metric_label(value), 18), fontsize=FONT["label"], color=INK)
    bar.ax.tick_params(labelsize=FONT["tick"], colors=INK)
    bar.locator = MaxNLocator(nbins="auto", steps=list(ROUND_STEPS))  # 0.2, 0.4, …, not 0.25, 0.75
    bar.outline.set_visible(False)
    style_axes(ax, grid=None)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    n = optional_column(frame, "n").dropna()
    panel_title(ax, (f"n = {int(n.min())}{f'-{int(n.max())}' if n.max() > n.min() else ''} samples per model "
                     "and prompt") if len(n) else "n not recorded", share=0.45)  # the map, not the colour bar
    if stars and (p_matrix.to_numpy(dtype=float) < SIGNIFICANCE).any():
        note = (note + "\n" if note else "") + f"* adjusted p < {SIGNIFICANCE:g}"
    return finish_figure(fig, title, note, width)
