"""Two models on one tree: the other model's logprob of every edge, its own top-k, and where the two differ."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.experiments.tree.nodes import ROOT, TreeComparison, TreeNode, positive

if TYPE_CHECKING:
    from workbench.experiments.tree.branch_tree import BranchTree


def score_edges(tree: BranchTree, model: str, node_ids: list[int] | None = None) -> dict[int, float | None]:
    """`model`'s logprob of each edge given the path text before it (one scoring call per parent; stored)."""
    model = tree.resolve_model(model)
    ids = [i for i in (node_ids if node_ids is not None else tree.nodes) if i != ROOT]
    todo: dict[int, list[TreeNode]] = {}
    for i in ids:
        node = tree.node(i)
        if node.model != model and (node.id, model) not in tree.scores and node.parent_id is not None:
            todo.setdefault(node.parent_id, []).append(node)
    rows: list[dict[str, Any]] = []
    for parent_id, kids in todo.items():
        # An end token or an empty edge has no text another tokeniser could score.
        scorable = [c for c in kids if not c.ended and c.text]
        for c in kids:
            if c not in scorable:
                rows.append({"node_id": c.id, "model": model, "logprob": None, "token_ids": None})
        if scorable:
            scored = tree.sampler.score(model, tree.input_at(parent_id, model), [c.text for c in scorable])
            rows += [{"node_id": c.id, "model": model, "logprob": s.logprob, "token_ids": s.token_ids}
                     for c, s in zip(scorable, scored, strict=True)]
    tree.sampler.store.add_tree_scores(tree.id, rows)
    for row in rows:
        tree.scores[(row["node_id"], model)] = row["logprob"]
    return {i: tree.edge_logprob(i, model) for i in ids}


def compare_models(tree: BranchTree, other: str, k: int | None = None, branches: bool = True) -> TreeComparison:
    """Where `other` and the tree's model differ: both probabilities of every edge, and each one's own top-k."""
    a, b = tree.model, tree.resolve_model(other)
    if a == b:
        raise WorkbenchError(f"compare needs another model than the tree's own ({a})")
    if k is not None:
        k = positive("k", k)
    if branches:
        for node in list(tree.nodes.values()):
            own = tree.children(node, model=a, method="topk")
            if own and not node.ended:
                tree.expand_topk(node, k or len(own), b)
    for model in (a, b):
        score_edges(tree, model)
    # (parent id, model) -> the edge texts that model has among its top-k children there
    topk_texts: dict[tuple[int | None, str], set[str]] = {}
    for node in tree.nodes.values():
        if node.method == "topk":
            topk_texts.setdefault((node.parent_id, node.model), set()).add(node.text)
    rows = []
    seen: set[tuple[int | None, str]] = set()
    for node in sorted(tree.nodes.values(), key=lambda n: n.id):
        if node.id == ROOT or (node.parent_id, node.text) in seen:
            continue  # the same edge text from both models' top-k is one edge
        seen.add((node.parent_id, node.text))
        la, lb = tree.edge_logprob(node.id, a), tree.edge_logprob(node.id, b)
        rows.append({
            "node_id": node.id, "parent_id": node.parent_id, "depth": node.depth, "made_by": node.model,
            "method": node.method, "edge_text": node.text, "path_text": tree.path_text(node.parent_id or ROOT),
            "logprob_a": _nan(la), "logprob_b": _nan(lb), "p_a": math.exp(la) if la is not None else np.nan,
            "p_b": math.exp(lb) if lb is not None else np.nan,
            "log_ratio": la - lb if la is not None and lb is not None else np.nan,
            "cum_a": tree.cumulative_logprob(node.id, a), "cum_b": tree.cumulative_logprob(node.id, b),
            "in_topk_a": node.text in topk_texts.get((node.parent_id, a), set()),
            "in_topk_b": node.text in topk_texts.get((node.parent_id, b), set()),
        })
    frame = pd.DataFrame(rows)
    most = None
    if len(frame) and frame["log_ratio"].notna().any():
        most = frame.loc[frame["log_ratio"].abs().idxmax()].to_dict()
    return TreeComparison(a, b, frame, most, tree.family_note(b))


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
