"""Finding collection files in prompt folders and reading their YAML without trusting it.

Prompt folders are shared, so:
- a symlink (file or folder) whose target lies outside the folder is refused by its path alone,
  without opening the target; anything that is not a regular file (a pipe, a device) is refused;
- a file over WORKBENCH_PROMPT_FILE_MAX_BYTES (default 5 MB) is not parsed;
- YAML aliases may add at most MAX_ALIAS_EXPANSION values to what the file spells out (an alias
  bomb is refused before anything is built), and an alias may not contain itself
  (both caps are workbench.guarded.yaml's, which the registry uses too);
- each file is read once, and its collection name is found by reading only as far as `name:`.

Every problem is one line that starts with the file (and line, where there is one).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError
from workbench.guarded.yaml import (
    DEFAULT_MAX_FILE_BYTES,
    YamlFileError,
    parse_yaml,
    read_text_capped,
)

PROMPT_FILE_MAX_BYTES_ENV = "WORKBENCH_PROMPT_FILE_MAX_BYTES"
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
            "into the prompt folder if you trust it)")


# -- reading ---------------------------------------------------------------------------------------


def read_collection_text(path: Path) -> CollectionText:
    """A collection file's text (size-capped, UTF-8) and its collection name; CollectionFileError if unreadable."""
    advice = f"split it, or raise the limit with {PROMPT_FILE_MAX_BYTES_ENV}=BYTES"
    try:
        text = read_text_capped(path, max_file_bytes(), what="a collection file", advice=advice)
    except YamlFileError as exc:
        raise CollectionFileError(str(exc)) from None
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
    try:
        return parse_yaml(source.text, source.path)
    except YamlFileError as exc:
        raise CollectionFileError(str(exc)) from None
