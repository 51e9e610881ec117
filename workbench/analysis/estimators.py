"""Estimators with intervals whose coverage is checked (tests/test_coverage.py), and the regime where
each one holds.

Every function here is vectorised over rows of answer counts (one row per distribution), so the
coverage suite runs the very code the tables use, 2000 repetitions at a time. One value comes
back as an `Estimate`: the number, its interval, which estimator and which interval made them, and
whether the number lies in the regime where the interval was checked.

- a share, P(other), a top share: count / n with the Jeffreys interval (statsmodels; Brown, Cai &
  DasGupta 2001, who set the lower end to 0 at a zero count and the upper to 1 at n). Regime:
  count >= 5 and n - count >= 5; a top share also needs its answer identified (it leads the
  runner-up by at least 3 sqrt(top + runner-up)).
- entropy (bits): Miller-Madow, with a score interval along the tempered family (below). Regime:
  at least 5 samples per observed answer outside the most common one.
- JSD (bits) between two samples: plug-in minus its second-order bias, with a normal interval
  (delta-method standard error). Regime: JSD >= 0.05 bits, and at least 10 samples per answer
  outside the mode in both samples.
- difference of two entropies: difference of Miller-Madow, MOVER interval (Zou & Donner 2008)
  from the two score intervals. Regime: both entropies in regime.
- difference of two shares: Newcombe's hybrid score interval (statsmodels). Regime: both in regime.

Jeffreys rather than Wilson for shares: both were measured in tests/test_coverage.py; Wilson's
interval is conservative at small n (97.2 % pooled at n=30, 97.6 % exactly for p = 1/6), Jeffreys'
is closer to 95 % there and as good elsewhere (`statistics.wilson_interval` stays for experiments).

Why not the bootstrap for entropy: measured here (2000 repetitions), a BCa bootstrap of the
Miller-Madow estimate (scipy's algorithm) covered a uniform distribution over 6 answers in 71 % of
repetitions and 60 rare answers in 80 %: at and near the uniform distribution the first-order
(delta-method) term of the entropy's error vanishes and every resampling method built on the
plug-in distribution fails. The score interval instead tests each candidate entropy h against a
variance evaluated *at a distribution with entropy h* (as Wilson's interval evaluates the binomial
variance at the hypothesised p): the candidates are the tempered distributions q ∝ p̂^β (β = 0 is
uniform over the observed answers, β → ∞ the mode), which are also the distributions closest to p̂
(in KL divergence) with a given entropy. The variance is Harris's (1975) second-order one,
Var(H) = (Σ q ln²q − H²)/n + (m − 1)/(2n²), whose second term keeps it right at the uniform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.special import ndtri

CONFIDENCE = 0.95
# A share's interval holds its coverage from about 5 counts on either side (n·p >= 5 and n·(1 - p) >= 5).
MIN_COUNT = 5
# An entropy needs about this many samples per observed answer outside the most common one.
SAMPLES_PER_ANSWER = 5
# A JSD needs twice as many: measured coverage at 5 per answer was 0.92 for two Zipf samples at n=100.
JSD_SAMPLES_PER_ANSWER = 10
# Below this a JSD's error is dominated by the term the normal interval ignores (it vanishes at 0).
MIN_JSD_BITS = 0.05
# The top answer is identified when it leads the runner-up by this many standard errors of the lead.
TOP_SEPARATION = 3.0

SHARE = "share (count / n)"
JEFFREYS = "Jeffreys"
MILLER_MADOW = "Miller-Madow"
ENTROPY_SCORE = "score (tempered family, Harris variance)"
JSD_CORRECTED = "plug-in minus second-order bias"
JSD_NORMAL = "normal (delta-method SE)"
MOVER = "MOVER (Zou-Donner) from score intervals"
NEWCOMBE = "Newcombe hybrid score"
EXACT = "exact (no sampling error)"
NO_INTERVAL = "none"

_LN2 = math.log(2.0)
_BISECTIONS = 40  # halvings: 2^-40 of the bracket, far below any printed digit
_MAX_LOG_BETA = math.log(1e9)  # tempering far enough to reach the mode even from a 1e-6 tie-break
_TIE_BREAK = 1e-6


@dataclass(frozen=True)
class Estimate:
    """One number with its interval, how both were made, and whether it is in the checked regime."""

    value: float
    ci_low: float
    ci_high: float
    estimator: str
    interval: str
    reliable: bool
    note: str = ""  # why the number is unreliable ("" when it is not)

    def as_dict(self) -> dict:
        return asdict(self)


def exact_estimate(value: float, estimator: str) -> Estimate:
    """A number computed from an exact distribution: its interval is the value itself."""
    return Estimate(float(value), float(value), float(value), estimator, EXACT, True)


def _z(confidence: float) -> float:
    return float(-ndtri((1 - confidence) / 2))


def _rows(counts: np.ndarray) -> np.ndarray:
    rows = np.asarray(counts, dtype=float)
    return rows[None, :] if rows.ndim == 1 else rows


# --------------------------------------------------------------------------------------------
# Proportions
# --------------------------------------------------------------------------------------------


def jeffreys_bounds(counts: np.ndarray | float, n: np.ndarray | float,
                    confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Jeffreys interval of count / n, elementwise (statsmodels), with Brown, Cai & DasGupta's ends.

    The equal-tailed Beta(x + 1/2, n - x + 1/2) interval excludes 0 at x = 0 (and 1 at x = n),
    which would put the estimate outside its own interval; BCD 2001 set those ends to 0 and 1.
    A zero count gives [0, > 0].
    """
    from statsmodels.stats.proportion import proportion_confint

    counts, n = np.asarray(counts, dtype=float), np.asarray(n, dtype=float)
    low, high = proportion_confint(counts, n, alpha=1 - confidence, method="jeffreys")
    low = np.where(counts <= 0, 0.0, low)
    high = np.where(counts >= n, 1.0, high)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def share_bounds(counts: np.ndarray | float, n: np.ndarray | float,
                 confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The interval every share in the tables uses (Jeffreys; see the module docstring)."""
    return jeffreys_bounds(counts, n, confidence)


SHARE_INTERVAL = JEFFREYS


def proportion_regime(counts: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """n·p̂ >= 5 and n·(1 - p̂) >= 5: where the share's interval was checked."""
    counts, n = np.asarray(counts, dtype=float), np.asarray(n, dtype=float)
    return (counts >= MIN_COUNT) & (n - counts >= MIN_COUNT)


def proportion_estimate(count: float, n: float, confidence: float = CONFIDENCE) -> Estimate:
    """count / n with its Jeffreys interval."""
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, SHARE, SHARE_INTERVAL, False, "no samples")
    low, high = share_bounds(count, n, confidence)
    reliable = bool(proportion_regime(count, n))
    note = "" if reliable else f"fewer than {MIN_COUNT} samples on one side ({int(count)} of {int(n)})"
    return Estimate(float(count) / float(n), float(low), float(high), SHARE, f"{SHARE_INTERVAL} {confidence:.0%}",
                    reliable, note)


