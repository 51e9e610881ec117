"""The self-conversation figure: each run's path through the turn embeddings, and dispersion by turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.style import (
    INK,
    PALETTE,
    add_legend,
    finish_figure,
    literal,
    model_colours,
    new_figure,
    style_axes,
    wrapped,
)

if TYPE_CHECKING:
    from workbench.experiments.selfchat import SelfChatResult


def _joint_projection(vectors: np.ndarray) -> np.ndarray:
    """[n, 2] PCA coordinates of every pairing's vectors together, so their paths share axes."""
    from sklearn.decomposition import PCA

    if len(vectors) > 2:
        return PCA(n_components=2, random_state=0).fit_transform(vectors)
    return vectors[:, :2].copy()  # too few to fit: the first two raw dimensions


def _runs_n(results: list[SelfChatResult]) -> str:
    """'n = 3 runs' (or 'n = 3, 5 runs per pairing'): how many conversations each path set and curve rest on."""
    counts = sorted({int(r.turns["run"].nunique()) for r in results})
    return f"n = {', '.join(map(str, counts))} runs" + (" per pairing" if len(results) > 1 else "")


def selfchat_figure(results: SelfChatResult | Sequence[SelfChatResult], title: str = "") -> Figure:
    """Two panels: each run's path through a 2-D projection of the turn embeddings, and dispersion against turn."""
    results = list(results) if isinstance(results, Sequence) else [results]
    if not results:
        raise WorkbenchError("selfchat_figure: give at least one self-conversation result")
    pairings = [r.pairing for r in results]
    colours = model_colours(pairings)
    single = len(results) == 1
    stacked = np.vstack([np.vstack([r.seed_embedding[None, :], r.embeddings]) for r in results]).astype(float)
    coords = _joint_projection(stacked)
    width, height = 10.0, 4.8
    fig = new_figure(width, height)
    paths, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1.0]})
    fig._workbench_panels = [paths, curve]  # type: ignore[attr-defined]  # one column stacks them (plots.sizing)

    offset = 0
    for result in results:
        seed_xy = coords[offset]
        points = coords[offset + 1: offset + 1 + len(result.turns)]
        offset += 1 + len(result.turns)
        for k, (_, rows) in enumerate(result.turns.groupby("run", sort=True)):
            # A single pairing: a colour per run so paths can be told apart; several: a colour per pairing.
            colour = PALETTE[k % len(PALETTE)] if single else colours[result.pairing]
            xy = np.vstack([seed_xy, points[rows.sort_values("turn").index.to_numpy()]])
            paths.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=1.1 if single else 0.9,
                       alpha=0.75 if single else 0.55, zorder=2)
            paths.plot(*xy[1], marker="o", markersize=5, markerfacecolor="white", markeredgecolor=colour, zorder=3,
                       label="turn 1")
            paths.plot(*xy[-1], marker="s", markersize=6, color=colour, zorder=4, label="final turn")
        paths.plot(*seed_xy, marker="*", markersize=12, color=INK, zorder=5, label="opening line")
    paths.set_xticks([])
    paths.set_yticks([])  # projection axes have no units
    runs = _runs_n(results)
    wrapped(paths.xaxis.label, f"turn embeddings, 2-D PCA (one line per run; {runs})", 11.0, 0.55, ax=paths)
    style_axes(paths, grid=None)
    handles = [Line2D([], [], linestyle="none", marker="*", markersize=9, color=INK),
               Line2D([], [], linestyle="none", marker="o", markersize=5, markerfacecolor="white",
                      markeredgecolor=INK),
               Line2D([], [], linestyle="none", marker="s", markersize=5, color=INK)]
    # Markers are explained over the paths; the colours of several pairings over the curves (one key each).
    add_legend(paths, handles, ["opening line", "turn 1", "final turn"], width * 0.55)

    top = 0.0
    for result in results:
        frame = result.dispersion.sort_values("turn")
        colour = colours[result.pairing]
        t = frame["turn"].to_numpy()
        curve.fill_between(t, frame["ci_low"], frame["ci_high"], color=colour, alpha=0.18, linewidth=0, zorder=1)
        curve.plot(t, frame["dispersion"], color=colour, linewidth=1.6, marker="o", markersize=4, zorder=3,
                   label=literal(result.pairing))
        top = max(top, float(np.nanmax(frame["ci_high"])))
    turns = sorted({int(t) for r in results for t in r.dispersion["turn"]})
    if single:
        speakers = results[0].dispersion.set_index("turn")["speaker"]
        curve.set_xticks(turns, [f"{t}\n{speakers[t]}" for t in turns])
    else:
        curve.set_xticks(turns)
        add_legend(curve, [Line2D([], [], color=colours[p], linewidth=2) for p in pairings],
                   [literal(p) for p in pairings], width * 0.45)
    curve.set_ylim(0, max(top * 1.1, 0.05))
    curve.set_xlabel("turn" + (" and speaker" if single else "") + f" ({runs})")
    curve.set_ylabel("dispersion across runs\n(mean pairwise cosine distance)")
    style_axes(curve, grid="y")

    prompts = ", ".join(dict.fromkeys(r.prompt for r in results))
    title = title or (f"Self-conversation: {results[0].pairing} from {prompts}" if single
                      else f"Self-conversations from {prompts}")
    summaries = []
    for result in results:
        row = result.summary.iloc[0]
        largest = int(round(row["largest_cluster_share"] * row["runs"]))
        summaries.append(f"{result.pairing}: largest final-turn cluster {largest}/{int(row['runs'])} runs; "
                         f"dispersion change {row['change']:+.3f} [{row['change_ci_low']:+.3f}, "
                         f"{row['change_ci_high']:+.3f}]")
    notes = list(dict.fromkeys(r.family_note for r in results))
    note = "\n".join([*notes, *summaries,
                      "Band: 95% bootstrap interval over runs. Embeddings: all-MiniLM-L6-v2."])
    return finish_figure(fig, title, note, width)
