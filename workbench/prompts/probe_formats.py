"""The probe-set formats `workbench prompts import` reads, each turned into collection items.

- `mwe`: Anthropic's model-written-evals JSONL (or one JSON array). Persona statements carry
  `statement` and `answer_matching_behavior` " Yes"/" No"; multiple-choice questions carry a
  `question` with a "Choices:" block and answers written "(A)" (leading space optional).
- `ab`: CAA-style A/B JSON (an array, or JSON lines) of multiple-choice questions.
- `csv`: one row per item, with a column mapping (`--columns statement=text,matching=label`).

Reading gives `Record`s (an item's fields and the line it starts on); `record_to_item` turns one
into a collection item, or raises ValueError naming the field that is wrong. Everything read
becomes a *value* (a template variable or an option text), never template source.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.prompts.answers import choice_label
from workbench.prompts.schema import MAX_OPTIONS

FORMATS = ("mwe", "ab", "csv")
YES, NO = "Yes", "No"
# CSV `matching` values for statements: what a holder of the trait answers.
_YES_WORDS = {"yes", "y", "agree", "true", "1"}
_NO_WORDS = {"no", "n", "disagree", "false", "0"}
# `--columns` fields: what each names in a CSV row.
CSV_FIELDS = {
    "statement": "a first-person statement answered Yes/No",
    "question": "a multiple-choice question (with its Choices: block, or see options)",
    "options": "option columns joined by '+', e.g. options=a+b+c (the question column then holds no Choices: block)",
    "matching": "the answer that matches the behaviour: Yes/No/agree/disagree/true/false/1/0, or (A)/A",
    "not_matching": "optional: the other answer, checked against matching",
    "trait": "optional: the trait each row probes (default --trait or the collection name)",
    "confidence": "optional: a label confidence (a number)",
    "id": "optional: the row's own id, kept in the item's source",
}
# Without --columns, a CSV header that names these is read as them.
_CSV_DEFAULT_COLUMNS = {
    "statement": ("statement",), "question": ("question",),
    "matching": ("matching", "answer_matching_behavior"),
    "not_matching": ("not_matching", "answer_not_matching_behavior"),
    "trait": ("trait",), "confidence": ("confidence", "label_confidence"), "id": ("id",),
}

_CHOICES_HEADER = re.compile(r"(?:^|\n)[ \t]*(?:answer[ \t]+)?choices:[ \t]*(?:\n|$)", re.IGNORECASE)
_OPTION_LINE = re.compile(r"^[ \t]*\(([A-Za-z])\)[ \t]?(.*)$")
_TRAILING_ANSWER = re.compile(r"\n[ \t]*answer:[ \t]*$", re.IGNORECASE)
_LEADING_QUESTION = re.compile(r"^\s*question:[ \t]*", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"^\s*\(?\s*([A-Za-z])\s*\)?\s*$")


@dataclass(frozen=True)
class Record:
    """One item of the input file: its fields, the line it starts on and its position (1-based)."""

    data: dict[str, Any]
    line: int
    index: int


# -- reading ----------------------------------------------------------------------------------


def read_records(path: Path, fmt: str) -> list[Record]:
    """The items of a JSONL file, or of a file holding one JSON array (mwe, ab)."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        return _json_array_records(path, text)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkbenchError(
                f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}); the {fmt} format is one JSON "
                "object per line, or one JSON array") from None
        if not isinstance(data, dict):
            raise WorkbenchError(f"{path}:{number}: expected a JSON object per line, got {type(data).__name__}")
        records.append(Record(data, number, len(records) + 1))
    return records


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise WorkbenchError(f"{path}: no such file; give the path of the probe set to import")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"{path}: cannot read it as UTF-8 text ({exc})") from None


