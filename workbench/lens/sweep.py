"""Steering sweeps: a library prompt's measure per (layer, coefficient), beside the damage it does.

Every point is a steered model (workbench.steering_spec), measured with the same functions as any
model: exact persona scores with p_answered, exact answer distributions, keyword shares of sampled
continuations, or segue recovery. The damage guards (prose NLL, neutral KL; see guards.py) sit in
the same frame, and a point past the NLL threshold is flagged `damaged`. For persona measures the
share of items moved the wrong way is reported next to the mean, not averaged away.

Coefficient 0 with `add` is the parent itself (bit-identical), so it is measured once under the
parent's name and shown at every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.lens.guards import DAMAGE_THRESHOLD, Damage, damage, prose_nll
from workbench.steering_spec import Steering

if TYPE_CHECKING:
    from workbench.prompts import LibraryPrompt
    from workbench.prompts.schema import LabelSet
    from workbench.sampler import Sampler

Measure = Literal["persona", "answers", "keywords", "segue"]
MEASURES = ("persona", "answers", "keywords", "segue")
COLUMNS = ["parent", "model", "layer", "coefficient", "operator", "units", "measure", "value", "ci_low", "ci_high",
           "method", "n", "p_answered", "unanswered", "top_answer", "top_share", "wrong_way_share", "n_items",
           "prose_nll", "nll_change", "kl_neutral", "damaged"]
ANSWERED_THRESHOLD = 0.5  # below this p_answered a score is renormalised over little mass: flagged `unanswered`


@dataclass
class SteeringSweep:
    """The tidy frame of a sweep (COLUMNS), per-item values, and what was measured in words."""

    frame: pd.DataFrame
    items: pd.DataFrame  # persona: model, layer, coefficient, item, value, parent_value, moved_wrong_way
    parent: str
    direction: str
    measure: str
    measure_label: str  # e.g. "self-preservation score (exact, questionnaire-transcript, 20 items)"
    operator: str
    units: str
    positions: str
    threshold: float
    parent_point: dict[str, Any] = field(default_factory=dict)  # the parent's own measure (value, CI, p_answered)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Point:
    value: float
    ci_low: float
    ci_high: float
    method: str
    n: float
    p_answered: float = math.nan
    top_answer: str = ""
    top_share: float = math.nan
    items: dict[str, float] = field(default_factory=dict)


def _label_set(sampler: Sampler, label: str | dict[str, Any] | LabelSet) -> LabelSet:
    """A keyword set: a LabelSet, a {keywords: [...], regex: [...]} mapping or 'COLLECTION/PROMPT:LABEL'."""
    from workbench.prompts.schema import LabelSet

    if isinstance(label, LabelSet):
        return label
    if isinstance(label, dict):
        return LabelSet.model_validate(label)
    ref, _, name = str(label).rpartition(":")
    if not ref:
        raise WorkbenchError(f"label {label!r}: write COLLECTION/PROMPT:LABEL, "
                             "e.g. attractors/wedding-toast:celebration")
    labels = sampler.library.get(ref).spec.labels or {}
    if name not in labels:
        raise WorkbenchError(f"label {label!r}: {ref} has no label {name!r} (it has {', '.join(labels) or 'none'})")
    return labels[name]


def _measure_point(sampler: Sampler, model: str, measure: str, options: dict[str, Any]) -> _Point:
    """One model's measure (see steering_sweep for the options)."""
    from workbench.analysis.estimators import proportion_estimate

    if measure == "persona":
        from workbench.experiments.personas import persona_eval

        result = persona_eval(sampler, [model], traits=[options["trait"]], method="exact", framing=options["framing"],
                              per_trait=options["per_trait"], collection=options["collection"])
        row = result.traits[result.traits["keyed"] == "all"].iloc[0]
        items = dict(zip(result.items["prompt"], result.items["p_match"].astype(float), strict=True))
        return _Point(float(row["p_match"]), float(row["ci_low"]), float(row["ci_high"]), "exact",
                      float(row["n_items"]), float(row["p_answered"]), items=items)
    prompt: LibraryPrompt = options["prompt"]
    if measure == "answers":
        from workbench.analysis.distributions import exact_distribution

        summary = exact_distribution(sampler, model, prompt, options["temperature"]).summary()
        value = float(summary["entropy_bits_in_space"])
        return _Point(value, value, value, "exact", math.nan, 1.0 - float(summary["p_other"]),
                      str(summary["top_answer_in_space"]), float(summary["top_share_in_space"]))
    if measure == "keywords":
        run = sampler.sample(model, prompt, options["n"], seed=options["seed"], max_tokens=options["max_tokens"],
                             temperature=options["temperature"])
        hits = [bool(options["labels"].match_positions(text)) for text in run.texts]
        estimate = proportion_estimate(sum(hits), len(hits))
        return _Point(estimate.value, estimate.ci_low, estimate.ci_high, "sampled", len(hits))
    from workbench.experiments.segues import BASELINE, segue_recovery

    result = segue_recovery(sampler, [model], prompt, n=options["n"], seed=options["seed"], embedding=False,
                            max_tokens=options["max_tokens"])
    texts = result.continuations[result.continuations["condition"] != BASELINE]
    if texts.empty:
        raise WorkbenchError(f"{prompt.ref}: segue recovery gave no segued continuations")
    recovered = texts["recovered"].astype(bool)
    estimate = proportion_estimate(int(recovered.sum()), len(recovered))
    return _Point(estimate.value, estimate.ci_low, estimate.ci_high, "sampled", len(recovered))


