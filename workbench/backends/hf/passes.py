"""One forward pass of a transformers model, under the KV-cache keyword its version takes."""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def _cache_keyword(model_class: type) -> str:
    """The forward keyword that takes a KV cache: `cache` in recent transformers, `past_key_values` before.

    Passing the old name to a recent version warns on every call (577 FutureWarnings in one persona run).
    """
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def forward_pass(model: Any, cache: Any = None, **inputs: Any) -> tuple[Any, Any]:
    """One forward pass: (logits, the KV cache it returns), under the KV-cache keyword this transformers takes."""
    if cache is not None:
        inputs[_cache_keyword(type(model))] = cache
    out = model(**inputs)
    returned = getattr(out, "cache", None)  # transformers 5.2x names it `cache`; older ones `past_key_values`
    if returned is None and inputs.get("use_cache"):
        returned = out.past_key_values
    return out.logits, returned
