"""The one sampling-config object. Every field says what it means and which backends honour it.

Fields here are exactly the ones that change what a backend returns, so the whole object (in
its normalised form) is part of the cache key. Knobs that only change speed (batch size,
threads, concurrency) live on the Sampler and the backends, never here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.errors import ConfigError

# Bounds every face shares (CLI flags, the Sampler, experiments).
MAX_SEED = 2**63 - 1  # seeds are stored as SQLite integers (signed 64-bit)
# The most samples one sample call may ask for: a sanity limit for the Python API (the CLI's own maximum is far
# lower and configurable). Beyond it the missing-index set alone takes gigabytes; split such a run by seed.
MAX_SAMPLES_PER_CALL = 10**8
# Far above any useful temperature (at 100 the next-token distribution is nearly uniform for every model
# measured here); a typo like 1e9 is refused rather than sent.
MAX_TEMPERATURE = 100.0
# The most new tokens one sample may ask for (longer than any context the registry's models have).
MAX_NEW_TOKENS = 32768


class SamplingConfig(BaseModel):
    """How continuations are drawn. Backends that cannot honour a field say so by capability."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(
        1.0,
        ge=0.0,
        le=MAX_TEMPERATURE,
        allow_inf_nan=False,
        description="Softmax temperature; 0 means greedy (argmax), at most 100. Honoured by hf, openai, "
        "anthropic (anthropic caps it at 1).",
    )
    top_p: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Nucleus sampling: keep the smallest set of tokens whose mass reaches top_p; "
        "1 means no truncation. Honoured by hf, openai, anthropic.",
    )
    top_k: int = Field(
        0,
        ge=0,
        description="Keep only the k most likely tokens; 0 means no truncation (true ancestral "
        "sampling; transformers' own default of 50 is never applied). Honoured by hf, "
        "OpenAI-compatible servers that accept it (vLLM, llama.cpp), anthropic; not by the OpenAI API.",
    )
    min_p: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Drop tokens whose probability is below min_p times the top token's; 0 = off. "
        "Honoured by hf, vLLM, llama.cpp.",
    )
    repetition_penalty: float = Field(
        1.0,
        gt=0.0,
        allow_inf_nan=False,
        description="CTRL-style penalty on tokens already in the input or continuation; 1 = off. "
        "Honoured by hf, vLLM, llama.cpp (whose server default is 1.1, so it is always sent).",
    )
    max_tokens: int = Field(
        64, ge=1, le=MAX_NEW_TOKENS, description="Most new tokens per continuation. Honoured by every backend."
    )
    stop: tuple[str, ...] = Field(
        (),
        description="Strings that end a continuation; the text is cut before the first one found. "
        "Honoured by every backend.",
    )
    top_logprobs: int = Field(
        0,
        ge=0,
        le=20,
        description="Also record the k most likely tokens (true distribution) at each position; "
        "0 = only the sampled token's logprob. Honoured by hf and servers that return logprobs.",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return tuple(value)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(s == "" for s in value):
            raise ValueError("an empty stop string would end every continuation at once; remove it")
        return value

    @property
    def greedy(self) -> bool:
        """True when temperature is 0: every sample is the argmax continuation."""
        return self.temperature == 0.0

    def cache_fields(self) -> dict[str, Any]:
        """The fields that change the output, normalised: greedy ignores truncation; stop order is irrelevant."""
        fields = self.model_dump()
        fields["stop"] = sorted(set(self.stop))
        if self.greedy:
            for name in ("top_p", "top_k", "min_p"):
                fields.pop(name)
        return fields

    def cache_digest(self) -> str:
        """A short stable hash of `cache_fields()`."""
        blob = json.dumps(self.cache_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_extra_stops(self, stops: tuple[str, ...] | list[str]) -> "SamplingConfig":
        """A copy with more stop strings (e.g. a transcript template's turn marker), without duplicates."""
        merged = tuple(dict.fromkeys((*self.stop, *stops)))
        return self.model_copy(update={"stop": merged})


class SamplingOverrides(TypedDict, total=False):
    """SamplingConfig fields given as keyword arguments (`sampler.sample(..., temperature=0.5)`); None = unset."""

    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    repetition_penalty: float | None
    max_tokens: int | None
    stop: str | list[str] | tuple[str, ...] | None
    top_logprobs: int | None


def make_config(**fields: Any) -> SamplingConfig:
    """Build a SamplingConfig, turning validation errors into one readable line per field."""
    cleaned = {k: v for k, v in fields.items() if v is not None}
    try:
        return SamplingConfig(**cleaned)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "sampling config", SamplingConfig)) from None


# pydantic's error types for a number out of bounds, and how each bound reads in a message.
_BOUND_WORDS = {"gt": "above {}", "ge": "at least {}", "lt": "below {}", "le": "at most {}"}
_BOUND_ERRORS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def describe_validation_error(exc: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem: the field, what was given and what is allowed.

    A number out of bounds says so in plain words ("top_p must be above 0 and at most 1 (got 0)"); with the
    `model` that raised it, the message gives the field's whole range rather than the one bound it broke.
    """
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        given_text = "" if isinstance(given, dict) else f" (got {given!r})"
        bound = _BOUND_ERRORS.get(err["type"])
        if bound is not None or err["type"] == "finite_number":
            allowed = allowed_range(model, str(err["loc"][-1])) if model is not None and err["loc"] else ""
            if bound is None:  # inf or nan where only finite numbers are allowed
                allowed = " ".join(("a finite number", allowed)).strip()
            elif not allowed:
                allowed = _BOUND_WORDS[bound].format(_number((err.get("ctx") or {}).get(bound)))
            parts.append(f"{field} must be {allowed}{given_text}")
            continue
        # A validator's own message is the advice; pydantic's "Value error, " prefix adds nothing to it.
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}{given_text}")
    return f"invalid {where}: " + "; ".join(parts)


def allowed_range(model: type[BaseModel], field: str) -> str:
    """A numeric field's bounds in words ("above 0 and at most 1", "from 1 to 32768"), or "" when it has none."""
    info = model.model_fields.get(field)
    if info is None:
        return ""
    bounds = {name: getattr(item, name) for item in info.metadata for name in _BOUND_WORDS
              if getattr(item, name, None) is not None}
    if "ge" in bounds and "le" in bounds:
        return f"from {_number(bounds['ge'])} to {_number(bounds['le'])}"
    return " and ".join(_BOUND_WORDS[name].format(_number(value)) for name, value in bounds.items())


def _number(value: Any) -> str:
    """A bound as written: 1, not 1.0."""
    return f"{value:g}" if isinstance(value, float) else str(value)
