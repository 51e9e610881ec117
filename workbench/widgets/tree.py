"""TreeExplorer: the branch explorer (`workbench.experiments.tree.BranchTree`) as a widget.

Click a node to select it (its full path text and probabilities appear) and, with "expand on
click", to expand it: the top-k next tokens with exact probabilities, or n sampled chunks of m
tokens. A second model scores every edge and adds its own top-k (`BranchTree.compare`). The
tree lives in the store as it grows; export writes its JSON and a CSV of the nodes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.errors import WorkbenchError
from workbench.widgets.base import PREVIEW_CHARS, Panel, PromptPicker
from workbench.widgets.compare import default_models
from workbench.widgets.layout import (
    CELL_CHARS,
    caption_html,
    error_html,
    html_table,
    model_options,
    row,
    settings_section,
)

if TYPE_CHECKING:
    from workbench.experiments.tree import BranchTree, TreeComparison, TreeNode
    from workbench.sampler import Sampler

TOPK = "top-k tokens"
CHUNKS = "sampled chunks"
NONE = "(none)"


@dataclass
class TreeOutcome:
    """A tree after one expansion (and the comparison with a second model, if one was chosen)."""

    tree: "BranchTree"
    comparison: "TreeComparison | None"
    key: tuple[Any, ...]
    node_id: int
    other: str | None


def tree_rows(tree: "BranchTree", other: str | None = None) -> list[tuple[str, int]]:
    """(label, node id) for every node in display order: indented edge text, probability, count, end marks."""
    def p(logprob: float | None) -> str:
        return "–" if logprob is None else f"{math.exp(logprob):.3g}"

    rows: list[tuple[str, int]] = []
    root_text = (tree.root_input.text or tree.root_input.display()).replace("\n", "⏎")
    rows.append((f"[prompt] …{root_text[-60:]}  #0", 0))

    def walk(node: "TreeNode") -> None:
        kids, _ = tree.shown_children(node)
        for child in kids:
            own = tree.pair_logprob(child.id, tree.model, other) if other else tree.edge_logprob(child.id, tree.model)
            label = "    " * child.depth + repr(child.text) + "  p=" + p(own)
            if other:
                label += f" | {other}: {p(tree.pair_logprob(child.id, other, tree.model))}"
            if child.method == "chunk":
                label += f"  x{child.count}/{child.params.get('n')}"
            if child.ended:
                label += f"  [{child.finish_reason}]"
            if child.model != tree.model:
                label += f"  [by {child.model}]"
            rows.append((label + f"  #{child.id}", child.id))
            walk(child)

    walk(tree.root)
    return rows


class TreeExplorer(Panel):
    """Grow a branch tree node by node; compare a second model on the same tree; export it."""

    kind = "tree"
    run_label = "Expand"

    def __init__(self, sampler: "Sampler | None" = None, prompt: str | None = "mode-collapse/random-number-completion",
                 model: str | None = None, compare_with: str | None = None, k: int = 5, n: int = 8, m: int = 4,
                 temperature: float = 1.0, seed: int = 0, expand_on_click: bool = True) -> None:
        super().__init__(sampler)
        model = model or default_models(self.sampler)[0]
        names = model_options(self.sampler.registry, [model, *([compare_with] if compare_with else [])])
        style = {"description_width": "90px"}
        self.picker = PromptPicker(self.sampler, prompt, on_error=self.callback_failed)
        self.model = w.Dropdown(options=names, value=model, description="model", style=style)
        self.compare_with = w.Dropdown(options=[NONE, *names], value=compare_with or NONE, description="compare with",
                                       style=style)
        follow = self.guarded(lambda *_: self.picker.follow_models(
            [self.sampler.model(m).kind for m in (self.model.value, self.compare_with.value) if m != NONE]))
        self.model.observe(follow, "value")
        self.compare_with.observe(follow, "value")
        follow()
        self.mode = w.ToggleButtons(options=[TOPK, CHUNKS], value=TOPK, style={"button_width": "auto"})
        self.k = w.BoundedIntText(value=k, min=1, max=100, description="k", style=style, layout=w.Layout(width="170px"))
        self.n = w.BoundedIntText(value=n, min=1, max=1000, description="n chunks", style=style,
                                  layout=w.Layout(width="170px"))
        self.m = w.BoundedIntText(value=m, min=1, max=256, description="m tokens", style=style,
                                  layout=w.Layout(width="170px"))
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature",
                                         style=style, layout=w.Layout(width="330px"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="170px"))
        self.expand_on_click = w.Checkbox(value=expand_on_click, description="expand on click", indent=False)
        self.new_tree_button = w.Button(description="New tree", icon="refresh",
                                        tooltip="Start again from the prompt (the old tree stays in the store)")
        self.export_tree_button = w.Button(description="Export tree", icon="download", disabled=True,
                                           tooltip="JSON (re-importable) and CSV of the nodes")
        self.nodes = w.Select(options=[], rows=10, layout=w.Layout(width="auto"))  # the panel's width
        self.details = w.HTML()
        self.tree_message = w.HTML()
        self.comparison_html = w.HTML()
        self.tree: BranchTree | None = None
        self.comparison: TreeComparison | None = None
        self._key: tuple[Any, ...] | None = None
        self._showing = False
        self.nodes.observe(self.guarded(self._selected), "value")
        self.new_tree_button.on_click(self.guarded(lambda _: self.new_tree()))
        self.export_tree_button.on_click(self.guarded(lambda _: self._export_tree_clicked()))
        self.mode.observe(self.guarded(self._mode_changed), "value")
        self.size_row = w.HBox([self.k])
        self.settings = settings_section([self.picker, row([self.model, self.compare_with]),
                                          row([self.mode, self.expand_on_click]), self.size_row,
                                          row([self.temperature, self.seed])])
        self._mode_changed()
        self.children = [self.settings, self.run_row(), self.message,
                         row([self.new_tree_button, self.export_tree_button, self.tree_message]),
                         self.nodes, self.details, self.figure_box, self.comparison_html, self.export_row()]

    def _mode_changed(self, *_: Any) -> None:
        self.size_row.children = [self.k] if self.mode.value == TOPK else [self.n, self.m]
        self.temperature.disabled = self.seed.disabled = self.mode.value == TOPK

    # -- selecting and expanding -------------------------------------------------------------

    def selected_node(self) -> int:
        """The node an Expand applies to: the selected one, else the root."""
        return int(self.nodes.value) if self.nodes.value is not None else 0

    def _selected(self, change: dict[str, Any]) -> None:
        if self._showing or self.tree is None or change["new"] is None:
            return
        self._describe(int(change["new"]))
        node = self.tree.node(int(change["new"]))
        method = "topk" if self.mode.value == TOPK else "chunk"
        if self.expand_on_click.value and not node.ended and not self.tree.children(node, self.model.value, method):
            self.run()

    def expand(self, node_id: int = 0, wait: bool = False) -> bool:
        """Expand a node (as selecting it with "expand on click" does) with the current settings."""
        if self.tree is not None:
            self.tree.node(node_id)  # a clear error for an unknown id
            self._showing = True
            try:
                self.nodes.value = node_id
            finally:
                self._showing = False
        elif node_id != 0:
            raise WorkbenchError("there is no tree yet: expand the root (node 0) first")
        return self.run(wait=wait)

    def new_tree(self) -> None:
        """Forget the current tree (it stays stored): the next Expand starts from the prompt."""
        self.tree, self.comparison, self._key = None, None, None
        self._showing = True
        try:
            self.nodes.options = []
        finally:
            self._showing = False
        self.details.value = self.comparison_html.value = ""
        self.figure_box.children = []
        self.export_tree_button.disabled = self.export_button.disabled = True
        self.tree_message.value = "<i>the next Expand starts a new tree from the prompt</i>"

    def job(self) -> Callable[["Sampler"], TreeOutcome]:
        from workbench.experiments.tree import ROOT, BranchTree

        choice = self.picker.value()
        model = self.model.value
        other = None if self.compare_with.value == NONE else self.compare_with.value
        if other == model:
            raise WorkbenchError(f"compare with another model than the tree's own ({model}), or choose (none)")
        key = (choice.name, model, choice.chat, choice.perturbation, choice.framing)
        tree_id = self.tree.id if self.tree is not None and self._key == key else None
        node_id = self.selected_node() if tree_id else ROOT
        topk = self.mode.value == TOPK
        k, n, m = int(self.k.value), int(self.n.value), int(self.m.value)
        temperature, seed = float(self.temperature.value), int(self.seed.value)

        def work(sampler: "Sampler") -> TreeOutcome:
            steps = 2 if other else 1
            if tree_id is None:
                self.report(0, steps, f"creating a tree on {choice.name} with {model}…")
                tree = BranchTree.create(sampler, model, choice.prompt, choice.chat, **choice.choices())
            else:
                tree = BranchTree.load(sampler, tree_id)
            self.check_stop()
            self.report(0, steps, f"expanding node {node_id} ({'top-' + str(k) if topk else f'{n} chunks of {m}'})…")
            if topk:
                tree.expand(node_id, k=k)
            else:
                tree.expand(node_id, n=n, m=m, seed=seed, temperature=temperature)
            comparison = None
            if other:
                self.check_stop()
                self.report(1, steps, f"comparing with {other} (its top-k and its probability of every edge)…")
                comparison = tree.compare(other, branches=True)
            tree.sampler = self.sampler  # from here on the tree is used from the notebook's thread
            return TreeOutcome(tree, comparison, key, node_id, other)

        return work

    def show(self, outcome: TreeOutcome) -> None:
        from workbench.plots.tree import tree_figure

        tree = self.tree = outcome.tree
        self.comparison, self._key = outcome.comparison, outcome.key
        self._showing = True
        try:
            self.nodes.options = tree_rows(tree, outcome.other)
            self.nodes.rows = min(14, max(4, len(self.nodes.options)))  # the tree's size, within limits
            self.nodes.value = outcome.node_id
        finally:
            self._showing = False
        self._describe(outcome.node_id)
        self.results = {"nodes": tree.to_frame()}
        try:
            self.set_figures({"tree": tree_figure(tree, compare_with=outcome.other)})
            self.tree_message.value = ""
        except WorkbenchError as exc:  # too many nodes to draw: the list still shows them all
            self.figures = {}
            self.figure_box.children = []
            self.tree_message.value = error_html(str(exc))
        if outcome.comparison is not None:
            self.results["comparison"] = outcome.comparison.nodes
            shown = outcome.comparison.nodes
            shown = shown.reindex(shown["log_ratio"].abs().sort_values(ascending=False).index).head(12)
            # The end of each path (where it differs); the whole text is in .results["comparison"].
            shown = shown.assign(path_text=[_tail(t, CELL_CHARS) for t in shown["path_text"]])
            self.comparison_html.value = (
                caption_html(f"Where {tree.model} (a) and {outcome.other} (b) differ most",
                             # The family note is under the figure; said here only when there is none.
                             [outcome.comparison.alignment_note,
                              *([] if self.figures else [outcome.comparison.family_note])])
                + html_table(shown[["node_id", "depth", "edge_text", "path_text", "p_a", "p_b", "log_ratio",
                                    "in_topk_a", "in_topk_b"]], 3))
        else:
            self.comparison_html.value = ""
        self.provenance = {"panel": "TreeExplorer", "prompt": tree.prompt_ref or outcome.key[0], "tree_id": tree.id,
                           "model": tree.model, "compare_with": outcome.other, "nodes": len(tree.nodes),
                           "families": self.sampler.registry.describe_pair([tree.model, outcome.other])
                           if outcome.other else "",
                           "alignment": outcome.comparison.alignment if outcome.comparison is not None else None}
        self.export_tree_button.disabled = False
        self.status.value = (f"<span class='workbench-status'>tree {html.escape(tree.id[-8:])}: {len(tree.nodes)} "
                             "nodes; click a node to expand it</span>")

    def _describe(self, node_id: int) -> None:
        tree = self.tree
        if tree is None:
            return
        node = tree.node(node_id)
        root = tree.root_input.text or tree.root_input.display()
        path = tree.path_text(node_id)
        facts = [f"node #{node.id}, depth {node.depth}, made by {node.model} ({node.method})"]
        if node.id:
            facts.append(f"p(edge | parent) = {node.probability:.4g}, cumulative logprob {node.cum_logprob:.3f} "
                         f"(path probability {math.exp(node.cum_logprob):.3g})")
        if node.count is not None:
            facts.append(f"drawn {node.count} of {node.params.get('n')} times")
        if self.comparison is not None and node.id:
            other = self.comparison.model_b
            lp = tree.pair_logprob(node.id, other, tree.model)
            as_text = " (of the text continuing with this edge's text)" if self.comparison.alignment == "text" else ""
            facts.append(f"under {other}: p = {'–' if lp is None else f'{math.exp(lp):.4g}'}{as_text}")
        pre = ("<pre style='white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;font-size:12px;"
               "background:#f7f7f7;padding:4px;margin:2px 0'>")
        # The end of the prompt (where a segue is) and the path; the whole text as the model got it one click away.
        self.details.value = (
            "<div style='font-size:12px;line-height:1.4'>" + "<br>".join(html.escape(f) for f in facts) + "</div>"
            f"{pre}<span style='color:#777'>{html.escape(_tail(root, PREVIEW_CHARS))}</span>"
            f"<b>{html.escape(path)}</b></pre>"
            f"<details class='workbench-full-prompt' style='font-size:11px'><summary>the whole text as "
            f"{html.escape(tree.model)} got it, with this path ({len(root) + len(path):,} characters)</summary>"
            f"{pre}<span style='color:#777'>{html.escape(root)}</span><b>{html.escape(path)}</b></pre></details>")

    # -- export ------------------------------------------------------------------------------

    def export_tree(self, path: str | Path | None = None) -> list[Path]:
        """Write the tree as JSON (BranchTree.from_json reads it back) and its nodes as CSV."""
        from workbench.home import exports_dir

        if self.tree is None:
            raise WorkbenchError("there is no tree to export yet: press Expand first")
        target = Path(path) if path is not None else exports_dir() / "trees" / f"tree-{self.tree.id}.json"
        target = target.with_suffix(".json")
        self.tree.to_json(target)
        csv = target.with_suffix(".csv")
        self.tree.to_frame().to_csv(csv, index=False)
        return [target, csv]

    def _export_tree_clicked(self) -> None:
        try:
            paths = self.export_tree()
        except Exception as exc:  # noqa: BLE001
            self.tree_message.value = error_html(str(exc))
            return
        self.tree_message.value = ("<span style='font-size:11px'>wrote "
                                   + ", ".join(html.escape(str(p)) for p in paths) + "</span>")


def _tail(text: str, width: int) -> str:
    """The end of `text`, at most `width` characters ("…" where it was cut)."""
    return text if len(text) <= width else "…" + text[-(width - 1):]
