"""The prompt schema: pydantic models of a collection, its prompts, answer spaces, label sets and framings.

A collection is one YAML file (see prompts/README.md for the field-by-field reference). These
models check one prompt at a time; the loader adds file names and line numbers to what they say.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.prompts.answers import ANSWER_EXTRACTORS, NO_ANSWER, choice_label
from workbench.prompts.sandbox import render_template
from workbench.prompts.sandbox import template_slots as slots_of

SEGUE_SLOT = "segue"
OTHER_ANSWER = "(other)"
LEADING = "leading"  # normaliser: the candidate at the very start, then a terminator (what exact scoring computes)
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
OPTIONS_SLOT, CHOICES_SLOT = "options", "choices"  # what a multiple-choice item's templates see
MAX_OPTIONS = 4
MAX_VARIANTS = 10_000  # grid combinations of one prompt; a bigger grid is split into prompts
MAX_ANSWERS = 100_000  # candidates of one answer space (each is scored or counted)
# What may follow a multiple-choice label: "(A)" is closed by its parenthesis, so anything a
# reply goes on with after it ("(A) Yes", "(A)\n", "(A).") still picks option A.
CHOICE_TERMINATORS = ["\n", ".", ",", "!", " ", ":", ";", ")"]


class PromptLibraryError(WorkbenchError):
    """One or more problems in prompt collections; `problems` lists each on its own line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n" + "\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntegerRange(_Strict):
    """Whole numbers from start to stop, both included."""

    start: int
    stop: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _not_empty(self) -> IntegerRange:
        if self.stop < self.start:
            raise ValueError(f"integers: stop ({self.stop}) is below start ({self.start}); the range is empty")
        count = len(range(self.start, self.stop + 1, self.step))
        if count > MAX_ANSWERS:
            raise ValueError(f"integers: {count:,} answers are more than the {MAX_ANSWERS:,} an answer space may "
                             "have; narrow the range or raise the step")
        return self


