"""From continuations to answers: an answer space's normaliser, an extractor, or the first line.

The extractors themselves are pure string functions of the prompt library (a prompt's answer
space names one), so they live in `workbench.prompts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workbench.prompts import AnswerSpace, first_line

Normaliser = AnswerSpace | Callable[[str], str] | None


def answers_of(texts: Sequence[str], normaliser: Normaliser = None) -> list[str]:
    """Map continuations to answers with an answer space's normaliser, a function, or first_line."""
    if normaliser is None:
        return [first_line(t) for t in texts]
    if isinstance(normaliser, AnswerSpace):
        return [normaliser.normalise(t) for t in texts]
    return [normaliser(t) for t in texts]


__all__ = ["Normaliser", "answers_of"]
