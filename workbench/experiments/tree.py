"""Branch explorer (Loom-style): expand a prompt into a tree of continuations, node by node.

At each node a model gives either its top-k next tokens with their exact probabilities, or n
sampled chunks of m tokens (drawn through `Sampler.sample`, so they are stored and cached as
ordinary samples; a chunk's probability is exp(sum of its token logprobs), identical chunks are
merged with a count). Every node carries the probability of its edge given its parent, the
cumulative logprob from the root and the model that made it.

Expansion is lazy and incremental: expanding a node conditions on the root plus the path to it,
adds only the new children to the store and never recomputes or rewrites its ancestors. The
model that built a path conditions on that path's exact token ids (no retokenisation drift);
any other model is given the path as text and tokenises it itself, so models with different
tokenisers are compared on text, never on token ids.

A second model can expand the same tree (its own top-k at each node) and score every existing
edge; `compare` reports per node both models' probabilities, their log ratio, the node where
they diverge most, and the branches that only one model has in its top-k.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from workbench.config import make_config
from workbench.errors import WorkbenchError
from workbench.rendering import Message, RenderedInput
from workbench.store import new_id, utc_now

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from workbench.prompts import LibraryPrompt
    from workbench.sampler import Sampler

TREE_FORMAT = "workbench-branch-tree/1"
ROOT = 0
ENDED = ("eos", "stop")  # finish reasons after which nothing follows

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
    def from_record(cls, row: dict[str, Any]) -> "TreeNode":
        """A node from a store row or a JSON record."""
        return cls(
            id=int(row["node_id"]), parent_id=None if row["parent_id"] is None else int(row["parent_id"]),
            depth=int(row["depth"]), model=row["model"], method=row["method"], text=row["edge_text"],
            token_ids=list(row["token_ids"] or []), logprob=float(row["logprob"]), cum_logprob=float(row["cum_logprob"]),
            rank=row.get("rank"), count=row.get("count"), finish_reason=row.get("finish_reason"),
            params=dict(row.get("params") or {}), edge_key=row["edge_key"], created_at=row["created_at"],
        )


@dataclass
class TreeComparison:
    """Two models on the same tree: per node both probabilities, and where they differ most."""

    model_a: str  # the model that built the tree
    model_b: str
    # One row per edge: node_id, parent_id, depth, made_by, method, edge_text, path_text, logprob_a, logprob_b,
    # p_a, p_b, log_ratio (logprob_a - logprob_b, natural log), cum_a, cum_b, in_topk_a, in_topk_b.
    nodes: pd.DataFrame
    most_divergent: dict[str, Any] | None  # the row with the largest |log_ratio|
    family_note: str

    @property
    def branches(self) -> pd.DataFrame:
        """Edges that only one model has among its top-k children at their parent."""
        frame = self.nodes
        return frame[frame["in_topk_a"] != frame["in_topk_b"]]

    def describe(self, rows: int = 10) -> str:
        """A few lines for the terminal: the largest divergences and the one-sided branches."""
        a, b = self.model_a, self.model_b
        lines = [f"{a} vs {b}: {self.family_note}"]
        if self.most_divergent is not None:
            d = self.most_divergent
            lines.append(
                f"largest divergence at node {d['node_id']} (depth {d['depth']}): {_quote(d['edge_text'])} after "
                f"{_after(d['path_text'])}: p({a}) = {_fmt(d['p_a'])}, p({b}) = {_fmt(d['p_b'])}, "
                f"log ratio {d['log_ratio']:+.2f} nats"
            )
        scored = self.nodes.dropna(subset=["log_ratio"])
        top = scored.reindex(scored["log_ratio"].abs().sort_values(ascending=False).index).head(rows)
        if len(top):
            lines.append(f"edges where the models differ most (p under each, log ratio = ln p({a}) - ln p({b})):")
            for r in top.itertuples():
                lines.append(f"  node {r.node_id:>3} d{r.depth} {_quote(r.edge_text):<18} {a} {_fmt(r.p_a)}  "
                             f"{b} {_fmt(r.p_b)}  log ratio {r.log_ratio:+.2f}")
        one_sided = self.branches
        if len(one_sided):
            lines.append("branches in only one model's top-k:")
            for r in one_sided.head(2 * rows).itertuples():
                owner = a if r.in_topk_a else b
                lines.append(f"  after {_after(r.path_text)}: {_quote(r.edge_text)} only in {owner}'s top-k "
                             f"({a} {_fmt(r.p_a)}, {b} {_fmt(r.p_b)})")
        return "\n".join(lines)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _fmt(probability: float) -> str:
    """Three decimals, or two significant digits for the small probabilities of long chunks."""
    if probability != probability:
        return "-"
    return f"{probability:.3f}" if probability >= 0.001 or probability == 0 else f"{probability:.1e}"


def _after(path_text: str) -> str:
    return _quote(_tail(path_text, 40)) if path_text else "the prompt"


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _positive(name: str, value: Any) -> int:
    """A whole number of at least 1, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WorkbenchError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def _prompt_record(prompt: TreePrompt, chat: bool, variables: dict[str, Any] | None, perturbation: str | None,
                   framing: str | None) -> tuple[dict[str, Any], str | None]:
    """How to render the prompt again for any model (stored with the tree), and its library ref."""
    from workbench.prompts import LibraryPrompt, fill

    if isinstance(prompt, LibraryPrompt):
        ref = fill(prompt, variables, perturbation, framing).ref
        return {"ref": prompt.ref, "variables": variables, "perturbation": perturbation, "framing": framing}, ref
    if variables or perturbation or framing:
        raise WorkbenchError("variables, perturbation and framing apply to library prompts only")
    if isinstance(prompt, str):
        return {"text": prompt, "chat": bool(chat)}, None
    if isinstance(prompt, (list, tuple)):
        return {"messages": [dict(m) for m in prompt]}, None
    raise WorkbenchError(f"a tree's prompt is text, a list of messages or a library prompt, got {type(prompt).__name__}")


