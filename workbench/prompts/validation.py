"""Read and validate one collection file; every problem names the file, the line, the prompt and the field.

Problems are collected, not raised one at a time, so `workbench prompts validate` reports all of
them in one run. The templates are rendered once here (within the render limits, and within a
time budget for the whole file) so that missing variables and unsafe templates surface when the
collection loads, not in the middle of a run.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workbench.errors import ConfigError, WorkbenchError
from workbench.prompts.files import (
    CollectionFileError,
    CollectionText,
    parse_collection_yaml,
    read_collection_text,
    shown,
)
from workbench.prompts.fill import fill
from workbench.prompts.schema import Collection, LibraryPrompt, PromptSpec

CHECK_SECONDS_ENV = "WORKBENCH_PROMPT_CHECK_SECONDS"
DEFAULT_CHECK_SECONDS = 30.0  # rendering one file's templates to check them; each render has its own limit too
COLLECTION_FIELDS = "name, description, version, tags, extends, source, framings, defaults, prompts"
PROMPT_FIELDS = ", ".join(PromptSpec.model_fields)

# A collection `extends` names another: this finds it (the collection, or why there is none).
ParentFinder = Callable[[str], "Collection | str"]


def check_seconds() -> float:
    """How long checking one collection's templates may take: $WORKBENCH_PROMPT_CHECK_SECONDS or 30 s."""
    raw = os.environ.get(CHECK_SECONDS_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_CHECK_SECONDS
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{CHECK_SECONDS_ENV}={raw!r}: give a number of seconds above 0, or unset it for the "
                          f"default {DEFAULT_CHECK_SECONDS:g}")
    return value


def load_collection(path: Path, parent: Collection | None = None, *, find_parent: ParentFinder | None = None,
                    every_variant: bool = True, source: CollectionText | None = None
                    ) -> tuple[Collection | None, list[str]]:
    """Parse and validate one collection file; returns it (or None) and every problem found.

    `parent` is the collection it `extends` (or `find_parent` finds it by name): its framings and
    defaults apply here, by reference (this file's own win). Templates are rendered for each
    perturbation and framing with the first grid variant, or with every variant when `every_variant`.
    `source` is the file's text when it has been read already.
    """
    try:
        source = source or read_collection_text(path)
        root, data = parse_collection_yaml(source)
    except CollectionFileError as exc:
        return None, [str(exc)]
    if not isinstance(data, dict):
        return None, [f"{path}: a collection is a mapping with name, description, version and prompts"]
    extends = data.get("extends")
    if parent is None and isinstance(extends, str):
        found = find_parent(extends) if find_parent else f"no collection {extends!r} loaded"
        if not isinstance(found, Collection):
            return None, [f"{path}:{_line_of(root, ('extends',))}: collection field extends: {found}"]
        parent = found

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        return None, [f"{path}:{_line_of(root, ('defaults',))}: defaults must be a mapping of prompt fields"]
    data = _with_parent(data, defaults, parent)
    good_prompts, node_by_id, problems = _validate_prompts(path, root, data)

    try:
        collection = Collection.model_validate({**data, "prompts": []})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field_name = ".".join(shown(p) for p in loc)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown field; a collection has {COLLECTION_FIELDS}"
            problems.append(f"{path}:{_line_of(root, loc)}: collection field {field_name}: {message}")
        return None, [_one_line(p) for p in problems]
    if not isinstance(data.get("prompts"), list) or not data.get("prompts"):
        problems.append(f"{path}: collection {collection.name!r} has no prompts; add a prompts: list")
    collection = collection.model_copy(update={"prompts": good_prompts})
    problems += _check_templates(path, collection, node_by_id, every_variant)
    problems = [_one_line(p) for p in problems]
    return (collection if not problems else None), problems


def _with_parent(data: dict[str, Any], defaults: dict[str, Any], parent: Collection | None) -> dict[str, Any]:
    """The file's data with its (and its parent's) defaults merged into each prompt."""
    if parent is not None:
        defaults = {**parent.defaults, **defaults}
        framings = data.get("framings") or {}
        data = {**data, "defaults": defaults, "framings": {
            **{name: framing.model_dump(exclude_none=True) for name, framing in parent.framings.items()},
            **(framings if isinstance(framings, dict) else {})}}
    raw_prompts = data.get("prompts")
    if isinstance(raw_prompts, list):
        merged = []
        for raw in raw_prompts:
            item = {**defaults, **raw} if isinstance(raw, dict) else raw
            if isinstance(raw, dict) and raw.get("options") and "answer_space" not in raw:
                item.pop("answer_space", None)  # an item with options answers with their labels
            merged.append(item)
        data = {**data, "prompts": merged}
    return data


