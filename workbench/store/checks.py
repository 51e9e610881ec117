"""What a run bundle must hold, and what makes a stored sample row readable.

A bundle is untrusted input: its run fields and every sample row are checked here (types, ranges,
JSON columns that parse and have the right shape) before anything is written, and each row's
content hash names a row that changed after export. Hashes detect damage, not forgery: anyone can
recompute them, which is why imported runs answer cache lookups only when the user trusts them.

Rows already in a store (written by an older version, or by hand) are read through
`readable_sample_sql`: a row it rejects is skipped and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Mapping
from typing import Any

from workbench.config import MAX_SEED
from workbench.errors import StoreError

FINISH_REASONS = ("eos", "stop", "length")
MAX_SAMPLE_INDEX = 2**31 - 1  # far above any run; a bundle index beyond it is a forgery or damage
# The content of a sample row: what a row hash covers (not its id or run id, which a store assigns).
CONTENT_FIELDS = (
    "sample_index", "text", "token_ids", "tokens", "token_logprobs", "top_logprobs", "finish_reason",
    "stop_sequence", "prompt_tokens", "completion_tokens", "latency_s", "raw", "environment_id", "created_at",
)
JSON_FIELDS = ("token_ids", "tokens", "token_logprobs", "top_logprobs", "raw")
# The run fields a bundle header carries (JSON columns decoded); `id` and `created_at` are optional.
RUN_TEXT_FIELDS = ("cache_key", "model", "backend", "input_mode", "template")
RUN_OPTIONAL_TEXT_FIELDS = ("model_kind", "model_family", "endpoint", "dtype", "input_text", "prompt_ref", "id",
                            "created_at")


class RowProblem(ValueError):
    """A field of one row that is wrong; the caller adds where the row is."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field} {why}")
        self.field = field


# -- bundle rows ------------------------------------------------------------------------------


def check_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's sample record, checked and normalised: the CONTENT_FIELDS with JSON columns decoded.

    Raises RowProblem naming the first field that is missing, of the wrong type or out of range.
    """
    missing = [name for name in ("sample_index", "text", "finish_reason") if _absent(record.get(name))]
    if missing:
        raise RowProblem(missing[0], "is missing")
    content: dict[str, Any] = {
        "sample_index": _whole(record["sample_index"], "sample_index", MAX_SAMPLE_INDEX),
        "text": _text(record["text"], "text"),
        "finish_reason": record["finish_reason"],
        "stop_sequence": _optional_text(record.get("stop_sequence"), "stop_sequence"),
        "prompt_tokens": _optional_whole(record.get("prompt_tokens"), "prompt_tokens"),
        "completion_tokens": _optional_whole(record.get("completion_tokens"), "completion_tokens"),
        "latency_s": _optional_seconds(record.get("latency_s")),
        "environment_id": _optional_text(record.get("environment_id"), "environment_id"),
        "created_at": _optional_text(record.get("created_at"), "created_at"),
    }
    if content["finish_reason"] not in FINISH_REASONS:
        raise RowProblem("finish_reason",
                         f"must be one of {', '.join(FINISH_REASONS)}, got {_short(record['finish_reason'])}")
    for name in JSON_FIELDS:
        content[name] = finite_json(_json_cell(record.get(name), name))
    _check_list(content["token_ids"], "token_ids", _is_int)
    _check_list(content["tokens"], "tokens", lambda v: isinstance(v, str))
    _check_list(content["token_logprobs"], "token_logprobs", _is_number_or_none)
    _check_list(content["top_logprobs"], "top_logprobs", _is_top_position)
    return {name: content[name] for name in CONTENT_FIELDS}


def row_hash(content: Mapping[str, Any]) -> str:
    """The content hash of a checked sample row (canonical JSON of its CONTENT_FIELDS)."""
    return _digest({name: content.get(name) for name in CONTENT_FIELDS})


def header_hash(run: Mapping[str, Any], environments: Mapping[str, Any]) -> str:
    """The content hash of a bundle header's run fields and environments."""
    return _digest({"run": run, "environments": environments})


def origin_of(run: Mapping[str, Any]) -> str:
    """The origin an imported run gets: the same for every export of that run, so re-imports merge."""
    return "bundle:" + _digest({"run": run})[:16]


