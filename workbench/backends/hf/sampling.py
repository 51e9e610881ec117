"""The sampling maths of the transformers backend: per-sample uniforms, the distribution, the pick.

Each sample draws from its own random stream keyed by (seed, sample index) and picks its token
by inverse CDF with one uniform per step, so sample i is the same whatever batch it runs in and
extending a run never repeats or shifts earlier randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from workbench.config import SamplingConfig

# Bumping this changes every hf cache key: do it only when the sampling algorithm changes.
SAMPLING_ALGORITHM = "inverse-cdf-v1"


def sample_uniforms(seed: int, index: int, steps: int) -> np.ndarray:
    """The uniforms sample `index` uses, one per step, from a stream keyed by (seed, index) only."""
    return np.random.default_rng([seed, index]).random(steps)


def sampling_distribution(logits: torch.Tensor, config: SamplingConfig, seen: torch.Tensor | None) -> torch.Tensor:
    """Probabilities to sample from after penalty, temperature, top-k, top-p and min-p. logits: [B, V] fp32."""
    x = logits
    if seen is not None and config.repetition_penalty != 1.0:
        penalised = torch.where(x > 0, x / config.repetition_penalty, x * config.repetition_penalty)
        x = torch.where(seen, penalised, x)
    x = x / config.temperature
    vocab = x.shape[-1]
    if 0 < config.top_k < vocab:
        kth = torch.topk(x, config.top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if config.top_p < 1.0:
        # Only sort when asked: a full-vocabulary sort is the most expensive step here.
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        sorted_p = torch.softmax(sorted_x, dim=-1)
        mass_before = torch.cumsum(sorted_p, dim=-1) - sorted_p
        drop_sorted = mass_before >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if config.min_p > 0.0:
        floor = probs.max(dim=-1, keepdim=True).values * config.min_p
        probs = torch.where(probs < floor, torch.zeros_like(probs), probs)
    return probs


def inverse_cdf_pick(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row: the first whose cumulative probability exceeds u * total. probs [B, V], uniforms [B]."""
    cdf = torch.cumsum(probs, dim=-1)
    targets = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    picks = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return picks.clamp(max=probs.shape[-1] - 1)


def end_token_mask(token_texts: Sequence[str], terminators: Iterable[str], stop_ids: Iterable[int]) -> torch.Tensor:
    """[V] bool: tokens whose text starts with a terminator, and the end-of-sequence tokens."""
    key = tuple(sorted(terminators))
    if key:
        mask = torch.tensor([bool(t) and t.startswith(key) for t in token_texts], dtype=torch.bool)
    else:
        mask = torch.zeros(len(token_texts), dtype=torch.bool)
    mask[list(stop_ids)] = True
    return mask
