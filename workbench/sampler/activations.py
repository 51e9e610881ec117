"""The Sampler's activation methods: capture, text logprobs and next-token distributions of local models.

Steering needs nothing here: a steered model is a model spec (see workbench.steering_spec), so every
Sampler method takes one. These are the calls the lens (directions, steering sweeps) makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.backends.base import ACTIVATIONS_MISSING
from workbench.types import Activations, TextLogprobs

if TYPE_CHECKING:
    import numpy as np

    from workbench.registry import ModelSpec

CANNOT = "cannot " + ACTIVATIONS_MISSING  # the one line a model without the capability answers
CAPTURE_BATCH = 16  # texts per capture pass: right-padded, so a row equals a one-at-a-time pass


class ActivationQueries:
    """Mixed into the Sampler (which supplies `_call`, from ModelQueries)."""

    if TYPE_CHECKING:  # only declared for type checkers: a stub here would shadow ModelQueries._call
        def _call(self, model: Any, capability: str, missing: str, call: Any) -> Any: ...

    def capture(self, model: str | ModelSpec, items: list[str] | list[tuple[str, str]], layers: list[int],
                site: str = "residual", positions: str = "last", batch_size: int = CAPTURE_BATCH) -> Activations:
        """Activations of a local model at a site after some blocks, one row per text (or per token: "every").

        items are texts or (prompt, response) pairs; positions: last, prompt-mean, response-mean, every.
        """
        pairs = [(item, "") if isinstance(item, str) else (item[0], item[1]) for item in items]
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.capture(pairs, list(layers), site, positions, batch_size))

    def text_logprobs(self, model: str | ModelSpec, texts: list[str],
                      batch_size: int = CAPTURE_BATCH) -> list[list[float]]:
        """Each text's token logprobs under a local model (steering included), every token after the first."""
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.text_logprobs(list(texts), batch_size))

    def next_token_logprobs(self, model: str | ModelSpec, texts: list[str],
                            batch_size: int = CAPTURE_BATCH) -> np.ndarray:
        """[texts, vocabulary] log-probabilities of the token after each text (full distributions, for KL)."""
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.next_token_logprobs(list(texts), batch_size))

    def layer_count(self, model: str | ModelSpec) -> int:
        """How many decoder blocks a local model has."""
        return self._call(model, "activations", CANNOT, lambda backend: backend.layer_count())

    def residual_norm_medians(self, model: str | ModelSpec, layers: list[int]) -> dict[int, float]:
        """Each layer's median residual norm over the fixed reference text (the unit of steering coefficients)."""
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.residual_norm_medians(list(layers)))

    def token_row(self, model: str | ModelSpec, token: str, matrix: str = "embedding") -> np.ndarray:
        """A single token's embedding or unembedding row (float32 [hidden])."""
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.token_row(token, matrix))

    def read_text(self, model: str | ModelSpec, prompt: str, text: str, top_k: int = 5,
                  full: bool = False) -> TextLogprobs:
        """How a local model reads `text` after `prompt`: each token's logprob, its top-k alternatives, and with
        `full` the whole next-token distributions (float32 [tokens, vocabulary]: 1 MB per token for Gemma)."""
        return self._call(model, "activations", CANNOT,
                          lambda backend: backend.read_text(prompt, text, top_k, full))
