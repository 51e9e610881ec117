"""`workbench tree`, the branch explorer, with bounds on the size of what it grows.

A tree's size multiplies: `--k 3 --depth 30` is 3^30 nodes, each a model call. So each flag has a
maximum, and before anything is computed the nodes the tree could reach are counted: above
$WORKBENCH_MAX_TREE_NODES (default 20000) it needs --allow-large-tree, like --n needs --allow-large-n.
`--dry-run` prints the count for any size.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from workbench.cli.common import (
    add_choice_flags,
    add_run_flags,
    add_seed_flag,
    make_sampler,
    prompt_choices,
    resolve_prompt,
    temperature_value,
    whole_number,
    write_json,
)
from workbench.config import MAX_NEW_TOKENS
from workbench.errors import WorkbenchError
from workbench.guarded.limits import env_number

MAX_TREE_DEPTH = 1000  # levels; one token each (top-k) or one chunk each (--chunks)
MAX_TREE_K = 100  # past the top 100 next tokens come only tokens of negligible probability
MAX_TREE_CHUNKS = 1000  # sampled chunks per node; more samples of one prompt are `workbench sample`'s job
DEFAULT_MAX_TREE_NODES = 20_000
MAX_TREE_NODES_ENV = "WORKBENCH_MAX_TREE_NODES"
# Counts with more digits than this are written as a power of ten.
EXACT_DIGITS = 18


def bounded_count(most: int, unit: str, advice: str) -> Callable[[str], int]:
    """argparse type: a whole number from 1 to `most`; the message says what to do instead."""
    def check(text: str) -> int:
        value = whole_number(text)
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from 1 to {most}{unit}, got {text}; {advice}")
        return value
    return check


def register(sub: argparse._SubParsersAction) -> None:
    """Add `tree`, the branch explorer."""
    p = sub.add_parser("tree", help="branch explorer: expand a prompt into a tree of top-k tokens or sampled chunks")
    p.add_argument("prompt", nargs="?", help="prompt text, @file, or a library prompt collection/prompt-id")
    p.add_argument("--models", help="the model that builds the tree, and optionally a second to compare: A[,B]")
    p.add_argument("--depth", type=bounded_count(MAX_TREE_DEPTH, " levels", "for longer branches grow fewer levels "
                                                 "of longer steps: --chunks N --chunk-tokens M"),
                   default=2, help=f"levels to expand below the prompt (default %(default)s, at most {MAX_TREE_DEPTH})")
    p.add_argument("--k", type=bounded_count(MAX_TREE_K, "", "the tokens past the top 100 have negligible "
                                             "probability; --beam keeps a wide tree small"),
                   default=3, help=f"top-k next tokens per node (default %(default)s, at most {MAX_TREE_K})")
    p.add_argument("--chunks", type=bounded_count(MAX_TREE_CHUNKS, "", "for many samples of one prompt use "
                                                  "`workbench sample`"),
                   help=f"instead of top-k: N sampled chunks per node (at most {MAX_TREE_CHUNKS})")
    p.add_argument("--chunk-tokens", type=bounded_count(MAX_NEW_TOKENS, " tokens", "a chunk is one sample's "
                                                        "continuation"),
                   dest="chunk_tokens", help="M tokens per sampled chunk (with --chunks)")
    p.add_argument("--beam", type=bounded_count(10**9, "", "a beam wider than a level keeps all of it"),
                   help="expand only the B most likely nodes of each level")
    p.add_argument("--temperature", type=temperature_value, help="sampled chunks: temperature (default 1)")
    add_seed_flag(p, "sampled chunks: run seed (default 0)")
    p.add_argument("--chat", action="store_true", help="send the prompt as a user chat message")
    p.add_argument("--figure", metavar="PATH", help="write a tree figure with provenance (format by suffix: png, "
                                                    "svg, pdf; no suffix: PNG and SVG)")
    p.add_argument("--json", metavar="PATH", help="write the tree (nodes, scores) as JSON")
    p.add_argument("--show", metavar="TREE_ID", help="print a stored tree (id or unique prefix); with --models, "
                                                     "compare it with another model")
    p.add_argument("--list", action="store_true", help="list stored trees")
    p.add_argument("--dry-run", action="store_true", dest="dry_run",
                   help="print how many nodes the tree could reach; compute nothing")
    p.add_argument("--allow-large-tree", action="store_true", dest="allow_large_tree",
                   help=f"grow a tree of more nodes than the maximum ({MAX_TREE_NODES_ENV}, default "
                        f"{DEFAULT_MAX_TREE_NODES})")
    add_choice_flags(p)
    add_run_flags(p)
    p.set_defaults(func=cmd_tree)


# -- how large a tree can grow ----------------------------------------------------------------


def tree_size(depth: int, branching: int, beam: int | None = None) -> int:
    """The most nodes `depth` levels below one node can reach with `branching` children per expanded node,
    keeping the `beam` most likely of each level (None: all). Nodes that end the text or are stored already
    make the real tree smaller."""
    nodes, frontier = 0, 1
    for level in range(depth):
        children = frontier * branching
        nodes += children
        kept = children if beam is None else min(children, beam)
        if kept == frontier:  # every later level is the same size: count them at once
            return nodes + children * (depth - level - 1)
        frontier = kept
    return nodes


def max_tree_nodes() -> int:
    """The most nodes a tree may reach without --allow-large-tree: $WORKBENCH_MAX_TREE_NODES, else 20000."""
    return env_number(MAX_TREE_NODES_ENV, DEFAULT_MAX_TREE_NODES, int, "a whole number")


def count_text(count: int) -> str:
    """A count as digits, or as a power of ten when it has too many to read."""
    digits = len(str(count))
    return str(count) if digits <= EXACT_DIGITS else f"more than 10^{digits - 1}"


def describe_size(args: argparse.Namespace) -> tuple[str, int]:
    """What the flags ask to grow, in words, and the most nodes it can reach."""
    branching = args.chunks if args.chunks is not None else args.k
    per_node = (f"{args.chunks} chunks of {args.chunk_tokens} tokens" if args.chunks is not None
                else f"the top {args.k} tokens")
    beam = f", beam {args.beam}" if args.beam is not None else ""
    nodes = tree_size(args.depth, branching, args.beam)
    return f"a tree of depth {args.depth} with {per_node} per node{beam} has up to {count_text(nodes)} nodes", nodes


def check_tree_size(args: argparse.Namespace) -> None:
    """Print the size (--dry-run), or refuse a tree above the maximum unless --allow-large-tree says it is meant."""
    what, nodes = describe_size(args)
    limit = max_tree_nodes()
    over = nodes > limit and not args.allow_large_tree
    if args.dry_run:
        note = (f"; above the maximum of {limit} ({MAX_TREE_NODES_ENV}): growing it needs --allow-large-tree"
                if over else "")
        print(f"{what} (nodes already stored cost nothing){note}; nothing computed")
        return
    if over:
        raise WorkbenchError(f"{what}, above the maximum of {limit}; use a smaller --depth or --k (or --chunks), "
                             "or --beam B to expand only the B most likely nodes of each level; pass "
                             f"--allow-large-tree to grow it anyway, or set {MAX_TREE_NODES_ENV}")


# -- the command ------------------------------------------------------------------------------


def cmd_tree(args: argparse.Namespace) -> None:
    """Grow (or --show, or --list) a branch tree, print it, and write JSON and a figure when asked."""
    from workbench.experiments.tree import BranchTree

    sampler = make_sampler(args)
    if args.list:
        frame = sampler.store.trees()
        print(frame.to_string(index=False) if len(frame) else f"no trees yet in {sampler.store.path}")
        return
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    for m in models:
        sampler.model(m)  # unknown names fail before anything is computed
    if args.show:
        tree = BranchTree.load(sampler, args.show)
        others = [m for m in models if m != tree.model]
    else:
        if not args.prompt:
            raise WorkbenchError("give a PROMPT (text, @file or collection/prompt-id), or --show TREE_ID")
        if not 1 <= len(models) <= 2:
            raise WorkbenchError("--models needs one model, or two to compare: --models A,B")
        if (args.chunks is None) != (args.chunk_tokens is None):
            raise WorkbenchError("sampled chunks need both --chunks N and --chunk-tokens M")
        check_tree_size(args)
        if args.dry_run:
            return
        prompt = resolve_prompt(args.prompt, sampler)
        tree = BranchTree.create(sampler, models[0], prompt, chat=args.chat, **prompt_choices(args))
        if args.chunks is not None:
            tree.grow(args.depth, n=args.chunks, m=args.chunk_tokens, beam=args.beam, seed=args.seed,
                      temperature=args.temperature)
        else:
            tree.grow(args.depth, k=args.k, beam=args.beam)
        others = models[1:]
    other = others[0] if others else None
    comparison = tree.compare(other) if other else None
    print(tree.render_text(compare_with=other))
    if comparison is not None:
        print(comparison.describe())
    print(f"tree {tree.id}: {len(tree.nodes)} nodes; print it again with `workbench tree --show {tree.id}`")
    if args.json:
        write_json(args.json, tree.to_json())  # strict JSON: a -inf logprob is written as null
        print(f"wrote {args.json}")
    if args.figure:
        from workbench.plots import export_figure, figure_formats_for
        from workbench.plots.tree import tree_figure

        stem, formats = figure_formats_for(args.figure, ("png", "svg"))
        runs = sorted({n.params["run_id"] for n in tree.nodes.values() if "run_id" in n.params})
        provenance = {"experiment": "branch-tree", "tree_id": tree.id, "prompt": tree.prompt_ref or tree.prompt,
                      "models": [tree.model, *others], "depth": args.depth, "k": args.k, "chunks": args.chunks,
                      "chunk_tokens": args.chunk_tokens, "seed": args.seed, "run_ids": runs,
                      "families": sampler.registry.describe_pair([tree.model, *others])}
        paths = export_figure(tree_figure(tree, other), stem, provenance, formats=formats)
        print("wrote " + ", ".join(str(p) for p in paths))
