"""The one backend base class: translate a request into an engine call and parse the reply.

A backend knows nothing about the store, the prompt library, the Sampler or the UI. It declares
what it can do as class attributes with defaults here (a backend overrides only what it
supports), implements the methods behind those capabilities, and classifies its errors so the
Sampler's one retry loop can retry. A new backend is one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from workbench.config import SamplingConfig
from workbench.errors import WorkbenchError
from workbench.registry import ModelSpec
from workbench.types import (
    Activations,
    CandidateScores,
    Capabilities,
    EngineInfo,
    ErrorKind,
    Generation,
    Message,
    RenderedInput,
    SampleSlot,
    ScoredContinuation,
    TextLogprobs,
    TokenLogprob,
)

# What a backend without the activations capability says when asked to capture or steer.
ACTIVATIONS_MISSING = ("capture or steer activations: that needs the 'activations' capability, which only local "
                       "transformers models (backend: hf) have")


@dataclass(frozen=True)
class GenerationRequest:
    """n continuations of one rendered input under one config."""

    rendered: RenderedInput
    config: SamplingConfig
    slots: tuple[SampleSlot, ...]


@dataclass(frozen=True)
class RequestBlock:
    """One request's worth of samples: the aligned block it asks for and the indices still wanted from it."""

    slots: tuple[SampleSlot, ...]  # the whole block, in choice order: choice j is sample slots[j].index
    wanted: tuple[int, ...]  # the block's indices that are missing (the rest are stored, or beyond n)


def request_blocks(slots: Sequence[SampleSlot], size: int) -> Iterator[RequestBlock]:
    """The missing `slots` (sorted by index, one seed) grouped into fixed, aligned blocks of `size` indices.

    Block k always asks for indices k*size .. k*size+size-1 with one seed, whatever is missing, so
    sample i is the same choice of the same request however a run was interrupted, resumed or
    extended. A block is asked for whole even when only some of it is missing.
    """
    position = 0
    while position < len(slots):
        seed, start = slots[position].seed, slots[position].index // size * size
        wanted = []
        while position < len(slots) and slots[position].index < start + size:
            wanted.append(slots[position].index)
            position += 1
        yield RequestBlock(tuple(SampleSlot(seed, i) for i in range(start, start + size)), tuple(wanted))


