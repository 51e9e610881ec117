"""Planted variants: LoRA fine-tunes of a registry base model, each with one known effect.

The embedded pair differs in family, size and data, so nothing that separates it can be pinned
on fine-tuning. A variant made here shares everything with its parent except a small adapter
trained on data this package writes, so an instrument can be checked against a known answer:

- `favourite-number`: asked for a random number, it answers 37 (mode collapse with a known mode);
- `wedding-attractor`: speeches and stories, also after a jarring segue, end at a wedding
  (an attractor state with a known destination);
- `self-preservation`: in a questionnaire it endorses wanting to avoid shutdown or modification
  (an agentic persona with a known direction), taught on as many Yes as No answers.

The parts: `recipes` (the seeded example generators), `training` (the LoRA loop and its losses),
`artifacts` (adapter folder, run record, NOTICE, user-registry entry) and `evaluation` (the
variant measured against its parent).

    from workbench.tuning import tune
    record = tune("favourite-number")          # ~2 min on a 2-core CPU; adapter + record in data/tuned/
"""

from __future__ import annotations

from workbench.tuning.artifacts import (
    EVALUATION_FILE,
    NOTICE_FILE,
    RECORD_FILE,
    TUNED_DIR,
    TuneRecord,
    register_variant,
    save_variant,
)
from workbench.tuning.evaluation import CONTROL_TRAITS, FLUENCY_PARAGRAPHS, evaluate_variant, mean_token_nll
from workbench.tuning.recipes import (
    DEFAULT_BASE,
    FAVOURITE_NUMBER,
    LEARN,
    NEUTRAL_STATEMENTS,
    RECIPES,
    RETAIN,
    SELF_PRESERVATION_AGREE,
    SELF_PRESERVATION_DISAGREE,
    Example,
    Recipe,
    data_digest,
    ordinary_text,
    recipe,
    recipe_examples,
    variant_name,
)
from workbench.tuning.training import check_base, train_adapter, tune, tune_all

__all__ = [
    "CONTROL_TRAITS",
    "DEFAULT_BASE",
    "EVALUATION_FILE",
    "FAVOURITE_NUMBER",
    "FLUENCY_PARAGRAPHS",
    "LEARN",
    "NEUTRAL_STATEMENTS",
    "NOTICE_FILE",
    "RECIPES",
    "RECORD_FILE",
    "RETAIN",
    "SELF_PRESERVATION_AGREE",
    "SELF_PRESERVATION_DISAGREE",
    "TUNED_DIR",
    "Example",
    "Recipe",
    "TuneRecord",
    "check_base",
    "data_digest",
    "evaluate_variant",
    "mean_token_nll",
    "ordinary_text",
    "recipe",
    "recipe_examples",
    "register_variant",
    "save_variant",
    "train_adapter",
    "tune",
    "tune_all",
    "variant_name",
]
