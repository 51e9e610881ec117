"""Token usage and what it costs: the price table, cost per run, and estimates before sending.

The packaged `prices.yaml` is merged with `$WORKBENCH_HOME/prices.yaml` (the user's wins entry
by entry). Local models and local servers cost nothing; an API model without a price has an
unknown cost, which is said rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.config import describe_validation_error
from workbench.errors import ConfigError
from workbench.home import workbench_home
from workbench.registry import ModelSpec

PACKAGED_PRICES = Path(__file__).with_name("prices.yaml")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class PriceTable(BaseModel):
    """The merged price table."""

    model_config = ConfigDict(extra="forbid")

    as_of: str | None = None
    batch: float = Field(0.5, gt=0, le=1, description="Multiplier for batch-API jobs.")
    models: dict[str, Price] = Field(default_factory=dict)

    def lookup(self, api_model: str) -> Price | None:
        """The price of a model name: an exact key first, then the longest matching `prefix*` key."""
        if api_model in self.models:
            return self.models[api_model]
        prefixes = [k for k in self.models if k.endswith("*") and api_model.startswith(k[:-1])]
        return self.models[max(prefixes, key=len)] if prefixes else None


def user_prices_path() -> Path:
    """Where a user's price overrides live."""
    return workbench_home() / "prices.yaml"


def load_prices(user_file: Path | None = None) -> PriceTable:
    """The packaged price table with the user's entries on top."""
    merged: dict[str, Any] = {"models": {}}
    for path in (PACKAGED_PRICES, user_file or user_prices_path()):
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc}); fix the file") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with 'models:' at the top level")
        models = {**merged["models"], **(data.get("models") or {})}
        merged = {**merged, **data, "models": models}
    try:
        return PriceTable.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "price table (prices.yaml)")) from None


def is_local(spec: ModelSpec) -> bool:
    """Models run in-process or on a server on this machine: no bill."""
    if spec.backend == "hf":
        return True
    return bool(spec.base_url) and (urlparse(spec.base_url).hostname or "") in LOCAL_HOSTS


def price_of(spec: ModelSpec, table: PriceTable | None = None) -> Price | None:
    """What a model's tokens cost (zero for local models), or None when unknown."""
    table = table or load_prices()
    found = table.lookup(spec.api_model or spec.name)
    if found is not None:
        return found
    return Price(input=0.0, output=0.0) if is_local(spec) else None


@dataclass
class Usage:
    """Tokens and dollars of a set of samples."""

    samples: int
    requests: float
    prompt_tokens: float  # billed: a request's prompt counts once however many choices it returned
    completion_tokens: int
    cost_usd: float | None  # None: no price known for this model

    def describe(self) -> str:
        """One line for `runs show`."""
        cost = "unknown (no price; add one to prices.yaml)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (f"{self.samples} samples, {self.requests:g} requests, {self.prompt_tokens:g} prompt + "
                f"{self.completion_tokens} completion tokens, cost {cost}")


def usage_of_samples(samples: pd.DataFrame, price: Price | None, batch_multiplier: float = 0.5) -> Usage:
    """Billed usage and cost of stored samples (their `raw` says how many choices shared a request)."""
    prompt = 0.0
    requests = 0.0
    completion = 0
    cost = 0.0
    for row in samples.itertuples(index=False):
        raw = row.raw if isinstance(row.raw, dict) else {}
        share = 1.0 / max(1, int(raw.get("choices_in_request") or 1))
        p = float(row.prompt_tokens or 0) * share if _present(row.prompt_tokens) else 0.0
        c = int(row.completion_tokens) if _present(row.completion_tokens) else 0
        prompt += p
        requests += share
        completion += c
        if price is not None:
            multiplier = batch_multiplier if raw.get("batch") else 1.0
            cost += multiplier * (p * price.input + c * price.output) / 1e6
    return Usage(len(samples), round(requests, 6), round(prompt, 3), completion,
                 None if price is None else cost)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


@dataclass
class CostEstimate:
    """What a sample call would send, before anything is sent."""

    model: str
    n: int
    cached: int
    requests: int
    prompt_tokens_each: int  # estimated (about 4 characters per token)
    max_completion_tokens: int
    cost_usd: float | None  # an upper bound: every sample at max_tokens
    note: str

    def describe(self) -> str:
        """One line for `--dry-run`."""
        cost = "unknown (no price for this model; add one to prices.yaml)" if self.cost_usd is None \
            else f"at most ${self.cost_usd:.4f}"
        return (f"{self.model}: {self.n - self.cached} of {self.n} samples to draw ({self.cached} cached) in "
                f"{self.requests} requests, ~{self.prompt_tokens_each} prompt tokens each, at most "
                f"{self.max_completion_tokens} completion tokens in all; cost {cost}. {self.note}")


def estimate_cost(price: Price | None, requests: int, prompt_tokens_each: int, max_completion_tokens: int,
                  batch: bool = False, batch_multiplier: float = 0.5) -> float | None:
    """Upper-bound dollars: every request's prompt plus every sample at max_tokens."""
    if price is None:
        return None
    multiplier = batch_multiplier if batch else 1.0
    return multiplier * (requests * prompt_tokens_each * price.input + max_completion_tokens * price.output) / 1e6
