"""The branch-tree figure: a `BranchTree` drawn left to right, one line per edge."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from workbench.errors import WorkbenchError
from workbench.plots.style import (
    FONT,
    INK,
    add_legend,
    finish_figure,
    literal,
    model_colours,
    new_figure,
    shorten,
    style_axes,
)

if TYPE_CHECKING:
    # Plots sit below the experiments: the tree's type is only a hint here.
    from workbench.experiments.tree import BranchTree, TreeNode

MAX_FIGURE_NODES = 250  # more edges than this are unreadable in one figure


def tree_figure(tree: BranchTree, compare_with: str | None = None, max_depth: int | None = None) -> Figure:
    """The tree drawn left to right: nodes at their depth, line width by edge probability, colour by model."""
    other = tree.resolve_model(compare_with) if compare_with else None
    models = list(dict.fromkeys([tree.model, *(n.model for n in tree.nodes.values()), *([other] if other else [])]))
    colours = model_colours(models)
    positions: dict[int, tuple[float, float]] = {}
    leaves = [0]

    def place(node: TreeNode) -> float:
        kids = [c for c in tree.shown_children(node)[0] if max_depth is None or c.depth <= max_depth]
        if not kids:
            y = float(leaves[0])
            leaves[0] += 1
        else:
            y = float(np.mean([place(c) for c in kids]))
        positions[node.id] = (float(node.depth), y)
        return y

    place(tree.root)
    if len(positions) > MAX_FIGURE_NODES:
        raise WorkbenchError(f"the tree has {len(positions)} nodes to draw, too many for one figure (at most "
                             f"{MAX_FIGURE_NODES}); pass max_depth or grow it with a smaller k or a beam")
    depth = max(x for x, _ in positions.values()) if positions else 0
    width = 3.0 + 2.6 * max(depth, 1)
    fig = new_figure(width, 1.6 + 0.28 * max(leaves[0], 3))
    ax = fig.subplots()
    for node_id, (x, y) in positions.items():
        node = tree.nodes[node_id]
        if node.parent_id is None:
            continue
        px, py = positions[node.parent_id]
        ax.plot([px, x], [-py, -y], color=colours[node.model], linewidth=0.6 + 5.0 * node.probability,
                solid_capstyle="round", alpha=0.9)
        edge = literal(json.dumps(node.text if len(node.text) <= 18 else node.text[:17] + "…", ensure_ascii=False))
        if other:
            text = (f"{edge} {_p(tree.pair_logprob(node.id, tree.model, other))} | "
                    f"{_p(tree.pair_logprob(node.id, other, tree.model))}")
        else:
            text = f"{edge} {node.probability:.2f}"
        inner = bool(tree.shown_children(node)[0])
        # Labels of inner nodes sit above the node, clear of the edges that leave it.
        ax.annotate(text, (x, -y), xytext=(3, 3 if inner else 0), textcoords="offset points",
                    va="bottom" if inner else "center", fontsize=FONT["annotation"],
                    color=INK if node.model == tree.model else colours[node.model])
    ax.plot([0], [-positions[tree.root.id][1]], marker="o", color=INK, markersize=4)
    ax.set_xlim(-0.2, depth + 0.9)
    ax.set_yticks([])
    ax.set_xticks(range(int(depth) + 1))
    ax.set_xlabel("depth (edges from the prompt)")
    style_axes(ax, grid=None)
    ax.spines["left"].set_visible(False)
    handles = [Line2D([], [], color=colours[m], linewidth=2.5) for m in models]
    add_legend(ax, handles, [f"edges made by {m}" for m in models], width)
    note = "line width: probability of the edge given its parent"
    if other:
        note += f"; labels: p under {tree.model} | p under {other}"
        if tree.alignment(other) == "text":  # the tokenisers differ: compared on text prefixes
            note += " (of the text continuing with the edge's text: the tokenisers differ)"
        note += "; " + tree.family_note(other)
    root_text = tree.root_input.text or ""
    # The end of the prompt is what the first edges continue, so a long prompt shows its last 60 characters.
    root_text = root_text if len(root_text) <= 60 else "…" + root_text[-59:]
    return finish_figure(fig, f"Branch tree: {tree.prompt_ref or shorten(root_text, 60)}", note, width)


def _p(logprob: float | None) -> str:
    return "–" if logprob is None else f"{math.exp(logprob):.2f}"
