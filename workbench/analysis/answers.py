"""From continuations to answers: an answer space's normaliser, an extractor, or the first line.

The extractors themselves are pure string functions of the prompt library (a prompt's answer
space names one), so they live in `workbench.prompts` and are re-exported here for analysis code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workbench.prompts import (
    ANSWER_EXTRACTORS,
    NO_ANSWER,
    AnswerFn,
    AnswerSpace,
    answer_extractor,
    first_line,
    first_number,
    first_word,
    first_words,
    full_text,
)

Normaliser = AnswerSpace | Callable[[str], str] | None


def answers_of(texts: Sequence[str], normaliser: Normaliser = None) -> list[str]:
    """Map continuations to answers with an answer space's normaliser, a function, or first_line."""
    if normaliser is None:
        return [first_line(t) for t in texts]
    if isinstance(normaliser, AnswerSpace):
        return [normaliser.normalise(t) for t in texts]
    return [normaliser(t) for t in texts]


__all__ = [
    "ANSWER_EXTRACTORS",
    "NO_ANSWER",
    "AnswerFn",
    "Normaliser",
    "answer_extractor",
    "answers_of",
    "first_line",
    "first_number",
    "first_word",
    "first_words",
    "full_text",
]
