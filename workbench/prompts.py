"""The prompt library: shared YAML collections of probes, validated and rendered per model.

A collection is one YAML file (see prompts/README.md for the field-by-field reference).
Templates are Jinja2 in an immutable sandbox with StrictUndefined: a file can fill slots, never
run code. Every problem found while loading names the file, the line (where YAML gives one),
the prompt id and the field, and says what to change.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.analysis import ANSWER_EXTRACTORS, NO_ANSWER
from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.registry import ModelSpec, Registry
from workbench.rendering import RenderedInput
from workbench.rendering import render as render_for_model

PROMPTS_ENV = "WORKBENCH_PROMPTS"
SEGUE_SLOT = "segue"
OTHER_ANSWER = "(other)"
LEADING = "leading"  # normaliser: the candidate at the very start, then a terminator (what exact scoring computes)
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"

_SANDBOX = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class PromptLibraryError(WorkbenchError):
    """One or more problems in prompt collections; `problems` lists each on its own line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n" + "\n".join(problems))


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntegerRange(_Strict):
    """Whole numbers from start to stop, both included."""

    start: int
    stop: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _not_empty(self) -> "IntegerRange":
        if self.stop < self.start:
            raise ValueError(f"integers: stop ({self.stop}) is below start ({self.start}); the range is empty")
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
        description="Maps a free continuation to an answer: one of the extractors in workbench.analysis "
        "(first-line, first-word, first-number, ...), 'leading' (the candidate at the very start followed by a "
        "terminator: the reading exact scoring computes), or 'regex:<pattern>' (first group, else whole match).",
    )
    case_sensitive: bool = Field(False, description="Whether 'Red' and 'red' are different answers.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "AnswerSpace":
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
            return _render_template(self.scored_as, {"answer": answer}, "answer_space.scored_as")
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
    def _not_empty(self) -> "LabelSet":
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


class Framing(_Strict):
    """A way to present the same question: a raw document, a forum post, an interview, a chat."""

    description: str = ""
    kind: Literal["completion", "chat"]
    text: str | None = Field(None, description="Template of the whole text (completion framings).")
    messages: list[MessageTemplate] | None = Field(None, description="Message templates (chat framings).")

    @model_validator(mode="after")
    def _body_matches_kind(self) -> "Framing":
        _check_body(self.kind, self.text, self.messages)
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
    matching_answer: str | None = Field(None, description="Persona statements: the answer that matches the trait.")
    tags: list[str] = Field(default_factory=list)
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "PromptSpec":
        _check_body(self.kind, self.text, self.messages)
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{name}: must be a non-empty list of values")
            if name in self.variables:
                raise ValueError(f"grid.{name}: {name!r} is both in variables and grid; keep it in one")
        if SEGUE_SLOT in self.variables or SEGUE_SLOT in self.grid:
            raise ValueError("variables: 'segue' is filled by perturbations; do not set it in variables or grid")
        for name, segue in self.perturbations.items():
            if not re.match(ID_PATTERN, name):
                raise ValueError(f"perturbations.{name}: the name must be lower case letters, digits, . _ -")
            if not segue.strip():
                raise ValueError(f"perturbations.{name}: the segue text is empty")
        if self.perturbations and SEGUE_SLOT not in self.template_slots():
            raise ValueError(
                "perturbations: the prompt has perturbations but its text has no {{ segue }} slot; add {{ segue }} where the "
                "segue belongs, or remove perturbations"
            )
        if self.home_label is not None and self.home_label not in self.labels:
            raise ValueError(
                f"home_label: {self.home_label!r} is not one of this prompt's labels ({', '.join(self.labels) or 'none'})"
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
            slots |= _slots(source)
        return slots

    def variants(self) -> list[dict[str, Any]]:
        """Every combination of the grid (one empty dict when there is no grid)."""
        if not self.grid:
            return [{}]
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.grid[n] for n in names))]


class Collection(_Strict):
    """A YAML file of prompts."""

    name: str = Field(pattern=ID_PATTERN)
    description: str
    version: str | int
    tags: list[str] = Field(default_factory=list)
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


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


def _slots(source: str) -> set[str]:
    try:
        return set(meta.find_undeclared_variables(_SANDBOX.parse(source)))
    except TemplateError as exc:
        raise ValueError(f"template does not parse: {exc}") from None


