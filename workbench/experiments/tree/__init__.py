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
they diverge most, and the branches that only one model has in its top-k. Models with different
tokenisers are compared on text prefixes (the probability that the text continues with an edge's
text), never per token, so a tokeniser boundary is never reported as a divergence.

Modules: `nodes` (the records), `branch_tree` (BranchTree: create, load, expand, grow),
`comparison` (a second model's scores and top-k), `prefixes` (text-prefix probabilities for models
whose tokenisers differ), `records` (JSON, the stored prompt, the frame),
`text` (the terminal view). The figure is `workbench.plots.tree.tree_figure`.
"""

from workbench.experiments.tree.branch_tree import BranchTree
from workbench.experiments.tree.nodes import ENDED, ROOT, TREE_FORMAT, TreeComparison, TreeNode, TreePrompt
from workbench.experiments.tree.text import render_text

__all__ = ["ENDED", "ROOT", "TREE_FORMAT", "BranchTree", "TreeComparison", "TreeNode", "TreePrompt", "render_text"]