class AnswerSpace(_Strict):
    """The finite set of answers a prompt expects, for exact scoring and sampled distributions."""

    candidates: list[str] | None = Field(None, description="The answers, as written (e.g. [heads, tails]).")
    integers: IntegerRange | None = Field(None, description="A generated space, e.g. {start: 1, stop: 100}.")
    letters: str | None = Field(None, description="Each character is a candidate, e.g. ABCDEFGHIJKLMNOPQRSTUVWXYZ.")
    scored_as: str | None = Field(
        None,
        description="Template for the text each candidate is scored as right after the rendered input, "
        "e.g. ' {{ answer }}'. Default: the answer with a leading space unless the rendered input "
        "already ends in whitespace (a chat template's assistant turn, a line ending with a newline).",
    )
    terminators: list[str] = Field(
        default_factory=lambda: ["\n", ".", ",", "!", " "],
        description="What may follow a complete answer when scoring exactly, so '3' is not counted as "
        "the start of '37'.",
    )
    normaliser: str = Field(
        "first-line",
        description="Maps a free continuation to an answer: one of the extractors in workbench.prompts.answers "
        "(first-line, first-word, first-number, ...), 'leading' (the candidate at the very start followed by a "
        "terminator: the reading exact scoring computes), or 'regex:<pattern>' (first group, else whole match).",
    )
    case_sensitive: bool = Field(False, description="Whether 'Red' and 'red' are different answers.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> AnswerSpace:
        given = [n for n in ("candidates", "integers", "letters") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of candidates, integers or letters")
        if self.candidates is not None and not self.candidates:
            raise ValueError("candidates is empty; list at least two answers or remove answer_space")
        if self.letters is not None and not self.letters:
            raise ValueError("letters is empty; give the characters, e.g. ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        values = self.values()
        keys = [self._key(v) for v in values]
        if len(set(keys)) != len(keys):
            duplicates = sorted({v for v in values if keys.count(self._key(v)) > 1})
            raise ValueError(f"candidates repeat {duplicates} (compared case-insensitively unless case_sensitive)")
        return self

    @field_validator("normaliser")
    @classmethod
    def _known_normaliser(cls, value: str) -> str:
        if value.startswith("regex:"):
            try:
                re.compile(value[len("regex:"):])
            except re.error as exc:
                raise ValueError(f"normaliser regex does not compile: {exc}") from None
            return value
        if value not in ANSWER_EXTRACTORS and value != LEADING:
            raise ValueError(
                f"unknown normaliser {value!r}; use one of {', '.join([LEADING, *ANSWER_EXTRACTORS])} or regex:..."
            )
        return value

    @field_validator("terminators")
    @classmethod
    def _terminators_not_empty_strings(cls, value: list[str]) -> list[str]:
        if any(t == "" for t in value):
            raise ValueError("an empty terminator matches anything; remove it")
        return value

    def _key(self, answer: str) -> str:
        return answer if self.case_sensitive else answer.lower()

    def values(self) -> list[str]:
        """Every candidate answer, in order."""
        if self.candidates is not None:
            return list(self.candidates)
        if self.integers is not None:
            r = self.integers
            return [str(i) for i in range(r.start, r.stop + 1, r.step)]
        return list(self.letters or "")

    def scored_text(self, answer: str, after: str = "") -> str:
        """The text a candidate is scored as, right after the rendered input `after`."""
        if self.scored_as is not None:
            return render_template(self.scored_as, {"answer": answer}, "answer_space.scored_as")
        needs_space = bool(after) and not after[-1].isspace()
        return (" " if needs_space else "") + answer

    def leading_answer(self, continuation: str) -> str:
        """The candidate the continuation starts with (after its scored-as whitespace), followed by a terminator
        or the end; else '(other)'. This is the reading exact scoring computes."""
        text = continuation.lstrip(" ")
        if not self.case_sensitive:
            text = text.lower()
        for value in sorted(self.values(), key=len, reverse=True):
            key = self._key(value)
            if text.startswith(key):
                rest = text[len(key):]
                if not rest or rest.startswith(tuple(self.terminators)):
                    return value
        return OTHER_ANSWER

    def normalise(self, continuation: str) -> str:
        """Map a free continuation to a candidate, or '(other)' when it names none."""
        if self.normaliser == LEADING:
            return self.leading_answer(continuation)
        if self.normaliser.startswith("regex:"):
            match = re.search(self.normaliser[len("regex:"):], continuation)
            raw = (match.group(1) if match and match.groups() else match.group(0)) if match else NO_ANSWER
        else:
            raw = ANSWER_EXTRACTORS[self.normaliser](continuation)
        by_key = {self._key(v): v for v in self.values()}
        return by_key.get(self._key(raw.strip()), OTHER_ANSWER)


class LabelSet(_Strict):
    """Words or patterns that mark a continuation as belonging to one category."""

    keywords: list[str] = Field(default_factory=list, description="Whole words or phrases, case-insensitive.")
    regex: list[str] = Field(default_factory=list, description="Python regular expressions, case-insensitive.")
    references: list[str] = Field(
        default_factory=list, description="Example texts of the category, for classifying by embedding similarity."
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSet:
        if not self.keywords and not self.regex:
            raise ValueError("a label needs keywords or regex")
        return self

    def match_positions(self, text: str) -> list[int]:
        """Start offsets of every keyword (as a whole word) and pattern match in the text."""
        positions = []
        for word in self.keywords:
            positions += [m.start() for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE)]
        for pattern in self.regex:
            positions += [m.start() for m in re.finditer(pattern, text, re.IGNORECASE)]
        return sorted(positions)

    def matches(self, text: str) -> bool:
        """Whether any keyword (as a whole word) or pattern occurs in the text."""
        return bool(self.match_positions(text))


class MessageTemplate(_Strict):
    """One chat message; its content is a template."""

    role: Literal["system", "user", "assistant"]
    content: str


class FramingBody(_Strict):
    """The text or messages of a framing."""

    kind: Literal["completion", "chat"]
    text: str | None = Field(None, description="Template of the whole text (completion framings).")
    messages: list[MessageTemplate] | None = Field(None, description="Message templates (chat framings).")

    @model_validator(mode="after")
    def _body_matches_kind(self) -> FramingBody:
        _check_body(self.kind, self.text, self.messages)
        return self


class Framing(FramingBody):
    """A way to present the same question: a raw document, a forum post, an interview, a chat."""

    description: str = ""
    multiple_choice: FramingBody | None = Field(
        None, description="The same framing for multiple-choice items (prompts with options): it shows "
        "{{ question }} and the {{ choices }} block, and the answer is an option's label such as (A).")

    def body_for(self, multiple_choice: bool) -> FramingBody:
        """The body a prompt is rendered in: the multiple-choice variant for items with options."""
        if multiple_choice:
            if self.multiple_choice is None:
                raise WorkbenchError("this framing has no multiple_choice variant for items with options; add one")
            return self.multiple_choice
        return self


class PromptSpec(_Strict):
    """One probe."""

    id: str = Field(pattern=ID_PATTERN, description="Unique in its collection; lower case, digits, . _ -")
    kind: Literal["completion", "chat"]
    description: str = ""
    text: str | None = Field(None, description="Template of the raw text (completion prompts).")
    messages: list[MessageTemplate] | None = Field(
        None, description="Message templates (chat prompts); a last assistant message is a prefill."
    )
    variables: dict[str, Any] = Field(default_factory=dict, description="Fixed template values.")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="Values to expand into variants (every combination)."
    )
    answer_space: AnswerSpace | None = None
    perturbations: dict[str, str] = Field(
        default_factory=dict, description="Named segue texts for the prompt's {{ segue }} slot."
    )
    labels: dict[str, LabelSet] = Field(default_factory=dict, description="Categories for classifying continuations.")
    home_label: str | None = Field(
        None, description="Segue probes: the label of the world the prompt sets up; recovery means returning to it."
    )
    framings: list[str] = Field(default_factory=list, description="Names of the collection's framings that apply.")
    sampling: dict[str, Any] = Field(
        default_factory=dict, description="Suggested sampling fields (e.g. max_tokens); explicit settings win."
    )
    trait: str | None = Field(None, description="Persona statements: the trait the statement probes.")
    matching_answer: str | None = Field(
        None, description="Persona items: the answer that matches the behaviour (e.g. Yes, No, or (A) for an item "
        "with options).")
    options: list[str] = Field(
        default_factory=list, description="Multiple-choice items: the 2-4 option texts, labelled (A), (B), ... in "
        "this order; templates see {{ options }} and the {{ choices }} block, and the answer space is the labels.")
    source: dict[str, Any] = Field(
        default_factory=dict, description="Where an imported item came from: file, line, label_confidence, ...")
    tags: list[str] = Field(default_factory=list)
    notes: str = ""

    @model_validator(mode="before")
    @classmethod
    def _options_make_the_answer_space(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("options") and data.get("answer_space") is None:
            labels = [choice_label(i) for i in range(len(data["options"]))]
            data = {**data, "answer_space": {"candidates": labels, "normaliser": "choice-letter",
                                             "terminators": CHOICE_TERMINATORS}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PromptSpec:
        _check_body(self.kind, self.text, self.messages)
        if self.options:
            if not 2 <= len(self.options) <= MAX_OPTIONS:
                raise ValueError(f"options: give 2 to {MAX_OPTIONS} options, got {len(self.options)}")
            if any(not isinstance(o, str) or not o.strip() for o in self.options):
                raise ValueError("options: an option is empty")
            labels = [choice_label(i) for i in range(len(self.options))]
            if self.answer_space is None or self.answer_space.values() != labels:
                raise ValueError(f"answer_space: an item with {len(self.options)} options answers with "
                                 f"{', '.join(labels)}; remove answer_space to get it")
            if OPTIONS_SLOT in self.variables or CHOICES_SLOT in self.variables:
                raise ValueError("variables: 'options' and 'choices' are filled from the options field")
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{name}: must be a non-empty list of values")
            if name in self.variables:
                raise ValueError(f"grid.{name}: {name!r} is both in variables and grid; keep it in one")
        if self.variant_count() > MAX_VARIANTS:
            sizes = " x ".join(str(len(values)) for values in self.grid.values())
            raise ValueError(f"grid: {self.variant_count():,} variants ({sizes} values) are more than the "
                             f"{MAX_VARIANTS:,} a prompt may have; use fewer values, or split it into prompts")
        if SEGUE_SLOT in self.variables or SEGUE_SLOT in self.grid:
            raise ValueError("variables: 'segue' is filled by perturbations; do not set it in variables or grid")
        for name, segue in self.perturbations.items():
            if not re.match(ID_PATTERN, name):
                raise ValueError(f"perturbations.{name}: the name must be lower case letters, digits, . _ -")
            if not segue.strip():
                raise ValueError(f"perturbations.{name}: the segue text is empty")
        if self.perturbations and SEGUE_SLOT not in self.template_slots():
            raise ValueError(
                "perturbations: the prompt has perturbations but its text has no {{ segue }} slot; add {{ segue }} "
                "where the segue belongs, or remove perturbations"
            )
        if self.home_label is not None and self.home_label not in self.labels:
            raise ValueError(
                f"home_label: {self.home_label!r} is not one of this prompt's labels "
                f"({', '.join(self.labels) or 'none'})"
            )
        if self.matching_answer is not None:
            if self.answer_space is None:
                raise ValueError("matching_answer: needs an answer_space that contains it")
            if self.answer_space.normalise(self.matching_answer) == OTHER_ANSWER:
                raise ValueError(
                    f"matching_answer: {self.matching_answer!r} is not one of the answer_space candidates"
                )
        try:
            SamplingConfig(**self.sampling)
        except ValidationError as exc:
            raise ValueError(f"sampling.{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
        return self

    def templates(self) -> list[tuple[str, str]]:
        """(field, template source) for the prompt's own body."""
        if self.text is not None:
            return [("text", self.text)]
        return [(f"messages.{i}.content", m.content) for i, m in enumerate(self.messages or [])]

    def template_slots(self) -> set[str]:
        """Names the prompt's own templates use."""
        slots: set[str] = set()
        for _, source in self.templates():
            slots |= slots_of(source)
        return slots

    @property
    def multiple_choice(self) -> bool:
        """Whether the item offers options (answered with a label such as (A))."""
        return bool(self.options)

    def variant_count(self) -> int:
        """How many variants the grid makes (its value counts multiplied; nothing is built)."""
        return math.prod(len(values) for values in self.grid.values())

    def variants(self) -> list[dict[str, Any]]:
        """Every combination of the grid (one empty dict when there is no grid); at most MAX_VARIANTS."""
        if not self.grid:
            return [{}]
        if self.variant_count() > MAX_VARIANTS:
            raise WorkbenchError(f"prompt {self.id!r}: {self.variant_count():,} grid variants are more than "
                                 f"{MAX_VARIANTS:,}; use fewer grid values")
        names = list(self.grid)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(self.grid[n] for n in names))]


class Collection(_Strict):
    """A YAML file of prompts."""

    name: str = Field(pattern=ID_PATTERN)
    description: str
    version: str | int
    tags: list[str] = Field(default_factory=list)
    extends: str | None = Field(
        None, description="Another collection whose framings and defaults this one uses by reference (its own win).")
    source: dict[str, Any] = Field(
        default_factory=dict, description="Where an imported collection came from: file, format, sha256, ...")
    framings: dict[str, Framing] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Fields every prompt starts from (a prompt's own fields win)."
    )
    prompts: list[PromptSpec]


def _check_body(kind: str, text: str | None, messages: list[MessageTemplate] | None) -> None:
    if kind == "completion":
        if text is None or messages is not None:
            raise ValueError("text: a completion needs 'text' (and no 'messages')")
        if not text.strip():
            raise ValueError("text: the text is empty")
    else:
        if messages is None or text is not None:
            raise ValueError("messages: a chat needs 'messages' (and no 'text')")
        if not messages or all(m.role == "system" for m in messages):
            raise ValueError("messages: need at least one user or assistant message")
        if any(m.role == "system" for m in messages[1:]):
            raise ValueError("messages: a system message may only come first")


@dataclass(frozen=True)
class LibraryPrompt:
    """A prompt with the collection it came from."""

    collection: Collection
    spec: PromptSpec
    path: Path

    @property
    def ref(self) -> str:
        """Its library address, collection/prompt-id."""
        return f"{self.collection.name}/{self.spec.id}"

    def framing(self, name: str) -> Framing:
        """A framing this prompt may be rendered in."""
        if name not in self.spec.framings:
            offered = ", ".join(self.spec.framings) or "none"
            raise WorkbenchError(f"{self.ref}: no framing {name!r} (this prompt offers: {offered})")
        return self.collection.framings[name]
