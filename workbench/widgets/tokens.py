"""A continuation's tokens coloured by their logprob (HTML, every token escaped)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence


def token_colour(logprob: float | None) -> str:
    """Background colour for a token: green when likely, through yellow, to red when unlikely (grey: unknown)."""
    if logprob is None or (isinstance(logprob, float) and math.isnan(logprob)):
        return "#e0e0e0"
    p = min(1.0, max(0.0, math.exp(logprob)))
    return f"hsl({int(120 * p)}, 75%, 82%)"


def tokens_html(tokens: Sequence[str] | None, logprobs: Sequence[float | None] | None, title: str = "") -> str:
    """Spans with a background by probability and the exact numbers on hover; newlines shown as ⏎."""
    tokens = list(tokens or [])
    logprobs = list(logprobs or [None] * len(tokens))
    spans = []
    for token, logprob in zip(tokens, logprobs):
        shown = html.escape(token).replace("\n", "⏎<br>")
        tip = "unknown" if logprob is None else f"p = {math.exp(logprob):.3g} (logprob {logprob:.2f})"
        spans.append(f"<span class='workbench-token' style='background:{token_colour(logprob)};"
                     f"border-radius:2px;padding:0 1px;margin:0 0 2px 0' title='{html.escape(tip)} "
                     f"{html.escape(repr(token))}'>{shown}</span>")
    legend = ("<div style='font-size:11px;color:#555;margin-top:4px'>background: probability of each token under "
              "the model that wrote it (temperature 1, no truncation): "
              + "".join(f"<span style='background:{token_colour(math.log(p))};padding:0 4px'>{p:g}</span>"
                        for p in (0.01, 0.1, 0.3, 0.6, 0.9)) + "; hover a token for its numbers</div>")
    head = f"<div style='font-size:12px;font-weight:600'>{html.escape(title)}</div>" if title else ""
    body = "".join(spans) if spans else "<i>(no tokens: empty continuation)</i>"
    return (f"{head}<div class='workbench-tokens' style='font-family:monospace;font-size:13px;line-height:1.7;"
            f"white-space:pre-wrap'>{body}</div>{legend}")