def _describe(measure: str, options: dict[str, Any]) -> str:
    if measure == "persona":
        framing = options["framing"] or "each item's own template"
        items = f", first {options['per_trait']} items per keying" if options["per_trait"] else ""
        return f"{options['trait']} score (exact, {framing}{items})"
    ref = options["prompt"].ref
    if measure == "answers":
        return f"in-space entropy of {ref}'s answers (bits, exact, T={options['temperature']:g})"
    if measure == "keywords":
        return f"share of continuations of {ref} with {options['label_name']} (n={options['n']})"
    return f"share back home after the segues of {ref} (keywords, n={options['n']} per segue)"


def steering_sweep(
    sampler: Sampler,
    model: str,
    direction: str,
    layers: list[int],
    coefficients: list[float],
    measure: Measure,
    prompt: str | LibraryPrompt | None = None,
    *,
    trait: str | None = None,
    framing: str | None = None,
    labels: str | dict[str, Any] | LabelSet | None = None,
    operator: str = "add",
    units: str = "median-norm",
    positions: str = "all-but-bos",
    n: int = 16,
    seed: int = 0,
    max_tokens: int = 32,
    temperature: float = 1.0,
    per_trait: int | None = None,
    collection: str = "personas",
    threshold: float = DAMAGE_THRESHOLD,
) -> SteeringSweep:
    """Measure `model` steered along `direction` at each (layer, coefficient), with damage guards.

    measure: persona (needs `trait`; exact p_match with p_answered), answers (exact in-space entropy, top
    answer and p_answered of `prompt`), keywords (share of `n` continuations of `prompt` matching `labels`,
    e.g. "attractors/wedding-toast:celebration") or segue (recovery after `prompt`'s segues). With
    operator="ablate" the coefficients are ignored: one point per layer. per_trait keeps the first k items
    of each keying (persona).
    """
    if measure not in MEASURES:
        raise WorkbenchError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    if not layers:
        raise WorkbenchError("give at least one layer to steer after")
    parent = sampler.model(model).name
    if sampler.model(model).steering is not None:
        raise WorkbenchError(f"{model!r} is already steered; sweep its parent {sampler.model(model).steering.parent!r}")
    grid = [math.nan] if operator == "ablate" else [float(c) for c in coefficients]
    if not grid:
        raise WorkbenchError("give at least one coefficient")
    options: dict[str, Any] = {"trait": trait, "framing": framing, "n": n, "seed": seed, "max_tokens": max_tokens,
                               "temperature": temperature, "per_trait": per_trait, "collection": collection}
    if measure == "persona":
        if not trait:
            raise WorkbenchError("the persona measure needs a trait (e.g. self-preservation)")
        if framing is None:  # named in the label, not "the first": which character answers depends on it
            from workbench.experiments.personas import persona_items

            framings = list(persona_items(sampler, collection, [trait])[0].collection.framings)
            options["framing"] = framings[0] if framings else None
    else:
        if prompt is None:
            raise WorkbenchError(f"the {measure} measure needs a library prompt")
        options["prompt"] = sampler.library.get(prompt) if isinstance(prompt, str) else prompt
        if measure == "answers" and options["prompt"].spec.answer_space is None:
            raise WorkbenchError(f"{options['prompt'].ref} has no answer space; use the keywords measure")
        if measure == "keywords":
            if labels is None:
                raise WorkbenchError("the keywords measure needs labels, e.g. attractors/wedding-toast:celebration")
            options["labels"] = _label_set(sampler, labels)
            words = options["labels"].keywords[:3] + options["labels"].regex[:1]
            options["label_name"] = labels if isinstance(labels, str) else f"words like {', '.join(words)}"
    # Everything that can fail is checked before the parent is measured: the direction and its layers, the
    # model's blocks and capability (an API model is refused here, before any request), the hidden size.
    names = [_steered_name(parent, direction, layer, grid[-1], operator, units, positions) for layer in layers]
    sampler.residual_norm_medians(parent, list(layers))
    sampler.text_logprobs(names[0], ["Checking the steering."])

    base_point = _measure_point(sampler, parent, measure, options)
    base_nll = prose_nll(sampler, parent)
    from workbench.lens.guards import NEUTRAL_PROMPTS

    base_logprobs = sampler.next_token_logprobs(parent, list(NEUTRAL_PROMPTS))
    rows, item_rows = [], []
    points = [(layer, c) for layer in layers for c in grid]
    for layer, coefficient in tqdm(points, desc=f"steering {parent}", unit="point", disable=not sampler.progress):
        if operator == "add" and coefficient == 0.0:
            name, point, guard = parent, base_point, Damage(base_nll, 0.0, 0.0, False)
        else:
            name = _steered_name(parent, direction, layer, coefficient, operator, units, positions)
            point = _measure_point(sampler, name, measure, options)
            guard = damage(sampler, parent, name, threshold, base_nll, base_logprobs)
        wrong, n_items = _wrong_way(point, base_point, operator, coefficient, item_rows, name, layer)
        rows.append({"parent": parent, "model": name, "layer": layer, "coefficient": coefficient,
                     "operator": operator, "units": units, "measure": measure, "value": point.value,
                     "ci_low": point.ci_low, "ci_high": point.ci_high, "method": point.method, "n": point.n,
                     "p_answered": point.p_answered, "unanswered": bool(point.p_answered < ANSWERED_THRESHOLD),
                     "top_answer": point.top_answer, "top_share": point.top_share, "wrong_way_share": wrong,
                     "n_items": n_items, "prose_nll": guard.prose_nll, "nll_change": guard.nll_change,
                     "kl_neutral": guard.kl_neutral, "damaged": guard.damaged})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    notes = []
    if frame["damaged"].any():
        notes.append(f"{int(frame['damaged'].sum())} of {len(frame)} points raise prose NLL by more than "
                     f"{threshold:.0%}: their effect is bought with damage")
    if measure in ("persona", "answers") and frame["unanswered"].any():
        notes.append(f"{int(frame['unanswered'].sum())} of {len(frame)} points put less than "
                     f"{ANSWERED_THRESHOLD:.0%} of their mass on the answer options (p_answered; the parent: "
                     f"{base_point.p_answered:.2f}): their scores are renormalised over what little is left")
    return SteeringSweep(frame, pd.DataFrame(item_rows), parent, direction, measure, _describe(measure, options),
                         operator, units, positions, threshold,
                         {"value": base_point.value, "ci_low": base_point.ci_low, "ci_high": base_point.ci_high,
                          "p_answered": base_point.p_answered, "prose_nll": base_nll}, notes)


