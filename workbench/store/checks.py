"""What a run bundle must hold, and what makes a stored sample row readable.

A bundle is untrusted input: its run fields and every sample row are checked here (types, ranges,
JSON columns that parse and have the right shape) before anything is written, and each row's
content hash names a row that changed after export. Hashes detect damage, not forgery: anyone can
recompute them, which is why imported runs answer cache lookups only when the user trusts them.

The same rule decides which stored rows can be read (`sample_content`): reading, counting the
indices a run has, `runs check`, `runs show` and export all use it, so a row one of them accepts
is never refused by another. A stored row it rejects (written by an older version, or by hand) is
skipped and reported, never fatal, and drawn again by the next `sample`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from typing import Any

import pydantic_core

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


def sample_content(record: Mapping[str, Any]) -> dict[str, Any]:
    """The one rule for a sample row, from a bundle or from the store: its CONTENT_FIELDS, JSON columns decoded
    (numbers as written, NaN and infinities kept).

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
        content[name] = _json_cell(record.get(name), name)
    _check_list(content["token_ids"], "token_ids", _INT)
    _check_list(content["tokens"], "tokens", _STR)
    _check_list(content["token_logprobs"], "token_logprobs", _NUMBER_OR_NONE)
    _check_top_logprobs(content["top_logprobs"])
    if content["raw"] is not None and not isinstance(content["raw"], dict):
        raise RowProblem("raw", f"must be a JSON object (what the engine reported), got {_short(content['raw'])}")
    return {name: content[name] for name in CONTENT_FIELDS}


def check_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """A bundle's sample record, checked by `sample_content` and made strict JSON: NaN and infinities become null."""
    content = sample_content(record)
    for name in JSON_FIELDS:
        content[name] = finite_json(content[name])
    if content["latency_s"] is not None and not math.isfinite(content["latency_s"]):
        content["latency_s"] = None
    return content


def sample_problem(record: Mapping[str, Any]) -> str | None:
    """Why a sample row is unreadable (`sample_content`'s rule), or None when it is fine."""
    try:
        sample_content(record)
    except RowProblem as exc:
        return str(exc)
    return None


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


# Exact types of list entries (bool is not an int here). Reading checks every token of every row, so the
# checks below run as C loops over `map(type, ...)`; only a list that fails is walked to name the position.
_INT, _STR = frozenset({int}), frozenset({str})
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
_INT_OR_NONE = frozenset({int, type(None)})


def _all_of(values: Any, types: frozenset[type]) -> bool:
    return set(map(type, values)) <= types


def _is_top_position(position: Any) -> bool:
    return type(position) is list and all(
        type(entry) is list and len(entry) == 3 and type(entry[0]) in _INT_OR_NONE and type(entry[1]) is str
        and type(entry[2]) in _NUMBER_OR_NONE
        for entry in position
    )


def _whole(value: Any, field: str, maximum: int) -> int:
    # CSV and Parquet read whole-number columns with gaps as floats; a problem shows the value as given (1e+30).
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if not _is_int(number) or not 0 <= number <= maximum:
        raise RowProblem(field, f"must be a whole number from 0 to {maximum}, got {_short(value)}")
    return number


def _optional_whole(value: Any, field: str) -> int | None:
    return None if _absent(value) else _whole(value, field, MAX_SEED)


def _optional_seconds(value: Any) -> float | None:
    if _absent(value):
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
        # pydantic's parser: about twice as fast as json.loads, and it reads NaN and Infinity as json.dumps writes them.
        return pydantic_core.from_json(value, allow_inf_nan=True)
    except (ValueError, RecursionError):
        raise RowProblem(field, f"is not valid JSON: {_short(value)}") from None


def _check_list(value: Any, field: str, types: frozenset[type]) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise RowProblem(field, f"must be a JSON list, got {_short(value)}")
    if _all_of(value, types):
        return
    position, item = next((i, item) for i, item in enumerate(value) if type(item) not in types)
    raise RowProblem(field, f"has a wrong entry at position {position}: {_short(item)}")


def _check_top_logprobs(value: Any) -> None:
    """top_logprobs: a list (per position) of lists of [token_id or null, token, logprob or null]."""
    if value is None:
        return
    if not isinstance(value, list):
        raise RowProblem("top_logprobs", f"must be a JSON list, got {_short(value)}")
    if _all_of(value, frozenset({list})):
        entries = list(itertools.chain.from_iterable(value))
        if _all_of(entries, frozenset({list})) and set(map(len, entries)) <= {3}:
            ids, tokens, logprobs = zip(*entries, strict=True) if entries else ((), (), ())
            if _all_of(ids, _INT_OR_NONE) and _all_of(tokens, _STR) and _all_of(logprobs, _NUMBER_OR_NONE):
                return
    position, item = next((i, item) for i, item in enumerate(value) if not _is_top_position(item))
    raise RowProblem("top_logprobs", f"has a wrong entry at position {position}: {_short(item)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def describe_skipped(skipped: list[dict[str, Any]], run_id: str, limit: int = 3) -> str:
    """One line about the unreadable rows a read skipped."""
    shown = "; ".join(f"sample {s['sample_index']}: {s['problem']}" for s in skipped[:limit])
    more = f"; {len(skipped) - limit} more" if len(skipped) > limit else ""
    return (f"skipped {len(skipped)} unreadable row{'s' if len(skipped) != 1 else ''} of run {run_id} "
            f"({shown}{more}); `workbench runs check` lists them")


def bundle_error(path: Any, where: str, problem: RowProblem | StoreError | str) -> StoreError:
    """The one-line error for a bad bundle: file, where in it, what is wrong, what to do."""
    return StoreError(f"{path}: {where}: {problem}; nothing was imported (ask for a fresh export, or fix the file)")
