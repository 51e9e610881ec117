"""Published probe sets turned into collections: `workbench prompts import`.

The input formats (mwe: model-written-evals JSONL, ab: A/B JSON, csv) are read by `probe_formats`.

The collection written `extends` the shipped `personas` collection, so its framings (with their
multiple-choice variants) and defaults apply by reference; each item keeps its source file and
line. Everything read from the file becomes a *value* (a template variable or an option text),
never template source, so "{{ 7*7 }}" in a statement stays those characters; the YAML is written
with the safe dumper and checked with the loader before it replaces anything.

Imported sets are evaluation material: the tuning recipes never read the library.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import WorkbenchError
from workbench.prompts.loader import Library, default_library_dirs, validate_paths
from workbench.prompts.probe_formats import (
    FORMATS,
    parse_columns,
    read_csv_records,
    read_records,
    record_to_item,
    slug,
)
from workbench.prompts.schema import ID_PATTERN

PARENT_COLLECTION = "personas"  # framings and defaults come from here, by reference


@dataclass
class ImportResult:
    """What `import_probe_set` wrote."""

    path: Path
    name: str
    items: int  # written
    statements: int
    multiple_choice: int
    total: int  # valid items in the file, before --sample
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of items left out with skip_bad


class ItemProblem(WorkbenchError):
    """An item that cannot be imported; the message names the file, the line and the field."""


# -- the collection ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Dumper(yaml.SafeDumper):
    """The safe dumper, with multi-line strings as literal blocks and short lists/mappings on one line."""


class _Flow(dict):
    """A mapping written on one line (an item's source, a sample)."""


class _FlowList(list):
    """A list written on one line (tags)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_collection(data: dict[str, Any]) -> str:
    """The collection as YAML (safe dumper: plain data only, every string round-trips literally)."""
    header = ("# Imported by `workbench prompts import` (see source:). Framings and defaults come from the\n"
              f"# {PARENT_COLLECTION} collection by reference (extends). Evaluation material only: nothing trains "
              "on it.\n")
    flow_keys = {"tags": _FlowList, "sample": _Flow, "columns": _Flow}
    styled = {k: flow_keys[k](v) if k in flow_keys else v for k, v in data.items()}
    styled["source"] = {k: flow_keys[k](v) if k in flow_keys else v for k, v in data.get("source", {}).items()}
    styled["prompts"] = [{k: _FlowList(v) if k == "tags" else _Flow(v) if k == "source" else v
                          for k, v in item.items()} for item in data.get("prompts", [])]
    return header + yaml.dump(styled, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120,
                              default_flow_style=False)


def _library_names(exclude: set[Path], folder: Path) -> dict[str, Path]:
    """Collection names already used in the library (prompts/, $WORKBENCH_PROMPTS) and the output folder
    (each file read only as far as its name)."""
    dirs = [d for d in [*default_library_dirs(), folder] if d.exists()]
    return {name: file for name, file in Library(dirs).files().items() if file.resolve() not in exclude}


def build_collection(
    path: Path,
    fmt: str,
    name: str,
    trait: str | None = None,
    columns: dict[str, str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[dict[str, Any], ImportResult]:
    """The collection (plain data, ready to dump) from a probe set, and counts of what went in."""
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        records, _ = read_csv_records(path, columns or {})
    elif columns:
        raise WorkbenchError("--columns applies to --format csv only")
    else:
        records = read_records(path, fmt)
    if not records:
        raise WorkbenchError(f"{path}: no items in the file")
    width = max(4, len(str(records[-1].index)))
    items: list[dict[str, Any]] = []
    skipped: list[str] = []
    for record in records:
        try:
            items.append(record_to_item(record, fmt, path.name, trait or name, width))
        except ValueError as exc:
            problem = f"{path}:{record.line}: {exc}"
            if not skip_bad:
                raise ItemProblem(f"{problem}; fix the item, or pass --skip-bad to leave such items out "
                                  "(they are counted and listed)") from None
            skipped.append(problem)
    if not items:
        raise WorkbenchError(f"{path}: none of the {len(records)} items could be imported (first: {skipped[0]})")
    total = len(items)
    source: dict[str, Any] = {"file": path.name, "format": fmt, "sha256": _sha256(path),
                              "imported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "items": total}
    if fmt == "csv":
        source["columns"] = columns or {}
    if skipped:
        source["skipped"] = len(skipped)
    if sample is not None:
        if sample < 1:
            raise WorkbenchError(f"--sample {sample}: give a number of items of at least 1")
        if sample < total:  # a seeded subset, kept in file order
            chosen = sorted(random.Random(seed).sample(range(total), sample))
            items = [items[i] for i in chosen]
        source["sample"] = {"n": sample, "seed": seed}
    statements = sum(1 for item in items if "options" not in item)
    kinds = [k for k, n in (("statements", statements), ("multiple-choice questions", len(items) - statements)) if n]
    collection = {
        "name": name,
        "description": f"{' and '.join(kinds).capitalize()} imported from {path.name} ({fmt}); "
                       f"{len(items)} of {total} items.",
        "version": 1,
        "tags": [PARENT_COLLECTION, "imported"],
        "extends": PARENT_COLLECTION,
        "source": source,
        "prompts": items,
    }
    result = ImportResult(path=path, name=name, items=len(items), statements=statements,
                          multiple_choice=len(items) - statements, total=total, skipped=skipped)
    return collection, result


def import_probe_set(
    path: str | Path,
    fmt: str,
    out: str | Path,
    name: str | None = None,
    trait: str | None = None,
    columns: dict[str, str] | str | None = None,
    sample: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    force: bool = False,
) -> ImportResult:
    """Convert a published probe set into a validated collection file `out/NAME.yaml`; returns what it wrote.

    Refuses to overwrite an existing file unless `force`, and to reuse a collection name the library has.
    """
    path, folder = Path(path).expanduser(), Path(out).expanduser()
    if isinstance(columns, str):
        columns = parse_columns(columns)
    if name is None:
        name = slug(path.stem)
    if not re.match(ID_PATTERN, name):
        raise WorkbenchError(f"--name {name!r}: use lower case letters, digits, '.', '_' and '-', starting with a "
                             "letter or digit")
    if folder.exists() and not folder.is_dir():
        raise WorkbenchError(f"--out {folder}: is a file; give a folder (the collection is written as NAME.yaml)")
    target = folder / f"{name}.yaml"
    if target.exists() and not force:
        raise WorkbenchError(f"{target} exists; pass --force to replace it, or choose another --name")
    collection, result = build_collection(path, fmt, name, trait, columns, sample, seed, skip_bad)
    used = _library_names({target.resolve()}, folder)
    if name in used:
        raise WorkbenchError(f"collection name {name!r} is already used by {used[name]}; choose another --name")

    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.yaml.part"  # not a collection file until it has passed the loader
    partial.write_text(dump_collection(collection), encoding="utf-8")
    try:
        count, problems = validate_paths([partial])
        if problems or count != result.items:
            shown = "; ".join(p.replace(str(partial), str(target)) for p in problems[:3]) or f"{count} prompts loaded"
            raise WorkbenchError(f"the imported collection does not validate ({shown}); nothing was written")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    result.path = target
    return result