def _rendered_record(rendered: RenderedInput) -> dict[str, Any]:
    return {"mode": rendered.mode, "text": rendered.text,
            "messages": list(rendered.messages) if rendered.messages else None,
            "template": rendered.template, "extra_stop": list(rendered.extra_stop)}


def _rendered_from_record(record: dict[str, Any]) -> RenderedInput:
    messages = record.get("messages")
    return RenderedInput(mode=record["mode"], text=record.get("text"),
                         messages=tuple(messages) if messages else None, template=record.get("template", "raw"),
                         extra_stop=tuple(record.get("extra_stop") or ()))


class BranchTree:
    """A prompt expanded into a tree of continuations, stored in the run store as it grows."""

    def __init__(self, sampler: "Sampler", header: dict[str, Any], nodes: list[TreeNode],
                 scores: list[dict[str, Any]] | None = None) -> None:
        self.sampler = sampler
        self.id: str = header["id"]
        self.model: str = header["model"]
        self.prompt: dict[str, Any] = header["prompt"]
        self.prompt_ref: str | None = header.get("prompt_ref")
        self.created_at: str = header["created_at"]
        self.params: dict[str, Any] = header.get("params") or {}
        self.root_input = _rendered_from_record(header["root_input"])
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

    # -- creating and loading --------------------------------------------------------------

    @classmethod
    def create(cls, sampler: "Sampler", model: str, prompt: TreePrompt, chat: bool = False,
               variables: dict[str, Any] | None = None, perturbation: str | None = None,
               framing: str | None = None) -> "BranchTree":
        """A new tree with only its root: the prompt as `model` receives it (stored at once)."""
        spec = sampler.model(model)
        record, ref = _prompt_record(prompt, chat, variables, perturbation, framing)
        rendered = sampler.render(prompt, spec, chat, variables, perturbation, framing)
        _needs_text(rendered, spec.name)
        header = {"id": new_id(), "created_at": utc_now(), "model": spec.name, "prompt": record, "prompt_ref": ref,
                  "root_input": _rendered_record(rendered), "params": {}}
        sampler.store.create_tree(header)
        root = TreeNode(ROOT, None, 0, spec.name, "root", "", [], 0.0, 0.0, edge_key="root")
        sampler.store.add_tree_nodes(header["id"], [root.record()])
        return cls(sampler, header, [root])

    @classmethod
    def load(cls, sampler: "Sampler", tree_id: str) -> "BranchTree":
        """A stored tree (a full id or a unique prefix) with all its nodes and scores."""
        header = sampler.store.tree(tree_id)
        nodes = [TreeNode.from_record(r) for r in sampler.store.tree_nodes(header["id"])]
        return cls(sampler, header, nodes, sampler.store.tree_scores(header["id"]))

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

    def _own_path_ids(self, node_id: int, model: str) -> list[int] | None:
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
        name = self._model(model)
        if name not in self._context:
            reader = getattr(self.sampler.backend(name), "context_length", None)
            self._context[name] = reader() if reader else None
        return self._context[name]

    def _tokens_at(self, node_id: int, model: str) -> int | None:
        """Positions the root plus the path to this node take for `model`."""
        backend = self.sampler.backend(model)
        count = getattr(backend, "count_tokens", None)
        if count is None:
            return None
        own = self._own_path_ids(node_id, model)
        if own is not None:
            return count(self.root_for(model)) + len(own)
        return count(self.input_at(node_id, model))

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
               model: str | None = None, seed: int = 0, **config_fields: Any) -> list[TreeNode]:
        """Expand a node with the top-k next tokens (k=...) or n sampled chunks of m tokens (n=..., m=...)."""
        config_fields = {name: value for name, value in config_fields.items() if value is not None}
        if k is not None and (n is not None or m is not None):
            raise WorkbenchError("expand a node either with k (top-k tokens) or with n and m (sampled chunks), not both")
        if k is None and n is None and m is None:
            raise WorkbenchError("say how to expand: k=... for the top-k next tokens, or n=... and m=... for chunks")
        if k is not None:
            if config_fields:
                raise WorkbenchError(f"sampling fields ({', '.join(config_fields)}) apply to sampled chunks only")
            return self._expand_topk(self.node(node_id), _positive("k", k), self._model(model))
        if n is None or m is None:
            raise WorkbenchError("sampled chunks need both n (how many) and m (tokens per chunk)")
        return self.sample_chunks(node_id, n, m, model=model, seed=seed, **config_fields)

    def sample_chunks(self, node_id: int | TreeNode, n: int, m: int, model: str | None = None, seed: int = 0,
                      **config_fields: Any) -> list[TreeNode]:
        """n sampled chunks of at most m tokens after a node (stored and cached as samples), identical ones merged."""
        return self._expand_chunks(self.node(node_id), _positive("n", n), _positive("m", m), self._model(model), seed,
                                   config_fields)

    def _model(self, model: str | None) -> str:
        return self.model if model is None else self.sampler.model(model).name

    def _not_ended(self, node: TreeNode) -> None:
        if node.ended:
            raise WorkbenchError(f"node {node.id} ends the text ({node.finish_reason}); nothing follows it to expand")

    def _expand_topk(self, node: TreeNode, k: int, model: str) -> list[TreeNode]:
        self._not_ended(node)
        existing = self.children(node, model=model, method="topk")
        if len(existing) >= k:
            return existing[:k]  # lazy: this model already gave at least k children here
        self._check_context(node, model, 1, "a top-k expansion")
        backend = self.sampler.backend(model)
        own = self._own_path_ids(node.id, model)
        exact = getattr(backend, "next_token_topk_after", None)
        if own is not None and exact is not None:
            tops, conditioning = exact(self.root_for(model), own, k), "token-ids"
        else:
            tops, conditioning = self.sampler.next_token_topk(model, self.input_at(node, model), k), "text"
        stop_reader = getattr(backend, "stop_token_ids", None)
        stops = stop_reader() if stop_reader else set()
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

    def _expand_chunks(self, node: TreeNode, n: int, m: int, model: str, seed: int,
                       config_fields: dict[str, Any]) -> list[TreeNode]:
        self._not_ended(node)
        config = make_config(**{**config_fields, "max_tokens": m})
        digest = hashlib.sha256(json.dumps(config.cache_fields(), sort_keys=True).encode()).hexdigest()[:12]
        expansion = f"m={m};seed={seed};config={digest}"
        siblings = [c for c in self.children(node, model=model, method="chunk") if c.params.get("expansion") == expansion]
        if siblings and siblings[0].params.get("n", 0) >= n:
            return siblings  # lazy: at least n chunks of this kind were drawn here already
        self._check_context(node, model, m, f"chunks of {m} tokens")
        rendered = self.input_at(node, model)
        own = self._own_path_ids(node.id, model)
        encode = getattr(self.sampler.backend(model), "encode_prompt", None)
        # Sampling goes through the Sampler (store, cache, per-sample seeds), which takes text: say when the
        # path's own token ids and the retokenised text differ, as then the chunks saw another tokenisation.
        retokenised = None
        if own is not None and encode is not None:
            retokenised = encode(rendered.text) != encode(self.root_for(model).text) + own
        run = self.sampler.sample(model, rendered, n, config=config, seed=seed, prompt_ref=self.prompt_ref,
                                  tags=[f"tree:{self.id}"])
        groups: dict[tuple[int, ...], dict[str, Any]] = {}
        for row in run.samples.itertuples():
            key = tuple(row.token_ids or [])
            group = groups.setdefault(key, {"text": row.text, "finish": row.finish_reason,
                                            "logprob": float(sum(row.token_logprobs or [])), "indices": []})
            group["indices"].append(int(row.sample_index))
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

    def _store_children(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row.pop("node_id")  # the store gives new children the next free ids
        ids = self.sampler.store.add_tree_nodes(self.id, rows)
        for node_id, row in zip(ids, rows):
            stored = self.nodes.get(node_id)
            if stored is not None and stored.method == "chunk":
                stored.count, stored.params = row["count"], row["params"]
            elif stored is None:
                self._add(TreeNode.from_record({**row, "node_id": node_id}))

    def grow(self, depth: int, k: int | None = None, n: int | None = None, m: int | None = None,
             beam: int | None = None, model: str | None = None, node: int = ROOT, seed: int = 0,
             **config_fields: Any) -> list[TreeNode]:
        """Expand breadth-first `depth` levels below a node (top-k or chunks); `beam` keeps the most likely per level.

        Returns the deepest level. Nodes already expanded cost nothing.
        """
        depth = _positive("depth", depth)
        if beam is not None:
            beam = _positive("beam", beam)
        model = self._model(model)
        start = self.node(node)
        if k is None and (n is None or m is None):
            raise WorkbenchError("grow needs k (top-k tokens per node) or n and m (chunks per node)")
        per_level = 1 if k is not None else _positive("m", m)
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
                    level += self.expand(parent, k=k, n=n, m=m, model=model, seed=seed, **config_fields)
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

    def score_nodes(self, model: str, node_ids: list[int] | None = None) -> dict[int, float | None]:
        """`model`'s logprob of each edge given the path text before it (one scoring call per parent; stored)."""
        model = self._model(model)
        ids = [i for i in (node_ids if node_ids is not None else self.nodes) if i != ROOT]
        todo: dict[int, list[TreeNode]] = {}
        for i in ids:
            node = self.node(i)
            if node.model != model and (node.id, model) not in self.scores:
                todo.setdefault(node.parent_id, []).append(node)  # type: ignore[arg-type]
        rows: list[dict[str, Any]] = []
        for parent_id, kids in todo.items():
            # An end token or an empty edge has no text another tokeniser could score.
            scorable = [c for c in kids if not c.ended and c.text]
            for c in kids:
                if c not in scorable:
                    rows.append({"node_id": c.id, "model": model, "logprob": None, "token_ids": None})
            if scorable:
                scored = self.sampler.score(model, self.input_at(parent_id, model), [c.text for c in scorable])
                rows += [{"node_id": c.id, "model": model, "logprob": s.logprob, "token_ids": s.token_ids}
                         for c, s in zip(scorable, scored)]
        self.sampler.store.add_tree_scores(self.id, rows)
        for row in rows:
            self.scores[(row["node_id"], model)] = row["logprob"]
        return {i: self.edge_logprob(i, model) for i in ids}

    def compare(self, other: str, k: int | None = None, branches: bool = True) -> TreeComparison:
        """Where `other` and the tree's model differ: both probabilities of every edge, and each one's own top-k.

        With `branches`, `other` expands every node the tree's model expanded by top-k, with the same k
        (or `k`), so branches one model ranks high and the other does not show up.
        """
        a, b = self.model, self._model(other)
        if a == b:
            raise WorkbenchError(f"compare needs another model than the tree's own ({a})")
        if k is not None:
            k = _positive("k", k)
        if branches:
            for node in list(self.nodes.values()):
                own = self.children(node, model=a, method="topk")
                if own and not node.ended:
                    self._expand_topk(node, k or len(own), b)
        for model in (a, b):
            self.score_nodes(model)
        topk_texts: dict[tuple[int, str], set[str]] = {}
        for node in self.nodes.values():
            if node.method == "topk":
                topk_texts.setdefault((node.parent_id, node.model), set()).add(node.text)  # type: ignore[arg-type]
        rows = []
        seen: set[tuple[int, str]] = set()
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            if node.id == ROOT or (node.parent_id, node.text) in seen:
                continue  # the same edge text from both models' top-k is one edge
            seen.add((node.parent_id, node.text))  # type: ignore[arg-type]
            la, lb = self.edge_logprob(node.id, a), self.edge_logprob(node.id, b)
            rows.append({
                "node_id": node.id, "parent_id": node.parent_id, "depth": node.depth, "made_by": node.model,
                "method": node.method, "edge_text": node.text, "path_text": self.path_text(node.parent_id),
                "logprob_a": _nan(la), "logprob_b": _nan(lb), "p_a": math.exp(la) if la is not None else np.nan,
                "p_b": math.exp(lb) if lb is not None else np.nan,
                "log_ratio": la - lb if la is not None and lb is not None else np.nan,
                "cum_a": self._cumulative(node.id, a), "cum_b": self._cumulative(node.id, b),
                "in_topk_a": node.text in topk_texts.get((node.parent_id, a), set()),  # type: ignore[arg-type]
                "in_topk_b": node.text in topk_texts.get((node.parent_id, b), set()),  # type: ignore[arg-type]
            })
        frame = pd.DataFrame(rows)
        most = None
        if len(frame) and frame["log_ratio"].notna().any():
            most = frame.loc[frame["log_ratio"].abs().idxmax()].to_dict()
        return TreeComparison(a, b, frame, most, self.sampler.registry.describe_pair([a, b]))

    def _cumulative(self, node_id: int, model: str) -> float:
        total = 0.0
        for node in self.path(node_id)[1:]:
            lp = self.edge_logprob(node.id, model)
            if lp is None:
                return float("nan")
            total += lp
        return total

    # -- export ----------------------------------------------------------------------------

    def to_frame(self) -> pd.DataFrame:
        """One row per node (id order): edge, path text, probabilities, model, method and parameters."""
        rows = []
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            rows.append({
                "tree_id": self.id, "node_id": node.id, "parent_id": node.parent_id, "depth": node.depth,
                "model": node.model, "method": node.method, "edge_text": node.text,
                "path_text": self.path_text(node.id), "token_ids": list(node.token_ids), "logprob": node.logprob,
                "probability": node.probability, "cum_logprob": node.cum_logprob, "rank": node.rank,
                "count": node.count, "finish_reason": node.finish_reason, "params": node.params,
                "created_at": node.created_at,
            })
        frame = pd.DataFrame(rows)
        frame["parent_id"] = frame["parent_id"].astype("Int64")
        frame["rank"] = frame["rank"].astype("Int64")
        frame["count"] = frame["count"].astype("Int64")
        return frame

    def header(self) -> dict[str, Any]:
        """The tree's stored header."""
        return {"id": self.id, "created_at": self.created_at, "model": self.model, "prompt": self.prompt,
                "prompt_ref": self.prompt_ref, "root_input": _rendered_record(self.root_input), "params": self.params}

    def to_json(self, path: str | Path | None = None) -> dict[str, Any]:
        """The whole tree (header, nodes, other models' scores) as JSON-ready data; written to `path` if given."""
        data = {
            "format": TREE_FORMAT,
            "tree": self.header(),
            "nodes": [n.record() for n in sorted(self.nodes.values(), key=lambda n: n.id)],
            "scores": [{"node_id": i, "model": m, "logprob": lp} for (i, m), lp in sorted(self.scores.items())],
        }
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return data

    @classmethod
    def from_json(cls, sampler: "Sampler", data: dict[str, Any] | str | Path) -> "BranchTree":
        """A tree from `to_json` data (a dict, JSON text, or a file), added to the sampler's store."""
        if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
            path = Path(data)
            if not path.is_file():
                raise WorkbenchError(f"no tree file {path}")
            data = path.read_text(encoding="utf-8")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise WorkbenchError(f"not a tree JSON document ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != TREE_FORMAT:
            raise WorkbenchError(f"not a workbench branch tree (expected format {TREE_FORMAT})")
        try:
            header = data["tree"]
            sampler.store.create_tree(header)
            sampler.store.add_tree_nodes(header["id"], list(data["nodes"]))
            sampler.store.add_tree_scores(header["id"], list(data.get("scores") or []))
        except (KeyError, TypeError) as exc:
            raise WorkbenchError(f"the tree JSON document is incomplete ({exc})") from None
        return cls.load(sampler, header["id"])

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

    def render_text(self, compare_with: str | None = None, max_depth: int | None = None,
                    min_probability: float = 0.0) -> str:
        """An indented tree for the terminal: each edge with its probability and cumulative logprob."""
        other = self._model(compare_with) if compare_with else None
        root_text = _tail(self.root_input.text or self.root_input.display(), 70)
        head = f"tree {self.id} ({self.model}) on {_quote(root_text)}"
        if other:
            head += f"; p under {self.model} | p under {other}; cum: cumulative logprob under {self.model}"
        lines = [head]

        def p(lp: float | None) -> str:
            return "-" if lp is None else _fmt(math.exp(lp))

        def label(node: TreeNode, twin: TreeNode | None, parent_has_other: bool) -> str:
            if other:
                text = (f"{_quote(node.text)} {p(self.edge_logprob(node.id, self.model))} | "
                        f"{p(self.edge_logprob(node.id, other))} (cum {self._cumulative(node.id, self.model):.2f})")
            else:
                text = f"{_quote(node.text)} {_fmt(node.probability)} (cum {node.cum_logprob:.2f})"
            if node.method == "chunk":
                text += f" x{node.count}/{node.params.get('n')}"
            if node.ended:
                text += f" [{node.finish_reason}]"
            if node.model != self.model:
                text += f" [only in {node.model}'s top-k]" if other == node.model else f" [by {node.model}]"
            elif other and node.method == "topk" and parent_has_other:
                text += " [both top-k]" if twin is not None else f" [only in {self.model}'s top-k]"
            return text + f"  #{node.id}"

        def walk(node: TreeNode, prefix: str) -> None:
            kids, twins = self.shown_children(node)
            parent_has_other = any(c.model == other and c.method == "topk" for c in self.children(node))
            kids = [c for c in kids if c.probability >= min_probability]
            for i, child in enumerate(kids):
                last = i == len(kids) - 1
                twin = twins.get(child.id)
                lines.append(prefix + ("└─ " if last else "├─ ") + label(child, twin, parent_has_other))
                if max_depth is None or child.depth < max_depth:
                    walk(child, prefix + ("   " if last else "│  "))

        walk(self.root, "")
        return "\n".join(lines)


def _p(logprob: float | None) -> str:
    return "–" if logprob is None else f"{math.exp(logprob):.2f}"


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _needs_text(rendered: RenderedInput, model: str) -> None:
    if rendered.text is None:
        raise WorkbenchError(
            f"model {model!r} receives chat messages, not text; a branch tree extends the text token by token, so it "
            "needs a model whose input is rendered as text (an hf model)"
        )


MAX_FIGURE_NODES = 250  # more edges than this are unreadable in one figure


def tree_figure(tree: BranchTree, compare_with: str | None = None, max_depth: int | None = None) -> "Figure":
    """The tree drawn left to right: nodes at their depth, line width by edge probability, colour by model."""
    from matplotlib.lines import Line2D

    from workbench.plots import FONT, INK, _figure, _finish, _legend, _literal, _short, _style, model_colours

    other = tree._model(compare_with) if compare_with else None
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
    fig = _figure(width, 1.6 + 0.28 * max(leaves[0], 3))
    ax = fig.subplots()
    for node_id, (x, y) in positions.items():
        node = tree.nodes[node_id]
        if node.parent_id is None:
            continue
        px, py = positions[node.parent_id]
        ax.plot([px, x], [-py, -y], color=colours[node.model], linewidth=0.6 + 5.0 * node.probability,
                solid_capstyle="round", alpha=0.9)
        edge = node.text if len(node.text) <= 18 else node.text[:17] + "…"
        if other:
            pa, pb = tree.edge_logprob(node.id, tree.model), tree.edge_logprob(node.id, other)
            text = f"{_literal(_quote(edge))} {_p(pa)} | {_p(pb)}"
        else:
            text = f"{_literal(_quote(edge))} {node.probability:.2f}"
        inner = bool(tree.shown_children(node)[0])
        # Labels of inner nodes sit above the node, clear of the edges that leave it.
        ax.annotate(text, (x, -y), xytext=(3, 3 if inner else 0), textcoords="offset points",
                    va="bottom" if inner else "center", fontsize=FONT["annotation"],
                    color=INK if node.model == tree.model else colours[node.model])
    ax.plot([0], [-positions[ROOT][1]], marker="o", color=INK, markersize=4)
    ax.set_xlim(-0.2, depth + 0.9)
    ax.set_yticks([])
    ax.set_xticks(range(int(depth) + 1))
    ax.set_xlabel("depth (edges from the prompt)")
    _style(ax, grid=None)
    ax.spines["left"].set_visible(False)
    handles = [Line2D([], [], color=colours[m], linewidth=2.5) for m in models]
    _legend(ax, handles, [f"edges made by {m}" for m in models], width)
    note = "line width: probability of the edge given its parent"
    if other:
        note += f"; labels: p under {tree.model} | p under {other}; " + tree.sampler.registry.describe_pair(
            [tree.model, other])
    root_text = _tail(tree.root_input.text or "", 60)
    return _finish(fig, f"Branch tree: {tree.prompt_ref or _short(root_text, 60)}", note, width)


def list_trees(sampler: "Sampler") -> pd.DataFrame:
    """Stored trees, newest first."""
    return sampler.store.trees()
