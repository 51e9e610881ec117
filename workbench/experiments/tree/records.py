"""A branch tree as data: the stored prompt and rendering, the JSON document, and the one-row-per-node frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.experiments.tree.nodes import TREE_FORMAT, TreePrompt
from workbench.types import RenderedInput

if TYPE_CHECKING:
    from workbench.experiments.tree.branch_tree import BranchTree
    from workbench.store import Store


def prompt_record(prompt: TreePrompt, chat: bool, variables: dict[str, Any] | None, perturbation: str | None,
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
    raise WorkbenchError("a tree's prompt is text, a list of messages or a library prompt, "
                         f"got {type(prompt).__name__}")


def rendered_record(rendered: RenderedInput) -> dict[str, Any]:
    """A rendered input as JSON-ready data (the tree's root input is stored this way)."""
    return {"mode": rendered.mode, "text": rendered.text,
            "messages": list(rendered.messages) if rendered.messages else None,
            "template": rendered.template, "extra_stop": list(rendered.extra_stop)}


def rendered_from_record(record: dict[str, Any]) -> RenderedInput:
    """The rendered input `rendered_record` wrote."""
    messages = record.get("messages")
    return RenderedInput(mode=record["mode"], text=record.get("text"),
                         messages=tuple(messages) if messages else None, template=record.get("template", "raw"),
                         extra_stop=tuple(record.get("extra_stop") or ()))


def tree_frame(tree: BranchTree) -> pd.DataFrame:
    """One row per node (id order): edge, path text, probabilities, model, method and parameters."""
    rows = []
    for node in sorted(tree.nodes.values(), key=lambda n: n.id):
        rows.append({
            "tree_id": tree.id, "node_id": node.id, "parent_id": node.parent_id, "depth": node.depth,
            "model": node.model, "method": node.method, "edge_text": node.text,
            "path_text": tree.path_text(node.id), "token_ids": list(node.token_ids), "logprob": node.logprob,
            "probability": node.probability, "cum_logprob": node.cum_logprob, "rank": node.rank,
            "count": node.count, "finish_reason": node.finish_reason, "params": node.params,
            "created_at": node.created_at,
        })
    frame = pd.DataFrame(rows)
    for column in ("parent_id", "rank", "count"):
        frame[column] = frame[column].astype("Int64")  # whole numbers with gaps, not floats
    return frame


def tree_document(tree: BranchTree, path: str | Path | None = None) -> dict[str, Any]:
    """The whole tree (header, nodes, other models' scores) as JSON-ready data; written to `path` if given."""
    data = {
        "format": TREE_FORMAT,
        "tree": tree.header(),
        "nodes": [n.record() for n in sorted(tree.nodes.values(), key=lambda n: n.id)],
        "scores": [{"node_id": i, "model": m, "logprob": lp} for (i, m), lp in sorted(tree.scores.items())],
    }
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return data


def import_document(store: Store, data: dict[str, Any] | str | Path) -> str:
    """Add a `tree_document` (a dict, JSON text, or a file) to the store; returns the tree's id."""
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
        store.create_tree(header)
        store.add_tree_nodes(header["id"], list(data["nodes"]))
        store.add_tree_scores(header["id"], list(data.get("scores") or []))
    except (KeyError, TypeError) as exc:
        raise WorkbenchError(f"the tree JSON document is incomplete ({exc})") from None
    return str(header["id"])
