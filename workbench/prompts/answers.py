"""Answer extractors: pure string functions that map a free continuation to an answer.

They belong to the answer-space layer of the prompt schema (a prompt's `normaliser` names one),
and analysis builds distributions over what they return.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from workbench.errors import WorkbenchError

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


def choice_label(index: int) -> str:
    """The label of a multiple-choice option by position: 0 -> "(A)"."""
    return f"({chr(ord('A') + index)})"


def choice_letter(text: str) -> str:
    """The option a multiple-choice answer picks, as "(A)": from "(A) Yes", " (b)", "A)", "A." or a lone "A"."""
    match = re.match(r"\s*(?:\(\s*([A-Da-d])\s*\)|([A-D])(?:[).:,]|\s|$))", text)
    return f"({(match.group(1) or match.group(2)).upper()})" if match else NO_ANSWER


def full_text(text: str) -> str:
    """The whole continuation, stripped."""
    return text.strip() or NO_ANSWER


ANSWER_EXTRACTORS: dict[str, AnswerFn] = {
    "first-line": first_line,
    "first-word": first_word,
    "first-number": first_number,
    "first-3-words": first_words(3),
    "choice-letter": choice_letter,
    "full": full_text,
}


def answer_extractor(name: str) -> AnswerFn:
    """An extractor by name (see ANSWER_EXTRACTORS)."""
    if name not in ANSWER_EXTRACTORS:
        raise WorkbenchError(f"unknown answer extractor {name!r}; use one of {', '.join(ANSWER_EXTRACTORS)}")
    return ANSWER_EXTRACTORS[name]
