"""Export a figure with its provenance: the run ids, models and configs behind it, embedded in
every file and written beside them as JSON, after `scrub_secrets` has removed anything that looks
like a credential. Figures are written at a paper's column width (one column 3.5 in, two columns
7 in; PNG at 300 dpi), and the provenance records the size."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from workbench.errors import WorkbenchError
from workbench.plots.sizing import DEFAULT_WIDTH, figure_width, sized_copy
from workbench.plots.style import DPI
from workbench.secrets import scrub_secrets
from workbench.version import __version__

FORMATS = ("png", "svg", "pdf")


def slug(text: str, width: int = 50, fallback: str = "figure") -> str:
    """A file-name-safe piece of text: lower-case letters and digits joined by dashes, at most `width` long."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:width] or fallback


def figure_formats_for(path: str | Path, default: Sequence[str] | None = FORMATS) -> tuple[Path, tuple[str, ...]]:
    """The stem and formats a figure path asks for: "out/fig.pdf" -> ("out/fig", ("pdf",)), "out/fig" -> default.

    A suffix that is not a figure format stays part of the stem ("v1.2" keeps its ".2"); with
    `default=None` such a path is an error, for callers that need the format from the path.
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if suffix in FORMATS:
        return path.parent / path.stem, (suffix,)
    if default is None:
        raise WorkbenchError(f"{path}: give a path ending in {', '.join('.' + f for f in FORMATS[:-1])} "
                             f"or .{FORMATS[-1]}")
    return path, tuple(default)


def _run_ids(obj: Any) -> list[str]:
    """Every value under a "run_id"/"run_ids" key, in order: the PDF/SVG keywords to search by."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, item in obj.items():
            if key in ("run_id", "run_ids"):
                found += [str(i) for i in (item if isinstance(item, list) else [item]) if i is not None]
            else:
                found += _run_ids(item)
    elif isinstance(obj, list):
        for item in obj:
            found += _run_ids(item)
    return list(dict.fromkeys(found))


def _metadata(fmt: str, software: str, blob: str, run_ids: list[str], title: str) -> dict[str, Any]:
    """The provenance in the metadata keys each matplotlib backend accepts (see Figure.savefig)."""
    if fmt == "png":
        metadata: dict[str, Any] = {"Software": software, "Description": blob}
    elif fmt == "svg":
        metadata = {"Creator": software, "Description": blob}
        if run_ids:
            metadata["Keywords"] = run_ids
    else:
        metadata = {"Creator": software, "Subject": blob}
        if run_ids:
            metadata["Keywords"] = ", ".join(run_ids)
    if title:
        metadata["Title"] = title
    return metadata


def export_figure(fig: Figure, stem: str | Path, provenance: Mapping[str, Any],
                  formats: Sequence[str] = FORMATS, width: str | None = DEFAULT_WIDTH) -> list[Path]:
    """Write `<stem>.<format>` for each format plus `<stem>.provenance.json`, provenance embedded, secrets scrubbed.

    `width`: "two-column" (7 in, the default) or "one-column" (3.5 in): a copy of the figure is redrawn
    exactly that wide (PNG: 2100 or 1050 pixels at 300 dpi), `fig` itself is left as it is; None writes
    the figure at its own size, cropped to its content.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise WorkbenchError(f"cannot export figures as {', '.join(unknown)}; use formats from {', '.join(FORMATS)}")
    inches = figure_width(width)  # a bad width fails before anything is written
    stem, _ = figure_formats_for(stem)  # "out/fig.png" means the stem "out/fig"
    stem.parent.mkdir(parents=True, exist_ok=True)
    if inches is not None:
        fig = sized_copy(fig, width)
    record = scrub_secrets(dict(provenance))
    inches_drawn = [round(float(v), 2) for v in fig.get_size_inches()]
    record["figure_size"] = {"width": width or "as built", "inches": inches_drawn, "png_dpi": DPI}
    record.setdefault("workbench", __version__)
    record.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    # ASCII-only JSON in the files: PNG tEXt chunks are Latin-1 and PDF strings stay greppable. scrub_secrets
    # has turned NaN and the infinities into null; allow_nan=False guarantees no non-JSON number gets out.
    blob = json.dumps(record, ensure_ascii=True, sort_keys=True, allow_nan=False)
    software = f"workbench {__version__}"
    title = fig.get_suptitle()
    run_ids = _run_ids(record)
    written = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"  # not with_suffix: a stem "v1.2" must keep its ".2"
        # A fixed width is kept exactly (no "tight" crop); constrained layout keeps everything inside it.
        fig.savefig(path, format=fmt, dpi=DPI, bbox_inches=None if inches else "tight", facecolor="white",
                    metadata=_metadata(fmt, software, blob, run_ids, title))
        written.append(path)
    sidecar = stem.parent / f"{stem.name}.provenance.json"
    sidecar.write_text(json.dumps(record, ensure_ascii=False, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written.append(sidecar)
    return written
