"""`workbench report RUN_ID... --out PATH`: stored runs as one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import make_sampler


def register(sub: argparse._SubParsersAction) -> None:
    """Add `report`."""
    p = sub.add_parser("report", help="stored runs as one self-contained HTML report (figures, tables, provenance)",
                       description="Write one HTML file with every figure embedded: runs of the same prompt side by "
                                   "side (answer distributions with intervals, summaries, divergences, samples), the "
                                   "models with their identities, configs, seeds and versions, and the command that "
                                   "redraws each run. Open it in any browser; it fetches nothing.")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                   help="run ids or unique prefixes (see `workbench runs list`)")
    p.add_argument("--out", required=True, help="the HTML file to write, e.g. report.html")
    p.add_argument("--title", help="the report's title")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    """Build the report from the store and write it."""
    from workbench.report import runs_report, write_report

    with make_sampler() as sampler:
        report = runs_report(sampler, args.run_ids, args.title)
        path = write_report(report, Path(args.out))
    print(f"report: {path}")
