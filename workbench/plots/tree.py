"""The branch-tree figure: a `BranchTree` drawn left to right, one line per edge.

Each node's label (its edge's text and probability) sits in a white box centred on the node, over the
edges: lines run from box to box and never through a label. Resized to a narrow column, long edge
texts are shortened until the boxes of neighbouring depths no longer touch.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation

from workbench.errors import WorkbenchError
from workbench.plots.sizing import KEEP_HEIGHT, keep
from workbench.plots.style import (
    FONT,
    INK,
    add_legend,
    finish_figure,
    font_scale,
    literal,
    model_colours,
    new_figure,
    note_height,
    on_resize,
    panel_title,
    prompt_words,
    shorten,
    style_axes,
)

if TYPE_CHECKING:
    # Plots sit below the experiments: the tree's type is only a hint here.
    from workbench.experiments.tree import BranchTree, TreeNode

MAX_FIGURE_NODES = 250  # more edges than this are unreadable in one figure
EDGE_CHARS = 18  # an edge's text is cut to this many characters in its label
MIN_LABEL_POINTS = 6.0  # labels shrink to fit a narrow column, never below this
BOX_PAD = 0.25  # the label box's padding, in font sizes
BOX = {"boxstyle": f"round,pad={BOX_PAD}", "facecolor": "white", "edgecolor": "#BBBBBB", "linewidth": 0.5}


def _edge_text(text: str, chars: int) -> str:
    return literal(json.dumps(text if len(text) <= chars else text[: chars - 1] + "…", ensure_ascii=False))


def fit_labels(ax: Axes, labels: list[tuple[Annotation, str, str]]) -> None:
    """Shorten edge texts (then the font, to MIN_LABEL_POINTS) until no label box is wider than the gap between
    depths: boxes of neighbouring depths then never touch (labels: box, edge, rest)."""
    fig = ax.get_figure(root=True)
    fig.draw_without_rendering()
    gap = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0]) * 0.92

    def width(label: Annotation) -> float:  # the text and its box's padding on both sides, in pixels
        return label.get_window_extent().width + 2 * BOX_PAD * label.get_fontsize() * fig.dpi / 72

    for label, edge, rest in labels:
        built = getattr(label, "_workbench_size", None) or label.get_fontsize()
        label._workbench_size = built  # type: ignore[attr-defined]  # each fit starts from the size as built
        label.set_fontsize(built * font_scale(fig))
        while True:
            for chars in (EDGE_CHARS, 12, 8, 5, 3):
                label.set_text(f"{_edge_text(edge, chars)} {rest}".strip())
                if width(label) <= gap:
                    break
            if width(label) <= gap or label.get_fontsize() <= MIN_LABEL_POINTS:
                break
            label.set_fontsize(max(MIN_LABEL_POINTS, label.get_fontsize() - 0.5))


def _scope(tree: BranchTree, shown: list[TreeNode]) -> str:
    """'n = 39 edges; top-3 tokens per node (exact probabilities); n = 20 sampled chunks per node'."""
    parts = [f"n = {len(shown)} edges"]
    ks = sorted({int(n.params["k"]) for n in shown if n.method == "topk" and "k" in n.params})
    if any(n.method == "topk" for n in shown):
        parts.append(f"top-{'/'.join(map(str, ks)) or 'k'} tokens per node (exact probabilities)")
    ns = sorted({int(n.params["n"]) for n in shown if n.method == "chunk" and "n" in n.params})
    if any(n.method == "chunk" for n in shown):
        parts.append(f"n = {'/'.join(map(str, ns)) or '?'} sampled chunks per node")
    return "; ".join(parts)


def tree_figure(tree: BranchTree, compare_with: str | None = None, max_depth: int | None = None,
                title: str = "") -> Figure:
    """The tree drawn left to right: nodes at their depth, line width by edge probability, colour by model.

    `title` defaults to "Branch tree: <the prompt in words>"; the prompt's id goes in the note.
    """
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
    width = max(6.5, 3.0 + 2.6 * max(depth, 1))
    note = "line width: probability of the edge given its parent"
    if other:
        note += f"; labels: p under {tree.model} | p under {other}"
        if tree.alignment(other) == "text":  # the tokenisers differ: compared on text prefixes
            note += " (of the text continuing with the edge's text: the tokenisers differ)"
        note += "; " + tree.family_note(other)
    root_text = tree.root_input.text or ""
    # The end of the prompt is what the first edges continue, so a long prompt shows its last 60 characters.
    root_text = root_text if len(root_text) <= 60 else "…" + root_text[-59:]
    if tree.prompt_ref:
        note += f". Prompt: {tree.prompt_ref}"
    # The plot gets ~0.35 in per leaf on top of what the title, legend, axis label and the wrapped note
    # take (~13 characters per inch of note): a shallow tree with a long note must not collapse.
    decorations = 2.6 + note_height(note, width)
    fig = keep(new_figure(width, decorations + 0.35 * max(leaves[0], 3)), KEEP_HEIGHT)
    ax = fig.subplots()
    labels: list[tuple[Annotation, str, str]] = []
    shown = []
    named: set[str] = set()
    for node_id, (x, y) in positions.items():
        node = tree.nodes[node_id]
        if node.parent_id is None:
            continue
        shown.append(node)
        px, py = positions[node.parent_id]
        # Edges under the labels (zorder): a line runs from box to box, never through a label.
        name = f"edges made by {node.model}"
        ax.plot([px, x], [-py, -y], color=colours[node.model], linewidth=0.6 + 5.0 * node.probability,
                solid_capstyle="round", alpha=0.9, zorder=1, label="_nolegend_" if name in named else name)
        named.add(name)
        if other:
            rest = (f"{_p(tree.pair_logprob(node.id, tree.model, other))} | "
                    f"{_p(tree.pair_logprob(node.id, other, tree.model))}")
        else:
            rest = f"{node.probability:.2f}"
        text = ax.annotate(f"{_edge_text(node.text, EDGE_CHARS)} {rest}", (x, -y), ha="center", va="center",
                           fontsize=FONT["annotation"], color=INK if node.model == tree.model else colours[node.model],
                           bbox={**BOX, "edgecolor": colours[node.model]}, zorder=3)
        labels.append((text, node.text, rest))
    ax.plot([0], [-positions[tree.root.id][1]], marker="o", color=INK, markersize=5, zorder=2)
    ax.set_xlim(-0.25, depth + 0.55)  # room for the last depth's labels, centred on their nodes
    ax.set_ylim(-(leaves[0] - 1) - 0.6, 0.6)
    ax.set_yticks([])
    ax.set_xticks(range(int(depth) + 1))
    ax.set_xlabel("depth (edges from the prompt)")
    panel_title(ax, _scope(tree, shown))
    style_axes(ax, grid=None)
    ax.spines["left"].set_visible(False)
    handles = [Line2D([], [], color=colours[m], linewidth=2.5) for m in models]
    add_legend(ax, handles, [f"edges made by {m}" for m in models], width)
    on_resize(fig, fit_labels, ax, labels)  # run by finish_figure, and again when resized
    title = title or f"Branch tree: {prompt_words(tree.prompt_ref) if tree.prompt_ref else quote(root_text)}"
    return finish_figure(fig, title, note, width)


def quote(text: str) -> str:
    """A prompt's text as a quotation: “…the end of it”."""
    return f"\u201c{shorten(text, 60)}\u201d"


def _p(logprob: float | None) -> str:
    return "–" if logprob is None else f"{math.exp(logprob):.2f}"
