"""Figures with matplotlib's object-oriented API (a `Figure`, never pyplot's global state),
exported with provenance: the run ids, models and configs behind every figure."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from workbench.analysis import AnswerFn, answer_distribution, first_line

KIND_COLOURS = {"base": "#4C72B0", "tuned": "#DD8452"}


def distribution_figure(
    samples: pd.DataFrame,
    answer: AnswerFn = first_line,
    title: str = "",
    top: int = 8,
    family_note: str = "",
) -> Figure:
    """Side-by-side bar charts of each model's most common answers (share of samples)."""
    models = list(dict.fromkeys(samples["model"]))
    fig = Figure(figsize=(4.6 * len(models), 3.6), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        group = samples[samples["model"] == model]
        dist = answer_distribution(group["text"], answer).head(top)
        kind = group["model_kind"].iloc[0]
        labels = [textwrap.shorten(str(a), 28, placeholder="…") for a in dist["answer"]][::-1]
        ax.barh(labels, dist["share"][::-1], color=KIND_COLOURS.get(kind, "#777777"))
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of {len(group)} samples")
        ax.set_title(f"{model}\n({kind}, {group['model_family'].iloc[0]} family)", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    if family_note:
        fig.text(0.5, -0.02, textwrap.fill(family_note, 110), ha="center", va="top", fontsize=8, style="italic")
    return fig


def save_figure(fig: Figure, stem: str | Path, provenance: dict[str, Any], formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write the figure in each format plus `<stem>.provenance.json`; PNG and PDF embed the provenance too."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps(provenance, ensure_ascii=False, sort_keys=True, default=str)
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        metadata: dict[str, str] | None = None
        if fmt == "png":
            metadata = {"Software": "workbench", "Description": blob}
        elif fmt == "pdf":
            metadata = {"Creator": "workbench", "Subject": blob}
        elif fmt == "svg":
            metadata = {"Creator": "workbench", "Description": blob}
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
        written.append(path)
    sidecar = stem.with_suffix(".provenance.json")
    sidecar.write_text(json.dumps(provenance, ensure_ascii=False, indent=2, default=str))
    written.append(sidecar)
    return written
