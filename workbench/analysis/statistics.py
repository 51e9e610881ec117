"""The statistics every analysis shares: entropy, divergences, the bootstrap, intervals and tests.

Each idea is written once here, and where the field has a library for it, the library does the
work: Jensen-Shannon divergence is scipy's `jensenshannon`, KL is scipy's `entropy`, the
permutation and sign-flip tests are scipy's `permutation_test`, Wilson intervals are statsmodels'
`proportion_confint` and p-value corrections statsmodels' `multipletests`. Entropy is
`entropy_rows` (and `entropy_bits` for one distribution); every bootstrap resamples with
`bootstrap_indices` (`bootstrap_counts` is its categorical form). Estimators with checked
intervals (entropy, shares, JSD, differences) live in `workbench.analysis.estimators`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as relative_entropy
from scipy.stats import permutation_test as scipy_permutation_test

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


def jsd_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in Jensen-Shannon divergence in bits between paired rows of counts or probabilities (scipy)."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    # scipy returns the distance, the square root of the divergence; rounding can make equal rows NaN.
    return np.nan_to_num(jensenshannon(a, b, base=2, axis=1) ** 2, nan=0.0)


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """Plug-in Jensen-Shannon divergence in bits (0 for identical, 1 for disjoint distributions).

    Between two samples it is biased upward; `workbench.analysis.estimators.jsd_estimate` corrects
    it and gives an interval.
    """
    return float(jsd_rows(*_aligned(p, q))[0])


def smoothed_kl(counts_p: dict[str, float], counts_q: dict[str, float], alpha: float = SMOOTHING) -> float:
    """KL(P || Q) in bits after adding `alpha` to every count of the union of answers (no interval)."""
    keys = list(dict.fromkeys([*counts_p, *counts_q]))
    a = np.array([counts_p.get(k, 0.0) for k in keys], dtype=float) + alpha
    b = np.array([counts_q.get(k, 0.0) for k in keys], dtype=float) + alpha
    return float(relative_entropy(a, b, base=2))


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


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaNs dropped; NaN without replicates).

    Sound for statistics without small-sample bias (a mean); biased plug-in statistics (entropy,
    top share) have their own estimators and intervals in `workbench.analysis.estimators`.
    """
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(r, alpha)), float(np.quantile(r, 1 - alpha))


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


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a share successes/n (statsmodels): sound at small n and at 0 or n; NaN when n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# Tests and corrections
# --------------------------------------------------------------------------------------------


def _category_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """[..., k] counts of the category codes along the last axis (one bincount for all rows)."""
    rows = codes.reshape(-1, codes.shape[-1])
    offsets = rows + k * np.arange(len(rows))[:, None]
    counts = np.bincount(offsets.ravel(), minlength=len(rows) * k).reshape(len(rows), k)
    return counts.reshape(*codes.shape[:-1], k).astype(float)


def permutation_test(answers_a: Sequence[str], answers_b: Sequence[str], n_permutations: int = DEFAULT_PERMUTATIONS,
                     seed: int = 0) -> float:
    """p-value of the plug-in JSD between two samples of answers under the null that both come from one distribution.

    scipy's `permutation_test` (independent samples, one-sided: a larger JSD is more extreme).
    """
    if not len(answers_a) or not len(answers_b):
        raise WorkbenchError("a permutation test needs answers from both models")
    pooled = np.array([*answers_a, *answers_b], dtype=object).astype(str)
    categories, codes = np.unique(pooled, return_inverse=True)
    k, n_a = len(categories), len(answers_a)

    def jsd_of_codes(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
        counts_x, counts_y = _category_counts(x, k), _category_counts(y, k)
        flat = jsd_rows(counts_x.reshape(-1, k), counts_y.reshape(-1, k))
        return flat.reshape(counts_x.shape[:-1])

    result = scipy_permutation_test((codes[:n_a], codes[n_a:]), jsd_of_codes, permutation_type="independent",
                                    vectorized=True, n_resamples=n_permutations, alternative="greater",
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)


EXACT_SIGN_FLIP_PAIRS = 16


def sign_flip_test(differences: Sequence[float] | np.ndarray, n_permutations: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value that paired differences have mean 0 (scipy's sign-flip permutation test of |mean|).

    Exact (every sign pattern) up to EXACT_SIGN_FLIP_PAIRS pairs, Monte Carlo above that (2**20 patterns
    took seconds per test for a 20-item trait; 20000 random patterns give the p-value to about
    +-0.003 at p = 0.05, checked against the exact one in tests/test_analysis.py). Paired items (one
    statement scored by two models) vary far more between items than between models, so a
    paired test sees shifts an unpaired one misses.
    """
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        raise WorkbenchError("a sign-flip test needs at least one paired difference")

    def absolute_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.abs(np.mean(x, axis=axis))

    # One sample with permutation_type="samples" flips signs; asking for every pattern makes it exact.
    resamples = 2 ** len(d) if len(d) <= EXACT_SIGN_FLIP_PAIRS else n_permutations
    result = scipy_permutation_test((d,), absolute_mean, permutation_type="samples", vectorized=True,
                                    n_resamples=resamples, alternative="greater", rng=np.random.default_rng(seed))
    return float(result.pvalue)


CORRECTION_METHODS = {"holm": "holm", "bh": "fdr_bh"}  # our names -> statsmodels' multipletests names


def adjust_pvalues(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Holm (family-wise error) or Benjamini-Hochberg ("bh", false discovery rate) adjusted p-values (statsmodels)."""
    if method not in CORRECTION_METHODS:
        raise WorkbenchError(f"unknown correction {method!r}; use holm or bh")
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0:
        return []
    from statsmodels.stats.multitest import multipletests

    return multipletests(p, method=CORRECTION_METHODS[method])[1].tolist()
