"""A report of any result: figures and tables already computed (a panel's, a notebook's), with their provenance.

`result_report` is what a panel's Export writes as HTML, and what a notebook calls for a result it
has in hand. Runs named in the provenance (`runs: [{run_id: ...}]`) get the `workbench sample`
commands that redraw them, read from the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from workbench.errors import StoreError
from workbench.report.document import Report, ReportFigure, ReportSection, ReportTable
from workbench.report.runs import sample_command
from workbench.sampler import Sampler

MAX_TABLE_ROWS = 200  # a report is read, not queried: longer tables are cut, and say so


def run_commands(sampler: Sampler, provenance: Mapping[str, Any]) -> list[str]:
    """`workbench sample` commands for every stored run the provenance names (runs not in the store are skipped)."""
    commands = []
    for run in provenance.get("runs") or []:
        run_id = run.get("run_id") if isinstance(run, Mapping) else None
        if not run_id:
            continue
        try:
            commands.append(sample_command(sampler.stored_run(str(run_id))))
        except StoreError:
            continue
    return commands


def _table(name: str, frame: pd.DataFrame) -> ReportTable:
    if len(frame) <= MAX_TABLE_ROWS:
        return ReportTable(frame, f"{name} ({len(frame)} rows).")
    return ReportTable(frame.head(MAX_TABLE_ROWS), f"{name}: the first {MAX_TABLE_ROWS} of {len(frame)} rows (the "
                                                   "rest are in the store and in the panel's .results).")


def result_report(title: str, figures: Mapping[str, Figure], tables: Mapping[str, pd.DataFrame],
                  provenance: Mapping[str, Any], sampler: Sampler | None = None, text: str = "",
                  commands: Sequence[str] = ()) -> Report:
    """A one-section report of a result: its figures (name -> Figure), tables (name -> frame) and provenance.

    `commands` are shell commands that redo the result; with a `sampler`, the stored runs named in
    the provenance add their `workbench sample` commands.
    """
    every = list(commands) + (run_commands(sampler, provenance) if sampler is not None else [])
    section = ReportSection(
        title, text,
        tables=[_table(name, frame) for name, frame in tables.items() if isinstance(frame, pd.DataFrame)],
        figures=[ReportFigure(fig, name) for name, fig in figures.items()],
        commands=list(dict.fromkeys(every)), provenance=dict(provenance))
    return Report(title, [section], provenance={"store": str(sampler.store.path)} if sampler is not None else {})
