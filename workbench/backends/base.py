"""The backend protocol: translate a request into an engine call and parse the reply.

A backend knows nothing about the store, the prompt library or the UI. It declares what it can
do as class attributes, and classifies its errors so the Sampler's one loop can retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, ClassVar, Iterator, Literal, Protocol, runtime_checkable

from workbench.config import SamplingConfig
from workbench.rendering import RenderedInput

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class SampleSlot:
    """One sample to draw: its index and the run's seed. Sample i's randomness derives from (seed, i) only."""

    seed: int
    index: int


@dataclass(frozen=True)
class GenerationRequest:
    """n continuations of one rendered input under one config."""

    rendered: RenderedInput
    config: SamplingConfig
    slots: tuple[SampleSlot, ...]


@dataclass
class TopLogprob:
    """One alternative token at a position, with its logprob under the true (T=1) distribution."""

    token_id: int | None
    token: str
    logprob: float


@dataclass
class Generation:
    """One finished continuation, normalised the same way for every backend."""

    index: int
    text: str
    # Every generated token, including an end-of-sequence token or the one that completed a
    # stop string; `text` excludes those. Logprobs are of the model's true distribution
    # (temperature 1, no truncation) so they compare across sampling settings.
    token_ids: list[int] | None
    tokens: list[str] | None
    token_logprobs: list[float] | None
    finish_reason: FinishReason
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    top_logprobs: list[list[TopLogprob]] | None = None
    stop_sequence: str | None = None
    # What the engine or server reported back (resolved model, usage, raw choice): stored as is.
    raw: dict[str, Any] | None = None


@dataclass
class ScoredContinuation:
    """The logprob of a given continuation after a rendered input."""

    continuation: str
    token_ids: list[int]
    token_logprobs: list[float]

    @property
    def logprob(self) -> float:
        """Sum of token logprobs."""
        return float(sum(self.token_logprobs))


@dataclass
class CandidateScores:
    """Exact scores of candidate continuations at several temperatures, from one batched pass.

    For temperature T, the tempered probability of a token is softmax(logits / T) over the full
    vocabulary at its position (not the T=1 logprob divided by T, which is wrong for
    multi-token continuations).
    """

    continuations: list[str]
    token_ids: list[list[int]]
    temperatures: list[float]
    logprobs: list[list[float]]  # [temperature][candidate]: sum of tempered token logprobs
    end_logprobs: list[list[float]]  # [temperature][candidate]: log mass of tokens that end an answer next


@dataclass
class TokenProb:
    """One candidate next token."""

    token_id: int | None
    token: str
    logprob: float


@dataclass
class EngineInfo:
    """What ran the model: stored with every run for provenance."""

    backend: str
    dtype: str | None = None
    device: str | None = None
    endpoint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


class BackendError(Exception):
    """An engine or server error, classified for the Sampler's retry loop."""

    kind: Literal["retry", "rate_limited", "fatal"] = "fatal"

    def __init__(self, message: str, kind: Literal["retry", "rate_limited", "fatal"] = "fatal",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@runtime_checkable
class Backend(Protocol):
    """What every backend implements. Capabilities are class attributes."""

    name: ClassVar[str]
    supports_logprobs: ClassVar[bool]
    supports_score: ClassVar[bool]
    supports_next_token_topk: ClassVar[bool]
    supports_candidate_scoring: ClassVar[bool]

    def engine_info(self) -> EngineInfo:
        """Backend, dtype, device, endpoint and library versions."""
        ...

    def resolved_dtype(self) -> str | None:
        """The dtype the weights run in (part of the cache key), resolved without loading the model."""
        ...

    def generate(self, request: GenerationRequest) -> Iterator[Generation]:
        """Yield each continuation as soon as it is finished (any order)."""
        ...

    def score(self, rendered: RenderedInput, continuations: list[str]) -> list[ScoredContinuation]:
        """Logprob of each continuation as the immediate continuation of the input."""
        ...

    def next_token_topk(self, rendered: RenderedInput, k: int) -> list[TokenProb]:
        """The k most likely next tokens after the input."""
        ...

    def score_candidates(
        self, rendered: RenderedInput, continuations: list[str], temperatures: list[float], terminators: list[str]
    ) -> CandidateScores:
        """Tempered logprobs of each continuation and of an answer ending right after it (terminator or EOS)."""
        ...


@runtime_checkable
class RemoteBackend(Protocol):
    """A backend reached over the network (openai, anthropic). The Sampler drives it with asyncio:
    requests for a run go out concurrently up to `max_concurrency`, each retried on its own."""

    remote: ClassVar[bool]
    max_concurrency: int

    def session(self) -> AsyncContextManager[Any]:
        """An API client for one event loop (clients must not outlive the loop they were made on)."""
        ...

    def request_groups(self, slots: tuple[SampleSlot, ...]) -> list[tuple[SampleSlot, ...]]:
        """How the slots are split into requests (one per sample, or several choices per request)."""
        ...

    async def agenerate(self, session: Any, request: GenerationRequest) -> list[Generation]:
        """One request's continuations; may return fewer than asked (the Sampler asks again for the rest)."""
        ...

    def estimate_prompt_tokens(self, rendered: RenderedInput) -> int:
        """A rough prompt size for cost estimates before anything is sent."""
        ...
