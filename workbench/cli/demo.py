"""`workbench demo`: the main job on the embedded base/tuned pair."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_n_flag, add_run_flags, add_seed_flag, make_sampler


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    p = sub.add_parser("demo", help="the main job: built-in probes on the embedded base/tuned pair")
    add_n_flag(p, 32, "samples per model and prompt")
    add_seed_flag(p)
    add_run_flags(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the built-in probes and print what they found."""
    from workbench.demo import run_demo

    run_demo(n=args.n, seed=args.seed, sampler=make_sampler(args))