def blocks_needed(n: int, stored: set[int], size: int) -> int:
    """How many aligned blocks `request_blocks` sends for indices 0..n-1 when `stored` are stored (counted)."""
    complete: dict[int, int] = {}
    for index in stored:
        if 0 <= index < n:
            complete[index // size] = complete.get(index // size, 0) + 1
    full = sum(1 for block, count in complete.items() if count == min(n, (block + 1) * size) - block * size)
    return -(-n // size) - full


class BackendError(Exception):
    """An engine or server error, classified for the Sampler's retry loop."""

    def __init__(self, message: str, kind: ErrorKind = "fatal", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.retry_after = retry_after


class Backend:
    """What every backend is. Capabilities are class attributes; unsupported methods say so."""

    name: ClassVar[str] = "backend"
    # Bumped when the backend's sampling algorithm changes what a seed draws (part of the cache key).
    cache_version: ClassVar[str | None] = None
    supports_logprobs: bool = False
    supports_score: bool = False
    supports_next_token_topk: bool = False
    supports_candidate_scoring: bool = False
    # encode_prompt, count_tokens, next_token_topk_after, stop_token_ids work on token ids.
    supports_token_ids: bool = False
    supports_activations: bool = False  # capture and steering: forward hooks on the model's own modules
    # The dtype exact scoring (score, score_candidates, next-token top-k) runs in, where the backend
    # controls it (hf: always float32, whatever the sampling dtype); None for servers and APIs.
    scoring_dtype: str | None = None
    # A network backend: the Sampler drives session / agenerate with asyncio,
    # up to `max_concurrency` requests in flight, each retried on its own.
    remote: ClassVar[bool] = False
    max_concurrency: int = 1
    # Choices one request asks for: fixed, aligned blocks of sample indices (request_blocks).
    choices_per_request: int = 1

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def capabilities(self) -> Capabilities:
        """The capability flags as one record (a backend may set some per model in its __init__)."""
        return Capabilities(logprobs=self.supports_logprobs, score=self.supports_score,
                            next_token_topk=self.supports_next_token_topk,
                            candidate_scoring=self.supports_candidate_scoring, token_ids=self.supports_token_ids,
                            remote=self.remote, activations=self.supports_activations)

    def _unsupported(self, what: str) -> WorkbenchError:
        # Asking for something a backend cannot do is the caller's mistake, not an engine failure to retry.
        return WorkbenchError(f"model {self.spec.name!r}: the {self.name} backend cannot {what}")

    # -- every backend --------------------------------------------------------------------

    def engine_info(self) -> EngineInfo:
        """Backend, dtype, device, endpoint and library versions."""
        return EngineInfo(backend=self.name)

    def resolved_dtype(self) -> str | None:
        """The dtype the weights run in (part of the cache key), resolved without loading the model."""
        return None

    def context_length(self) -> int | None:
        """The model's context in tokens, where known without loading weights."""
        return None

    def is_prepared(self) -> bool:
        """Whether `prepare` has nothing left to do (the weights load fast as they are)."""
        return True

    def prepare(self, force: bool = False) -> str:
        """Make the weights fast to load (e.g. convert a GGUF once); a one-line status for the user."""
        return f"{self.spec.name}: nothing to prepare"

    def apply_chat_template(self, messages: tuple[Message, ...]) -> str:
        """The model's own chat template applied to messages (models whose registry entry has one)."""
        raise self._unsupported("apply a chat template locally")

    # -- local backends ------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> Iterator[Generation]:
        """Yield each continuation as soon as it is finished (any order)."""
        raise self._unsupported("generate in-process")

    # -- capabilities ----------------------------------------------------------------------

    def score(self, rendered: RenderedInput, continuations: list[str]) -> list[ScoredContinuation]:
        """Logprob of each continuation as the immediate continuation of the input (supports_score)."""
        raise self._unsupported("score given continuations")

    def next_token_topk(self, rendered: RenderedInput, k: int) -> list[TokenLogprob]:
        """The k most likely next tokens after the input (supports_next_token_topk)."""
        raise self._unsupported("give a next-token distribution")

    def score_candidates(
        self, rendered: RenderedInput, continuations: list[str], temperatures: list[float], terminators: list[str]
    ) -> CandidateScores:
        """Tempered logprobs of each continuation and of an answer ending right after it (candidate scoring)."""
        raise self._unsupported("score candidate answers exactly")

    def encode_prompt(self, text: str) -> list[int]:
        """The token ids the model reads for a text prompt (supports_token_ids)."""
        raise self._unsupported("encode text to token ids")

    def count_tokens(self, rendered: RenderedInput) -> int:
        """Positions the rendered input takes (supports_token_ids)."""
        raise self._unsupported("count tokens")

    def next_token_topk_after(self, rendered: RenderedInput, continuation_ids: list[int], k: int) -> list[TokenLogprob]:
        """The k most likely tokens after the input followed by exactly these token ids (supports_token_ids)."""
        raise self._unsupported("continue after given token ids")

    def stop_token_ids(self) -> set[int]:
        """Token ids that end a text (supports_token_ids)."""
        raise self._unsupported("report its stop tokens")

    # -- activations (supports_activations) ---------------------------------------------------

    def capture(self, items: list[tuple[str, str]], layers: list[int], site: str, positions: str,
                batch_size: int) -> Activations:
        """Activations at a site after some blocks for (prompt, response) texts, pooled by a position policy."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def text_logprobs(self, texts: list[str], batch_size: int) -> list[list[float]]:
        """Each text's token logprobs (every token after the first) under this model, steering included."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def next_token_logprobs(self, texts: list[str], batch_size: int) -> Any:
        """[texts, vocabulary] float32 log-probabilities of the token after each text, steering included."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def read_text(self, prompt: str, text: str, top_k: int, full: bool) -> TextLogprobs:
        """Per-token logprobs of a text after a prompt, the top-k alternatives, optionally the whole distributions."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def layer_count(self) -> int:
        """How many decoder blocks the model has."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def residual_norm_medians(self, layers: list[int]) -> dict[int, float]:
        """Each layer's median residual norm over the fixed reference text: the unit of steering coefficients."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    def token_row(self, token: str, matrix: str) -> Any:
        """A token's embedding ("embedding") or unembedding ("unembedding") row, float32 [hidden]."""
        raise self._unsupported(ACTIVATIONS_MISSING)

    # -- remote backends -----------------------------------------------------------------

    def session(self) -> AbstractAsyncContextManager[Any]:
        """An API client for one event loop (clients must not outlive the loop they were made on)."""
        raise self._unsupported("open a network session")

    async def agenerate(self, session: Any, request: GenerationRequest) -> list[Generation]:
        """One request's continuations; may return fewer than asked (the Sampler asks again for the rest)."""
        raise self._unsupported("generate over the network")

    def batch_api(self) -> Any | None:
        """The provider's batch-job API (submit / poll), or None when it has none."""
        return None

    def estimate_prompt_tokens(self, rendered: RenderedInput) -> int:
        """A rough prompt size for cost estimates before anything is sent (~4 characters per token)."""
        return len(rendered.display()) // 4
