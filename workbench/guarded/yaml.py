"""Reading YAML from files anyone may share without trusting it: a size cap and an alias cap.

- A file over its byte cap (5 MB unless the caller says otherwise) is not parsed.
- YAML aliases may add at most MAX_ALIAS_EXPANSION values to what the file spells out: an alias
  bomb (nine levels of nine aliases is 9^9 values) is refused before anything is built, and an
  alias may not contain itself.
- Only plain YAML types are built (the safe loader).

Every problem is a YamlFileError: one line that starts with the file (and line, where there is one).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError

DEFAULT_MAX_FILE_BYTES = 5_000_000
MAX_ALIAS_EXPANSION = 100_000  # values that aliases may add beyond those written out


class YamlFileError(ConfigError):
    """A YAML file that cannot be read safely; the message is one line that starts with the file."""


def shown(value: Any, limit: int = 40) -> str:
    """A value from a file as it may appear in a problem: one line, at most `limit` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_text_capped(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES, *, what: str = "a YAML file",
                     advice: str = "shorten it") -> str:
    """A file's UTF-8 text, refused unread past `max_bytes` (`what` and `advice` finish that refusal's line)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a pipe would wait forever
            raise YamlFileError(f"{path}: not a regular file (a pipe or device?); refused")
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise YamlFileError(f"{path}: the file is over {max_bytes:,} bytes, the most {what} may have; {advice}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The composed YAML (for line numbers) and the plain data built from it, aliases checked before building."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            check_aliases(root, path)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where, fix = (f"{path}:{mark.line + 1}", f"fix line {mark.line + 1}") if mark else (str(path), "fix the file")
        problem = getattr(exc, "problem", None) or exc
        raise YamlFileError(f"{where}: YAML syntax error: {shown(problem, 200)}; {fix}") from None
    except RecursionError:
        raise YamlFileError(f"{path}: the YAML nests too deeply to read; flatten it") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a number with more digits than Python reads
        raise YamlFileError(f"{path}: a value cannot be read ({shown(exc, 120)}); fix it") from None
    finally:
        loader.dispose()
    return root, data


def load_yaml_file(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES, *, what: str = "a YAML file",
                   advice: str = "shorten it") -> Any:
    """The plain data of a YAML file, read with the size and alias caps (a YamlFileError if refused)."""
    return parse_yaml(read_text_capped(path, max_bytes, what=what, advice=advice), path)[1]


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def check_aliases(root: yaml.Node, path: Path) -> None:
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
                raise YamlFileError(f"{path}:{child.start_mark.line + 1}: a YAML alias refers to a value that "
                                    "contains it; write the value out")
            if id(child) not in expanded:
                stack.append((child, False))
    extra = expanded[id(root)] - len(expanded)
    if extra > MAX_ALIAS_EXPANSION:
        worst = max(references, key=lambda k: expanded[k] * (references[k] - 1))
        raise YamlFileError(
            f"{path}:{nodes[worst].start_mark.line + 1}: YAML aliases would add {extra:,} values to the "
            f"{len(expanded):,} written out, more than the {MAX_ALIAS_EXPANSION:,} allowed (an alias bomb?); "
            "write the values out, or use fewer aliases")
