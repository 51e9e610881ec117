"""Embedding maps: continuations in a 2-D projection, coloured by model, the largest clusters labelled.

The frames: points: model, x, y [text, cluster]; clusters: cluster, label, x, y [size, share_<model>].
The axis caption says which labels are drawn (and when none are, why), so it never promises more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation

from workbench.errors import WorkbenchError
from workbench.plots.checks import check_frame, numeric_column
from workbench.plots.style import (
    FONT,
    INK,
    add_legend,
    finish_figure,
    literal,
    model_colours,
    new_figure,
    on_resize,
    shorten,
    style_axes,
    wrap,
    wrapped,
)


def _spread_labels(fig: Figure, ax: Axes, labels: list[Annotation], pad_px: float) -> list[bool]:
    """Nudge overlapping labels apart vertically and back inside the axes; True for each label moved."""
    fig.draw_without_rendering()  # settles the constrained layout, so pixel positions are final
    frame = ax.get_window_extent().padded(-pad_px)  # the boxes' padding stays inside the axes too
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


def place_labels(ax: Axes, labels: list[Annotation]) -> None:
    """Put cluster labels at their medoids, spread apart, with a leader line from each label that moved."""
    fig = ax.get_figure(root=True)
    for old in getattr(ax, "_workbench_leaders", []):
        old.remove()
    size = labels[0].get_fontsize() if labels else FONT["annotation"]
    fig.draw_without_rendering()
    # A label is at most about 40% of the map's width (40 characters on a two-column map), on two lines at most.
    chars = int(np.clip(ax.get_window_extent().width * 72 / fig.dpi * 0.4 / (size * 0.55), 16, 40))
    for label in labels:
        label.xyann = (0.0, 0.0)
        number, text = getattr(label, "_workbench_label", ("", label.get_text()))
        if number != "":  # one line of 40 where there is room, else two shorter lines
            label.set_text(f"#{number}: {shorten(text, 40)}" if chars >= 40 else
                           wrap(f"#{number}: {shorten(text, 2 * chars - 6)}", chars))
    moved = _spread_labels(fig, ax, labels, pad_px=0.3 * size * fig.dpi / 72)
    leaders = []
    for text, shifted in zip(labels, moved, strict=True):
        if shifted:  # a leader line back to the medoid, drawn under the label's box
            leaders.append(ax.annotate("", text.xy, xytext=text.xyann, textcoords="offset points", zorder=4,
                                       arrowprops={"arrowstyle": "-", "color": "#666666", "linewidth": 0.7,
                                                   "shrinkA": 0, "shrinkB": 2}))
            leaders += ax.plot(*text.xy, marker="o", markersize=3, color=INK, zorder=4)
    ax._workbench_leaders = leaders  # type: ignore[attr-defined]


def _labels_caption(clusters: pd.DataFrame | None, unlabelled: int) -> str:
    """What the labels on the map are: exactly the ones drawn."""
    if clusters is None:
        return "no cluster labels"
    if clusters.empty:
        return "no cluster labels (no cluster has more than one member)"
    which = "the largest cluster" if len(clusters) == 1 else f"the {len(clusters)} largest clusters"
    more = f"; {unlabelled} smaller clusters unlabelled" if unlabelled else ""
    return f"labels: {which}, each at its medoid{more}"


def embedding_map_figure(points: pd.DataFrame, clusters: pd.DataFrame | None, title: str = "",
                         note: str = "", max_labels: int = 8) -> Figure:
    """A 2-D map of continuation embeddings coloured by model, the largest clusters labelled at their medoids."""
    func = "embedding_map_figure"
    check_frame(points, func, "the points frame", ("model", "x", "y"), ("text", "cluster"),
                "pass one row per embedded continuation")
    points = points.assign(x=numeric_column(points, "x", func, "the points frame"),
                           y=numeric_column(points, "y", func, "the points frame"))
    if points[["x", "y"]].isna().any().any():
        raise WorkbenchError(f"{func}: the points frame has missing x/y; drop those rows or project them first")
    if clusters is not None:
        check_frame(clusters, func, "the clusters frame", ("cluster", "label", "x", "y"), ("share_<model>",),
                    "pass one row per cluster, or clusters=None for no labels")
        clusters = clusters.assign(x=numeric_column(clusters, "x", func, "the clusters frame"),
                                   y=numeric_column(clusters, "y", func, "the clusters frame"))
        clusters = clusters.dropna(subset=["x", "y"])
        # Free text from small models makes many singleton clusters; labelling them all buries the
        # map, so only the largest clusters (more than one member, when sizes are known) get a label.
        if "size" in clusters:
            clusters = clusters[clusters["size"] > 1].sort_values("size", ascending=False, kind="stable")
        unlabelled = len(clusters) - min(len(clusters), max_labels)
        clusters = clusters.head(max_labels)
    else:
        unlabelled = 0
    models = list(dict.fromkeys(points["model"]))
    colours = model_colours(models)
    width, height = 7.0, 5.6
    fig = new_figure(width, height)
    ax = fig.subplots()
    handles, labels = [], []
    for model in models:
        group = points[points["model"] == model]
        label = literal(f"{model} (n = {len(group)})")
        ax.scatter(group["x"], group["y"], s=18, color=colours[model], alpha=0.6, linewidths=0, zorder=2, label=label)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=6, color=colours[model]))
        labels.append(label)
    ax.margins(0.08)
    if clusters is not None and len(clusters):
        box = {"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#888888", "linewidth": 0.6,
               "alpha": 0.88}
        texts = []
        for row in clusters.itertuples(index=False):
            text = ax.annotate(f"#{row.cluster}: {shorten(row.label, 40)}", (row.x, row.y), xytext=(0, 0),
                               textcoords="offset points", ha="center", va="center", fontsize=FONT["annotation"],
                               color=INK, bbox=box, zorder=5, annotation_clip=False)
            text.set_in_layout(False)  # labels are placed after layout; they must not move it
            text._workbench_label = (row.cluster, row.label)  # type: ignore[attr-defined]  # shortened to fit
            texts.append(text)
        on_resize(fig, place_labels, ax, texts)  # run by finish_figure, and again when resized
    # Projection axes (UMAP, PCA, t-SNE) have no units: ticks would suggest a scale that is not there.
    ax.set_xticks([])
    ax.set_yticks([])
    wrapped(ax.xaxis.label, "embedding map (2-D projection); " + _labels_caption(clusters, unlabelled), 11.0, ax=ax)
    style_axes(ax, grid=None)
    add_legend(ax, handles, labels, width)
    return finish_figure(fig, title, note, width)
