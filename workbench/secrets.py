"""Keeping credentials out of everything the workbench writes: store rows, exports, figures, errors.

Keys come only from environment variables. Anything that leaves the process passes through
`scrub_secrets` (structured data: by key name and by value shape) or `scrub_text` (a message,
with the exact values of the keys in use removed as well, whatever their shape).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Any

import numpy as np

REDACTED = "[redacted]"

# A key is secret when one of its words ends like a credential ("api_key", "apiKey", "HF_TOKEN",
# "Authorization", "client_secret"), unless its last word says it is a count ("max_tokens",
# "prompt_tokens", "token_usage"): usage numbers are provenance, not secrets.
_SECRET_WORD = re.compile(r"(key|token|secret|secrets|password|passwd|pwd|authorization|auth|credentials?|cookie|"
                          r"bearer|signature)$")
_COUNT_WORDS = {"tokens", "count", "counts", "usage", "limit", "length", "len", "ids", "logprobs"}
# Values shaped like credentials, wherever they sit (a URL, a command line, a header dump).
_SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}"  # OpenAI and Anthropic ("sk-ant-...", "sk-proj-...")
    r"|\bBearer\s+[A-Za-z0-9._~+/=-]{16,}"  # HTTP bearer tokens
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"  # GitHub
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_-]{30,}"  # Google API keys
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
)


def _secret_name(name: str) -> bool:
    """Whether a mapping key names a credential (see _SECRET_WORD and _COUNT_WORDS)."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    if not words or words[-1] in _COUNT_WORDS:
        return False
    return any(_SECRET_WORD.search(w) for w in words)


def scrub_secrets(obj: Any) -> Any:
    """A JSON-ready copy of `obj` with credentials (by key name or by value shape) replaced by "[redacted]"."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, item in obj.items():
            name = str(key)
            # None and "" carry no secret; keeping them shows that no credential was set.
            secret = _secret_name(name) and item is not None and item != ""
            out[name] = REDACTED if secret else scrub_secrets(item)
        return out
    if isinstance(obj, str):
        return _SECRET_VALUE.sub(REDACTED, obj)
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, np.generic):
        return scrub_secrets(obj.item())
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None  # NaN is not JSON; null is
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [scrub_secrets(item) for item in obj]
    if isinstance(obj, np.ndarray):
        return scrub_secrets(obj.tolist())
    if hasattr(obj, "model_dump"):  # pydantic (a SecretStr dumps as "**********")
        return scrub_secrets(obj.model_dump(mode="json"))
    if is_dataclass(obj) and not isinstance(obj, type):
        return scrub_secrets(asdict(obj))
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return scrub_secrets(obj.decode("utf-8", errors="replace"))
    return scrub_secrets(str(obj))  # anything else as text, still checked for key-shaped values


# Keys shown masked ("sk-proj-abc...wxyz", "sk-ant-****wxyz"), as APIs echo them in auth errors.
_MASKED_KEY = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{0,16}(?:\.{3}|\*{3,}|…)[A-Za-z0-9_-]{0,8}")
# What providers put between the ends of a key they echo back.
_MASK = re.compile(r"\.{3}|…|\*{3,}")
# Shorter values would redact ordinary words; a real key is long.
MIN_SECRET_LENGTH = 8
# A mask counts as an echo of a key when the key's first 3 characters precede it or its last 2 follow it.
MIN_ECHOED_PREFIX = 3
MIN_ECHOED_SUFFIX = 2


def environment_secret_values() -> list[str]:
    """The values of environment variables whose names say they hold a credential (OPENAI_API_KEY, MY_TOKEN, ...)."""
    return [value for name, value in os.environ.items() if value and _secret_name(name)]


def scrub_text(text: str, secret_values: Iterable[str | None] = ()) -> str:
    """`text` with the given secret values and anything shaped like a credential replaced by "[redacted]".

    A given value is removed in any shape a provider echoes it, whatever the key looks like: whole,
    any part of 8 characters or more, or masked ("PLAINkey...10zz", "abc***yz", "abcd…").
    """
    spans = [span for value in secret_values if value and len(value) >= MIN_SECRET_LENGTH
             for span in _echoed_spans(text, value)]
    for start, end in reversed(_merged(spans)):
        text = text[:start] + REDACTED + text[end:]
    return _MASKED_KEY.sub(REDACTED, _SECRET_VALUE.sub(REDACTED, text))


def _echoed_spans(text: str, secret: str) -> list[tuple[int, int]]:
    """Where `text` shows `secret`: its 8-character pieces, and masks with the key's prefix or suffix around them."""
    width = MIN_SECRET_LENGTH
    pieces = {secret[i:i + width] for i in range(len(secret) - width + 1)}
    spans = [(i, i + width) for i in range(len(text) - width + 1) if text[i:i + width] in pieces]
    for mask in _MASK.finditer(text):
        start, end = mask.span()
        before = next((n for n in range(min(start, len(secret)), 0, -1) if text[start - n:start] == secret[:n]), 0)
        after = next((n for n in range(min(len(text) - end, len(secret)), 0, -1)
                      if text[end:end + n] == secret[len(secret) - n:]), 0)
        if before >= MIN_ECHOED_PREFIX or after >= MIN_ECHOED_SUFFIX:
            spans.append((start - before, end + after))
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def key_from_environment(variable: str | None) -> str | None:
    """The value of the environment variable that holds a key (None when unset or not named)."""
    return os.environ.get(variable) if variable else None
