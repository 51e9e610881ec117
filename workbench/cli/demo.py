"""`workbench demo`: the planted effects found or not, one line each, and an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import add_n_flag, add_run_flags, add_seed_flag, make_sampler


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    p = sub.add_parser("demo", help="the main job: the planted effects found or not, and an HTML report",
                       description="Measure the three planted variants of gemma-3-270m (favourite number, wedding "
                                   "attractor, self-preservation persona) against their base, print FOUND or NOT "
                                   "FOUND for each, one line on the cross-family pair, and write an HTML report.")
    add_n_flag(p, 8, "continuations per model and segue condition (the other findings are exact)")
    add_seed_flag(p)
    p.add_argument("--out", help="folder for the report and figures (default $WORKBENCH_HOME/exports/demo)")
    add_run_flags(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the findings and print them, with the report's path on its own line."""
    from workbench.demo import run_demo

    with make_sampler(args) as sampler:
        run_demo(n=args.n, seed=args.seed, sampler=sampler, out_dir=Path(args.out) if args.out else None)
