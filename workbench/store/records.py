"""The rows of the store: a run record, the sample columns, and JSON (de)serialisation of list columns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.store.ids import new_id, utc_now

SAMPLE_COLUMNS = (
    "id", "run_id", "sample_index", "text", "token_ids", "tokens", "token_logprobs", "top_logprobs",
    "finish_reason", "stop_sequence", "prompt_tokens", "completion_tokens", "latency_s", "raw",
    "environment_id", "created_at",
)


@dataclass
class RunRecord:
    """A run row: one cache cell (model identity, rendered input, config, seed)."""

    cache_key: str
    model: str
    model_identity: dict[str, Any]
    backend: str
    input_mode: str
    template: str
    config: dict[str, Any]
    seed: int
    model_kind: str | None = None
    model_family: str | None = None
    endpoint: str | None = None
    dtype: str | None = None
    input_text: str | None = None
    input_messages: list[dict[str, str]] | None = None
    prompt_ref: str | None = None
    tags: list[str] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    created_at: str = field(default_factory=utc_now)


JSON_RUN_COLUMNS = ("model_identity", "config", "input_messages", "tags")
JSON_SAMPLE_COLUMNS = ("token_ids", "tokens", "token_logprobs", "top_logprobs", "raw")


# One encoder for every cell: `json.dumps` with options builds a new encoder per call (five per sample).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def loads(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else json.loads(value)
