"""The text view of a branch tree: an indented tree for the terminal."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from workbench.experiments.tree.nodes import TEXT, TreeNode, fmt_probability, quote, tail

if TYPE_CHECKING:
    from workbench.experiments.tree.branch_tree import BranchTree


def render_text(tree: BranchTree, compare_with: str | None = None, max_depth: int | None = None,
                min_probability: float = 0.0) -> str:
    """An indented tree for the terminal: each edge with its probability and cumulative logprob."""
    other = tree.resolve_model(compare_with) if compare_with else None
    root_text = tail(tree.root_input.text or tree.root_input.display(), 70)
    head = f"tree {tree.id} ({tree.model}) on {quote(root_text)}"
    if other:
        head += f"; p under {tree.model} | p under {other}; cum: cumulative logprob under {tree.model}"
        if tree.alignment(other) == TEXT:
            head += ("\n(the tokenisers differ: p is the probability that the text continues with the edge's text, "
                     "so token boundaries are not divergences; cum sums these)")
    lines = [head]

    def p(lp: float | None) -> str:
        return "-" if lp is None else fmt_probability(math.exp(lp))

    def label(node: TreeNode, twin: TreeNode | None, parent_has_other: bool) -> str:
        if other:
            text = (f"{quote(node.text)} {p(tree.pair_logprob(node.id, tree.model, other))} | "
                    f"{p(tree.pair_logprob(node.id, other, tree.model))} "
                    f"(cum {tree.pair_cumulative_logprob(node.id, tree.model, other):.2f})")
        else:
            text = f"{quote(node.text)} {fmt_probability(node.probability)} (cum {node.cum_logprob:.2f})"
        if node.method == "chunk":
            text += f" x{node.count}/{node.params.get('n')}"
        if node.ended:
            text += f" [{node.finish_reason}]"
        if node.model != tree.model:
            text += f" [only in {node.model}'s top-k]" if other == node.model else f" [by {node.model}]"
        elif other and node.method == "topk" and parent_has_other:
            text += " [both top-k]" if twin is not None else f" [only in {tree.model}'s top-k]"
        return text + f"  #{node.id}"

    def walk(node: TreeNode, prefix: str) -> None:
        kids, twins = tree.shown_children(node)
        parent_has_other = any(c.model == other and c.method == "topk" for c in tree.children(node))
        kids = [c for c in kids if c.probability >= min_probability]
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(prefix + ("└─ " if last else "├─ ") + label(child, twins.get(child.id), parent_has_other))
            if max_depth is None or child.depth < max_depth:
                walk(child, prefix + ("   " if last else "│  "))

    walk(tree.root, "")
    return "\n".join(lines)
