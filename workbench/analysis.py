"""From samples to distributions and simple metrics.

Answer extractors map a free continuation to an "answer" (its first line, first word, first
number); distributions and entropies are computed over those answers. Later analysis
(exact distributions, CIs, clusters) builds on these.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, Iterable

import pandas as pd

AnswerFn = Callable[[str], str]
NO_ANSWER = "(no answer)"


def first_line(text: str) -> str:
    """The first non-empty line, whitespace collapsed, trailing punctuation dropped."""
    for line in text.strip().splitlines():
        cleaned = " ".join(line.split()).rstrip(".,;:!?")
        if cleaned:
            return cleaned
    return NO_ANSWER


def first_word(text: str) -> str:
    """The first word, lower-cased, without punctuation (e.g. a one-word answer)."""
    match = re.search(r"[^\W_]+(?:['-][^\W_]+)*", text)
    return match.group(0).lower() if match else NO_ANSWER


def first_number(text: str) -> str:
    """The first integer in the text (e.g. an answer to 'pick a number')."""
    match = re.search(r"-?\d+", text)
    return str(int(match.group(0))) if match else NO_ANSWER


def first_words(k: int) -> AnswerFn:
    """An extractor for the first k words (a story's opening shape)."""

    def extract(text: str) -> str:
        words = re.findall(r"[^\W_]+(?:['-][^\W_]+)*", text.lower())
        return " ".join(words[:k]) if words else NO_ANSWER

    extract.__name__ = f"first_{k}_words"
    return extract


def full_text(text: str) -> str:
    """The whole continuation, stripped."""
    return text.strip() or NO_ANSWER


ANSWER_EXTRACTORS: dict[str, AnswerFn] = {
    "first-line": first_line,
    "first-word": first_word,
    "first-number": first_number,
    "first-3-words": first_words(3),
    "full": full_text,
}


def answer_extractor(name: str) -> AnswerFn:
    """An extractor by name (see ANSWER_EXTRACTORS)."""
    from workbench.errors import WorkbenchError

    if name not in ANSWER_EXTRACTORS:
        raise WorkbenchError(f"unknown answer extractor {name!r}; use one of {', '.join(ANSWER_EXTRACTORS)}")
    return ANSWER_EXTRACTORS[name]


def entropy_bits(counts: Iterable[int]) -> float:
    """Shannon entropy in bits of a categorical distribution given by counts."""
    counts = [c for c in counts if c > 0]
    total = sum(counts)
    if total == 0:
        return float("nan")
    return max(0.0, -sum((c / total) * math.log2(c / total) for c in counts))  # no "-0.0" for one answer


def answer_distribution(texts: Iterable[str], answer: AnswerFn = first_line) -> pd.DataFrame:
    """Answers with count and share, most common first."""
    counts = Counter(answer(t) for t in texts)
    total = sum(counts.values())
    rows = [{"answer": a, "count": c, "share": c / total} for a, c in counts.most_common()]
    return pd.DataFrame(rows, columns=["answer", "count", "share"])


def summarise_texts(texts: list[str], answer: AnswerFn = first_line) -> dict[str, object]:
    """n, distinct continuations, distinct answers, answer entropy (bits), top answer and its share."""
    dist = answer_distribution(texts, answer)
    return {
        "n": len(texts),
        "distinct_continuations": len(set(texts)),
        "distinct_answers": len(dist),
        "entropy_bits": round(entropy_bits(dist["count"]), 3),
        "max_entropy_bits": round(math.log2(len(texts)), 3) if texts else float("nan"),
        "top_answer": dist["answer"].iloc[0] if len(dist) else NO_ANSWER,
        "top_share": round(float(dist["share"].iloc[0]), 3) if len(dist) else float("nan"),
    }


def compare_frame(samples: pd.DataFrame, answer: AnswerFn = first_line) -> pd.DataFrame:
    """One row per model of a tidy samples frame (columns model, model_kind, model_family, text)."""
    rows = []
    for model, group in samples.groupby("model", sort=False):
        rows.append(
            {
                "model": model,
                "kind": group["model_kind"].iloc[0],
                "family": group["model_family"].iloc[0],
                **summarise_texts(list(group["text"]), answer),
            }
        )
    return pd.DataFrame(rows)
