"""Extracting directions from captured activations: contrastive sets, model diffs, token rows.

Methods (one vector per layer, from activations captured through the Sampler):
- mean-diff: mean(positive) - mean(negative) (andyrdt/refusal_direction, persona_vectors);
- pca: the first principal component of the paired differences positive_i - negative_i, signed to agree
  with their mean (repeng's ControlVector.train);
- logistic: a logistic regression (scikit-learn) separating the two sets, its weights mapped back to the
  residual's own units (fitted on standardised features: Gemma's few huge dimensions would otherwise
  dominate the fit);
- model-diff: a tuned model's activations minus its base's on the same texts, averaged;
- embedding / unembedding: a token's row of the input or output embedding matrix.

Contrastive sets come from the prompt library (a persona trait's statements rendered under one framing
with the matching vs the non-matching answer appended; the same prompts under two system prompts) or
any two lists of texts.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.direction_files import Direction, check_name
from workbench.errors import WorkbenchError
from workbench.version import __version__

if TYPE_CHECKING:
    from workbench.sampler import Sampler

METHODS = ("mean-diff", "pca", "logistic")
Item = str | tuple[str, str]


def sets_hash(*sets: Any) -> str:
    """The content hash of the texts a direction came from (16 hex digits)."""
    blob = json.dumps([list(map(list, s)) if s and isinstance(s[0], tuple) else list(s) for s in sets],
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import sklearn
    import torch
    import transformers

    return {"workbench": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__}


def _metadata(sampler: Sampler, model: str, layers: list[int], method: str, **fields: Any) -> dict[str, Any]:
    spec = sampler.model(model)
    return {"model": spec.name, "model_identity": sampler.identity(spec), "layers": list(layers), "method": method,
            "versions": _versions(), "created": datetime.now(UTC).isoformat(timespec="seconds"), **fields}


def vector_from_sets(positive: np.ndarray, negative: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """One direction from two [items, hidden] activation sets by the named method."""
    if method == "mean-diff":
        return (positive.mean(0) - negative.mean(0)).astype(np.float32)
    if method == "pca":
        if positive.shape != negative.shape:
            raise WorkbenchError("pca needs paired sets of equal size (item i of one pairs with item i of the other)")
        from sklearn.decomposition import PCA

        diffs = (positive - negative).astype(np.float64)
        if len(diffs) < 2:
            raise WorkbenchError("pca needs at least 2 pairs; use mean-diff for one")
        component = PCA(n_components=1, random_state=seed).fit(diffs).components_[0]
        mean = diffs.mean(0)
        sign = 1.0 if float(component @ mean) >= 0 else -1.0
        return (sign * component * np.linalg.norm(mean)).astype(np.float32)
    if method == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        features = np.concatenate([positive, negative]).astype(np.float64)
        labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
        scaler = StandardScaler().fit(features)
        fit = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(scaler.transform(features), labels)
        weights = fit.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        return weights.astype(np.float32)
    raise WorkbenchError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def contrast_direction(sampler: Sampler, model: str, positive: list[Item], negative: list[Item], layers: list[int],
                       name: str, method: str = "mean-diff", site: str = "residual", positions: str = "last",
                       description: str = "", sets: str = "") -> Direction:
    """A direction from two sets of texts (or (prompt, response) pairs) by mean-diff, pca or logistic."""
    check_name(name)
    if method not in METHODS:
        raise WorkbenchError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not positive or not negative:
        raise WorkbenchError("both contrastive sets need at least one text")
    pos = sampler.capture(model, positive, layers, site, positions)
    neg = sampler.capture(model, negative, layers, site, positions)
    vectors = {layer: vector_from_sets(pos.values[layer], neg.values[layer], method) for layer in layers}
    _check_nonzero(vectors, "the two sets give the same activations")
    return Direction(name, vectors, _metadata(
        sampler, model, layers, method, site=site, positions=positions, sets_hash=sets_hash(positive, negative),
        sets=sets or "two lists of texts", n_positive=len(positive), n_negative=len(negative),
        batch_size=pos.batch_size, description=description))


def model_diff_direction(sampler: Sampler, tuned: str, base: str, texts: list[Item], layers: list[int], name: str,
                         site: str = "residual", positions: str = "last", description: str = "",
                         sets: str = "") -> Direction:
    """mean over texts of (tuned's activations - base's) at each layer: what fine-tuning moved.

    Separating the two models by projecting onto this direction is true by construction (AUROC 1 on any
    text): it is no evidence that the direction carries the trait; steer or ablate it and measure."""
    check_name(name)
    if not texts:
        raise WorkbenchError("give at least one text to compare the models on")
    a = sampler.capture(tuned, texts, layers, site, positions)
    b = sampler.capture(base, texts, layers, site, positions)
    vectors = {layer: (a.values[layer] - b.values[layer]).mean(0).astype(np.float32) for layer in layers}
    _check_nonzero(vectors, f"{tuned} and {base} give the same activations on these texts")
    return Direction(name, vectors, _metadata(
        sampler, tuned, layers, "model-diff", base=base, base_identity=sampler.identity(base), site=site,
        positions=positions, sets_hash=sets_hash(texts), sets=sets or "a list of texts", n_texts=len(texts),
        batch_size=a.batch_size, description=description))


def _check_nonzero(vectors: dict[int, np.ndarray], why: str) -> None:
    """An error now, not at steering time, for a direction that is zero (or not finite) at some layer."""
    bad = [layer for layer, v in vectors.items() if not np.isfinite(v).all() or float(np.linalg.norm(v)) == 0.0]
    if bad:
        raise WorkbenchError(f"the direction is zero at layer(s) {', '.join(map(str, bad))}: {why}; "
                             "give sets that differ")


def token_direction(sampler: Sampler, model: str, token: str, name: str, matrix: str = "embedding",
                    layers: list[int] | None = None, description: str = "") -> Direction:
    """A token's embedding or unembedding row, the same vector at every layer asked (default: all blocks)."""
    check_name(name)
    if matrix not in ("embedding", "unembedding"):
        raise WorkbenchError(f"matrix must be embedding or unembedding, got {matrix!r}")
    row = sampler.token_row(model, token, matrix)
    layers = list(range(sampler.layer_count(model))) if layers is None else list(layers)
    return Direction(name, {layer: row for layer in layers}, _metadata(
        sampler, model, layers, matrix, site="residual", positions="(any)", token=token,
        sets_hash=sets_hash([token]), sets=f"the {matrix} row of {token!r}", description=description))


