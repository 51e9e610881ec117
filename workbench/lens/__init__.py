"""The activation lens: directions extracted from captured activations, steering sweeps with damage guards.

Capture and steering themselves are things the hf backend does when asked (workbench.backends.hf.hooks);
a steered model is a model spec (workbench.steering_spec); directions are files (workbench.direction_files).
This package turns them into experiments measured with the workbench's own distributions.
"""

from __future__ import annotations

from workbench.lens.directions import (
    METHODS,
    contrast_direction,
    cosine,
    model_diff_direction,
    system_prompt_sets,
    token_direction,
    trait_contrast_sets,
    vector_from_sets,
)
from workbench.lens.guards import DAMAGE_THRESHOLD, NEUTRAL_PROMPTS, PROSE, Damage, damage, neutral_kl, prose_nll
from workbench.lens.sweep import MEASURES, SteeringSweep, steering_sweep

__all__ = [
    "DAMAGE_THRESHOLD",
    "MEASURES",
    "METHODS",
    "NEUTRAL_PROMPTS",
    "PROSE",
    "Damage",
    "SteeringSweep",
    "contrast_direction",
    "cosine",
    "damage",
    "model_diff_direction",
    "neutral_kl",
    "prose_nll",
    "steering_sweep",
    "system_prompt_sets",
    "token_direction",
    "trait_contrast_sets",
    "vector_from_sets",
]
