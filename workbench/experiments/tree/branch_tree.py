"""BranchTree: create or load a tree, read its paths, expand its nodes (top-k or sampled chunks) and grow it.

Every model call goes through the Sampler's public methods (next-token top-k, top-k after given
token ids, token counts, encoding, context length, stop tokens, sampling, scoring), so calls are
retried, recorded and cached like any other.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from workbench.config import SamplingOverrides, make_config
from workbench.errors import WorkbenchError
from workbench.experiments.tree.comparison import alignment, compare_models, score_edges, score_text_edges
from workbench.experiments.tree.nodes import ROOT, TEXT, TEXT_PREFIX, TreeComparison, TreeNode, TreePrompt, positive
from workbench.experiments.tree.records import (
    import_document,
    prompt_record,
    rendered_from_record,
    rendered_record,
    tree_document,
    tree_frame,
)
from workbench.experiments.tree.text import render_text
from workbench.store import new_id, utc_now
from workbench.types import RenderedInput

if TYPE_CHECKING:
    from workbench.sampler import Sampler


class BranchTree:
    """A prompt expanded into a tree of continuations, stored in the run store as it grows."""

    def __init__(self, sampler: Sampler, header: dict[str, Any], nodes: list[TreeNode],
                 scores: list[dict[str, Any]] | None = None) -> None:
        self.sampler = sampler
        self.id: str = header["id"]
        self.model: str = header["model"]
        self.prompt: dict[str, Any] = header["prompt"]
        self.prompt_ref: str | None = header.get("prompt_ref")
        self.created_at: str = header["created_at"]
        self.params: dict[str, Any] = header.get("params") or {}
        self.root_input = rendered_from_record(header["root_input"])
        self.nodes: dict[int, TreeNode] = {}
        self._children: dict[int, list[int]] = {}
        for node in nodes:
            self._add(node)
        # (node id, model) -> that model's logprob of the edge given the parent's path text (None: not scorable)
        self.scores: dict[tuple[int, str], float | None] = {
            (int(s["node_id"]), s["model"]): s["logprob"] for s in scores or []
        }
        self._roots: dict[str, RenderedInput] = {self.model: self.root_input}
        self._context: dict[str, int | None] = {}
        self._alignment: dict[str, str] = {}

    # -- creating and loading --------------------------------------------------------------

    @classmethod
    def create(cls, sampler: Sampler, model: str, prompt: TreePrompt, chat: bool = False,
               variables: dict[str, Any] | None = None, perturbation: str | None = None,
               framing: str | None = None) -> BranchTree:
        """A new tree with only its root: the prompt as `model` receives it (stored at once)."""
        spec = sampler.model(model)
        record, ref = prompt_record(prompt, chat, variables, perturbation, framing)
        rendered = sampler.render(prompt, spec, chat, variables, perturbation, framing)
        _needs_text(rendered, spec.name)
        header = {"id": new_id(), "created_at": utc_now(), "model": spec.name, "prompt": record, "prompt_ref": ref,
                  "root_input": rendered_record(rendered), "params": {}}
        sampler.store.create_tree(header)
        root = TreeNode(ROOT, None, 0, spec.name, "root", "", [], 0.0, 0.0, edge_key="root")
        sampler.store.add_tree_nodes(header["id"], [root.record()])
        return cls(sampler, header, [root])

    @classmethod
    def load(cls, sampler: Sampler, tree_id: str) -> BranchTree:
        """A stored tree (a full id or a unique prefix) with all its nodes and scores."""
        header = sampler.store.tree(tree_id)
        nodes = [TreeNode.from_record(r) for r in sampler.store.tree_nodes(header["id"])]
        return cls(sampler, header, nodes, sampler.store.tree_scores(header["id"]))

    @classmethod
    def from_json(cls, sampler: Sampler, data: dict[str, Any] | str | Path) -> BranchTree:
        """A tree from `to_json` data (a dict, JSON text, or a file), added to the sampler's store."""
        return cls.load(sampler, import_document(sampler.store, data))

    def _add(self, node: TreeNode) -> None:
        if node.id in self.nodes:
            self.nodes[node.id] = node  # a chunk whose count grew
            return
        self.nodes[node.id] = node
        self._children.setdefault(node.id, [])
        if node.parent_id is not None:
            self._children.setdefault(node.parent_id, []).append(node.id)

    # -- reading ---------------------------------------------------------------------------

    @property
    def root(self) -> TreeNode:
        """The root node (the prompt itself)."""
        return self.nodes[ROOT]

    def node(self, node_id: int | TreeNode) -> TreeNode:
        """A node by id, or a clear error."""
        if isinstance(node_id, TreeNode):
            node_id = node_id.id
        if isinstance(node_id, bool) or not isinstance(node_id, (int, np.integer)) or int(node_id) not in self.nodes:
            raise WorkbenchError(f"tree {self.id} has no node {node_id!r} (node ids run from 0 to "
                                 f"{max(self.nodes)}; see render_text())")
        return self.nodes[int(node_id)]

    def children(self, node_id: int | TreeNode, model: str | None = None, method: str | None = None) -> list[TreeNode]:
        """A node's children (optionally of one model and method), most likely first."""
        kids = [self.nodes[i] for i in self._children.get(self.node(node_id).id, [])]
        kids = [c for c in kids if (model is None or c.model == model) and (method is None or c.method == method)]
        return sorted(kids, key=lambda c: (-c.logprob, c.id))

    def shown_children(self, node_id: int | TreeNode) -> tuple[list[TreeNode], dict[int, TreeNode]]:
        """A node's children for display, the tree model's first; another model's leaf child with the same text and
        method as one of ours is folded into ours (returned as twins: our node id -> the other's node)."""
        kids = sorted(self.children(node_id), key=lambda c: (
            c.model != self.model, c.method != "topk", c.rank if c.rank is not None else 0, -(c.count or 0),
            -c.logprob, c.id))
        ours = {(c.text, c.method): c for c in kids if c.model == self.model}
        twins: dict[int, TreeNode] = {}
        shown = []
        for c in kids:
            mine = ours.get((c.text, c.method))
            if c.model != self.model and mine is not None and not self._children.get(c.id):
                twins[mine.id] = c
            else:
                shown.append(c)
        return shown, twins

    def path(self, node_id: int | TreeNode) -> list[TreeNode]:
        """The nodes from the root to this node, both included."""
        node = self.node(node_id)
        chain = [node]
        while chain[-1].parent_id is not None:
            chain.append(self.nodes[chain[-1].parent_id])
        return chain[::-1]

    def path_text(self, node_id: int | TreeNode) -> str:
        """The text from the root's end to the end of this node's edge."""
        return "".join(n.text for n in self.path(node_id))

    def resolve_model(self, model: str | None) -> str:
        """A model's registry name (the tree's own model when None); unknown names fail clearly."""
        return self.model if model is None else self.sampler.model(model).name

    def family_note(self, other: str) -> str:
        """How the tree's model and `other` are related (same family or not), for notes under results."""
        return self.sampler.registry.describe_pair([self.model, self.resolve_model(other)])

    def root_for(self, model: str) -> RenderedInput:
        """The prompt as `model` receives it (each model gets its own rendering: template, chat or raw)."""
        name = self.sampler.model(model).name
        if name not in self._roots:
            prompt, chat, choices = self._prompt_for_render()
            rendered = self.sampler.render(prompt, name, chat, **choices)
            _needs_text(rendered, name)
            self._roots[name] = rendered
        return self._roots[name]

    def _prompt_for_render(self) -> tuple[Any, bool, dict[str, Any]]:
        record = self.prompt
        if "ref" in record:
            choices = {k: record.get(k) for k in ("variables", "perturbation", "framing")}
            return self.sampler.library.get(record["ref"]), False, choices
        if "messages" in record:
            return list(record["messages"]), False, {}
        return record["text"], bool(record.get("chat")), {}

    def input_at(self, node_id: int | TreeNode, model: str) -> RenderedInput:
        """What `model` is given to continue after this node: its rendered root plus the path text."""
        root = self.root_for(model)
        return RenderedInput(mode=root.mode, text=(root.text or "") + self.path_text(node_id), messages=root.messages,
                             template=root.template, extra_stop=root.extra_stop)

    def own_path_ids(self, node_id: int | TreeNode, model: str) -> list[int] | None:
        """The path's exact token ids when `model` made every edge of it, else None (it gets the text)."""
        ids: list[int] = []
        for node in self.path(node_id)[1:]:
            if node.model != model:
                return None
            ids += node.token_ids
        return ids

    # -- limits ----------------------------------------------------------------------------

    def context_length(self, model: str) -> int | None:
        """The model's context in tokens, where its backend can tell without loading weights."""
        name = self.resolve_model(model)
        if name not in self._context:
            self._context[name] = self.sampler.context_length(name)
        return self._context[name]

    def _tokens_at(self, node_id: int, model: str) -> int | None:
        """Positions the root plus the path to this node take for `model` (None where it cannot count)."""
        own = self.own_path_ids(node_id, model)
        if own is None:
            return self.sampler.count_tokens(model, self.input_at(node_id, model))
        root = self.sampler.count_tokens(model, self.root_for(model))
        return None if root is None else root + len(own)

    def _check_context(self, node: TreeNode, model: str, new_tokens: int, what: str) -> None:
        limit = self.context_length(model)
        used = self._tokens_at(node.id, model) if limit else None
        if limit and used is not None and used + new_tokens > limit:
            raise WorkbenchError(
                f"{what} from node {node.id} would need {used + new_tokens} tokens ({used} for the prompt and the path "
                f"so far), more than {model}'s context of {limit} tokens; ask for at most {max(0, limit - used)} "
                "new tokens there"
            )

    # -- expanding -------------------------------------------------------------------------

    def expand(self, node_id: int | TreeNode, k: int | None = None, n: int | None = None, m: int | None = None,
               model: str | None = None, seed: int = 0, **overrides: Unpack[SamplingOverrides]) -> list[TreeNode]:
        """Expand a node with the top-k next tokens (k=...) or n sampled chunks of m tokens (n=..., m=...)."""
        fields = {name: value for name, value in overrides.items() if value is not None}
        if k is not None and (n is not None or m is not None):
            raise WorkbenchError("expand a node either with k (top-k tokens) or with n and m (sampled chunks), "
                                 "not both")
        if k is None and n is None and m is None:
            raise WorkbenchError("say how to expand: k=... for the top-k next tokens, or n=... and m=... for chunks")
        if k is not None:
            if fields:
                raise WorkbenchError(f"sampling fields ({', '.join(fields)}) apply to sampled chunks only")
            return self.expand_topk(node_id, k, model)
        if n is None or m is None:
            raise WorkbenchError("sampled chunks need both n (how many) and m (tokens per chunk)")
        return self.sample_chunks(node_id, n, m, model=model, seed=seed, **overrides)

    def _not_ended(self, node: TreeNode) -> None:
        if node.ended:
            raise WorkbenchError(f"node {node.id} ends the text ({node.finish_reason}); nothing follows it to expand")

    def expand_topk(self, node_id: int | TreeNode, k: int, model: str | None = None) -> list[TreeNode]:
        """The k most likely next tokens after a node as its children (exact probabilities; stored)."""
        node, k, model = self.node(node_id), positive("k", k), self.resolve_model(model)
        self._not_ended(node)
        existing = self.children(node, model=model, method="topk")
        if len(existing) >= k:
            return existing[:k]  # lazy: this model already gave at least k children here
        self._check_context(node, model, 1, "a top-k expansion")
        own = self.own_path_ids(node.id, model)
        if own is not None and self.sampler.capabilities(model).token_ids:
            tops = self.sampler.next_token_topk_after(model, self.root_for(model), own, k)
            conditioning = "token-ids"
        else:
            tops, conditioning = self.sampler.next_token_topk(model, self.input_at(node, model), k), "text"
        stops = self.sampler.stop_token_ids(model)
        rows = [
            TreeNode(-1, node.id, node.depth + 1, model, "topk", t.token, [] if t.token_id is None else [t.token_id],
                     t.logprob, node.cum_logprob + t.logprob, rank=rank,
                     finish_reason="eos" if t.token_id in stops else None,
                     params={"k": k, "conditioning": conditioning},
                     edge_key=str(t.token_id) if t.token_id is not None else "text:" + t.token).record()
            for rank, t in enumerate(tops)
        ]
        self._store_children(rows)
        return self.children(node, model=model, method="topk")[:k]

    def sample_chunks(self, node_id: int | TreeNode, n: int, m: int, model: str | None = None, seed: int = 0,
                      **overrides: Unpack[SamplingOverrides]) -> list[TreeNode]:
        """n sampled chunks of at most m tokens after a node (stored and cached as samples), identical ones merged."""
        node, n, m, model = self.node(node_id), positive("n", n), positive("m", m), self.resolve_model(model)
        self._not_ended(node)
        config = make_config(**{**overrides, "max_tokens": m})
        digest = hashlib.sha256(json.dumps(config.cache_fields(), sort_keys=True).encode()).hexdigest()[:12]
        expansion = f"m={m};seed={seed};config={digest}"
        chunks = self.children(node, model=model, method="chunk")
        siblings = [c for c in chunks if c.params.get("expansion") == expansion]
        if siblings and siblings[0].params.get("n", 0) >= n:
            return siblings  # lazy: at least n chunks of this kind were drawn here already
        self._check_context(node, model, m, f"chunks of {m} tokens")
        rendered = self.input_at(node, model)
        run = self.sampler.sample(model, rendered, n, config=config, seed=seed, prompt_ref=self.prompt_ref,
                                  tags=[f"tree:{self.id}"])
        groups: dict[tuple[int, ...], dict[str, Any]] = {}
        for row in run.samples.itertuples():
            key = tuple(row.token_ids or [])
            group = groups.setdefault(key, {"text": row.text, "finish": row.finish_reason,
                                            "logprob": float(sum(row.token_logprobs or [])), "indices": []})
            group["indices"].append(int(row.sample_index))
        retokenised = self._retokenised(node, model, rendered)
        rows = []
        for ids, g in groups.items():
            params = {"n": n, "m": m, "seed": seed, "config": run.config.model_dump(mode="json"), "run_id": run.run_id,
                      "sample_indices": g["indices"], "expansion": expansion, "conditioning": "text",
                      "retokenised": retokenised}
            rows.append(TreeNode(-1, node.id, node.depth + 1, model, "chunk", g["text"], list(ids), g["logprob"],
                                 node.cum_logprob + g["logprob"], count=len(g["indices"]), finish_reason=g["finish"],
                                 params=params, edge_key=f"{expansion};ids={json.dumps(list(ids))}").record())
        self._store_children(rows)
        kids = [c for c in self.children(node, model=model, method="chunk") if c.params.get("expansion") == expansion]
        return sorted(kids, key=lambda c: (-(c.count or 0), -c.logprob, c.id))

    def _retokenised(self, node: TreeNode, model: str, rendered: RenderedInput) -> bool | None:
        """Whether the path's own token ids differ from its retokenised text (None: not known).

        Sampling goes through the Sampler (store, cache, per-sample seeds), which takes text: say when
        the two differ, as then the chunks saw another tokenisation than the path was made of.
        """
        own = self.own_path_ids(node.id, model)
        if own is None:
            return None
        whole = self.sampler.encode(model, rendered.text or "")
        root = self.sampler.encode(model, self.root_for(model).text or "")
        return None if whole is None or root is None else whole != root + own

    def _store_children(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row.pop("node_id")  # the store gives new children the next free ids
        ids = self.sampler.store.add_tree_nodes(self.id, rows)
        for node_id, row in zip(ids, rows, strict=True):
            stored = self.nodes.get(node_id)
            if stored is not None and stored.method == "chunk":
                stored.count, stored.params = row["count"], row["params"]
            elif stored is None:
                self._add(TreeNode.from_record({**row, "node_id": node_id}))

    def grow(self, depth: int, k: int | None = None, n: int | None = None, m: int | None = None,
             beam: int | None = None, model: str | None = None, node: int = ROOT, seed: int = 0,
             **overrides: Unpack[SamplingOverrides]) -> list[TreeNode]:
        """Expand breadth-first `depth` levels below a node (top-k or chunks); `beam` keeps the most likely per level.

        Returns the deepest level. Nodes already expanded cost nothing.
        """
        depth = positive("depth", depth)
        if beam is not None:
            beam = positive("beam", beam)
        model = self.resolve_model(model)
        start = self.node(node)
        if k is None and (n is None or m is None):
            raise WorkbenchError("grow needs k (top-k tokens per node) or n and m (chunks per node)")
        per_level = 1 if k is not None else positive("m", m)
        limit = self.context_length(model)
        used = self._tokens_at(start.id, model) if limit else None
        if limit and used is not None and used + depth * per_level > limit:
            raise WorkbenchError(
                f"a tree of depth {depth} ({per_level} token(s) per level) from node {start.id} would need "
                f"{used + depth * per_level} tokens, more than {model}'s context of {limit} tokens ({used} for the "
                f"prompt and path); use a depth of at most {max(0, (limit - used) // per_level)}"
            )
        frontier = [start]
        for _ in range(depth):
            level: list[TreeNode] = []
            for parent in frontier:
                if not parent.ended:
                    level += self.expand(parent, k=k, n=n, m=m, model=model, seed=seed, **overrides)
            if beam is not None:
                level = sorted(level, key=lambda c: (-c.cum_logprob, c.id))[:beam]
            frontier = level
        return frontier

    expand_to_depth = grow

    # -- comparing models ------------------------------------------------------------------

    def edge_logprob(self, node_id: int, model: str) -> float | None:
        """`model`'s logprob of a node's edge given its parent's path (its own edges: as made), if known."""
        node = self.node(node_id)
        if node.model == model:
            return node.logprob
        return self.scores.get((node.id, model))

    def cumulative_logprob(self, node_id: int, model: str) -> float:
        """`model`'s logprob of the whole path to a node, edge by edge (NaN where an edge has no score)."""
        total = 0.0
        for node in self.path(node_id)[1:]:
            lp = self.edge_logprob(node.id, model)
            if lp is None:
                return float("nan")
            total += lp
        return total

    def score_nodes(self, model: str, node_ids: list[int] | None = None) -> dict[int, float | None]:
        """`model`'s logprob of each edge given the path text before it (one scoring call per parent; stored)."""
        return score_edges(self, model, node_ids)

    def score_nodes_as_text(self, model: str, node_ids: list[int] | None = None) -> dict[int, float | None]:
        """`model`'s logprob of each edge as text: that the text continues with the edge's text (stored)."""
        return score_text_edges(self, model, node_ids)

    def alignment(self, other: str) -> str:
        """How the tree's model and `other` are compared: "token" (same tokenisation) or "text" (text prefixes)."""
        name = self.resolve_model(other)
        if name not in self._alignment:
            self._alignment[name] = alignment(self, name)
        return self._alignment[name]

    def pair_logprob(self, node_id: int, model: str, other: str) -> float | None:
        """`model`'s logprob of a node's edge when compared with `other`: per token, or as text where the two
        tokenise differently (None where not scored yet, or not scorable)."""
        pair = other if self.resolve_model(model) == self.model else model
        if self.alignment(pair) == TEXT:
            return self.scores.get((self.node(node_id).id, TEXT_PREFIX + self.resolve_model(model)))
        return self.edge_logprob(node_id, self.resolve_model(model))

    def pair_cumulative_logprob(self, node_id: int, model: str, other: str) -> float:
        """`model`'s logprob of the whole path to a node as compared with `other` (NaN where an edge has none)."""
        total = 0.0
        for node in self.path(node_id)[1:]:
            lp = self.pair_logprob(node.id, model, other)
            if lp is None:
                return float("nan")
            total += lp
        return total

    def compare(self, other: str, k: int | None = None, branches: bool = True) -> TreeComparison:
        """Where `other` and the tree's model differ: both probabilities of every edge, and each one's own top-k.

        With `branches`, `other` expands every node the tree's model expanded by top-k, with the same k
        (or `k`), so branches one model ranks high and the other does not show up. Models that tokenise
        the tree's texts differently are compared on text prefixes (see `alignment`), so a tokeniser
        boundary never shows up as a divergence.
        """
        return compare_models(self, other, k, branches)

    # -- export ----------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """The tree's stored header."""
        return {"id": self.id, "created_at": self.created_at, "model": self.model, "prompt": self.prompt,
                "prompt_ref": self.prompt_ref, "root_input": rendered_record(self.root_input), "params": self.params}

    def to_frame(self) -> pd.DataFrame:
        """One row per node (id order): edge, path text, probabilities, model, method and parameters."""
        return tree_frame(self)

    def to_json(self, path: str | Path | None = None) -> dict[str, Any]:
        """The whole tree (header, nodes, other models' scores) as JSON-ready data; written to `path` if given."""
        return tree_document(self, path)

    def render_text(self, compare_with: str | None = None, max_depth: int | None = None,
                    min_probability: float = 0.0) -> str:
        """An indented tree for the terminal: each edge with its probability and cumulative logprob."""
        return render_text(self, compare_with, max_depth, min_probability)


def _needs_text(rendered: RenderedInput, model: str) -> None:
    if rendered.text is None:
        raise WorkbenchError(
            f"model {model!r} receives chat messages, not text; a branch tree extends the text token by token, so it "
            "needs a model whose input is rendered as text (an hf model)"
        )
