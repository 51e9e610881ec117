"""Two models on one tree: the other model's logprob of every edge, its own top-k, and where the two differ.

Models that read the tree's texts as the same token ids are compared per token. Models whose
tokenisers differ are compared on text prefixes (see prefixes.py): each edge's logprob is the
probability that the text continues with the edge's text, so a tokeniser boundary (Gemma's "'"
then "s" against SmolLM2's "'s") is never reported as a divergence. The per-token logprobs stay
in the frame (`token_logprob_a`, `token_logprob_b`) for reference.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.experiments.tree.nodes import ROOT, TEXT, TEXT_PREFIX, TOKEN, TreeComparison, TreeNode, positive
from workbench.experiments.tree.prefixes import prefix_logprobs, same_tokenisation

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


def score_text_edges(tree: BranchTree, model: str, node_ids: list[int] | None = None) -> dict[int, float | None]:
    """`model`'s logprob of each edge as text: log P(path + edge) - log P(path) as text prefixes (stored)."""
    model = tree.resolve_model(model)
    key = TEXT_PREFIX + model
    ids = [i for i in (node_ids if node_ids is not None else tree.nodes) if i != ROOT]
    todo = [tree.node(i) for i in ids if (i, key) not in tree.scores]
    if todo:
        # An end token or an empty edge adds no text to compare.
        scorable = [n for n in todo if not n.ended and n.text and n.parent_id is not None]
        texts = {tree.path_text(n.id) for n in scorable} | {tree.path_text(n.parent_id or ROOT) for n in scorable}
        texts.discard("")
        prefix = prefix_logprobs(tree.sampler, model, tree.root_for(model), sorted(texts))
        prefix[""] = 0.0  # the path up to the prompt's end: certain
        rows = []
        for node in todo:
            value = None
            if node in scorable:
                whole, before = prefix.get(tree.path_text(node.id)), prefix.get(tree.path_text(node.parent_id or ROOT))
                if whole is not None and before is not None:
                    value = min(0.0, whole - before)  # the approximation may overshoot 1 by rounding
            rows.append({"node_id": node.id, "model": key, "logprob": value, "token_ids": None})
        tree.sampler.store.add_tree_scores(tree.id, rows)
        for row in rows:
            tree.scores[(row["node_id"], key)] = row["logprob"]
    return {i: tree.scores.get((i, key)) for i in ids}


def alignment(tree: BranchTree, other: str) -> str:
    """How the tree's model and `other` are compared: TOKEN when both read the tree's texts as the same
    token ids (and when text prefixes cannot be scored), else TEXT."""
    a, b = tree.model, tree.resolve_model(other)
    texts = [(tree.root_input.text or "") + tree.path_text(n.id) for n in tree.nodes.values()
             if not tree.children(n)]
    if same_tokenisation(tree.sampler, a, b, texts):
        return TOKEN
    able = [tree.sampler.capabilities(m) for m in (a, b)]
    return TEXT if all(c.token_ids and c.candidate_scoring for c in able) else TOKEN


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
    how = tree.alignment(b)
    if how == TEXT:
        for model in (a, b):
            score_text_edges(tree, model)
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
        la, lb = tree.pair_logprob(node.id, a, b), tree.pair_logprob(node.id, b, a)
        rows.append({
            "node_id": node.id, "parent_id": node.parent_id, "depth": node.depth, "made_by": node.model,
            "method": node.method, "edge_text": node.text, "path_text": tree.path_text(node.parent_id or ROOT),
            "alignment": how,
            "logprob_a": _nan(la), "logprob_b": _nan(lb), "p_a": math.exp(la) if la is not None else np.nan,
            "p_b": math.exp(lb) if lb is not None else np.nan,
            "log_ratio": la - lb if la is not None and lb is not None else np.nan,
            "cum_a": tree.pair_cumulative_logprob(node.id, a, b), "cum_b": tree.pair_cumulative_logprob(node.id, b, a),
            "token_logprob_a": _nan(tree.edge_logprob(node.id, a)),
            "token_logprob_b": _nan(tree.edge_logprob(node.id, b)),
            "in_topk_a": node.text in topk_texts.get((node.parent_id, a), set()),
            "in_topk_b": node.text in topk_texts.get((node.parent_id, b), set()),
        })
    frame = pd.DataFrame(rows)
    most = None
    if len(frame) and frame["log_ratio"].notna().any():
        most = frame.loc[frame["log_ratio"].abs().idxmax()].to_dict()
    return TreeComparison(a, b, frame, most, tree.family_note(b), how)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
