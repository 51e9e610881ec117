"""Find, read and validate prompt collections; every problem names the file, the line, the prompt and the field.

Problems are collected, not raised one at a time, so `workbench prompts validate` reports all of
them in one run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workbench.errors import WorkbenchError
from workbench.prompts.fill import fill
from workbench.prompts.schema import Collection, LibraryPrompt, PromptLibraryError, PromptSpec

PROMPTS_ENV = "WORKBENCH_PROMPTS"


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
    shipped = Path(__file__).resolve().parents[2] / "prompts"
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
    for path, collection, file_problems in _load_in_order(collection_files(dirs), {}):
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
    """(number of prompts that loaded, every problem found) for files or folders.

    A collection that extends another may name one of the default library's (prompts/ and
    $WORKBENCH_PROMPTS) as well as one among the given paths.
    """
    dirs = [Path(p) for p in paths] if paths else default_library_dirs()
    problems: list[str] = []
    count = 0
    try:
        files = collection_files(dirs)
        known = {} if not paths else _loadable_parents(files)
    except PromptLibraryError as exc:
        return 0, exc.problems
    for _path, collection, file_problems in _load_in_order(files, known):
        problems += file_problems
        if collection is not None:
            count += len(collection.prompts)
    return count, problems


def _loadable_parents(excluded: list[Path]) -> dict[str, Collection]:
    """Collections of the default library (outside `excluded`) that loaded cleanly: what `extends` may name."""
    try:
        files = [f for f in collection_files(default_library_dirs()) if f not in set(excluded)]
    except PromptLibraryError:
        return {}
    return {c.name: c for _, c, _ in _load_in_order(files, {}) if c is not None}


def _extends_of(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("extends") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _load_in_order(files: list[Path], known: dict[str, Collection]
                   ) -> list[tuple[Path, Collection | None, list[str]]]:
    """Load collections so that one is loaded after the collection it extends; (path, collection, problems)."""
    parents = dict(known)
    pending = [(path, _extends_of(path)) for path in files]
    results: list[tuple[Path, Collection | None, list[str]]] = []
    while pending:
        ready = [(p, e) for p, e in pending if e is None or e in parents]
        if not ready:  # what is left extends something that never loaded
            ready = pending
        for path, extends in ready:
            collection, file_problems = load_collection(path, parents.get(extends) if extends else None)
            if extends and extends not in parents:
                known_names = ", ".join(sorted(parents)) or "none"
                file_problems = [f"{path}: collection field extends: no collection {extends!r} loaded (known: "
                                 f"{known_names}); name a collection of the library"]
                collection = None
            results.append((path, collection, file_problems))
            if collection is not None:
                parents.setdefault(collection.name, collection)
        pending = [item for item in pending if item not in ready]
    order = {path: i for i, path in enumerate(files)}
    return sorted(results, key=lambda r: order[r[0]])


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


def load_collection(path: Path, parent: Collection | None = None) -> tuple[Collection | None, list[str]]:
    """Parse and validate one collection file; returns it (or None) and every problem found.

    `parent` is the collection it `extends`: its framings and defaults apply here, by reference
    (this file's own win).
    """
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
    if parent is not None:
        defaults = {**parent.defaults, **defaults}
        data = {**data, "defaults": defaults, "framings": {**{name: framing.model_dump(exclude_none=True)
                                        for name, framing in parent.framings.items()},
                                     **(data.get("framings") or {})}}
    if isinstance(raw_prompts, list):
        merged = []
        for raw in raw_prompts:
            item = {**defaults, **raw} if isinstance(raw, dict) else raw
            if isinstance(raw, dict) and raw.get("options") and "answer_space" not in raw:
                item.pop("answer_space", None)  # an item with options answers with their labels
            merged.append(item)
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
                    fields = ", ".join(PromptSpec.model_fields)
                    message = f"unknown field; remove it or check its spelling (fields: {fields})"
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
                message = ("unknown field; a collection has name, description, version, tags, extends, source, "
                           "framings, defaults, prompts")
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
                        body = "text" if spec.kind == "completion" else "messages"
                        field_name = f"framings ({framing})" if framing else body
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
