"""A branch tree's records: its nodes, a two-model comparison, and the small formatting helpers they share."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.store import utc_now
from workbench.types import Message

if TYPE_CHECKING:
    from workbench.prompts import LibraryPrompt

TREE_FORMAT = "workbench-branch-tree/1"
ROOT = 0
ENDED = ("eos", "stop")  # finish reasons after which nothing follows
# How two models are compared on a tree: per token (both read its texts as the same token ids) or on text
# prefixes (their tokenisers differ: an edge's logprob is that of the text continuing with the edge's text).
TOKEN, TEXT = "token", "text"
TEXT_PREFIX = "text-prefix:"  # stored scores under this prefix + a model name are text-prefix logprobs

# Union, not "|": a string forward reference cannot be or-ed at runtime.
TreePrompt = Union[str, list[Message], "LibraryPrompt"]


@dataclass
class TreeNode:
    """One node: the edge from its parent (text and token ids for the model that made it) and its probabilities."""

    id: int
    parent_id: int | None
    depth: int
    model: str  # the model that made this edge
    method: str  # root | topk | chunk
    text: str  # the edge's text (what it adds after the parent's path)
    token_ids: list[int]
    logprob: float  # log P(edge | root + path to the parent) under `model`
    cum_logprob: float  # sum of edge logprobs from the root, each under the model that made the edge
    rank: int | None = None  # topk: 0 = most likely
    count: int | None = None  # chunk: how many of the n samples drew this chunk
    finish_reason: str | None = None  # chunk: eos | stop | length; topk: eos for an end token
    params: dict[str, Any] = field(default_factory=dict)
    edge_key: str = ""
    created_at: str = field(default_factory=utc_now)

    @property
    def probability(self) -> float:
        """P(edge | parent) under the model that made it."""
        return math.exp(self.logprob)

    @property
    def ended(self) -> bool:
        """Whether the text ends here (an end token or a stop string): nothing follows."""
        return self.finish_reason in ENDED

    def record(self) -> dict[str, Any]:
        """The node as a plain dict with the store's column names."""
        row = asdict(self)
        row["node_id"] = row.pop("id")
        row["edge_text"] = row.pop("text")
        return row

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> TreeNode:
        """A node from a store row or a JSON record."""
        return cls(
            id=int(row["node_id"]), parent_id=None if row["parent_id"] is None else int(row["parent_id"]),
            depth=int(row["depth"]), model=row["model"], method=row["method"], text=row["edge_text"],
            token_ids=list(row["token_ids"] or []), logprob=float(row["logprob"]),
            cum_logprob=float(row["cum_logprob"]),
            rank=row.get("rank"), count=row.get("count"), finish_reason=row.get("finish_reason"),
            params=dict(row.get("params") or {}), edge_key=row["edge_key"], created_at=row["created_at"],
        )


@dataclass
class TreeComparison:
    """Two models on the same tree: per node both probabilities, and where they differ most."""

    model_a: str  # the model that built the tree
    model_b: str
    # One row per edge: node_id, parent_id, depth, made_by, method, edge_text, path_text, alignment, logprob_a,
    # logprob_b, p_a, p_b, log_ratio (logprob_a - logprob_b, natural log), cum_a, cum_b, token_logprob_a,
    # token_logprob_b (per token, whatever the alignment), in_topk_a, in_topk_b.
    nodes: pd.DataFrame
    most_divergent: dict[str, Any] | None  # the row with the largest |log_ratio|
    family_note: str
    # TOKEN: logprobs per token (same tokenisation); TEXT: of the edge's text as a text prefix (tokenisers differ).
    alignment: str = TOKEN

    @property
    def alignment_note(self) -> str:
        """One line saying what the compared probabilities are."""
        if self.alignment == TEXT:
            return ("compared on text prefixes: p = probability that the text continues with the edge's text "
                    "(the tokenisers split text differently, so per-token probabilities are not comparable; "
                    "an edge whose text starts another's, like \" \" and \" between\", includes it)")
        return "compared per token: both models read the tree's texts as the same token ids"

    @property
    def branches(self) -> pd.DataFrame:
        """Edges that only one model has among its top-k children at their parent."""
        frame = self.nodes
        return frame[frame["in_topk_a"] != frame["in_topk_b"]]

    def describe(self, rows: int = 10) -> str:
        """A few lines for the terminal: the largest divergences and the one-sided branches."""
        a, b = self.model_a, self.model_b
        lines = [f"{a} vs {b}: {self.family_note}", self.alignment_note]
        if self.most_divergent is not None:
            d = self.most_divergent
            lines.append(
                f"largest divergence at node {d['node_id']} (depth {d['depth']}): {quote(d['edge_text'])} after "
                f"{_after(d['path_text'])}: p({a}) = {fmt_probability(d['p_a'])}, "
                f"p({b}) = {fmt_probability(d['p_b'])}, log ratio {d['log_ratio']:+.2f} nats"
            )
        scored = self.nodes.dropna(subset=["log_ratio"])
        unscored = int(self.nodes["log_ratio"].isna().sum())
        if unscored:
            why = "end-of-text tokens" + (", or text that merges with the prompt's last token"
                                          if self.alignment == TEXT else "")
            lines.append(f"{unscored} edge(s) not scored under both models ({why})")
        top = scored.reindex(scored["log_ratio"].abs().sort_values(ascending=False).index).head(rows)
        if len(top):
            lines.append(f"edges where the models differ most (p under each, log ratio = ln p({a}) - ln p({b})):")
            for r in top.itertuples():
                lines.append(f"  node {r.node_id:>3} d{r.depth} {quote(r.edge_text):<18} {a} {fmt_probability(r.p_a)}  "
                             f"{b} {fmt_probability(r.p_b)}  log ratio {r.log_ratio:+.2f}")
        one_sided = self.branches
        if len(one_sided):
            lines.append("branches in only one model's top-k:")
            for r in one_sided.head(2 * rows).itertuples():
                owner = a if r.in_topk_a else b
                lines.append(f"  after {_after(r.path_text)}: {quote(r.edge_text)} only in {owner}'s top-k "
                             f"({a} {fmt_probability(r.p_a)}, {b} {fmt_probability(r.p_b)})")
        return "\n".join(lines)


# -- small helpers shared by the tree's modules ------------------------------------------------


def quote(text: str) -> str:
    """Text as a JSON string literal: quotes, and visible escapes for newlines and tabs."""
    return json.dumps(text, ensure_ascii=False)


def fmt_probability(probability: float) -> str:
    """Three decimals, or two significant digits for the small probabilities of long chunks."""
    if probability != probability:
        return "-"
    return f"{probability:.3f}" if probability >= 0.001 or probability == 0 else f"{probability:.1e}"


def tail(text: str, width: int) -> str:
    """The last `width` characters of a text, with an ellipsis where it was cut."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _after(path_text: str) -> str:
    return quote(tail(path_text, 40)) if path_text else "the prompt"


def positive(name: str, value: Any) -> int:
    """A whole number of at least 1, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WorkbenchError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)
