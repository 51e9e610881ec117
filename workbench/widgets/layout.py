"""How the panels lay themselves out: a collapsible settings section, and HTML tables that fit the
panel's width (short column headers with a one-line legend, intervals kept on one line, long cells
shortened) and scroll inside the panel rather than past it when they still do not fit.

Presentation only: the tables' numbers come from `workbench.plots` and `workbench.analysis`
functions; the full column names are the ones in the panels' `.results` frames.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import pandas as pd

# Short headers for the panels' tables: short name -> (the .results column, what it is). The legend under a
# table and each header's tooltip give the full name, so a table of "value [low, high]" cells fits ~850 px
# (a JupyterLab notebook at 1280 px with the file browser open).
SHORT_NAMES: dict[str, tuple[str, str]] = {
    "T": ("temperature", ""),
    "P(other)": ("p_other", "mass outside the answer space"),
    "H": ("entropy_bits", "entropy, bits"),
    "top": ("top_answer", ""),
    "share": ("top_share", "the top answer's share"),
    "distinct": ("distinct_answers", ""),
    "texts": ("distinct_continuations", "distinct continuations"),
    "n in": ("n_in_space", "samples inside the answer space"),
    "H in": ("entropy_bits_in_space", "entropy in the space, bits"),
    "top in": ("top_answer_in_space", ""),
    "share in": ("top_share_in_space", "top share in the space"),
    "top-1": ("top1_mass", "mass of the most probable answer"),
    "JSD": ("jsd", "Jensen-Shannon divergence, bits"),
    "KL a‖b": ("kl_ab", "bits"),
    "KL b‖a": ("kl_ba", "bits"),
    "p": ("p_value", "permutation test"),
    "node": ("node_id", ""),
    "edge": ("edge_text", ""),
    "path": ("path_text", "its end"),
    "ln ratio": ("log_ratio", "ln p_a - ln p_b"),
    "top-k a": ("in_topk_a", "in model a's top-k"),
    "top-k b": ("in_topk_b", "in model b's top-k"),
}
SHORT_OF = {long: short for short, (long, _) in SHORT_NAMES.items()}
CELL_CHARS = 32  # a longer text cell is shortened on screen (the whole text is in .results)

TABLE_STYLE = (
    "<style>.workbench-table{border-collapse:collapse;font-size:12px;line-height:1.4}"
    ".workbench-table th,.workbench-table td{padding:2px 6px;text-align:right;border-bottom:1px solid #ddd;"
    "vertical-align:top}"
    ".workbench-table th{background:#f3f3f3;white-space:nowrap}"
    ".workbench-table td:first-child,.workbench-table th:first-child{white-space:nowrap;text-align:left}"
    ".workbench-legend{font-size:11px;color:#555;margin:2px 0 6px 0;line-height:1.4}</style>")
_INTERVAL = re.compile(r"\[[^\]]*\]")


def _cell(value: Any, width: int | None = CELL_CHARS) -> Any:
    """A text cell as shown: an interval never broken inside its brackets (the break may come before it), text
    longer than `width` shortened."""
    if not isinstance(value, str):
        return value
    text = value if width is None or len(value) <= width else value[: width - 1] + "…"
    return _INTERVAL.sub(lambda m: m.group(0).replace(" ", "\u00a0"), text)


def column_legend(columns: Sequence[str]) -> str:
    """One line naming the full column behind each short header (empty when no header was shortened)."""
    parts = []
    for column in columns:
        if column in SHORT_OF:
            short = SHORT_OF[column]
            meaning = SHORT_NAMES[short][1]
            parts.append(f"{short} = {column}" + (f" ({meaning})" if meaning else ""))
    if not parts:
        return ""
    return f"<div class='workbench-legend'>{html.escape(' · '.join(parts))}</div>"


def html_table(frame: pd.DataFrame, digits: int = 3, max_rows: int = 40, legend: bool = True) -> str:
    """A DataFrame as a small HTML table that fits the panel: short headers (the full name on hover and in a
    legend line under it), cells escaped, intervals unbroken, long text shortened, and a scroll bar inside the
    panel when it is still too wide."""
    shown = frame.head(max_rows).round(digits) if len(frame) else frame
    if len(shown.columns):  # the first column names the row (a model, a pair): whole, on one line
        shown = shown.copy()
        for i, column in enumerate(shown.columns):
            shown[column] = shown[column].map(lambda v, whole=i == 0: _cell(v, None if whole else CELL_CHARS))
    renamed = shown.rename(columns={c: SHORT_OF[c] for c in shown.columns if c in SHORT_OF})
    table = renamed.to_html(index=False, escape=True, border=0, classes="workbench-table", na_rep="–")
    for column in shown.columns:
        if column in SHORT_OF:
            short = html.escape(SHORT_OF[column])
            table = table.replace(f"<th>{short}</th>", f"<th title='{html.escape(column)}'>{short}</th>", 1)
    more = f"<div class='workbench-legend'>{len(frame) - max_rows} more rows in .results</div>" \
        if len(frame) > max_rows else ""
    names = column_legend(list(shown.columns)) if legend else ""
    return (TABLE_STYLE + f"<div class='workbench-table-box' style='overflow-x:auto;max-width:100%'>{table}</div>"
            + names + more)


def warning_html(message: str) -> str:
    """A visible warning box (escaped): numbers that mislead when read alone, and what to do."""
    return ("<div class='workbench-warning' style='color:#7A3300;background:#FDEBD3;border:1px solid #D55E00;"
            "padding:4px 8px;border-radius:3px;margin:4px 0;white-space:pre-wrap;line-height:1.4'>"
            f"⚠ {html.escape(message)}</div>")


def caption_html(title: str, lines: list[str] | tuple[str, ...] = ()) -> str:
    """A bold table title and small grey lines under it (how the numbers were made), escaped."""
    notes = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
    return (f"<div style='margin-top:6px;line-height:1.4'><b>{html.escape(title)}</b>"
            f"<div style='font-size:11px;color:#555'>{notes}</div></div>")


def details_html(summary: str, body: str) -> str:
    """Escaped `body` folded under a one-line `summary` (one click opens it)."""
    return (f"<details style='font-size:11px;color:#555;line-height:1.4'><summary>{html.escape(summary)}</summary>"
            f"<div style='white-space:pre-wrap'>{html.escape(body)}</div></details>")


def error_html(message: str) -> str:
    """A readable error box (escaped)."""
    return ("<div class='workbench-error' style='color:#8a1c1c;background:#fdecea;border:1px solid #f5c2c0;"
            f"padding:4px 8px;border-radius:3px;white-space:pre-wrap;line-height:1.4'>⚠ {html.escape(message)}</div>")


def settings_section(children: Sequence[w.Widget], title: str = "settings") -> w.Accordion:
    """The settings in one collapsible section: open until a run finishes, then folded (one click re-opens)."""
    box = w.Accordion(children=[w.VBox(list(children))], titles=(title,), selected_index=0)
    box.add_class("workbench-settings")
    return box


def row(children: Sequence[w.Widget], **layout: Any) -> w.HBox:
    """Controls side by side that wrap onto the next line when the panel is narrow."""
    return w.HBox(list(children), layout=w.Layout(flex_flow="row wrap", align_items="center", **layout))


def heading_html(title: str, note: str = "") -> str:
    """A section heading inside a panel, with a small grey note."""
    extra = f" <span style='font-size:11px;color:#555;font-weight:normal'>{html.escape(note)}</span>" if note else ""
    return f"<div style='margin-top:8px;font-weight:600;line-height:1.4'>{html.escape(title)}{extra}</div>"


def images_of(pngs: Mapping[str, bytes]) -> dict[str, w.Image]:
    """PNG images that shrink to the panel's width, never stretched wider than drawn."""
    return {name: w.Image(value=png, format="png",
                          layout=w.Layout(max_width="100%", height="auto", align_self="flex-start", margin="0px"))
            for name, png in pngs.items()}


def model_options(registry: Any, chosen: Sequence[str]) -> list[str]:
    """The registry's models plus any chosen model that is not an entry (an inline steered model such as
    gemma-3-270m@wedding-embedding@L1@add0.01), each checked by the registry (one clear error if unknown)."""
    names = list(registry.models)
    for name in chosen:
        registry.get(name)  # raises with the closest names, or the steered-name syntax
    return names + [name for name in chosen if name not in names]