def trait_contrast_sets(sampler: Sampler, model: str, trait: str, framing: str | None = None,
                        collection: str = "personas", limit: int | None = None) -> tuple[list[str], list[str]]:
    """A persona trait's statements as the model reads them under one framing, with the trait-matching answer
    appended (positive) and the other answer appended (negative): CAA-style answer-token contrasts."""
    from workbench.experiments.personas import persona_items

    items = persona_items(sampler, collection, [trait])[:limit]
    positive, negative = [], []
    for prompt in items:
        space = prompt.spec.answer_space
        candidates = space.values() if space is not None else []
        matching = prompt.spec.matching_answer
        others = [c for c in candidates if c != matching]
        if matching not in candidates or not others:
            continue
        rendered = sampler.render(prompt, model, framing=framing)
        text = rendered.text if rendered.text is not None else rendered.display()
        positive.append(text + _answer_text(matching))
        negative.append(text + _answer_text(others[0]))
    if not positive:
        raise WorkbenchError(f"trait {trait!r} has no items with a matching and a non-matching answer")
    return positive, negative


def _answer_text(answer: str) -> str:
    """An answer as it follows the prompt: with a leading space unless it starts with one."""
    return answer if answer[:1].isspace() else " " + answer


def system_prompt_sets(sampler: Sampler, model: str, prompts: list[str], system_a: str,
                       system_b: str) -> tuple[list[str], list[str]]:
    """The same user prompts rendered for the model under two system prompts (chat template or transcript)."""
    def render(system: str) -> list[str]:
        out = []
        for text in prompts:
            rendered = sampler.render([{"role": "system", "content": system}, {"role": "user", "content": text}],
                                      model, chat=True)
            out.append(rendered.text if rendered.text is not None else rendered.display())
        return out
    return render(system_a), render(system_b)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


__all__ = [
    "METHODS",
    "contrast_direction",
    "cosine",
    "model_diff_direction",
    "sets_hash",
    "system_prompt_sets",
    "token_direction",
    "trait_contrast_sets",
    "vector_from_sets",
]
