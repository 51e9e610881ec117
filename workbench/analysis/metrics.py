"""Diversity metrics, each returned as a tidy DataFrame with confidence intervals:
`model, metric, value, ci_low, ci_high, n, method`.

Answer metrics (entropy, top-1 mass, distinct answers) come from a distribution; text metrics
(distinct-n, distinct@k, embedding diversity) and semantic clusters come from free continuations.
Bootstrap intervals are percentile intervals over resampled samples (widened to include the
estimate when small-sample bias puts every replicate on one side); an exact distribution has no
sampling error, so its interval is the value itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.analysis.statistics import (
    DEFAULT_BOOTSTRAP,
    bootstrap_counts,
    bootstrap_indices,
    bootstrap_mean_ci,
    entropy_rows,
    percentile_interval,
)
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.analysis.distributions import AnswerDistribution

METRIC_COLUMNS = ["model", "metric", "value", "ci_low", "ci_high", "n", "method"]
ANSWER_METRICS = ("entropy_bits", "top1_mass", "distinct_answers")
# Two continuations count as the same for distinct@k when their MiniLM cosine similarity is at
# least this. NoveltyBench decides equivalence with a trained classifier that is not available
# offline; 0.75 on all-MiniLM-L6-v2 separates paraphrases (0.75-0.98 in our checks, e.g. "Stock
# markets fell sharply today." / "Shares dropped steeply on the stock market today." = 0.76)
# from different answers on the same topic (typically 0.4-0.7).
EQUIVALENCE_THRESHOLD = 0.75
# Agglomerative clustering cuts the average-linkage tree at this cosine distance.
CLUSTER_DISTANCE = 0.45


def _row(model: str, metric: str, value: float, low: float, high: float, n: float, method: str) -> dict:
    return {"model": model, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high),
            "n": n, "method": method}


def distribution_metrics(dist: AnswerDistribution, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
                         seed: int = 0) -> pd.DataFrame:
    """Entropy (bits), top-1 mass and distinct answers of one distribution, with bootstrap CIs when sampled.

    "(other)" counts as one category. For an exact distribution, distinct answers counts the
    candidates with probability above 1e-3.
    """
    probs = dist.table["probability"].to_numpy(dtype=float)
    if len(probs) == 0:
        raise WorkbenchError(f"{dist.model}: the distribution is empty")
    if dist.method == "exact":
        entropy = float(entropy_rows(probs[None, :])[0])
        distinct = float((probs > 1e-3).sum())
        return pd.DataFrame([
            _row(dist.model, "entropy_bits", entropy, entropy, entropy, np.nan, "exact"),
            _row(dist.model, "top1_mass", probs.max(), probs.max(), probs.max(), np.nan, "exact"),
            _row(dist.model, "distinct_answers", distinct, distinct, distinct, np.nan, "exact"),
        ], columns=METRIC_COLUMNS)
    counts = dist.table["count"].to_numpy(dtype=float)
    return count_metrics(counts, dist.model, confidence, n_boot, seed)


def answer_metric_values(shares: np.ndarray) -> np.ndarray:
    """[3, m]: entropy (bits), top-1 mass and distinct answers of each row of a [m, k] share matrix (ANSWER_METRICS)."""
    return np.vstack([entropy_rows(shares), shares.max(axis=1), (shares > 0).sum(axis=1).astype(float)])


def count_metrics(counts: np.ndarray, model: str, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> pd.DataFrame:
    """Entropy, top-1 mass and distinct answers from answer counts, with bootstrap percentile CIs."""
    counts = np.asarray(counts, dtype=float)
    n = int(counts.sum())
    if n == 0:
        raise WorkbenchError(f"{model}: no samples; sample with n >= 1 first")
    boot = bootstrap_counts(counts, n_boot, seed) / n
    rows = []
    for metric, point, replicates in zip(ANSWER_METRICS, answer_metric_values((counts / n)[None, :])[:, 0],
                                         answer_metric_values(boot), strict=True):
        # The interval keeps the estimate: plug-in entropy and top-1 mass are biased at small n.
        low, high = percentile_interval(replicates, confidence, estimate=point)
        rows.append(_row(model, metric, point, low, high, n, "sampled"))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def answer_metrics(answers: list[str], model: str, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0) -> pd.DataFrame:
    """Entropy, top-1 mass and distinct answers of a list of extracted answers."""
    if not answers:
        raise WorkbenchError(f"{model}: no answers; sample with n >= 1 first")
    _, counts = np.unique(np.array(answers, dtype=object).astype(str), return_counts=True)
    return count_metrics(counts, model, confidence, n_boot, seed)


# --------------------------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]")


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams across the texts (Li et al.'s distinct-n); NaN without n-grams."""
    grams = [g for t in texts for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the string match of distinct@k."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def equivalence_classes(texts: list[str], embeddings: np.ndarray,
                        threshold: float = EQUIVALENCE_THRESHOLD) -> list[int]:
    """A class id per text: one class when normalised strings match or cosine >= threshold (to its first member)."""
    classes: list[int] = []
    representatives: list[int] = []
    keys: dict[str, int] = {}
    for i, text in enumerate(texts):
        key = normalise_text(text)
        if key in keys:
            classes.append(keys[key])
            continue
        match = next((c for c, r in enumerate(representatives)
                      if float(embeddings[i] @ embeddings[r]) >= threshold), None)
        if match is None:
            match = len(representatives)
            representatives.append(i)
        keys[key] = match
        classes.append(match)
    return classes


