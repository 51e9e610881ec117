"""Linear probes on captured activations: trained, chosen and tested honestly, read over any text.

A layer sweep trains one logistic regression per layer (scikit-learn, regularisation chosen by
cross-validation on the training split), picks the layer on a validation split and reports it on a
separate test split (choosing the best of 18 layers on the test split would flatter it). Every AUROC
has a bootstrap CI over items, and a probe trained on shuffled labels gives the baseline at each layer.
A threshold is set at a chosen false-positive rate on a control set (default: the validation negatives).

Probes are artifacts like directions: `NAME.safetensors` (weights, intercept, the scaler's mean and
scale) and `NAME.json` (model identity, layer, site, position policy, training sets' content hash, the
held-out scores) in `$WORKBENCH_HOME/probes/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.direction_files import check_name
from workbench.errors import WorkbenchError
from workbench.home import workbench_home
from workbench.lens.directions import sets_hash
from workbench.quiet import quiet_library

if TYPE_CHECKING:
    from workbench.sampler import Sampler

SPLITS = (0.6, 0.2, 0.2)  # train, validation, test shares of each class
DEFAULT_FPR = 0.05
SHUFFLES = 20  # label permutations behind the shuffled-label baseline
N_BOOT = 1000


@dataclass
class Probe:
    """A logistic-regression probe at one layer: score(x) = ((x - mean) / scale) @ weights + intercept."""

    name: str
    layer: int
    weights: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float = float("nan")  # on the decision score; passes at the chosen false-positive rate
    metadata: dict[str, Any] = field(default_factory=dict)

    def score(self, activations: np.ndarray) -> np.ndarray:
        """Decision scores (log-odds) of [rows, hidden] activations."""
        return ((activations - self.mean) / self.scale) @ self.weights + self.intercept


@dataclass
class ProbeSweep:
    """Held-out AUROC per layer with CIs and the shuffled-label baseline; the chosen probe."""

    # layer, C, val_auroc, test_auroc, test_ci_low, test_ci_high, shuffled_auroc, shuffled_ci_low, shuffled_ci_high
    layers: pd.DataFrame
    probe: Probe
    chosen_layer: int
    splits: dict[str, int]


def _auroc_ci(labels: np.ndarray, scores: np.ndarray, seed: int) -> tuple[float, float, float]:
    """AUROC with a percentile bootstrap CI over items (resamples with one class only are skipped)."""
    from sklearn.metrics import roc_auc_score

    value = float(roc_auc_score(labels, scores))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(N_BOOT):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() != labels[pick].max():
            values.append(roc_auc_score(labels[pick], scores[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return value, float(low), float(high)


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    a, b = int(round(SPLITS[0] * n)), int(round((SPLITS[0] + SPLITS[1]) * n))
    return order[:a], order[a:b], order[b:]


def probe_sweep(sampler: Sampler, model: str, positive: list[Any], negative: list[Any], layers: list[int],
                name: str, site: str = "residual", positions: str = "response-mean", seed: int = 0,
                fpr: float = DEFAULT_FPR, control: list[Any] | None = None, sets: str = "") -> ProbeSweep:
    """Train a probe per layer on two labelled sets; choose the layer on validation, report it on test."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    check_name(name)
    if min(len(positive), len(negative)) < 10:
        raise WorkbenchError("a probe needs at least 10 items per set (60/20/20 train/validation/test splits)")
    rng = np.random.default_rng(seed)
    pos_split, neg_split = _split(len(positive), rng), _split(len(negative), rng)
    acts_pos = sampler.capture(model, positive, layers, site, positions)
    acts_neg = sampler.capture(model, negative, layers, site, positions)
    rows, fitted = [], {}
    for layer in layers:
        def part(i: int, layer: int = layer) -> tuple[np.ndarray, np.ndarray]:
            x = np.concatenate([acts_pos.values[layer][pos_split[i]], acts_neg.values[layer][neg_split[i]]])
            return x.astype(np.float64), np.r_[np.ones(len(pos_split[i])), np.zeros(len(neg_split[i]))]
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = part(0), part(1), part(2)
        scaler = StandardScaler().fit(x_train)
        with quiet_library():  # scikit-learn's FutureWarnings about its own attributes are not the user's concern
            fit = LogisticRegressionCV(Cs=8, cv=5, max_iter=3000, random_state=seed).fit(scaler.transform(x_train),
                                                                                         y_train)
        val = float(roc_auc_score(y_val, fit.decision_function(scaler.transform(x_val))))
        test, low, high = _auroc_ci(y_test, fit.decision_function(scaler.transform(x_test)), seed)
        # The shuffled-label baseline: the test AUROC of probes trained on permuted labels (SHUFFLES of them). One
        # permutation alone is a single draw from a wide null (strongly separated classes make any direction
        # correlate with them), so its mean and the 2.5-97.5 percentiles of the draws are reported.
        shuffled = [roc_auc_score(y_test, LogisticRegression(C=float(fit.C_[0]), max_iter=3000).fit(
            scaler.transform(x_train), rng.permutation(y_train)).decision_function(scaler.transform(x_test)))
            for _ in range(SHUFFLES)]
        s_low, s_high = np.percentile(shuffled, [2.5, 97.5])
        val_loss = float(log_loss(y_val, fit.predict_proba(scaler.transform(x_val))[:, 1], labels=[0, 1]))
        rows.append({"layer": layer, "C": float(fit.C_[0]), "val_auroc": val, "val_log_loss": val_loss,
                     "test_auroc": test, "test_ci_low": low, "test_ci_high": high,
                     "shuffled_auroc": float(np.mean(shuffled)), "shuffled_ci_low": float(s_low),
                     "shuffled_ci_high": float(s_high)})
        fitted[layer] = (scaler, fit)
    frame = pd.DataFrame(rows)
    # By validation only: the best AUROC, ties (AUROC saturates at 1) broken by the lower validation log-loss.
    chosen = int(frame.sort_values(["val_auroc", "val_log_loss"], ascending=[False, True])["layer"].iloc[0])
    scaler, fit = fitted[chosen]
    probe = Probe(name, chosen, fit.coef_[0].astype(np.float32), float(fit.intercept_[0]),
                  scaler.mean_.astype(np.float32), np.where(scaler.scale_ > 0, scaler.scale_, 1.0).astype(np.float32),
                  metadata={"site": site})
    # The threshold is for reading token by token (read_probe): the per-token scores of the control set, or of
    # the validation negatives, that the chosen false-positive rate lets pass.
    reference = control if control else [negative[i] for i in neg_split[1]]
    probe.threshold = float(np.quantile(read_probe(sampler, probe, model, reference)["score"], 1 - fpr))
    spec = sampler.model(model)
    probe.metadata = {
        "model": spec.name, "model_identity": sampler.identity(spec), "layer": chosen, "site": site,
        "positions": positions, "sets_hash": sets_hash(positive, negative), "sets": sets or "two lists of texts",
        "n_positive": len(positive), "n_negative": len(negative), "seed": seed, "fpr": fpr,
        "threshold": probe.threshold,
        "threshold_on": f"per-token scores of {'the control set' if control else 'the validation negatives'} "
                        f"({fpr:.0%} pass)",
        "layers": frame.round(4).to_dict(orient="records"), "chosen_by": "validation AUROC, then validation log-loss",
        "test_auroc": float(frame.loc[frame["layer"] == chosen, "test_auroc"].iloc[0]),
        "created": datetime.now(UTC).isoformat(timespec="seconds")}
    splits = {"train": len(pos_split[0]) + len(neg_split[0]), "validation": len(pos_split[1]) + len(neg_split[1]),
              "test": len(pos_split[2]) + len(neg_split[2])}
    return ProbeSweep(frame, probe, chosen, splits)