def top_share_regime(counts: np.ndarray) -> np.ndarray:
    """Per row: the top share is in regime and the top answer leads the runner-up clearly.

    Without the lead, the sample's top answer is whichever of several near-equal answers happened
    to come first, and its share overstates the top probability (the winner's curse).
    """
    rows = _rows(counts)
    ordered = np.sort(rows, axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if rows.shape[1] > 1 else np.zeros(len(rows))
    with np.errstate(divide="ignore", invalid="ignore"):
        lead = np.where(top + second > 0, (top - second) / np.sqrt(top + second), 0.0)
    return proportion_regime(top, rows.sum(axis=1)) & (lead >= TOP_SEPARATION)


def top_share_estimate(counts: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """The share of the most common answer with its Jeffreys interval."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, SHARE, SHARE_INTERVAL, False, "no samples")
    estimate = proportion_estimate(counts.max(), n, confidence)
    if estimate.reliable and not top_share_regime(counts)[0]:
        return Estimate(estimate.value, estimate.ci_low, estimate.ci_high, estimate.estimator, estimate.interval,
                        False, "the top answer does not lead the runner-up clearly (the share may overstate it)")
    return estimate


# --------------------------------------------------------------------------------------------
# Entropy
# --------------------------------------------------------------------------------------------


def _entropy_nats(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy (nats) and Σ q ln²q − H² of each row (0 log 0 = 0)."""
    logs = np.log(np.where(q > 0, q, 1.0))
    h = -(q * logs).sum(axis=-1)
    return h, np.maximum((q * logs * logs).sum(axis=-1) - h * h, 0.0)


def miller_madow_bits(counts: np.ndarray) -> np.ndarray:
    """Miller-Madow entropy (Miller 1955) of each row: plug-in + (m - 1) / 2n nats, m = observed answers."""
    rows = _rows(counts)
    n = rows.sum(axis=1)
    plug_in, _ = _entropy_nats(rows / n[:, None])
    return (plug_in + ((rows > 0).sum(axis=1) - 1) / (2 * n)) / _LN2


def entropy_regime(counts: np.ndarray) -> np.ndarray:
    """Per row: at least 5 samples per observed answer outside the most common one (and at least 5)."""
    rows = _rows(counts)
    outside_mode = rows.sum(axis=1) - rows.max(axis=1)
    answers = (rows > 0).sum(axis=1)
    return outside_mode >= np.maximum(MIN_COUNT, SAMPLES_PER_ANSWER * (answers - 1))


def entropy_bounds(counts: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miller-Madow entropy (bits) of each row with its score interval (see the module docstring).

    The interval is the set of entropies h with (MM − h)² <= z² Var(q_h), q_h the tempered
    distribution with entropy h; above log m (only possible with answers not yet seen) the
    variance at the uniform is used. Both ends are found by bisection on the tempering exponent.
    """
    rows = _rows(counts)
    z = _z(confidence)
    n = rows.sum(axis=1)
    observed = rows > 0
    m = observed.sum(axis=1).astype(float)
    p = rows / n[:, None]
    plug_in, _ = _entropy_nats(p)
    mm = plug_in + (m - 1) / (2 * n)
    log_m = np.log(m)
    # A relative tie-break of 1e-6 lets the tempered family leave exact ties (two answers 15 and 15).
    k = rows.shape[1]
    log_p = np.where(observed, np.log(np.where(observed, p, 1.0)) + _TIE_BREAK * np.arange(k, 0, -1) / k, 0.0)

    def tempered(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.where(observed, beta[:, None] * log_p, -np.inf)
        w = np.exp(x - x.max(axis=1, keepdims=True))
        h, spread = _entropy_nats(w / w.sum(axis=1, keepdims=True))
        return h, spread / n + (m - 1) / (2 * n * n)

    def outside(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, variance = tempered(beta)
        return (mm - h) ** 2 > z * z * variance, h

    def bisect(low: np.ndarray, high: np.ndarray, low_is_true: bool, test, transform=lambda b: b):
        # Finds where test(transform(b)) changes value; low and high bracket it.
        for _ in range(_BISECTIONS):
            mid = (low + high) / 2
            hit = test(transform(mid))
            go_up = hit if low_is_true else ~hit
            low, high = np.where(go_up, mid, low), np.where(go_up, high, mid)
        return low, high

    # β where the tempered entropy equals the estimate (entropy falls as β grows).
    below_uniform = mm < log_m
    beta_mm, _ = bisect(np.zeros(len(rows)), np.ones(len(rows)), True, lambda b: tempered(b)[0] > mm)
    beta_mm = np.where(below_uniform, beta_mm, 0.0)

    # Upper end: between the uniform (β = 0) and β_mm; past the uniform, the variance at the uniform.
    uniform_sd = np.sqrt((m - 1) / 2) / n
    uniform_rejected, _ = outside(np.zeros(len(rows)))
    _, beta_up = bisect(np.zeros(len(rows)), beta_mm, True, lambda b: outside(b)[0])
    upper = np.where(below_uniform & uniform_rejected, tempered(beta_up)[0], mm + z * uniform_sd)

    # Lower end: between β_mm and a β so large the tempered distribution is the mode alone.
    log_beta_mm = np.log(np.maximum(beta_mm, 1e-12))
    far = np.full(len(rows), _MAX_LOG_BETA)
    mode_rejected, _ = outside(np.exp(far))
    low_log, _ = bisect(log_beta_mm, far, False, lambda b: outside(b)[0], np.exp)
    lower = np.where(mode_rejected, np.maximum(tempered(np.exp(low_log))[0], 0.0), 0.0)
    return mm / _LN2, np.minimum(lower, mm) / _LN2, np.maximum(upper, mm) / _LN2


def entropy_estimate(counts: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """Miller-Madow entropy in bits of one row of counts, with its score interval and regime."""
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts > 0]
    if counts.sum() <= 0:
        return Estimate(math.nan, math.nan, math.nan, MILLER_MADOW, ENTROPY_SCORE, False, "no samples")
    value, low, high = (float(a[0]) for a in entropy_bounds(counts, confidence))
    reliable = bool(entropy_regime(counts)[0])
    n, outside_mode, answers = int(counts.sum()), int(counts.sum() - counts.max()), len(counts)
    note = "" if reliable else (
        f"{outside_mode} of {n} samples outside the most common answer for {answers} answers; "
        f"needs {max(MIN_COUNT, SAMPLES_PER_ANSWER * (answers - 1))}")
    return Estimate(value, low, high, MILLER_MADOW, f"{ENTROPY_SCORE} {confidence:.0%}", reliable, note)


# --------------------------------------------------------------------------------------------
# Jensen-Shannon divergence and differences
# --------------------------------------------------------------------------------------------


def jsd_bounds(counts_a: np.ndarray, counts_b: np.ndarray,
               confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias-corrected JSD (bits) between paired rows of counts over the same answers, with a normal interval.

    The plug-in JSD is biased upward (two samples of one distribution differ). Its second-order
    bias is −½Σ Var(m̂)/m + ½(m_a − 1)/2n_a + ½(m_b − 1)/2n_b nats (the Miller-Madow terms of
    H(mixture) − ½H(a) − ½H(b)), estimated with the sample shares and subtracted. The standard
    error is the delta method's: Var = Var_a(ln a/m)/4n_a + Var_b(ln b/m)/4n_b.
    """
    a, b = _rows(counts_a), _rows(counts_b)
    n_a, n_b = a.sum(axis=1, keepdims=True), b.sum(axis=1, keepdims=True)
    p, q = a / n_a, b / n_b
    mixture = (p + q) / 2
    # scipy returns the distance (the square root); rounding can make identical rows NaN.
    plug_in = np.nan_to_num(jensenshannon(p, q, base=2, axis=1) ** 2, nan=0.0)
    safe = np.where(mixture > 0, mixture, 1.0)
    variance_of_mixture = 0.25 * (p * (1 - p) / n_a + q * (1 - q) / n_b)
    bias_nats = (-0.5 * (variance_of_mixture / safe * (mixture > 0)).sum(axis=1)
                 + 0.25 * ((a > 0).sum(axis=1) - 1) / n_a[:, 0] + 0.25 * ((b > 0).sum(axis=1) - 1) / n_b[:, 0])
    corrected = np.maximum(plug_in - bias_nats / _LN2, 0.0)
    log_a = np.log(np.where(p > 0, p, 1.0) / safe)
    log_b = np.log(np.where(q > 0, q, 1.0) / safe)
    spread_a = (p * log_a ** 2).sum(axis=1) - (p * log_a).sum(axis=1) ** 2
    spread_b = (q * log_b ** 2).sum(axis=1) - (q * log_b).sum(axis=1) ** 2
    se = np.sqrt(np.maximum(spread_a / (4 * n_a[:, 0]) + spread_b / (4 * n_b[:, 0]), 0.0)) / _LN2
    z = _z(confidence)
    return corrected, np.maximum(corrected - z * se, 0.0), np.minimum(corrected + z * se, 1.0)


def _samples_per_answer_regime(rows: np.ndarray, per_answer: int) -> np.ndarray:
    outside_mode = rows.sum(axis=1) - rows.max(axis=1)
    return outside_mode >= np.maximum(MIN_COUNT, per_answer * ((rows > 0).sum(axis=1) - 1))


def jsd_regime(counts_a: np.ndarray, counts_b: np.ndarray, jsd_bits: np.ndarray) -> np.ndarray:
    """Per row pair: JSD >= 0.05 bits and 10 samples per answer outside the mode in both samples."""
    a, b = _rows(counts_a), _rows(counts_b)
    return ((np.asarray(jsd_bits) >= MIN_JSD_BITS) & _samples_per_answer_regime(a, JSD_SAMPLES_PER_ANSWER)
            & _samples_per_answer_regime(b, JSD_SAMPLES_PER_ANSWER))


def jsd_estimate(counts_a: np.ndarray, counts_b: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """Bias-corrected JSD in bits between two samples (counts over the same answers), with interval and regime."""
    value, low, high = (float(x[0]) for x in jsd_bounds(counts_a, counts_b, confidence))
    reliable = bool(jsd_regime(counts_a, counts_b, np.array([value]))[0])
    note = "" if reliable else (
        f"below {MIN_JSD_BITS} bits" if value < MIN_JSD_BITS
        else f"fewer than {JSD_SAMPLES_PER_ANSWER} samples per answer outside the mode")
    return Estimate(value, low, high, JSD_CORRECTED, f"{JSD_NORMAL} {confidence:.0%}", reliable, note)


def mover_difference(value_a: np.ndarray, low_a: np.ndarray, high_a: np.ndarray, value_b: np.ndarray,
                     low_b: np.ndarray, high_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """b − a with the MOVER interval (Zou & Donner 2008) built from each one's own interval."""
    difference = np.asarray(value_b) - np.asarray(value_a)
    low = difference - np.sqrt((np.asarray(value_b) - low_b) ** 2 + (high_a - np.asarray(value_a)) ** 2)
    high = difference + np.sqrt((high_b - np.asarray(value_b)) ** 2 + (np.asarray(value_a) - low_a) ** 2)
    return difference, low, high


def entropy_difference_estimate(counts_a: np.ndarray, counts_b: np.ndarray,
                                confidence: float = CONFIDENCE) -> Estimate:
    """Entropy(b) − entropy(a) in bits of two independent samples, with the MOVER interval."""
    a, b = entropy_estimate(counts_a, confidence), entropy_estimate(counts_b, confidence)
    difference, low, high = mover_difference(a.value, a.ci_low, a.ci_high, b.value, b.ci_low, b.ci_high)
    note = "; ".join(f"{side}: {e.note}" for side, e in (("a", a), ("b", b)) if not e.reliable)
    return Estimate(float(difference), float(low), float(high), f"difference of {MILLER_MADOW}",
                    f"{MOVER} {confidence:.0%}", a.reliable and b.reliable, note)


def share_difference_estimate(count_a: float, n_a: float, count_b: float, n_b: float,
                              confidence: float = CONFIDENCE, reliable: bool | None = None) -> Estimate:
    """count_b/n_b − count_a/n_a with Newcombe's hybrid score interval (statsmodels)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(count_b, n_b, count_a, n_a, method="newcomb", compare="diff",
                                           alpha=1 - confidence)
    in_regime = bool(proportion_regime(count_a, n_a) & proportion_regime(count_b, n_b))
    reliable = in_regime if reliable is None else reliable and in_regime
    note = "" if reliable else "a share is outside its regime (fewer than 5 samples on one side, or no clear top)"
    return Estimate(count_b / n_b - count_a / n_a, float(low), float(high), f"difference of {SHARE}",
                    f"{NEWCOMBE} {confidence:.0%}", reliable, note)