def text_metrics(samples: pd.DataFrame, k: int = 10, threshold: float = EQUIVALENCE_THRESHOLD,
                 confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """distinct-1, distinct-2, distinct@k and embedding diversity per model of a tidy samples frame.

    distinct@k: the samples are cut, in index order, into groups of k; each group's number of
    equivalence classes is averaged (CI over groups). Embedding diversity: mean pairwise cosine
    distance (CI by resampling texts). distinct-n CIs resample texts.
    """
    if samples is None or len(samples) == 0:
        raise WorkbenchError("no samples to measure; sample with n >= 1 first")
    from workbench.embeddings import embed

    rows = []
    rng = np.random.default_rng(seed)  # one stream: each metric's resamples are drawn after the last one's
    replicates_n = min(n_boot, 500)  # distinct-n and pairwise distances are slow per replicate
    for model, group in samples.groupby("model", sort=False):
        texts = list(group.sort_values("sample_index")["text"]) if "sample_index" in group else list(group["text"])
        n = len(texts)
        for order in (1, 2):
            point = distinct_n(texts, order)
            replicates = [distinct_n([texts[i] for i in idx], order) for idx in bootstrap_indices(n, replicates_n, rng)]
            low, high = percentile_interval(np.array(replicates, dtype=float), confidence)
            rows.append(_row(str(model), f"distinct_{order}", point, low, high, n, "sampled"))
        vectors = embed(texts)
        if n >= k:
            groups = [list(range(start, start + k)) for start in range(0, n - k + 1, k)]
            per_group = np.array([
                len(set(equivalence_classes([texts[i] for i in g], vectors[g], threshold))) for g in groups
            ], dtype=float)
            low, high = bootstrap_mean_ci(per_group, confidence, n_boot, seed)
            rows.append(_row(str(model), f"distinct_at_{k}", per_group.mean(), low, high, n, "sampled"))
        if n >= 2:
            distances = 1 - vectors @ vectors.T
            upper = np.triu_indices(n, 1)
            point = float(distances[upper].mean())
            replicates = [float(distances[np.ix_(idx, idx)][upper].mean())
                          for idx in bootstrap_indices(n, replicates_n, rng)]
            low, high = percentile_interval(np.array(replicates), confidence)
            rows.append(_row(str(model), "embedding_diversity", point, low, high, n, "sampled"))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


# --------------------------------------------------------------------------------------------
# Semantic clusters
# --------------------------------------------------------------------------------------------


@dataclass
class Clusters:
    """Semantic clusters of continuations from one or more models."""

    points: pd.DataFrame  # model, sample_index, text, x, y, cluster
    clusters: pd.DataFrame  # cluster, label (medoid text), x, y, size, share_<model>...
    shares: pd.DataFrame  # cluster, label, model, count, share


def semantic_clusters(samples: pd.DataFrame, distance: float = CLUSTER_DISTANCE, seed: int = 0) -> Clusters:
    """Agglomerative clusters (average linkage, cosine) of all models' continuations together.

    Each cluster is labelled by its medoid (the text closest on average to the rest of its
    cluster) and gets its share of each model's samples; x and y are a 2-D PCA projection of the
    embeddings, for maps.
    """
    if samples is None or len(samples) < 2:
        raise WorkbenchError("clustering needs at least two continuations; sample more")
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.decomposition import PCA

    from workbench.embeddings import embed

    frame = samples.reset_index(drop=True)
    texts = [t if t.strip() else "(empty)" for t in frame["text"]]
    vectors = embed(texts)
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                     linkage="average").fit_predict(vectors)
    coords = PCA(n_components=2, random_state=seed).fit_transform(vectors) if len(texts) > 2 else np.c_[vectors[:, 0],
                                                                                                       vectors[:, 1]]
    points = pd.DataFrame({
        "model": frame["model"], "sample_index": frame.get("sample_index", pd.Series(range(len(frame)))),
        "text": frame["text"], "x": coords[:, 0], "y": coords[:, 1], "cluster": labels,
    })
    models = list(dict.fromkeys(frame["model"]))
    totals = points.groupby("model").size()
    cluster_rows, share_rows = [], []
    # Number clusters by size so cluster 0 is the biggest.
    order = points["cluster"].value_counts().index.tolist()
    renumber = {old: new for new, old in enumerate(order)}
    points["cluster"] = points["cluster"].map(renumber)
    for cluster, members in points.groupby("cluster"):
        idx = members.index.to_numpy()
        within = 1 - vectors[idx] @ vectors[idx].T
        medoid = idx[int(within.sum(axis=1).argmin())]
        label = points.at[medoid, "text"]
        row = {"cluster": int(cluster), "label": label if label.strip() else "(empty)", "x": points.at[medoid, "x"],
               "y": points.at[medoid, "y"], "size": len(idx)}
        for model in models:
            count = int((members["model"] == model).sum())
            row[f"share_{model}"] = count / totals[model]
            share_rows.append({"cluster": int(cluster), "label": row["label"], "model": model, "count": count,
                               "share": count / totals[model]})
        cluster_rows.append(row)
    return Clusters(points, pd.DataFrame(cluster_rows), pd.DataFrame(share_rows))