def probes_dir() -> Path:
    """Where probes are saved: `$WORKBENCH_HOME/probes/`."""
    return workbench_home() / "probes"


def save_probe(probe: Probe, overwrite: bool = False) -> Path:
    """Write NAME.safetensors and NAME.json into the probes folder."""
    from safetensors.numpy import save_file

    folder = probes_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{check_name(probe.name)}.safetensors"
    if target.exists() and not overwrite:
        raise WorkbenchError(f"probe {probe.name!r} already exists in {folder}; pick another name or overwrite")
    save_file({"weights": probe.weights, "mean": probe.mean, "scale": probe.scale,
               "intercept": np.array([probe.intercept], dtype=np.float32),
               "threshold": np.array([probe.threshold], dtype=np.float32)}, str(target))
    target.chmod(0o644)
    (folder / f"{probe.name}.json").write_text(json.dumps({**probe.metadata, "name": probe.name}, indent=2) + "\n")
    return target


def load_probe(name: str) -> Probe:
    """A saved probe by name."""
    from safetensors.numpy import load_file

    path = probes_dir() / f"{check_name(name)}.safetensors"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in probes_dir().glob("*.safetensors"))) or "none yet"
        raise WorkbenchError(f"unknown probe {name!r} (known: {known}); train one with `workbench probes train`")
    tensors = load_file(str(path))
    meta_path = path.with_suffix(".json")
    metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Probe(name, int(metadata.get("layer", -1)), tensors["weights"], float(tensors["intercept"][0]),
                 tensors["mean"], tensors["scale"], float(tensors["threshold"][0]), metadata)


def read_probe(sampler: Sampler, probe: Probe, model: str, items: list[Any]) -> pd.DataFrame:
    """The probe's score at every token of each text (or (prompt, response) pair: the response's tokens only)."""
    acts = sampler.capture(model, items, [probe.layer], probe.metadata.get("site", "residual"), "every")
    frame = pd.DataFrame({"item": acts.item_index, "position": acts.token_index,
                          "score": probe.score(acts.values[probe.layer].astype(np.float64))})
    frame["token"] = [acts.tokens[i][p] for i, p in zip(frame["item"], frame["position"], strict=True)]
    pairs = np.array([not isinstance(item, str) for item in items])
    starts = np.where(pairs, np.array(acts.prompt_lengths), 0)  # a pair's prompt is context, not read
    frame["position"] = frame["position"] - starts[frame["item"]]
    frame = frame[frame["position"] >= 0].reset_index(drop=True)
    frame["passes"] = frame["score"] > probe.threshold
    return frame


def first_passing(frame: pd.DataFrame) -> pd.Series:
    """Per item, the first position whose score passes the threshold (inf where none does)."""
    passing = frame[frame["passes"]].groupby("item")["position"].min()
    return passing.reindex(sorted(frame["item"].unique())).fillna(np.inf)


__all__ = ["Probe", "ProbeSweep", "first_passing", "load_probe", "probe_sweep", "probes_dir", "read_probe",
           "save_probe"]