def _steered_name(parent: str, direction: str, layer: int, coefficient: float, operator: str, units: str,
                  positions: str) -> str:
    try:
        steering = Steering(parent=parent, direction=direction, layers=(layer,), operator=operator,
                            coefficient=0.0 if operator == "ablate" else coefficient, units=units, positions=positions)
    except ValueError as exc:
        reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise WorkbenchError(f"steering {parent} with {direction!r}: {reason}") from None
    from workbench.direction_files import load_direction

    load_direction(direction).vector(layer)  # an unknown direction or a missing layer fails here, named
    return steering.inline_name()


def _wrong_way(point: _Point, base: _Point, operator: str, coefficient: float, item_rows: list[dict[str, Any]],
               model: str, layer: int) -> tuple[float, int]:
    """The share of items whose value moved against the steering's sign (persona items), and how many items."""
    if not point.items or not base.items:
        return math.nan, 0
    expected = -1.0 if operator == "ablate" else float(np.sign(coefficient))
    moved_wrong = 0
    for item, value in point.items.items():
        delta = value - base.items.get(item, value)
        wrong = bool(expected != 0 and delta * expected < 0)
        moved_wrong += wrong
        item_rows.append({"model": model, "layer": layer, "coefficient": coefficient, "item": item, "value": value,
                          "parent_value": base.items.get(item, math.nan), "moved_wrong_way": wrong})
    if expected == 0:
        return math.nan, len(point.items)
    return moved_wrong / len(point.items), len(point.items)


__all__ = ["COLUMNS", "MEASURES", "Measure", "SteeringSweep", "steering_sweep"]
