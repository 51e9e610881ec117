"""Finding collection files in prompt folders and reading their YAML without trusting it.

Prompt folders are shared, so:
- a symlink (file or folder) whose target lies outside the folder is refused by its path alone,
  without opening the target; anything that is not a regular file (a pipe, a device) is refused;
- a file over WORKBENCH_PROMPT_FILE_MAX_BYTES (default 5 MB) is not parsed;
- YAML aliases may add at most MAX_ALIAS_EXPANSION values to what the file spells out (an alias
  bomb is refused before anything is built), and an alias may not contain itself;
- each file is read once, and its collection name is found by reading only as far as `name:`.

Every problem is one line that starts with the file (and line, where there is one).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError

PROMPT_FILE_MAX_BYTES_ENV = "WORKBENCH_PROMPT_FILE_MAX_BYTES"
DEFAULT_MAX_FILE_BYTES = 5_000_000
MAX_ALIAS_EXPANSION = 100_000  # values that aliases may add beyond those written out
YAML_SUFFIXES = (".yaml", ".yml")
SHOWN_CHARS = 40  # of a key or id from a file, in a problem line


class CollectionFileError(Exception):
    """A file that cannot be read as a collection; the message is the one-line problem."""


@dataclass
class CollectionText:
    """A collection file's text, read once, and its collection name (None when it cannot be found)."""

    path: Path
    text: str
    name: str | None


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A key or value from a file as it may appear in a problem: one line, at most `limit` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def max_file_bytes() -> int:
    """The largest collection file read: $WORKBENCH_PROMPT_FILE_MAX_BYTES or 5 MB."""
    raw = os.environ.get(PROMPT_FILE_MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILE_BYTES
    if not raw.isdigit() or int(raw) == 0:
        raise ConfigError(f"{PROMPT_FILE_MAX_BYTES_ENV}={raw!r}: give a whole number of bytes above 0, or unset it "
                          f"for the default {DEFAULT_MAX_FILE_BYTES:,}")
    return int(raw)


# -- finding files ---------------------------------------------------------------------------------


def find_collection_files(paths: list[Path], source: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(YAML files under the given files or folders in a stable order, (path, problem) for each path refused).

    `source` says where the paths came from, for the message about one that does not exist.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found, refused = _walk(path)
            files += found
            problems += refused
        elif path.is_file():  # named by the user: theirs to trust
            files.append(path)
        else:
            problems.append((path, f"{path}: no such file or folder (from {source})"))
    unique = list(dict.fromkeys(files))
    return unique, problems


def _walk(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    real_root = os.path.realpath(root)
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in dirnames:  # links to folders are never walked; those leaving the folder are named
            link = Path(folder) / name
            if link.is_symlink() and not _inside(os.path.realpath(link), real_root):
                problems.append((link, _outside(link, "folder")))
        for name in sorted(filenames):
            path = Path(folder) / name
            if path.suffix not in YAML_SUFFIXES:
                continue
            real = os.path.realpath(path)
            if path.is_symlink() and not _inside(real, real_root):
                problems.append((path, _outside(path, "file")))
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                problems.append((path, f"{path}: cannot read ({exc.strerror}); fix or remove it"))
                continue
            if not stat.S_ISREG(mode):
                problems.append((path, f"{path}: not a regular file (a pipe or device?); refused, remove it"))
            elif real not in seen:  # a link inside the folder to a file already found counts once
                seen.add(real)
                files.append(path)
    return files, problems


def _inside(real: str, real_root: str) -> bool:
    return os.path.commonpath([real, real_root]) == real_root


def _outside(link: Path, kind: str) -> str:
    return (f"{link}: a link to a {kind} outside the prompt folder; refused without reading it (copy the {kind} "
            "into the folder if you trust it)")


# -- reading ---------------------------------------------------------------------------------------


def read_collection_text(path: Path) -> CollectionText:
    """A collection file's text (size-capped, UTF-8) and its collection name; CollectionFileError if unreadable."""
    limit = max_file_bytes()
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a pipe would wait forever
            raise CollectionFileError(f"{path}: not a regular file (a pipe or device?); refused")
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise CollectionFileError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise CollectionFileError(f"{path}: the file is over {limit:,} bytes, the most a collection file may have; "
                                  f"split it, or raise the limit with {PROMPT_FILE_MAX_BYTES_ENV}=BYTES")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollectionFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return CollectionText(path, text, _top_level_name(text))


def _top_level_name(text: str) -> str | None:
    """The value of the top-level `name:` key, reading YAML events only as far as it (nothing is built)."""
    depth, at_key, key = 0, True, None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth == 1 and not isinstance(event, yaml.MappingStartEvent):
                    return None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                if depth == 1:
                    at_key = True
                elif depth == 0:
                    return None
            elif depth == 1 and isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                value = getattr(event, "value", None)
                if at_key:
                    key = value
                elif key == "name":
                    return value
                at_key = not at_key
    except yaml.YAMLError:
        return None
    return None


def parse_collection_yaml(source: CollectionText) -> tuple[yaml.Node | None, Any]:
    """The composed YAML (for line numbers) and the data built from it, aliases checked before building."""
    loader = yaml.SafeLoader(source.text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_aliases(root, source.path)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source.path}:{mark.line + 1}" if mark else str(source.path)
        problem = getattr(exc, "problem", None) or exc
        raise CollectionFileError(f"{where}: YAML syntax error: {shown(problem, 200)}; fix the file") from None
    except RecursionError:
        raise CollectionFileError(f"{source.path}: the YAML nests too deeply to read; flatten it") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a number with more digits than Python reads
        raise CollectionFileError(f"{source.path}: a value cannot be read ({shown(exc, 120)}); fix it") from None
    finally:
        loader.dispose()
    return root, data


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _check_aliases(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases would build many more values than it spells out, or contain themselves."""
    expanded: dict[int, int] = {}  # id(node) -> values it becomes, every alias expanded
    references: dict[int, int] = {}
    nodes: dict[int, yaml.Node] = {}
    ancestors: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            continue
        if key in expanded:
            continue
        ancestors.add(key)
        nodes[key] = node
        stack.append((node, True))
        for child in _children(node):
            references[id(child)] = references.get(id(child), 0) + 1
            if id(child) in ancestors:
                raise CollectionFileError(f"{path}:{child.start_mark.line + 1}: a YAML alias refers to a value that "
                                          "contains it; write the value out")
            if id(child) not in expanded:
                stack.append((child, False))
    extra = expanded[id(root)] - len(expanded)
    if extra > MAX_ALIAS_EXPANSION:
        worst = max(references, key=lambda k: expanded[k] * (references[k] - 1))
        raise CollectionFileError(
            f"{path}:{nodes[worst].start_mark.line + 1}: YAML aliases would add {extra:,} values to the "
            f"{len(expanded):,} written out, more than the {MAX_ALIAS_EXPANSION:,} allowed (an alias bomb?); "
            "write the values out, or use fewer aliases")