def _validate_prompts(path: Path, root: yaml.Node | None, data: dict[str, Any]
                      ) -> tuple[list[PromptSpec], dict[str, yaml.Node | None], list[str]]:
    """Validate prompt by prompt, so one bad prompt does not hide the others."""
    prompt_nodes = _prompt_nodes(root)
    good_prompts: list[PromptSpec] = []
    problems: list[str] = []
    seen_ids: dict[str, int | None] = {}
    node_by_id: dict[str, yaml.Node | None] = {}
    framings_data = data.get("framings") or {}
    raw_prompts = data.get("prompts") if isinstance(data.get("prompts"), list) else []
    for i, raw in enumerate(raw_prompts):
        node = prompt_nodes[i] if i < len(prompt_nodes) else None
        pid = shown(raw.get("id", f"#{i + 1}")) if isinstance(raw, dict) else f"#{i + 1}"
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
                field_name = ".".join(shown(p) for p in loc) or "(prompt)"
                if err["type"] == "extra_forbidden":
                    message = f"unknown field; remove it or check its spelling (fields: {PROMPT_FIELDS})"
                problems.append(f"{path}:{line}: prompt {pid!r}, field {field_name}: {message}")
            continue
        if spec.id in seen_ids:
            problems.append(f"{path}:{_line_of(node, ('id',))}: prompt {spec.id!r}, field id: duplicate id "
                            f"(first at line {seen_ids[spec.id]}); give each prompt its own id")
            continue
        seen_ids[spec.id] = _line_of(node, ("id",))
        node_by_id[spec.id] = node
        for framing_name in spec.framings:
            if not isinstance(framings_data, dict) or framing_name not in framings_data:
                known = ", ".join(shown(f) for f in framings_data) if isinstance(framings_data, dict) else ""
                problems.append(
                    f"{path}:{_line_of(node, ('framings',))}: prompt {spec.id!r}, field framings: unknown framing "
                    f"{framing_name!r}; define it under the collection's framings: (known: {known or 'none'})")
        good_prompts.append(spec)
    return good_prompts, node_by_id, problems


def _check_templates(path: Path, collection: Collection, node_by_id: dict[str, yaml.Node | None],
                     every_variant: bool) -> list[str]:
    """Render every prompt once per perturbation and framing (and grid variant, if asked), within a deadline."""
    problems: list[str] = []
    deadline = time.monotonic() + (limit := check_seconds())
    for spec in collection.prompts:
        node = node_by_id.get(spec.id)
        prompt = LibraryPrompt(collection, spec, path)
        variants = spec.variants() if every_variant else [None]
        framings = [None, *[f for f in spec.framings if f in collection.framings]]
        for variant in variants:
            for perturbation in [None, *spec.perturbations]:
                for framing in framings:
                    if time.monotonic() > deadline:
                        return [*problems, f"{path}: checking its templates took over {limit:g} s (stopped at prompt "
                                f"{spec.id!r}); make them simpler or fewer, or raise the limit with "
                                f"{CHECK_SECONDS_ENV}=SECONDS"]
                    try:
                        fill(prompt, variant, perturbation, framing)
                    except WorkbenchError as exc:
                        body = "text" if spec.kind == "completion" else "messages"
                        field_name = f"framings ({framing})" if framing else body
                        message = str(exc).removeprefix(f"{path}: ")
                        problem = f"{path}:{_line_of(node, ('id',))}: prompt {spec.id!r}, field {field_name}: {message}"
                        if problem not in problems:
                            problems.append(problem)
        if spec.answer_space is not None:
            try:
                for value in spec.answer_space.values()[:3]:
                    spec.answer_space.scored_text(value)
            except WorkbenchError as exc:
                problems.append(f"{path}:{_line_of(node, ('answer_space',))}: prompt {spec.id!r}, field "
                                f"answer_space.scored_as: {exc}")
    return problems


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


def _one_line(problem: str, limit: int = 600) -> str:
    """A problem as one line of bounded length (values from files may hold newlines)."""
    text = problem.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
