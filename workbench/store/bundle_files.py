"""The three bundle files: JSONL (header line, then one line per sample), Parquet (header in the schema
metadata) and CSV (header in a `.run.json` file beside it). Reading names where each record sits
(line, row) so that a problem can say where it is; what the records hold is checked elsewhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import StoreError
from workbench.store.checks import CONTENT_FIELDS, strict_dumps

# The columns of an exported sample: its content and the content hash.
BUNDLE_COLUMNS = (*CONTENT_FIELDS, "row_sha256")
_TEXT_COLUMNS = ("text", "token_ids", "tokens", "token_logprobs", "top_logprobs", "finish_reason", "stop_sequence",
                 "raw", "environment_id", "created_at", "row_sha256", "id", "run_id")
_INTEGER_COLUMNS = ("sample_index", "prompt_tokens", "completion_tokens")
_NUMBER_COLUMNS = (*_INTEGER_COLUMNS, "latency_s")
# A whole number as text: digits, or digits and a zero fraction (pandas writes an integer column with gaps as 3.0).
_WHOLE_TEXT = re.compile(r"\s*([+-]?\d+)(\.0*)?\s*")

Located = tuple[str, dict[str, Any]]  # (where in the file, the record)


def write_bundle(path: Path, fmt: str, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write a bundle; every JSON part is strict (no NaN or Infinity)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w") as out:
            out.write(strict_dumps({"record": "header", **header}) + "\n")
            for record in records:
                out.write(strict_dumps({"record": "sample", **record}) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"sample_index": pa.int64(), "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(),
                 "latency_s": pa.float64()}
        schema = pa.schema([(name, types.get(name, pa.string())) for name in BUNDLE_COLUMNS],
                           metadata={b"workbench.bundle": strict_dumps(header).encode()})
        pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
    else:
        pd.DataFrame.from_records(records, columns=list(BUNDLE_COLUMNS)).to_csv(path, index=False)
        Path(str(path) + ".run.json").write_text(strict_dumps(header, indent=2))


def read_bundle(path: Path) -> tuple[Any, list[Located]]:
    """The header (not yet checked) and the sample records of a bundle file, each with where it sits."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".parquet":
            return _read_parquet(path)
        if suffix == ".csv":
            return _read_csv(path)
    except StoreError:
        raise
    except (OSError, ValueError, RecursionError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        raise StoreError(f"{path}: cannot read the bundle ({_first_line(exc)})") from None
    raise StoreError(f"{path}: unknown bundle type; use .parquet, .csv or .jsonl")


def _read_jsonl(path: Path) -> tuple[Any, list[Located]]:
    header: Any = None
    records: list[Located] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise StoreError(f"{path}: {where} is not JSON ({exc}); nothing was imported") from None
            if header is None:
                if not isinstance(value, dict) or value.get("record") != "header":
                    raise StoreError(f"{path}: {where}: the first line must be the bundle header (a JSON object "
                                     "with \"record\": \"header\"); nothing was imported")
                header = {k: v for k, v in value.items() if k != "record"}
                continue
            if not isinstance(value, dict) or value.get("record", "sample") != "sample":
                raise StoreError(f"{path}: {where} is not a sample record (a JSON object with \"record\": "
                                 "\"sample\"); nothing was imported")
            records.append((where, {k: v for k, v in value.items() if k != "record"}))
    if header is None:
        raise StoreError(f"{path}: empty file: the first line must be the bundle header")
    return header, records


def _read_parquet(path: Path) -> tuple[Any, list[Located]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(b"workbench.bundle")
    if meta is None:
        raise StoreError(f"{path}: Parquet file without workbench bundle metadata")
    try:
        header = json.loads(meta)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: the bundle header in the Parquet metadata is not JSON ({exc})") from None
    return header, [(f"row {i + 1}", _numbers_from_text(record)) for i, record in enumerate(table.to_pylist())]


def _read_csv(path: Path) -> tuple[Any, list[Located]]:
    # pandas (3.x) reads floats back exactly as written, so latency_s keeps its row hash.
    sidecar = Path(str(path) + ".run.json")
    if not sidecar.is_file():
        raise StoreError(f"{path}: a CSV bundle needs its {sidecar.name} beside it")
    try:
        header = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{sidecar}: the bundle header is not JSON ({exc})") from None
    # Every column is read as text and numbers are parsed per cell: pandas would read a whole column as
    # text for one bad cell, and the error would name the first row instead of the bad one.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                        na_values={c: [""] for c in (*_TEXT_COLUMNS, *_NUMBER_COLUMNS) if c != "text"})
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return header, [(f"row {i + 1}", _numbers_from_text(record)) for i, record in enumerate(records)]


def _numbers_from_text(record: dict[str, Any]) -> dict[str, Any]:
    """A record's number fields given as text (CSV, or a Parquet string column) as numbers; text that is not a
    number is kept as given, for the check to name it."""
    for name in _NUMBER_COLUMNS:
        value = record.get(name)
        if not isinstance(value, str):
            continue
        if not value.strip():
            record[name] = None
        elif name in _INTEGER_COLUMNS:
            whole = _WHOLE_TEXT.fullmatch(value)
            if whole:
                record[name] = int(whole.group(1))
        else:
            try:
                record[name] = float(value)  # exact: CSV holds the shortest text that reads back as the same float
            except ValueError:
                pass
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
