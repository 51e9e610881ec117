"""`workbench tune`: LoRA fine-tunes of a registry base model with one planted effect."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.cli.common import positive_int, seed_value
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `tune`."""
    p = sub.add_parser("tune", help="LoRA fine-tune a base model with one planted effect (a known answer for "
                                    "every probe)")
    p.add_argument("recipe", nargs="?", help="favourite-number, wedding-attractor or self-preservation")
    p.add_argument("--all", action="store_true", help="every recipe in turn (what `make tuned-models` runs)")
    p.add_argument("--base", default="gemma-3-270m", help="the registry base model to tune (default %(default)s)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the generated data, the order and the init")
    p.add_argument("--steps", type=positive_int, help="optimiser steps (default: the recipe's own)")
    p.add_argument("--out", help="adapter folder (with --all: a parent folder); default "
                                 "$WORKBENCH_HOME/tuned/<base>-<recipe>")
    p.add_argument("--evaluate", action="store_true",
                   help="then measure the planted effect against the base and write evaluation.json beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> None:
    """Tune one recipe (or --all) and print what each run did; --evaluate measures the planted effect."""
    from workbench import tuning

    if bool(args.recipe) == bool(args.all):
        raise WorkbenchError(f"give one RECIPE ({', '.join(tuning.RECIPES)}) or --all")
    names = list(tuning.RECIPES) if args.all else [args.recipe]
    tuning.recipe(names[0])  # an unknown recipe fails before anything loads
    tuning.check_base(args.base)
    if args.all:  # --out is then a parent folder with one subfolder per variant
        outs = {n: Path(args.out) / tuning.variant_name(n, args.base) if args.out else None for n in names}
    else:
        outs = {names[0]: Path(args.out) if args.out else None}
    total = 0.0
    for name in names:
        record = tuning.tune(name, base=args.base, seed=args.seed, steps=args.steps, out=outs[name],
                             progress=not args.quiet)
        total += record.wall_time_s
        print(f"{record.variant}: {record.steps} steps in {record.wall_time_s:.0f} s, loss {record.loss['first']:.3f}"
              f" -> {record.loss['last']:.3f}; adapter {record.adapter_bytes / 1e6:.1f} MB in {record.adapter_dir}")
        if record.registered_in:
            print(f"    registered as {record.variant} in {record.registered_in}")
        if args.evaluate:
            summary = tuning.evaluate_variant(record.variant, progress=not args.quiet)
            print(f"    measured: {json.dumps(summary['headline'])}")
    if len(names) > 1:
        print(f"all {len(names)} variants in {total:.0f} s")
