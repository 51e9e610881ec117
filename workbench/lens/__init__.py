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
from workbench.lens.divergence import divergent_tokens, run_divergence, text_divergence, top_positions
from workbench.lens.guards import DAMAGE_THRESHOLD, NEUTRAL_PROMPTS, PROSE, Damage, damage, neutral_kl, prose_nll
from workbench.lens.probes import Probe, ProbeSweep, first_passing, load_probe, probe_sweep, read_probe, save_probe
from workbench.lens.story_sets import story_endings
from workbench.lens.sweep import MEASURES, SteeringSweep, steering_sweep

__all__ = [
    "DAMAGE_THRESHOLD",
    "MEASURES",
    "METHODS",
    "NEUTRAL_PROMPTS",
    "PROSE",
    "Damage",
    "Probe",
    "ProbeSweep",
    "SteeringSweep",
    "contrast_direction",
    "cosine",
    "damage",
    "divergent_tokens",
    "first_passing",
    "load_probe",
    "model_diff_direction",
    "neutral_kl",
    "probe_sweep",
    "prose_nll",
    "read_probe",
    "run_divergence",
    "save_probe",
    "steering_sweep",
    "story_endings",
    "system_prompt_sets",
    "text_divergence",
    "token_direction",
    "top_positions",
    "trait_contrast_sets",
    "vector_from_sets",
]
