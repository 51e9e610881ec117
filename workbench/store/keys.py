"""Cache keys: the hash of what changes a run's output, computed when sampling and recomputed on import.

The key lives here, in the store layer, so that an imported run's key can be rebuilt from its own
fields (model identity, rendered input, config, seed) without the Sampler: a bundle whose key does
not match its fields was edited or made by an incompatible version, and is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from workbench.config import MAX_SEED, SamplingConfig, describe_validation_error
from workbench.errors import StoreError
from workbench.types import RenderedInput


def cache_key(identity: dict[str, Any], rendered: RenderedInput, config: SamplingConfig, seed: int) -> str:
    """The key of a cache cell: model identity, rendered input, output-changing config, seed."""
    return _digest(identity, rendered.cache_fields(), config.cache_fields(), seed)


def scores_key(identity: dict[str, Any], rendered: RenderedInput, continuations: list[str],
               temperatures: list[float], terminators: list[str], scoring_dtype: str | None) -> str:
    """The key of cached candidate scores: model identity, rendered input, candidates, temperatures, terminators."""
    blob = json.dumps({"model": identity, "input": rendered.cache_fields(), "mode": rendered.mode,
                       "continuations": continuations, "temperatures": temperatures, "terminators": terminators,
                       "scoring_dtype": scoring_dtype}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _digest(identity: dict[str, Any], input_fields: dict[str, Any], config_fields: dict[str, Any], seed: int) -> str:
    blob = json.dumps({"model": identity, "input": input_fields, "config": config_fields, "seed": seed},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_cache_key(run: Mapping[str, Any]) -> str:
    """The cache key a stored or imported run's own fields give (JSON columns decoded).

    Raises StoreError naming the field when the fields cannot describe a run (a config that does
    not validate, messages that are not messages, ...).
    """
    identity = run.get("model_identity")
    if not isinstance(identity, dict):
        raise StoreError("model_identity must be a JSON object")
    mode = run.get("input_mode")
    if mode not in ("completion", "chat"):
        raise StoreError(f"input_mode must be 'completion' or 'chat', got {mode!r}")
    text, messages = run.get("input_text"), run.get("input_messages")
    if text is not None and not isinstance(text, str):
        raise StoreError("input_text must be a string or null")
    if messages is not None and not (isinstance(messages, list) and all(_is_message(m) for m in messages)):
        raise StoreError("input_messages must be a list of {role, content} objects or null")
    if text is None and messages is None:
        raise StoreError("the run has neither input_text nor input_messages")
    config = run.get("config")
    if not isinstance(config, dict):
        raise StoreError("config must be a JSON object")
    _check_config(config)
    seed = run.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise StoreError(f"seed must be a whole number from 0 to 2^63-1, got {seed!r}")
    rendered = RenderedInput(mode=mode, text=text, messages=tuple(messages) if messages is not None else None,
                             template=str(run.get("template") or "raw"))
    return _digest(identity, rendered.cache_fields(), config_cache_fields(config), seed)


def config_cache_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """`SamplingConfig.cache_fields()` of a config as it was stored, with the fields of the version that wrote it.

    Working on the stored dict (not a SamplingConfig rebuilt today) keeps the keys of older runs
    recomputable after a field is added to SamplingConfig. tests/test_bundles.py checks that both agree.
    """
    fields = dict(config)
    if "stop" in fields:
        fields["stop"] = sorted(set(fields["stop"]))
    if fields.get("temperature") == 0:
        for name in ("top_p", "top_k", "min_p"):
            fields.pop(name, None)
    return fields


def _check_config(config: dict[str, Any]) -> None:
    """The fields this version knows validate; fields from a newer version are kept as they are."""
    stop = config.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise StoreError("config.stop must be a list of strings")
    known = {k: v for k, v in config.items() if k in SamplingConfig.model_fields}
    try:
        SamplingConfig(**known)
    except ValidationError as exc:
        raise StoreError(describe_validation_error(exc, "config")) from None


def _is_message(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("role"), str)
            and isinstance(value.get("content"), str))
