"""Diversity metrics, each returned as a tidy DataFrame with confidence intervals:
`model, metric, value, ci_low, ci_high, n, method, estimator, interval, reliable, note`.

Answer metrics come from a distribution, in two views (see `workbench.analysis.summaries`): the
total view (entropy_bits, top1_mass, distinct_answers, with "(other)" as one answer) and the
in-space view (entropy_bits_in_space, top_share_in_space), with p_other between them. Their
estimators and intervals are in `workbench.analysis.estimators`; an exact distribution has no
sampling error, so its interval is the value itself. Text metrics (distinct-n, distinct@k,
embedding diversity) and semantic clusters come from free continuations.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import ndtri

from workbench.analysis.estimators import CONFIDENCE
from workbench.analysis.statistics import DEFAULT_BOOTSTRAP, bootstrap_mean_ci
from workbench.analysis.summaries import ANSWER_METRICS as ANSWER_METRICS  # re-exported: callers import it here
from workbench.analysis.summaries import answer_estimates, estimate_rows, estimates_of
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.analysis.distributions import AnswerDistribution

METRIC_COLUMNS = ["model", "metric", "value", "ci_low", "ci_high", "n", "method", "estimator", "interval", "reliable",
                  "note"]
JACKKNIFE = "jackknife normal"
# Two continuations count as the same for distinct@k when their MiniLM cosine similarity is at
# least this. NoveltyBench decides equivalence with a trained classifier that is not available
# offline; 0.75 on all-MiniLM-L6-v2 separates paraphrases (0.75-0.98 in our checks, e.g. "Stock
# markets fell sharply today." / "Shares dropped steeply on the stock market today." = 0.76)
# from different answers on the same topic (typically 0.4-0.7).
EQUIVALENCE_THRESHOLD = 0.75
# Agglomerative clustering cuts the average-linkage tree at this cosine distance.
CLUSTER_DISTANCE = 0.45


def _row(model: str, metric: str, value: float, low: float, high: float, n: float, method: str,
         estimator: str, interval: str, reliable: bool = True, note: str = "") -> dict:
    return {"model": model, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high),
            "n": n, "method": method, "estimator": estimator, "interval": interval, "reliable": reliable, "note": note}


def distribution_metrics(dist: AnswerDistribution, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The answer metrics (ANSWER_METRICS: total view, P(other), in-space view) of one distribution.

    Sampled: Miller-Madow entropy with its score interval, Jeffreys intervals for shares; exact:
    the values, with intervals equal to them. For an exact distribution, distinct answers counts
    the candidates with probability above 1e-3.
    """
    if len(dist.table) == 0:
        raise WorkbenchError(f"{dist.model}: the distribution is empty")
    n = float(dist.n) if dist.n is not None else np.nan
    return pd.DataFrame(estimate_rows(dist.model, dist.method, n, estimates_of(dist, confidence)),
                        columns=METRIC_COLUMNS)


def count_metrics(counts: np.ndarray, model: str, confidence: float = CONFIDENCE,
                  answers: list[str] | None = None) -> pd.DataFrame:
    """The answer metrics from answer counts; `answers` names them (so "(other)" is recognised)."""
    counts = np.asarray(counts, dtype=float)
    n = int(counts.sum())
    if n == 0:
        raise WorkbenchError(f"{model}: no samples; sample with n >= 1 first")
    labels = answers if answers is not None else [f"answer {i}" for i in range(len(counts))]
    estimates = answer_estimates(labels, counts, "sampled", confidence)
    return pd.DataFrame(estimate_rows(model, "sampled", n, estimates), columns=METRIC_COLUMNS)


