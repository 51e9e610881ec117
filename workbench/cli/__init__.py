"""`workbench` on the command line: the same public functions a notebook calls.

Each module here is one noun and registers its own subcommands next to the code that runs them;
`common` holds the flag groups and helpers they share. User mistakes print one line and exit with
status 2; a bug prints one line saying where its traceback was written (exit 1; `--debug` shows it);
nothing already sampled is lost.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.cli import (
    batches,
    demo,
    directions,
    divergence,
    experiments,
    figures,
    models,
    prompts,
    report,
    runs,
    sampling,
    steer,
    tree,
    tune,
)
from workbench.cli.common import DEBUG_ENV, EXIT_USER_ERROR, OneLineParser, run_command

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]

# In this order in `workbench --help`.
NOUNS = (models, sampling, prompts, figures, experiments, tree, tune, directions, steer, divergence, runs, report,
         batches, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = OneLineParser(
        prog="workbench",
        description="Probe base versus fine-tuned language models. Store: $WORKBENCH_HOME/workbench.sqlite.",
    )
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of an unexpected error instead of writing it to a file "
                             f"(also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for noun in NOUNS:
        noun.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` command: its exit status (a flag mistake gives 2, --help 0)."""
    argv, debug = without_debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exited:  # argparse has printed the one line (or the help)
        return exited.code if isinstance(exited.code, int) else EXIT_USER_ERROR
    args.debug = args.debug or debug
    return run_command(args.func, args)


def without_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """The arguments without `--debug`, and whether it was there.

    `--debug` belongs to the top-level parser, which argparse only lets stand before the subcommand; taken out
    first, it works anywhere (`workbench sample ... --debug`, as the internal-error line suggests). Arguments
    after `--` are the user's text and are kept as they are.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [arg for arg in argv[:end] if arg != "--debug"]
    return kept + argv[end:], len(kept) < end
