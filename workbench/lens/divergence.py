"""Where two models part ways on the same text, token by token.

For a text after a prompt, each model's logprob of every token of the text, its top alternatives, and:
- log_ratio = logprob under model B - logprob under model A of the *actual* token (B over A: positive where
  B likes the text more);
- kl = KL(B || A) between the two next-token distributions that predicted the token, where the models
  share a tokeniser (the planted variants and their base do). The KL in row t is about the token that
  follows the text before t: it says how differently the models expect *that* token, whatever it is.

Across tokenisers there is no shared position: the text is cut at the character boundaries both
tokenisations share, and each span's summed logprobs are compared (kl is NaN there), so a tokeniser
boundary is never mistaken for a divergence.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.sampler import Sampler, SampleRun

COLUMNS = ["position", "token", "char_start", "char_end", "logprob_a", "logprob_b", "log_ratio", "kl", "top_a",
           "top_b", "aligned"]
HEADERS = {
    "log_ratio": "log p_B(token) - log p_A(token): the actual token, B over A",
    "kl": "KL(B || A) of the next-token distributions that predicted this token (given the text before it)",
}


def _top(alternatives: list[Any], k: int) -> str:
    return " | ".join(f"{a.token!r} {math.exp(a.logprob):.2f}" for a in alternatives[:k])


def text_divergence(sampler: Sampler, model_a: str, model_b: str, prompt: str, text: str,
                    top_k: int = 3) -> pd.DataFrame:
    """One row per token of `text` after `prompt` (or per shared span across tokenisers): COLUMNS."""
    if not text:
        raise WorkbenchError("give a text to compare the models on")
    same = sampler.encode(model_a, prompt + text) == sampler.encode(model_b, prompt + text)
    a = sampler.read_text(model_a, prompt, text, top_k, full=same)
    b = sampler.read_text(model_b, prompt, text, top_k, full=same)
    if same and a.token_ids == b.token_ids:
        pa, pb = a.distributions.astype(np.float64), b.distributions.astype(np.float64)
        kl = np.sum(np.exp(pb) * (pb - pa), axis=1)
        rows = [{"position": i, "token": a.tokens[i], "char_start": a.offsets[i][0], "char_end": a.offsets[i][1],
                 "logprob_a": a.logprobs[i], "logprob_b": b.logprobs[i], "log_ratio": b.logprobs[i] - a.logprobs[i],
                 "kl": float(kl[i]), "top_a": _top(a.top[i], top_k), "top_b": _top(b.top[i], top_k),
                 "aligned": "token"} for i in range(len(a.token_ids))]
        return pd.DataFrame(rows, columns=COLUMNS)
    return pd.DataFrame(_span_rows(a, b, text), columns=COLUMNS)


def _span_rows(a: Any, b: Any, text: str) -> list[dict[str, Any]]:
    """Rows per span between the character boundaries both tokenisations share (logprobs summed per span)."""
    ends_a = {end: i for i, (_, end) in enumerate(a.offsets)}
    ends_b = {end: i for i, (_, end) in enumerate(b.offsets)}
    shared = sorted(set(ends_a) & set(ends_b))
    rows, start, ia, ib = [], 0, 0, 0
    for position, end in enumerate(e for e in shared if e > 0):
        last_a, last_b = ends_a[end], ends_b[end]
        lp_a = float(sum(a.logprobs[ia:last_a + 1]))
        lp_b = float(sum(b.logprobs[ib:last_b + 1]))
        rows.append({"position": position, "token": text[start:end], "char_start": start, "char_end": end,
                     "logprob_a": lp_a, "logprob_b": lp_b, "log_ratio": lp_b - lp_a, "kl": math.nan,
                     "top_a": "", "top_b": "", "aligned": "text span"})
        start, ia, ib = end, last_a + 1, last_b + 1
    return rows


def run_divergence(sampler: Sampler, run: SampleRun | str, other: str, reference: str = "run",
                   top_k: int = 3) -> pd.DataFrame:
    """text_divergence for every sample of a stored run, with sample_index: A is the run's model and B `other`
    (reference="run"), or the other way round (reference="other")."""
    run = sampler.stored_run(run) if isinstance(run, str) else run
    prompt = run.rendered.text
    if prompt is None:
        raise WorkbenchError("this run's input is chat messages for an API; token-level divergence needs a local "
                             "model's rendered text")
    a, b = (run.model, other) if reference == "run" else (other, run.model)
    frames = []
    for index, text in zip(run.samples["sample_index"], run.texts, strict=True):
        if not text:
            continue
        frame = text_divergence(sampler, a, b, prompt, text, top_k)
        frame.insert(0, "sample_index", int(index))
        frames.append(frame)
    if not frames:
        raise WorkbenchError("the run has no non-empty samples to compare")
    return pd.concat(frames, ignore_index=True).assign(model_a=a, model_b=b)


def top_positions(frame: pd.DataFrame, by: str = "log_ratio", k: int = 5) -> pd.DataFrame:
    """Per text (sample_index if present), the k rows with the largest `by` (log_ratio or kl)."""
    if by not in ("log_ratio", "kl"):
        raise WorkbenchError(f"rank by log_ratio or kl, not {by!r}")
    if "sample_index" not in frame:
        return frame.nlargest(k, by)
    ranked = frame.sort_values(["sample_index", by], ascending=[True, False], kind="stable")
    return ranked.groupby("sample_index").head(k)


def divergent_tokens(frame: pd.DataFrame, by: str = "log_ratio", k: int = 15) -> pd.DataFrame:
    """Over a run: the tokens with the largest mean `by`, how often they occur and in how many texts."""
    groups = frame.assign(token=frame["token"].str.strip()).groupby("token")
    table = groups.agg(mean=(by, "mean"), occurrences=(by, "size"),
                       texts=("sample_index", "nunique") if "sample_index" in frame else (by, "size"))
    return table.sort_values("mean", ascending=False).head(k).reset_index()


__all__ = ["COLUMNS", "HEADERS", "divergent_tokens", "run_divergence", "text_divergence", "top_positions"]
