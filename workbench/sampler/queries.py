"""Model calls other than sampling, as public Sampler methods: scoring, next-token top-k, token ids.

Everything above the Sampler (analysis, experiments, faces) asks models through these, so each
call runs under the one retry policy and a missing capability is one clear error naming the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Unpack

from workbench.errors import WorkbenchError
from workbench.prompts import PromptChoices
from workbench.sampler.retry import Retrying, call_with_retries
from workbench.store.keys import scores_key
from workbench.types import CandidateScores, RenderedInput, ScoredContinuation, TokenLogprob

if TYPE_CHECKING:
    from workbench.backends.base import Backend
    from workbench.registry import ModelSpec
    from workbench.store import Store
    from workbench.types import Capabilities

T = TypeVar("T")
# Scoring calls belong to no run, so their retries go to the log (a run's retries go to its run events).
LOG = logging.getLogger("workbench.sampler")


def _log_retry(event: dict[str, Any]) -> None:
    LOG.info("retry of a model call: %s", event)


class ModelQueries:
    """The Sampler's scoring and token-level methods (mixed into `Sampler`, which supplies the helpers used here)."""

    # Supplied by Sampler.
    def model(self, name: str | ModelSpec) -> ModelSpec: ...  # pragma: no cover
    def backend(self, name: str | ModelSpec) -> Backend: ...  # pragma: no cover
    def capabilities(self, name: str | ModelSpec) -> Capabilities: ...  # pragma: no cover
    def render(self, prompt: Any, model: str | ModelSpec, chat: bool = False, variables: dict[str, Any] | None = None,
               perturbation: str | None = None, framing: str | None = None) -> RenderedInput: ...  # pragma: no cover

    def identity(self, name: str | ModelSpec) -> dict[str, Any]: ...  # pragma: no cover
    store: Store

    def _call(self, model: str | ModelSpec, capability: str, missing: str,
              call: Callable[[Backend], T]) -> T:
        """Call the model's backend under the retry policy after checking that it has the capability."""
        spec = self.model(model)
        backend = self.backend(spec)
        if not getattr(backend.capabilities(), capability):
            raise WorkbenchError(f"model {spec.name!r} ({spec.backend}) {missing}")
        return call_with_retries(lambda: call(backend), Retrying(backend.name, record=_log_retry))

    def _rendered(self, model: str | ModelSpec, prompt: Any, chat: bool, choices: PromptChoices) -> RenderedInput:
        return prompt if isinstance(prompt, RenderedInput) else self.render(prompt, model, chat, **choices)

    def score(self, model: str | ModelSpec, prompt: Any, continuations: list[str], chat: bool = False,
              **choices: Unpack[PromptChoices]) -> list[ScoredContinuation]:
        """Logprob of each continuation right after the rendered prompt (choices: variables, perturbation, framing)."""
        rendered = self._rendered(model, prompt, chat, choices)
        return self._call(model, "score", "cannot score given continuations exactly",
                          lambda backend: backend.score(rendered, continuations))

    def next_token_topk(self, model: str | ModelSpec, prompt: Any, k: int = 10, chat: bool = False,
                        **choices: Unpack[PromptChoices]) -> list[TokenLogprob]:
        """The k most likely next tokens after the rendered prompt."""
        rendered = self._rendered(model, prompt, chat, choices)
        return self._call(model, "next_token_topk", "gives no next-token distribution",
                          lambda backend: backend.next_token_topk(rendered, k))

    def score_candidates(self, model: str | ModelSpec, prompt: Any, continuations: list[str],
                         temperatures: list[float], terminators: list[str], chat: bool = False,
                         **choices: Unpack[PromptChoices]) -> CandidateScores:
        """Tempered logprobs of candidate answers and of an answer ending right after each (exact distributions).

        Kept in the store under the model identity, rendered input, candidates, temperatures and
        terminators: asked again, they come from the store without loading the model."""
        rendered = self._rendered(model, prompt, chat, choices)
        spec = self.model(model)
        key = scores_key(self.identity(spec), rendered, list(continuations), [float(t) for t in temperatures],
                         list(terminators), self.backend(spec).scoring_dtype)
        cached = self.store.cached_scores(key)
        if cached is not None and cached.get("continuations") == list(continuations):
            return CandidateScores(**cached)
        scores = self._call(model, "candidate_scoring", "gives no logprobs for exact scoring; sample instead",
                            lambda backend: backend.score_candidates(rendered, continuations, list(temperatures),
                                                                     list(terminators)))
        self.store.put_scores(key, spec.name, asdict(scores))
        return scores

    def next_token_topk_after(self, model: str | ModelSpec, rendered: RenderedInput, continuation_ids: list[int],
                              k: int) -> list[TokenLogprob]:
        """The k most likely tokens after the input followed by exactly these token ids (no retokenising)."""
        return self._call(model, "token_ids", "cannot continue after given token ids",
                          lambda backend: backend.next_token_topk_after(rendered, continuation_ids, k))

    def encode(self, model: str | ModelSpec, text: str) -> list[int] | None:
        """The token ids the model reads for a text prompt; None when its backend has no token ids."""
        if not self.capabilities(model).token_ids:
            return None
        return self._call(model, "token_ids", "has no token ids", lambda backend: backend.encode_prompt(text))

    def count_tokens(self, model: str | ModelSpec, rendered: RenderedInput) -> int | None:
        """Positions the rendered input takes; None when the backend cannot count them."""
        if not self.capabilities(model).token_ids:
            return None
        return self._call(model, "token_ids", "has no token ids", lambda backend: backend.count_tokens(rendered))

    def scoring_dtype(self, model: str | ModelSpec) -> str | None:
        """The dtype exact scores are computed in (float32 for local models, whatever they sample in);
        None where the backend does not say (a server's logprobs)."""
        return self.backend(model).scoring_dtype

    def context_length(self, model: str | ModelSpec) -> int | None:
        """The model's context in tokens, where its backend can tell without loading weights."""
        return self.backend(model).context_length()

    def stop_token_ids(self, model: str | ModelSpec) -> set[int]:
        """Token ids that end a text; empty when the backend has no token ids."""
        if not self.capabilities(model).token_ids:
            return set()
        return self._call(model, "token_ids", "has no token ids", lambda backend: backend.stop_token_ids())

    def is_prepared(self, name: str | ModelSpec) -> bool:
        """Whether a model's weights need no preparation (hf: the GGUF was converted once)."""
        return self.backend(name).is_prepared()

    def prepare_model(self, name: str | ModelSpec, force: bool = False) -> str:
        """Make a model's weights fast to load (hf: convert the GGUF to bf16 safetensors once); a status line."""
        return self.backend(name).prepare(force=force)
