"""Shared value types: what flows between the prompt library, the Sampler, the backends and the store.

This module is the leaf of the package: it imports nothing of the workbench, so every layer can
use these records without importing another layer (import-linter checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": text}
CHAT_ROLES = ("system", "user", "assistant")
FinishReason = Literal["eos", "stop", "length"]
ErrorKind = Literal["retry", "rate_limited", "fatal"]


@dataclass(frozen=True)
class RenderedInput:
    """What a backend receives: raw text (completion) or messages (chat APIs), plus how it was made."""

    mode: Literal["completion", "chat"]
    text: str | None = None
    messages: tuple[Message, ...] | None = None
    # How the text was produced: "raw", "chat-template", or "transcript:<name>".
    template: str = "raw"
    # Stop strings the template asks for (a transcript's next-turn marker).
    extra_stop: tuple[str, ...] = field(default=())

    def cache_fields(self) -> dict[str, Any]:
        """What of the input changes the output: the exact text when there is one, else the messages."""
        if self.text is not None:
            return {"text": self.text}
        return {"messages": list(self.messages or ())}

    def display(self) -> str:
        """A readable one-string version (the text, or the messages as role: content lines)."""
        if self.text is not None:
            return self.text
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages or ())


@dataclass(frozen=True)
class SampleSlot:
    """One sample to draw: its index and the run's seed. Sample i's randomness derives from (seed, i) only."""

    seed: int
    index: int


@dataclass
class TokenLogprob:
    """One token with its logprob under the model's true (T=1, untruncated) distribution.

    Used for the alternatives at a generated position and for the candidates of a next-token
    top-k; `token_id` is None where a server gives only the token's text.
    """

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
    top_logprobs: list[list[TokenLogprob]] | None = None
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


@dataclass(frozen=True)
class Capabilities:
    """What a model's backend can do beyond sampling (the Sampler answers `capabilities(model)` with this)."""

    logprobs: bool = False  # per-token logprobs of generated text
    score: bool = False  # logprob of a given continuation
    next_token_topk: bool = False  # the k most likely next tokens after a text
    candidate_scoring: bool = False  # exact answer distributions: tempered scores of many candidates at once
    token_ids: bool = False  # works on token ids: encode, count tokens, continue after given ids, stop ids
    remote: bool = False  # reached over the network: requests go out concurrently
    activations: bool = False  # activation capture and steering (local transformers models only)


@dataclass
class EngineInfo:
    """What ran the model: stored with every run for provenance."""

    backend: str
    dtype: str | None = None
    device: str | None = None
    endpoint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Activations:
    """Captured activations at one site for some layers, one row per item (or per token with positions="every").

    values[layer] is [rows, hidden] float32 (a numpy array); item_index[r] and token_index[r] say which item
    and which of its tokens row r belongs to (token_index is the read position for pooled policies, -1 for means).
    """

    layers: list[int]
    site: str
    positions: str
    values: dict[int, Any]
    item_index: Any
    token_index: Any
    tokens: list[list[str]]
    batch_size: int
    prompt_lengths: list[int] = field(default_factory=list)  # tokens of each item's prompt (BOS included)


@dataclass
class TextLogprobs:
    """How a model reads a text after a prompt, token by token (from one forward pass).

    Row t is the text's token t: its logprob given the prompt and the text before it, the model's top
    alternatives there, and (when asked) the whole next-token distribution that predicted it.
    """

    token_ids: list[int]
    tokens: list[str]  # each token's text as it appears in the text (decoded in context)
    offsets: list[tuple[int, int]]  # [start, end) character span of each token in the text
    logprobs: list[float]
    top: list[list[TokenLogprob]]
    distributions: Any = None  # [tokens, vocabulary] float32 log-probabilities, or None