def _json_array_records(path: Path, text: str) -> list[Record]:
    """Objects of one JSON array, each with the line it starts on (json.loads alone would lose them)."""
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"\s*")
    pos = whitespace.match(text, 0).end() + 1  # past "["
    records: list[Record] = []

    def line_at(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def fail(offset: int, what: str) -> WorkbenchError:
        return WorkbenchError(f"{path}:{line_at(offset)}: not valid JSON ({what}); fix the file (a JSON array of "
                              "objects, or one object per line)")

    pos = whitespace.match(text, pos).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                data, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise fail(exc.pos, exc.msg) from None
            if not isinstance(data, dict):
                raise WorkbenchError(f"{path}:{line_at(pos)}: item {len(records) + 1} is a "
                                     f"{type(data).__name__}, not a JSON object")
            records.append(Record(data, line_at(pos), len(records) + 1))
            pos = whitespace.match(text, end).end()
            if text.startswith(",", pos):
                pos = whitespace.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise fail(pos, "expected ',' or ']' after an item")
    if text[pos:].strip():
        raise fail(pos + len(text[pos:]) - len(text[pos:].lstrip()), "text after the closing ']'")
    return records


def parse_columns(spec: str | None) -> dict[str, str]:
    """`statement=text,matching=label` -> {field: column}; fields are those of CSV_FIELDS."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        name, sep, column = part.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise WorkbenchError(f"--columns: {part.strip()!r} is not FIELD=COLUMN; e.g. "
                                 "--columns statement=text,matching=label")
        if name not in CSV_FIELDS:
            raise WorkbenchError(f"--columns: unknown field {name!r}; fields: {', '.join(CSV_FIELDS)}")
        if name in mapping:
            raise WorkbenchError(f"--columns: {name} is given twice")
        mapping[name] = column
    return mapping


def read_csv_records(path: Path, columns: dict[str, str]) -> tuple[list[Record], dict[str, str]]:
    """Rows of a CSV file renamed to the importer's fields, and the mapping used."""
    text = _read_text(path)
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [h for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise WorkbenchError(f"{path}: empty CSV; the first row must name the columns")
    mapping = dict(columns)
    if not columns:  # a header that already uses the importer's names
        for name, candidates in _CSV_DEFAULT_COLUMNS.items():
            found = next((c for c in candidates if c in header), None)
            if found:
                mapping[name] = found
    for name, column in mapping.items():
        wanted = column.split("+") if name == "options" else [column]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise WorkbenchError(f"{path}: --columns {name}={column}: no column {missing[0]!r} in the header "
                                 f"({', '.join(header)})")
    if "matching" not in mapping or not ({"statement", "question"} & set(mapping)):
        raise WorkbenchError(f"{path}: say which columns hold the items, e.g. --columns statement=COLUMN,"
                             f"matching=COLUMN (or question=COLUMN for multiple choice); the header has: "
                             f"{', '.join(header)}")
    if {"statement", "question"} <= set(mapping):
        raise WorkbenchError("--columns: map statement or question, not both")
    records = []
    line = 2  # the header is line 1 (a quoted field may span lines: csv's line_num tracks that)
    for row in reader:
        if None in row:
            raise WorkbenchError(f"{path}:{line}: the row has more fields than the header; quote fields that "
                                 "contain commas")
        data: dict[str, Any] = {}
        for name, column in mapping.items():
            if name == "options":
                data["options"] = [row[c] for c in column.split("+") if (row[c] or "").strip()]
            elif name in ("statement", "question") or row.get(column) not in (None, ""):
                data[name] = row[column]  # the item's text is always there, so an empty cell is named
        if any((v or "").strip() for v in row.values()):
            records.append(Record(data, line, len(records) + 1))
        line = reader.line_num + 1
    return records, mapping


# -- items ------------------------------------------------------------------------------------


def parse_choices(question: str) -> tuple[str, list[str]]:
    """(question without its Choices: block, a leading 'Question:' and a trailing 'Answer:'; the option texts).

    ValueError names what is wrong when there is no block or it does not hold 2-4 options (A), (B), ...
    """
    headers = list(_CHOICES_HEADER.finditer(question))
    if not headers:
        raise ValueError("no 'Choices:' block in the question")
    header = headers[-1]
    stem = _LEADING_QUESTION.sub("", question[: header.start()]).strip()
    block = _TRAILING_ANSWER.sub("", question[header.end():].rstrip())
    options: list[list[str]] = []
    after_blank = False
    for line in block.split("\n"):
        match = _OPTION_LINE.match(line)
        if match:
            label = match.group(1).upper()
            expected = chr(ord("A") + len(options))
            if label != expected:
                raise ValueError(f"option ({label}) where ({expected}) was expected")
            options.append([match.group(2).strip()])
            after_blank = False
        elif not line.strip():
            after_blank = bool(options)
        elif not options:
            raise ValueError(f"text before the first option: {line.strip()[:40]!r}")
        elif after_blank:
            raise ValueError(f"text after the options: {line.strip()[:40]!r}")
        else:  # an option that runs over several lines
            options[-1].append(line.strip())
    texts = ["\n".join(lines).strip() for lines in options]
    if not 2 <= len(texts) <= MAX_OPTIONS:
        raise ValueError(f"the Choices block has {len(texts)} option(s); 2 to {MAX_OPTIONS} are supported")
    if any(not t for t in texts):
        raise ValueError(f"option {choice_label(next(i for i, t in enumerate(texts) if not t))} is empty")
    if not stem:
        raise ValueError("the question before the Choices block is empty")
    return stem, texts


def answer_label(value: Any, n_options: int) -> str:
    """"(A)", " (A)", "A", "(a)" -> "(A)"; ValueError when it is no option's label."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an answer like (A)")
    match = _ANSWER_LABEL.match(value)
    if not match:
        raise ValueError(f"{value.strip()!r} is not an answer like (A)")
    label = f"({match.group(1).upper()})"
    if label not in [choice_label(i) for i in range(n_options)]:
        raise ValueError(f"answer {label} is not one of the {n_options} options")
    return label


def yes_no(value: Any, words: bool) -> str:
    """" Yes" -> "Yes"; with `words` also agree/disagree/true/false/1/0 (CSV)."""
    text = str(value).strip().lower() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text in ("yes", "no"):
        return YES if text == "yes" else NO
    if words and text in _YES_WORDS:
        return YES
    if words and text in _NO_WORDS:
        return NO
    allowed = "Yes/No/agree/disagree/true/false/1/0" if words else "Yes or No"
    raise ValueError(f"{value!r} is not {allowed}")


def slug(text: str) -> str:
    """A name that fits ID_PATTERN: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")


def record_to_item(record: Record, fmt: str, file_name: str, trait: str, width: int) -> dict[str, Any]:
    """One collection item (a prompt entry) from a record; ItemProblem names the field that is wrong."""
    data = record.data

    def field_of(name: str) -> Any:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"field {name!r} is missing or empty")
        return value

    if fmt == "csv":
        matching_key, confidence_key = "matching", "confidence"
        item_trait = str(data.get("trait") or trait).strip()
    else:
        matching_key, confidence_key = "answer_matching_behavior", "label_confidence"
        item_trait = trait
    not_matching_key = "not_matching" if fmt == "csv" else "answer_not_matching_behavior"
    source: dict[str, Any] = {"file": file_name, "line": record.line}
    if record.index != record.line:
        source["index"] = record.index
    if data.get("id") not in (None, ""):
        source["id"] = data["id"] if isinstance(data["id"], int | str) and not isinstance(data["id"], bool) \
            else str(data["id"])
    if data.get(confidence_key) not in (None, ""):
        raw = data[confidence_key]
        try:
            if isinstance(raw, bool):
                raise ValueError
            source["label_confidence"] = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"field {confidence_key!r}: {raw!r} is not a number") from None
    trait_slug = slug(item_trait) or "item"
    item: dict[str, Any] = {"id": f"{trait_slug}-{record.index:0{width}d}", "trait": item_trait}

    if fmt != "ab" and "statement" not in data and "question" not in data:
        raise ValueError("needs a 'statement' (a persona statement) or a 'question' with a Choices: block")
    if fmt != "ab" and "statement" in data:
        statement = field_of("statement")
        if not isinstance(statement, str):
            raise ValueError("field 'statement' is not text")
        raw_matching = field_of(matching_key)
        try:
            matching = yes_no(raw_matching, words=fmt == "csv")
        except ValueError as exc:
            raise ValueError(f"field {matching_key!r}: {exc}") from None
        _check_not_matching(data.get(not_matching_key), not_matching_key, matching,
                            lambda value: yes_no(value, words=fmt == "csv"))
        keyed = "agree-keyed" if matching == YES else "disagree-keyed"
        item.update(matching_answer=matching, tags=[trait_slug, keyed], variables={"statement": statement.strip()})
    else:
        question = field_of("question")
        if not isinstance(question, str):
            raise ValueError("field 'question' is not text")
        if data.get("options"):
            stem = _TRAILING_ANSWER.sub("", _LEADING_QUESTION.sub("", question).rstrip()).strip()
            options = [str(o).strip() for o in data["options"]]
            if not 2 <= len(options) <= MAX_OPTIONS:
                raise ValueError(f"{len(options)} option(s); 2 to {MAX_OPTIONS} are supported")
        else:
            try:
                stem, options = parse_choices(question)
            except ValueError as exc:
                raise ValueError(f"field 'question': {exc}") from None
        raw_matching = field_of(matching_key)
        try:
            matching = answer_label(raw_matching, len(options))
        except ValueError as exc:
            raise ValueError(f"field {matching_key!r}: {exc}") from None
        _check_not_matching(data.get(not_matching_key), not_matching_key, matching,
                            lambda value: answer_label(value, len(options)))
        item.update(matching_answer=matching,
                    tags=[trait_slug, "multiple-choice", f"matching-{matching[1].lower()}"],
                    options=options, variables={"question": stem})
    item["source"] = source
    return item


def _check_not_matching(other: Any, key: str, matching: str, read: Callable[[Any], str]) -> None:
    """The not-matching answer(s), when given, must be valid answers other than the matching one."""
    if other in (None, ""):
        return
    for value in other if isinstance(other, list) else [other]:
        try:
            if read(value) == matching:
                raise ValueError(f"{value!r} is the matching answer too")
        except ValueError as exc:
            raise ValueError(f"field {key!r}: {exc}") from None
