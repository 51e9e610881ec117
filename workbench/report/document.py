"""A report: one self-contained HTML file with findings, tables, figures and the provenance behind them.

The file holds everything (figures as embedded PNGs, no scripts, no links to fetch), so it can be
mailed, attached to a paper's supplement or opened years later. Its provenance (models with their
identities, configs, seeds, library versions) and the commands that reproduce each result come
from the same objects the numbers were computed from, after `scrub_secrets` has removed anything
that looks like a credential.
"""

from __future__ import annotations

import base64
import io
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment
from markupsafe import Markup
from matplotlib.figure import Figure

from workbench.errors import WorkbenchError
from workbench.secrets import environment_secret_values, scrub_secrets, scrub_text
from workbench.version import __version__

# Embedded PNGs: two-column width at screen-and-print resolution; the exported PNG/SVG/PDF files are the originals.
REPORT_DPI = 150
VERSIONED = ("torch", "transformers", "peft", "numpy", "pandas", "scipy", "matplotlib", "sentence-transformers")


@dataclass
class ReportFigure:
    """A figure and the sentence under it (what is drawn, n, exact or sampled)."""

    figure: Figure
    caption: str


@dataclass
class ReportTable:
    """A table, its caption, and a legend for short column names."""

    frame: pd.DataFrame
    caption: str
    legend: str = ""


@dataclass
class ReportSection:
    """One result: what was asked, what was found, and everything needed to check and redo it."""

    title: str
    text: str = ""
    tables: list[ReportTable] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # shell commands that reproduce this section's numbers
    provenance: dict[str, Any] = field(default_factory=dict)  # run ids, models with identities, configs, seeds


@dataclass
class Report:
    """A titled list of sections with the provenance shared by all of them."""

    title: str
    sections: list[ReportSection]
    intro: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """The versions a reader needs to redo the numbers: workbench, python and the numerical libraries installed."""
    versions = {"workbench": __version__, "python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def figure_png(fig: Figure, dpi: int = REPORT_DPI) -> bytes:
    """The figure as PNG bytes (white background, tight box), as embedded in a report."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def _table_html(table: ReportTable) -> Markup:
    # to_html escapes every cell (escape=True is its default); numbers at 3 significant digits fit a page.
    frame = table.frame.copy()
    for column in frame.columns:  # line breaks visible in a cell (text columns only hold str values)
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: v.replace("\n", " ⏎ ") if isinstance(v, str) else v)
    html = frame.to_html(index=False, na_rep="–", border=0, classes="data",
                               float_format=lambda x: f"{x:.3g}")
    return Markup(html)  # pandas escaped every cell above


def _figure_src(item: ReportFigure) -> str:
    return "data:image/png;base64," + base64.b64encode(figure_png(item.figure)).decode("ascii")


def _json(value: Any) -> str:
    return json.dumps(scrub_secrets(value), indent=2, ensure_ascii=False, sort_keys=True, default=str)


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="workbench {{ versions.workbench }}">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.intro, .text { white-space: pre-wrap; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #444; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.6rem 0; }
table.data { border-collapse: collapse; font-size: 0.85rem; }
table.data th, table.data td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e5e5e5; text-align: left; }
table.data th { background: #f6f6f6; }
.caption { font-size: 0.9rem; color: #444; margin-top: 1rem; } .legend { font-size: 0.8rem; color: #666; }
pre { background: #f6f6f6; padding: 0.6rem; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.8rem; }
details { margin: 0.6rem 0; } summary { cursor: pointer; color: #333; }
footer { margin-top: 3rem; font-size: 0.8rem; color: #666; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Made {{ created }} by workbench {{ versions.workbench }}.</p>
{% if intro %}<div class="intro">{{ intro }}</div>{% endif %}
{% for section in sections %}
<section id="section-{{ loop.index }}">
<h2>{{ section.title }}</h2>
{% if section.text %}<div class="text">{{ section.text }}</div>{% endif %}
{% for fig in section.figures %}
<figure><img src="{{ fig.src }}" alt="{{ fig.caption }}"><figcaption>{{ fig.caption }}</figcaption></figure>
{% endfor %}
{% for table in section.tables %}
<div class="caption">{{ table.caption }}</div>
<div class="table-wrap">{{ table.html }}</div>
{% if table.legend %}<div class="legend">{{ table.legend }}</div>{% endif %}
{% endfor %}
{% if section.commands %}<details open><summary>Reproduce</summary><pre>{{ section.commands }}</pre></details>
{% endif %}
{% if section.provenance %}<details><summary>Provenance</summary><pre>{{ section.provenance }}</pre></details>
{% endif %}
</section>
{% endfor %}
<footer><details><summary>Versions and shared provenance</summary><pre>{{ shared }}</pre></details></footer>
</body></html>
"""


def render_report(report: Report) -> str:
    """The report as one HTML document (every figure embedded, every text escaped, secrets scrubbed)."""
    if not report.sections:
        raise WorkbenchError("a report needs at least one section")
    versions = library_versions()
    secrets = environment_secret_values()

    def clean(text: str) -> str:  # every piece of text, never the images' base64 (a key pattern could match there)
        return scrub_text(text, secrets)

    sections = [{
        "title": clean(section.title),
        "text": clean(section.text),
        "figures": [{"src": _figure_src(f), "caption": clean(f.caption)} for f in section.figures],
        "tables": [{"caption": clean(t.caption), "legend": clean(t.legend), "html": Markup(clean(_table_html(t)))}
                   for t in section.tables],
        "commands": clean("\n".join(section.commands)),
        "provenance": clean(_json(section.provenance)) if section.provenance else "",
    } for section in report.sections]
    shared = {"versions": versions, **report.provenance}
    environment = Environment(autoescape=True, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE).render(
        title=clean(report.title), intro=clean(report.intro), sections=sections, versions=versions,
        shared=clean(_json(shared)), created=datetime.now(UTC).isoformat(timespec="seconds"))


def write_report(report: Report, path: str | Path) -> Path:
    """Write the report to `path` (an .html file; folders are made); returns the path written."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise WorkbenchError(f"{path}: a report is an HTML file; give a path ending in .html")
    html = render_report(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def commands_text(commands: Sequence[str] | Mapping[str, str]) -> list[str]:
    """Commands as lines; a mapping of comment -> command becomes '# comment' above each command."""
    if isinstance(commands, Mapping):
        return [line for comment, command in commands.items() for line in (f"# {comment}", command)]
    return list(commands)
