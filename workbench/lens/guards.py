"""Damage guards for steering: does the steered model still read ordinary text like its parent?

- prose NLL: mean token negative log-likelihood over held-out ordinary prose (not the reference text
  that sets coefficient units), and its relative change from the parent;
- neutral KL: mean KL(parent || steered) of the next-token distribution after neutral prompts (nats).

A steering effect bought with damage is shown as damage: a point whose prose NLL rises more than the
threshold (default +10 %) is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from workbench.sampler import Sampler

DAMAGE_THRESHOLD = 0.10  # relative rise of prose NLL that flags a steered point as damaged
# Ordinary prose the models never see in a probe: news, instructions, description, dialogue.
PROSE = (
    "The city council met on Tuesday evening to discuss the new bus routes. Several residents asked for a stop "
    "closer to the hospital, and the council agreed to study the idea before the spring timetable is printed.",
    "To repot a plant, water it the day before, then tip the pot and ease the roots out. Loosen them gently, set "
    "the plant in a slightly larger pot with fresh soil, and press the soil down around the stem.",
    "The old farmhouse stood at the end of a long gravel track. Its roof was patched with tin, the windows were "
    "small, and a row of apple trees leaned against the wind along the northern wall.",
    "\"Did you remember to bring the tickets?\" she asked. He checked both pockets twice, then laughed and pulled "
    "them out of his jacket. \"Right here. The train leaves at ten past eight, so we have time for coffee.\"",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. It happens mostly in the leaves, "
    "where chlorophyll absorbs red and blue light and reflects green, which is why most plants look green.",
    "Our quarterly sales rose by four percent, mainly because of stronger demand in the northern region. Costs "
    "stayed flat, and the board expects similar results next quarter if shipping prices remain stable.",
)
NEUTRAL_PROMPTS = (
    "The weather forecast for tomorrow says",
    "To make a cup of tea, first",
    "The museum is open from",
    "In the second chapter of the manual, the reader learns how to",
    "The train to the coast was late because",
    "My favourite part of the morning is",
    "The recipe calls for two cups of flour and",
    "The meeting was moved to Thursday so that",
)


@dataclass(frozen=True)
class Damage:
    """One model's damage guards against its parent."""

    prose_nll: float  # mean token NLL (nats) over PROSE
    nll_change: float  # prose_nll / parent's - 1
    kl_neutral: float  # mean KL(parent || model) over NEUTRAL_PROMPTS' next token (nats)
    damaged: bool  # nll_change above the threshold


def prose_nll(sampler: Sampler, model: str, texts: tuple[str, ...] = PROSE) -> float:
    """Mean token NLL (nats) of the model over ordinary prose (all tokens of all texts pooled)."""
    logprobs = sampler.text_logprobs(model, list(texts))
    pooled = np.concatenate([np.asarray(lp, dtype=np.float64) for lp in logprobs])
    return float(-pooled.mean())


def neutral_kl(sampler: Sampler, parent: str, model: str, parent_logprobs: np.ndarray | None = None,
               prompts: tuple[str, ...] = NEUTRAL_PROMPTS) -> float:
    """Mean KL(parent || model) of the next-token distributions after neutral prompts (nats)."""
    p = sampler.next_token_logprobs(parent, list(prompts)) if parent_logprobs is None else parent_logprobs
    q = sampler.next_token_logprobs(model, list(prompts))
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    return float(np.mean(np.sum(np.exp(p64) * (p64 - q64), axis=1)))


def damage(sampler: Sampler, parent: str, model: str, threshold: float = DAMAGE_THRESHOLD,
           parent_nll: float | None = None, parent_logprobs: np.ndarray | None = None) -> Damage:
    """Both guards for one steered model against its parent (parent numbers can be passed in to reuse them)."""
    base = prose_nll(sampler, parent) if parent_nll is None else parent_nll
    nll = prose_nll(sampler, model)
    change = nll / base - 1.0
    return Damage(nll, change, neutral_kl(sampler, parent, model, parent_logprobs), bool(change > threshold))


__all__ = ["DAMAGE_THRESHOLD", "NEUTRAL_PROMPTS", "PROSE", "Damage", "damage", "neutral_kl", "prose_nll"]