def check_run_fields(run: Mapping[str, Any]) -> None:
    """The run fields of a bundle header have the types a run row needs (the cache key is checked apart)."""
    for name in RUN_TEXT_FIELDS:
        if not isinstance(run.get(name), str) or not run[name]:
            raise RowProblem(name, "must be a non-empty string")
    for name in RUN_OPTIONAL_TEXT_FIELDS:
        _optional_text(run.get(name), name)
    seed = run.get("seed")
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise RowProblem("seed", f"must be a whole number from 0 to 2^63-1, got {_short(seed)}")
    tags = run.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowProblem("tags", "must be a list of strings")


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinity turned into null (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    return value


def strict_dumps(value: Any, **options: Any) -> str:
    """JSON text without NaN or Infinity (they become null), Unicode kept as is."""
    return json.dumps(finite_json(value), ensure_ascii=False, allow_nan=False, **options)


def _digest(value: Any) -> str:
    blob = strict_dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _is_top_position(position: Any) -> bool:
    return isinstance(position, list) and all(
        isinstance(entry, list) and len(entry) == 3 and (entry[0] is None or _is_int(entry[0]))
        and isinstance(entry[1], str) and _is_number_or_none(entry[2])
        for entry in position
    )


def _whole(value: Any, field: str, maximum: int) -> int:
    # CSV and Parquet read whole-number columns with gaps as floats.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or not 0 <= value <= maximum:
        raise RowProblem(field, f"must be a whole number from 0 to {maximum}, got {_short(value)}")
    return value


def _optional_whole(value: Any, field: str) -> int | None:
    return None if _absent(value) else _whole(value, field, MAX_SEED)


def _optional_seconds(value: Any) -> float | None:
    if _absent(value) or (isinstance(value, float) and math.isinf(value)):
        return None
    if not _is_number_or_none(value) or value < 0:
        raise RowProblem("latency_s", f"must be a non-negative number, got {_short(value)}")
    return float(value)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowProblem(field, f"must be a string, got {_short(value)}")
    return value


def _optional_text(value: Any, field: str) -> str | None:
    return None if _absent(value) else _text(value, field)


def _json_cell(value: Any, field: str) -> Any:
    """A JSON column as the bundle holds it: JSON text (as exported), or the value itself."""
    if _absent(value):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise RowProblem(field, f"is not valid JSON: {_short(value)}") from None


def _check_list(value: Any, field: str, item_ok: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise RowProblem(field, f"must be a JSON list, got {_short(value)}")
    for position, item in enumerate(value):
        if not item_ok(item):
            raise RowProblem(field, f"has a wrong entry at position {position}: {_short(item)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


# -- rows already in a store ------------------------------------------------------------------

_ARRAY_COLUMNS = ("token_ids", "tokens", "token_logprobs", "top_logprobs")


def register_json_type(db: sqlite3.Connection) -> None:
    """Add `workbench_json_type(text)` to a connection: the top-level JSON type as Python's json reads it.

    SQLite's json_valid rejects NaN and Infinity, which Python's json module writes and reads, so a
    cell SQLite rejects is asked again in Python before a row is called unreadable.
    """
    db.create_function("workbench_json_type", 1, _python_json_type, deterministic=True)


def _python_json_type(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return "array" if isinstance(decoded, list) else "object" if isinstance(decoded, dict) else "other"


def readable_sample_sql(table: str = "samples") -> str:
    """An SQL expression, true for a stored sample row that reading can use (see `stored_row_problem`)."""
    def col(name: str) -> str:
        return f"{table}.{name}"

    def json_is(name: str, kind: str | None) -> str:
        c = col(name)
        if kind is None:
            test = f"CASE WHEN json_valid({c}) THEN 1 ELSE workbench_json_type({c}) IS NOT NULL END"
        else:
            test = (f"CASE WHEN json_valid({c}) THEN json_type({c}) = '{kind}' "
                    f"ELSE workbench_json_type({c}) IS '{kind}' END")
        return f"({c} IS NULL OR (typeof({c}) = 'text' AND {test}))"

    parts = [
        f"typeof({col('sample_index')}) = 'integer' AND {col('sample_index')} >= 0",
        f"typeof({col('text')}) = 'text'",
        f"typeof({col('finish_reason')}) = 'text'",
        f"typeof({col('stop_sequence')}) IN ('text', 'null')",
        f"typeof({col('prompt_tokens')}) IN ('integer', 'null')",
        f"typeof({col('completion_tokens')}) IN ('integer', 'null')",
        f"typeof({col('latency_s')}) IN ('integer', 'real', 'null')",
        *(json_is(name, "array") for name in _ARRAY_COLUMNS),
        json_is("raw", None),
    ]
    return "(" + " AND ".join(f"({p})" for p in parts) + ")"


def stored_row_problem(row: Mapping[str, Any]) -> str | None:
    """Why a stored sample row cannot be read (the same rules as `readable_sample_sql`), or None."""
    index = row.get("sample_index")
    if not _is_int(index) or index < 0:
        return f"sample_index {_short(index)} is not a whole number"
    for name in ("text", "finish_reason"):
        if not isinstance(row.get(name), str):
            return f"{name} is {_short(row.get(name))}, not text"
    if row.get("stop_sequence") is not None and not isinstance(row["stop_sequence"], str):
        return "stop_sequence is not text"
    for name in ("prompt_tokens", "completion_tokens"):
        if row.get(name) is not None and not _is_int(row[name]):
            return f"{name} is {_short(row[name])}, not a whole number"
    if row.get("latency_s") is not None and not _is_number_or_none(row["latency_s"]):
        return f"latency_s is {_short(row['latency_s'])}, not a number"
    for name in (*_ARRAY_COLUMNS, "raw"):
        value = row.get(name)
        if value is None:
            continue
        kind = _python_json_type(value)
        if kind is None:
            return f"{name} is not valid JSON: {_short(value)}"
        if name != "raw" and kind != "array":
            return f"{name} is not a JSON list: {_short(value)}"
    return None


def describe_skipped(skipped: list[dict[str, Any]], run_id: str, limit: int = 3) -> str:
    """One line about the unreadable rows a read skipped."""
    shown = "; ".join(f"sample {s['sample_index']}: {s['problem']}" for s in skipped[:limit])
    more = f"; {len(skipped) - limit} more" if len(skipped) > limit else ""
    return (f"skipped {len(skipped)} unreadable row{'s' if len(skipped) != 1 else ''} of run {run_id} "
            f"({shown}{more}); `workbench runs check` lists them")


def bundle_error(path: Any, where: str, problem: RowProblem | StoreError | str) -> StoreError:
    """The one-line error for a bad bundle: file, where in it, what is wrong, what to do."""
    return StoreError(f"{path}: {where}: {problem}; nothing was imported (ask for a fresh export, or fix the file)")