def answer_metrics(answers: list[str], model: str, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """The answer metrics of a list of extracted answers."""
    if not answers:
        raise WorkbenchError(f"{model}: no answers; sample with n >= 1 first")
    labels, counts = np.unique(np.array(answers, dtype=object).astype(str), return_counts=True)
    return count_metrics(counts, model, confidence, labels.tolist())


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


def jackknife_interval(estimate: float, leave_one_out: np.ndarray,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """estimate ± z · jackknife standard error (Efron & Tibshirani 1993, ch. 11); NaN with fewer than two values.

    Used where resampling with replacement biases the statistic: duplicated texts lower
    distinct-n and put zero distances into the mean pairwise distance, so bootstrap replicates
    fall below the estimate (the issue's "embedding diversity 0.883, CI 0.523-0.845").
    """
    values = np.asarray(leave_one_out, dtype=float)
    if len(values) < 2 or np.isnan(estimate):
        return float("nan"), float("nan")
    n = len(values)
    se = float(np.sqrt((n - 1) / n * ((values - values.mean()) ** 2).sum()))
    z = float(-ndtri((1 - confidence) / 2))
    return estimate - z * se, estimate + z * se


def distinct_n_leave_one_out(texts: list[str], n: int) -> np.ndarray:
    """distinct-n of the texts without each text in turn."""
    per_text = [Counter(_ngrams(t, n)) for t in texts]
    totals: Counter = Counter()
    for grams in per_text:
        totals.update(grams)
    distinct, total = len(totals), sum(totals.values())
    values = []
    for grams in per_text:
        remaining = total - sum(grams.values())
        lost = sum(1 for g, c in grams.items() if totals[g] == c)  # n-grams only this text has
        values.append((distinct - lost) / remaining if remaining else np.nan)
    return np.array(values, dtype=float)


def text_metrics(samples: pd.DataFrame, k: int = 10, threshold: float = EQUIVALENCE_THRESHOLD,
                 confidence: float = CONFIDENCE, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """distinct-1, distinct-2, distinct@k and embedding diversity per model of a tidy samples frame.

    distinct@k: the samples are cut, in index order, into groups of k; each group's number of
    equivalence classes is averaged (percentile bootstrap CI of the mean over groups). Embedding
    diversity: mean pairwise cosine distance. distinct-n and embedding diversity get jackknife
    intervals (see `jackknife_interval`), which always contain the estimate.
    """
    if samples is None or len(samples) == 0:
        raise WorkbenchError("no samples to measure; sample with n >= 1 first")
    from workbench.embeddings import embed

    rows = []
    for model, group in samples.groupby("model", sort=False):
        texts = list(group.sort_values("sample_index")["text"]) if "sample_index" in group else list(group["text"])
        n = len(texts)
        for order in (1, 2):
            point = distinct_n(texts, order)
            low, high = jackknife_interval(point, distinct_n_leave_one_out(texts, order), confidence)
            rows.append(_row(str(model), f"distinct_{order}", point, low, high, n, "sampled", f"distinct-{order}",
                             f"{JACKKNIFE} {confidence:.0%}"))
        vectors = embed(texts)
        if n >= k:
            groups = [list(range(start, start + k)) for start in range(0, n - k + 1, k)]
            per_group = np.array([
                len(set(equivalence_classes([texts[i] for i in g], vectors[g], threshold))) for g in groups
            ], dtype=float)
            low, high = bootstrap_mean_ci(per_group, confidence, n_boot, seed)
            rows.append(_row(str(model), f"distinct_at_{k}", per_group.mean(), low, high, n, "sampled",
                             f"mean classes per {k}", f"percentile bootstrap {confidence:.0%}",
                             len(per_group) >= 2, "" if len(per_group) >= 2 else "one group: no interval"))
        if n >= 2:
            distances = 1 - vectors @ vectors.T
            upper = np.triu_indices(n, 1)
            total = float(distances[upper].sum())
            point = total / len(upper[0])
            without = np.diag(np.diag(distances))
            row_sums = (distances - without).sum(axis=1)
            pairs_left = (n - 1) * (n - 2) / 2
            leave_one_out = (total - row_sums) / pairs_left if pairs_left else np.full(n, np.nan)
            low, high = jackknife_interval(point, leave_one_out, confidence)
            rows.append(_row(str(model), "embedding_diversity", point, low, high, n, "sampled",
                             "mean pairwise cosine distance", f"{JACKKNIFE} {confidence:.0%}", n >= 3,
                             "" if n >= 3 else "two texts: no interval"))
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