def _render_template(source: str, variables: dict[str, Any], where: str) -> str:
    try:
        return _SANDBOX.from_string(source).render(**variables)
    except SecurityError as exc:
        raise WorkbenchError(
            f"{where}: the template reaches for Python internals ({exc}); templates may only fill "
            "{{ variables }} and use plain filters"
        ) from None
    except UndefinedError as exc:
        raise WorkbenchError(f"{where}: template variable missing ({exc}); add it to variables or grid") from None
    except TemplateError as exc:
        raise WorkbenchError(f"{where}: template error ({exc})") from None


# --------------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------------


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


@dataclass
class Library:
    """Every loaded collection, addressable by collection/prompt-id."""

    collections: dict[str, tuple[Collection, Path]] = field(default_factory=dict)

    @cached_property
    def _index(self) -> dict[str, LibraryPrompt]:
        index = {}
        for collection, path in self.collections.values():
            for spec in collection.prompts:
                index[f"{collection.name}/{spec.id}"] = LibraryPrompt(collection, spec, path)
        return index

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[LibraryPrompt]:
        return iter(self._index.values())

    def __contains__(self, ref: str) -> bool:
        return ref in self._index

    def get(self, ref: str) -> LibraryPrompt:
        """A prompt by its address, collection/prompt-id."""
        if ref in self._index:
            return self._index[ref]
        import difflib

        close = difflib.get_close_matches(ref, list(self._index), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise WorkbenchError(f"no prompt {ref!r} in the library{hint} (see `workbench prompts list`)")

    def filter(self, tag: str | None = None, kind: str | None = None, text: str | None = None,
               collection: str | None = None) -> list[LibraryPrompt]:
        """Prompts with a tag (theirs or their collection's), of a kind, containing a text (case-insensitive)."""
        found = []
        for prompt in self:
            spec = prompt.spec
            if tag and tag not in spec.tags and tag not in prompt.collection.tags:
                continue
            if kind and spec.kind != kind:
                continue
            if collection and prompt.collection.name != collection:
                continue
            if text:
                haystack = " ".join([prompt.ref, spec.description, spec.text or "",
                                     *(m.content for m in spec.messages or []), *map(str, spec.variables.values())])
                if text.lower() not in haystack.lower():
                    continue
            found.append(prompt)
        return found

    def frame(self):  # -> pandas.DataFrame
        """One row per prompt: ref, kind, tags, variants, answer space size, perturbations, framings."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "ref": p.ref,
                    "kind": p.spec.kind,
                    "tags": ",".join(dict.fromkeys([*p.collection.tags, *p.spec.tags])),
                    "variants": len(p.spec.variants()),
                    "answers": len(p.spec.answer_space.values()) if p.spec.answer_space else 0,
                    "perturbations": ",".join(p.spec.perturbations),
                    "framings": ",".join(p.spec.framings),
                    "description": p.spec.description,
                }
                for p in self
            ]
        )


def default_library_dirs() -> list[Path]:
    """The checkout's prompts/ folder, then every folder in $WORKBENCH_PROMPTS (os.pathsep-separated)."""
    dirs = []
    shipped = Path(__file__).resolve().parent.parent / "prompts"
    if shipped.is_dir():
        dirs.append(shipped)
    for entry in os.environ.get(PROMPTS_ENV, "").split(os.pathsep):
        if entry.strip():
            dirs.append(Path(entry).expanduser())
    return dirs


def collection_files(paths: list[Path]) -> list[Path]:
    """YAML files under the given files or folders, in a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise PromptLibraryError([f"{path}: no such file or folder (from {PROMPTS_ENV} or the command line)"])
    return files


def load_library(paths: list[str | Path] | None = None) -> Library:
    """Read and validate every collection (default: prompts/ plus $WORKBENCH_PROMPTS); all problems at once."""
    dirs = [Path(p) for p in paths] if paths is not None else default_library_dirs()
    library = Library()
    problems: list[str] = []
    for path in collection_files(dirs):
        collection, file_problems = load_collection(path)
        problems += file_problems
        if collection is None:
            continue
        if collection.name in library.collections:
            other = library.collections[collection.name][1]
            problems.append(f"{path}: collection name {collection.name!r} is already used by {other}; rename one")
            continue
        library.collections[collection.name] = (collection, path)
    if problems:
        raise PromptLibraryError(problems)
    return library


def validate_paths(paths: list[str | Path] | None = None) -> tuple[int, list[str]]:
    """(number of prompts that loaded, every problem found) for files or folders."""
    dirs = [Path(p) for p in paths] if paths else default_library_dirs()
    problems: list[str] = []
    count = 0
    try:
        files = collection_files(dirs)
    except PromptLibraryError as exc:
        return 0, exc.problems
    for path in files:
        collection, file_problems = load_collection(path)
        problems += file_problems
        if collection is not None:
            count += len(collection.prompts)
    return count, problems


# --------------------------------------------------------------------------------------------
# Loading one file, with line numbers
# --------------------------------------------------------------------------------------------


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node along a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def _prompt_nodes(root: yaml.Node | None) -> list[yaml.Node]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "prompts" and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def load_collection(path: Path) -> tuple[Collection | None, list[str]]:
    """Parse and validate one collection file; returns it (or None) and every problem found."""
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read ({exc})"]
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        return None, [f"{where}: YAML syntax error: {getattr(exc, 'problem', None) or exc}; fix the file"]
    if not isinstance(data, dict):
        return None, [f"{path}: a collection is a mapping with name, description, version and prompts"]

    problems: list[str] = []
    prompt_nodes = _prompt_nodes(root)
    raw_prompts = data.get("prompts")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        return None, [f"{path}:{_line_of(root, ('defaults',))}: defaults must be a mapping of prompt fields"]
    if isinstance(raw_prompts, list):
        merged = []
        for raw in raw_prompts:
            merged.append({**defaults, **raw} if isinstance(raw, dict) else raw)
        data = {**data, "prompts": merged}

    # Validate prompt by prompt so one bad prompt does not hide the others.
    good_prompts: list[PromptSpec] = []
    seen_ids: dict[str, int | None] = {}
    node_by_id: dict[str, yaml.Node | None] = {}
    framings_data = data.get("framings") or {}
    for i, raw in enumerate(data.get("prompts") or [] if isinstance(data.get("prompts"), list) else []):
        node = prompt_nodes[i] if i < len(prompt_nodes) else None
        pid = raw.get("id", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        try:
            spec = PromptSpec.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                message = err["msg"].removeprefix("Value error, ")
                named = re.match(r"^([a-z_][\w.]*): (.*)$", message, re.S)
                if not loc and named:  # cross-field checks name their field first
                    loc = tuple(int(p) if p.isdigit() else p for p in named.group(1).split("."))
                    message = named.group(2)
                line = _line_of(node, loc)
                field_name = ".".join(str(p) for p in loc) or "(prompt)"
                if err["type"] == "extra_forbidden":
                    message = f"unknown field; remove it or check its spelling (fields: {', '.join(PromptSpec.model_fields)})"
                problems.append(f"{path}:{line}: prompt {pid!r}, field {field_name}: {message}")
            continue
        if spec.id in seen_ids:
            problems.append(
                f"{path}:{_line_of(node, ('id',))}: prompt {spec.id!r}, field id: duplicate id "
                f"(first at line {seen_ids[spec.id]}); give each prompt its own id"
            )
            continue
        seen_ids[spec.id] = _line_of(node, ("id",))
        node_by_id[spec.id] = node
        for framing_name in spec.framings:
            if framing_name not in framings_data:
                problems.append(
                    f"{path}:{_line_of(node, ('framings',))}: prompt {spec.id!r}, field framings: unknown framing "
                    f"{framing_name!r}; define it under the collection's framings: (known: "
                    f"{', '.join(framings_data) or 'none'})"
                )
        good_prompts.append(spec)

    try:
        collection = Collection.model_validate({**data, "prompts": []})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field_name = ".".join(str(p) for p in loc)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field; a collection has name, description, version, tags, framings, defaults, prompts"
            problems.append(f"{path}:{_line_of(root, loc)}: collection field {field_name}: {message}")
        return None, problems
    if not isinstance(data.get("prompts"), list) or not data.get("prompts"):
        problems.append(f"{path}: collection {collection.name!r} has no prompts; add a prompts: list")
    collection = collection.model_copy(update={"prompts": good_prompts})

    # Render every variant, perturbation and framing once: missing variables and unsafe
    # templates surface here, not in the middle of a run.
    for spec in good_prompts:
        node = node_by_id.get(spec.id)
        prompt = LibraryPrompt(collection, spec, path)
        for variant in spec.variants():
            for perturbation in [None, *spec.perturbations]:
                for framing in [None, *[f for f in spec.framings if f in collection.framings]]:
                    try:
                        fill(prompt, variant, perturbation, framing)
                    except WorkbenchError as exc:
                        field_name = f"framings ({framing})" if framing else ("text" if spec.kind == "completion" else "messages")
                        problem = f"{path}:{_line_of(node, ('id',))}: prompt {spec.id!r}, field {field_name}: {exc}"
                        if problem not in problems:
                            problems.append(problem)
        if spec.answer_space is not None:
            try:
                for value in spec.answer_space.values()[:3]:
                    spec.answer_space.scored_text(value)
            except WorkbenchError as exc:
                problems.append(f"{path}:{_line_of(node, ('answer_space',))}: prompt {spec.id!r}, field "
                                f"answer_space.scored_as: {exc}")
    return (collection if not problems else None), problems


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilledPrompt:
    """A library prompt with its templates filled: raw text or messages, before any model template."""

    kind: Literal["completion", "chat"]
    text: str | None
    messages: tuple[dict[str, str], ...] | None
    ref: str  # collection/prompt-id with the choices made, e.g. personas/x?framing=chat


def fill(
    prompt: LibraryPrompt,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
) -> FilledPrompt:
    """Fill a prompt's templates (or a framing's) with its variables, a grid choice and a segue."""
    spec = prompt.spec
    values: dict[str, Any] = {**spec.variables}
    chosen = dict(variables or {})
    for name, value in chosen.items():
        if name in spec.grid and value not in spec.grid[name]:
            raise WorkbenchError(f"{prompt.ref}: {name}={value!r} is not one of its grid values {spec.grid[name]}")
    if spec.grid:
        missing = [n for n in spec.grid if n not in chosen]
        if missing:
            first = spec.variants()[0]
            chosen = {**{n: first[n] for n in missing}, **chosen}
    values.update(chosen)
    if perturbation is not None and perturbation not in spec.perturbations:
        offered = ", ".join(spec.perturbations) or "none"
        raise WorkbenchError(f"{prompt.ref}: no perturbation {perturbation!r} (this prompt offers: {offered})")
    values[SEGUE_SLOT] = spec.perturbations[perturbation] if perturbation else ""

    qualifiers = [f"{k}={v}" for k, v in sorted(chosen.items())]
    if perturbation:
        qualifiers.append(f"perturbation={perturbation}")
    if framing:
        qualifiers.append(f"framing={framing}")
    ref = prompt.ref + ("?" + "&".join(qualifiers) if qualifiers else "")

    if framing:
        body = prompt.framing(framing)
        kind, text_source, message_sources = body.kind, body.text, body.messages
        # A framing sees the prompt's own filled text as {{ prompt }} too.
        if spec.text is not None:
            values.setdefault("prompt", _render_template(spec.text, values, f"{prompt.ref}: text").strip())
        where = f"{prompt.ref}: framing {framing}"
    else:
        kind, text_source, message_sources = spec.kind, spec.text, spec.messages
        where = prompt.ref
    if kind == "completion":
        return FilledPrompt("completion", _render_template(text_source or "", values, where), None, ref)
    messages = tuple(
        {"role": m.role, "content": _render_template(m.content, values, f"{where}: messages.{i}")}
        for i, m in enumerate(message_sources or [])
    )
    return FilledPrompt("chat", None, messages, ref)


def render(
    prompt: LibraryPrompt,
    model: ModelSpec,
    registry: Registry,
    variables: dict[str, Any] | None = None,
    perturbation: str | None = None,
    framing: str | None = None,
) -> RenderedInput:
    """Exactly what `model` receives: a framing decides the text when chosen; otherwise a completion goes raw
    and a chat uses the model's chat template, or its transcript template when it has none."""
    filled = fill(prompt, variables, perturbation, framing)
    if filled.kind == "completion":
        return render_for_model(filled.text or "", model, registry)
    return render_for_model(list(filled.messages or ()), model, registry)


def suggested_config(prompt: LibraryPrompt, **explicit: Any) -> dict[str, Any]:
    """The prompt's suggested sampling fields under the explicitly given ones (None means not given)."""
    return {**prompt.spec.sampling, **{k: v for k, v in explicit.items() if v is not None}}
