"""The statistics every analysis shares: entropy, divergences, the bootstrap, intervals and tests.

Each idea is written once here. Entropy is `entropy_rows` (and `entropy_bits` for one
distribution); every bootstrap resamples with `bootstrap_indices` (`bootstrap_counts` is its
categorical form) and reads a percentile interval with `percentile_interval`; divergences are
in bits; permutation and sign-flip tests, Wilson intervals and p-value adjustment follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from workbench.errors import WorkbenchError

DEFAULT_BOOTSTRAP = 2000
DEFAULT_PERMUTATIONS = 2000
SMOOTHING = 0.5  # add-one-half (Jeffreys) smoothing of counts for KL, which is infinite on a zero
# Resampled counts are built in blocks of about this many drawn indices, so memory stays small at large n.
_BLOCK = 4_000_000

Seed = int | np.random.Generator

# --------------------------------------------------------------------------------------------
# Entropy and divergences
# --------------------------------------------------------------------------------------------


def entropy_rows(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row of a [m, k] probability matrix (0 log 0 = 0)."""
    probabilities = np.asarray(probabilities, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(probabilities > 0, np.log2(np.where(probabilities > 0, probabilities, 1.0)), 0.0)
    return np.maximum(0.0, -(probabilities * logs).sum(axis=1)) + 0.0  # + 0.0 turns -0.0 into 0.0


def entropy_bits(weights: Iterable[float]) -> float:
    """Shannon entropy in bits of one categorical distribution given by counts or probabilities (NaN when empty)."""
    w = np.asarray(list(weights), dtype=float)
    total = w.sum()
    if len(w) == 0 or total <= 0:
        return float("nan")
    return float(entropy_rows((w / total)[None, :])[0])


def _aligned(p: dict[str, float], q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = list(dict.fromkeys([*p, *q]))
    a = np.array([p.get(k, 0.0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0.0) for k in keys], dtype=float)
    if a.sum() <= 0 or b.sum() <= 0:
        raise WorkbenchError("a distribution to compare is empty")
    return a / a.sum(), b / b.sum()


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float((p[mask] * np.log2(p[mask] / q[mask])).sum())


def _jsd_arrays(a: np.ndarray, b: np.ndarray) -> float:
    m = (a + b) / 2
    return max(0.0, 0.5 * _kl_bits(a, m) + 0.5 * _kl_bits(b, m))


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence in bits (0 for identical, 1 for disjoint distributions)."""
    return _jsd_arrays(*_aligned(p, q))


def smoothed_kl(counts_p: dict[str, float], counts_q: dict[str, float], alpha: float = SMOOTHING) -> float:
    """KL(P || Q) in bits after adding `alpha` to every count of the union of answers."""
    keys = list(dict.fromkeys([*counts_p, *counts_q]))
    a = np.array([counts_p.get(k, 0.0) for k in keys], dtype=float) + alpha
    b = np.array([counts_q.get(k, 0.0) for k in keys], dtype=float) + alpha
    return _kl_bits(a / a.sum(), b / b.sum())


def answer_counts(answers: Sequence[str]) -> dict[str, float]:
    """answer -> count, for the divergences."""
    keys, counts = np.unique(np.array(answers, dtype=object).astype(str), return_counts=True)
    return dict(zip(keys.tolist(), counts.astype(float).tolist(), strict=True))


# --------------------------------------------------------------------------------------------
# The bootstrap
# --------------------------------------------------------------------------------------------


def bootstrap_indices(n: int, n_boot: int = DEFAULT_BOOTSTRAP, seed: Seed = 0) -> np.ndarray:
    """[n_boot, n] member indices drawn with replacement: the one resampling every bootstrap here uses.

    `seed` may be a Generator, so that two samples resampled independently (a paired difference
    of two models) draw from one stream rather than repeat each other's indices.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_counts(counts: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: Seed = 0) -> np.ndarray:
    """[n_boot, k] category counts of resampled members (the bootstrap of a categorical sample)."""
    counts = np.asarray(counts, dtype=float)
    k, n = len(counts), int(counts.sum())
    if n == 0:
        return np.zeros((n_boot, k))
    codes = np.repeat(np.arange(k), counts.astype(int))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty((n_boot, k))
    step = max(1, _BLOCK // n)
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        block = codes[bootstrap_indices(n, rows, rng)]
        flat = block + k * np.arange(rows)[:, None]  # one bincount for the whole block: row r uses bins r*k..
        out[start:start + rows] = np.bincount(flat.ravel(), minlength=rows * k).reshape(rows, k)
    return out


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95,
                        estimate: float | None = None) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaNs dropped; NaN without replicates).

    With `estimate`, the interval is widened to include it: plug-in statistics are biased at
    small n (8 distinct answers: no resample has a top-1 share of 1/8), which can put every
    replicate on one side of the estimate.
    """
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = float(np.quantile(r, alpha)), float(np.quantile(r, 1 - alpha))
    if estimate is not None and not math.isnan(estimate):
        low, high = min(low, float(estimate)), max(high, float(estimate))
    return low, high


def bootstrap_ci(values: np.ndarray, statistic: Callable[..., np.ndarray] = np.mean, confidence: float = 0.95,
                 n_boot: int = DEFAULT_BOOTSTRAP, seed: Seed = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(values, axis=1)` (NaNs dropped; NaN with fewer than two values)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    return percentile_interval(statistic(values[bootstrap_indices(len(values), n_boot, seed)], axis=1), confidence)


def bootstrap_mean_ci(values: np.ndarray, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
                      seed: Seed = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (NaNs dropped; NaN interval with fewer than two values)."""
    return bootstrap_ci(values, np.mean, confidence, n_boot, seed)


def bootstrap_median_ci(values: np.ndarray, confidence: float = 0.95, n_boot: int = DEFAULT_BOOTSTRAP,
                        seed: Seed = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a median (NaNs dropped; NaN interval with fewer than two values)."""
    return bootstrap_ci(values, np.median, confidence, n_boot, seed)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a share successes/n (sound at small n and at 0 or n, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------------------------
# Tests and corrections
# --------------------------------------------------------------------------------------------


def permutation_test(answers_a: Sequence[str], answers_b: Sequence[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                     seed: int = 0) -> float:
    """p-value of the JSD between two samples of answers under the null that both come from one distribution."""
    if not len(answers_a) or not len(answers_b):
        raise WorkbenchError("a permutation test needs answers from both models")
    observed = jensen_shannon(answer_counts(answers_a), answer_counts(answers_b))
    pooled = np.array([*answers_a, *answers_b], dtype=object).astype(str)
    categories, codes = np.unique(pooled, return_inverse=True)
    k, n_a = len(categories), len(answers_a)
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(n_permutations):
        shuffled = rng.permutation(codes)
        a = np.bincount(shuffled[:n_a], minlength=k).astype(float)
        b = np.bincount(shuffled[n_a:], minlength=k).astype(float)
        at_least += _jsd_arrays(a / a.sum(), b / b.sum()) >= observed - 1e-12
    return (at_least + 1) / (n_permutations + 1)


def sign_flip_test(differences: Sequence[float] | np.ndarray, n_permutations: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value that paired differences have mean 0 (sign-flip permutation test).

    Exact (every sign pattern) up to 20 pairs, Monte Carlo above that. Paired items (one
    statement scored by two models) vary far more between items than between models, so a
    paired test sees shifts an unpaired one misses.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        raise WorkbenchError("a sign-flip test needs at least one paired difference")
    observed = abs(d.mean())
    if len(d) <= 20:
        at_least, total = 0, 0
        for start in range(0, 2 ** len(d), 1 << 16):  # chunks of sign patterns keep memory small
            codes = np.arange(start, min(start + (1 << 16), 2 ** len(d)))[:, None]
            signs = 1 - 2 * ((codes >> np.arange(len(d))) & 1)
            at_least += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
            total += len(codes)
        return at_least / total
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_permutations, len(d)))
    at_least = int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (at_least + 1) / (n_permutations + 1)


def adjust_pvalues(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Holm (family-wise error) or Benjamini-Hochberg ("bh", false discovery rate) adjusted p-values."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if method not in ("holm", "bh"):
        raise WorkbenchError(f"unknown correction {method!r}; use holm or bh")
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.empty(m)
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (m - rank) * p[i])
            adjusted[i] = min(1.0, running)
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, p[i] * m / (rank + 1))
            adjusted[i] = min(1.0, running)
    return adjusted.tolist()
