"""Reports: one self-contained HTML file of results with their figures, tables, provenance and commands.

`write_report` writes any `Report` (the demo's findings); `result_report` builds one from figures and
tables in hand (a panel's Export, a notebook); `runs_report` from stored runs (`workbench report
RUN_ID... --out PATH`).
"""

from workbench.report.document import (
    Report,
    ReportFigure,
    ReportSection,
    ReportTable,
    library_versions,
    render_report,
    write_report,
)
from workbench.report.results import result_report, run_commands
from workbench.report.runs import runs_report, runs_section, sample_command

__all__ = [
    "Report",
    "ReportFigure",
    "ReportSection",
    "ReportTable",
    "library_versions",
    "render_report",
    "result_report",
    "run_commands",
    "runs_report",
    "runs_section",
    "sample_command",
    "write_report",
]
