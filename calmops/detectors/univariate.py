"""Numeric reference-vs-batch tests, computed against a precomputed reference.

Each statistic is the one frouros computes (frouros delegates to scipy); KS is computed from the
reference sorted once per profile, and the binned distances use reference-quantile bins (frouros bins
on the union of both samples, and its PSI breaks on empty bins). tests/detectors prove equality.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats import distributions

_KS_MAX_EXACT_N = 10000  # scipy's ks_2samp "auto": exact p-value up to this size, asymptotic above


@dataclass
class Outcome:
    """What one test found on one column."""

    statistic: float | None
    p_value: float | None
    effect_size: float | None
    detail: str = ""


@dataclass
class NumericReference:
    """The reference side of one numeric column, computed once per champion."""

    sorted_values: np.ndarray  # finite values, ascending
    bin_edges: np.ndarray  # interior edges of the reference-quantile bins
    bin_counts: np.ndarray  # reference counts per bin
    mean: float
    std: float
    null_rate: float
    n_total: int

    @classmethod
    def build(cls, values: np.ndarray, n_total: int, n_bins: int) -> NumericReference:
        finite = np.sort(values[np.isfinite(values)])
        edges = quantile_edges(finite, n_bins)
        counts = bin_counts(finite, edges)
        mean = float(finite.mean()) if finite.size else math.nan
        std = float(finite.std()) if finite.size else math.nan
        null_rate = 1.0 - finite.size / n_total if n_total else 0.0
        return cls(finite, edges, counts, mean, std, null_rate, n_total)


def quantile_edges(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior bin edges at the reference quantiles (duplicates from ties removed)."""
    if sorted_values.size == 0:
        return np.empty(0)
    qs = np.quantile(sorted_values, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(qs)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; bin i holds edges[i-1] <= v < edges[i] (values equal to an edge go up)."""
    idx = np.searchsorted(edges, values, side="right")
    return np.bincount(idx, minlength=edges.size + 1).astype(np.int64)


# ----------------------------------------------------------------------------- KS
def ks_statistic_sorted(ref_sorted: np.ndarray, x_sorted: np.ndarray) -> float:
    """Two-sided KS distance D, the same arithmetic as scipy.stats.ks_2samp."""
    n1, n2 = ref_sorted.size, x_sorted.size
    data_all = np.concatenate([ref_sorted, x_sorted])
    cdf1 = np.searchsorted(ref_sorted, data_all, side="right") / n1
    cdf2 = np.searchsorted(x_sorted, data_all, side="right") / n2
    cddiffs = cdf1 - cdf2
    min_s = float(np.clip(-cddiffs.min(), 0, 1))
    max_s = float(cddiffs.max())
    return max(max_s, min_s)


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """p-value of ks_2samp(method="auto", alternative="two-sided") for distance d."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp  # scipy's own exact routine

    prob = None
    if max(n1, n2) <= _KS_MAX_EXACT_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            success, _, exact = _attempt_exact_2kssamp(n1, n2, gcd(n1, n2), d, "two-sided")
        if success:
            prob = exact
    if prob is None:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = distributions.kstwo.sf(d, np.round(en))
    return float(np.clip(prob, 0, 1))


def ks_test(ref: NumericReference, x_sorted: np.ndarray) -> Outcome:
    d = ks_statistic_sorted(ref.sorted_values, x_sorted)
    p = ks_pvalue(d, ref.sorted_values.size, x_sorted.size)
    return Outcome(d, p, d)


# ----------------------------------------------------------------------------- rank/ECDF tests
def cvm_test(ref: NumericReference, x_sorted: np.ndarray) -> Outcome:
    res = stats.cramervonmises_2samp(ref.sorted_values, x_sorted)
    n, m = ref.sorted_values.size, x_sorted.size
    # T = nm/(n+m) * integral (F - G)^2 dH, so this is the root-mean-squared CDF gap.
    effect = math.sqrt(max(float(res.statistic), 0.0) * (n + m) / (n * m))
    return Outcome(float(res.statistic), float(res.pvalue), effect)


def anderson_test(ref: NumericReference, x_sorted: np.ndarray) -> Outcome:
    if ref.sorted_values[0] == ref.sorted_values[-1] == x_sorted[0] == x_sorted[-1]:
        return Outcome(0.0, 1.0, 0.0, "both samples constant and equal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that the p-value is capped to [0.001, 0.25]
        res = stats.anderson_ksamp([ref.sorted_values, x_sorted])
    d = ks_statistic_sorted(ref.sorted_values, x_sorted)
    return Outcome(float(res.statistic), float(res.pvalue), d, "p-value capped to [0.001, 0.25] by scipy")


def mannwhitney_test(ref: NumericReference, x_sorted: np.ndarray) -> Outcome:
    res = stats.mannwhitneyu(ref.sorted_values, x_sorted, alternative="two-sided")
    auc = float(res.statistic) / (ref.sorted_values.size * x_sorted.size)
    return Outcome(float(res.statistic), float(res.pvalue), abs(2.0 * auc - 1.0))


# ----------------------------------------------------------------------------- EMD
def emd_test(ref: NumericReference, x_sorted: np.ndarray) -> Outcome:
    """Wasserstein distance (as frouros EMD), normed by the reference std.

    EMD has no closed-form null distribution, and a permutation p-value floors at 1/(permutations+1),
    which multiple-testing correction then makes useless; its evidence is the KS p-value of the same
    samples (same null hypothesis: equal distributions).
    """
    dist = float(stats.wasserstein_distance(ref.sorted_values, x_sorted))
    scale = ref.std if ref.std > 0 else 1.0
    detail = "p-value from KS on the same samples" + (
        "" if ref.std > 0 else "; reference constant: EMD not normalised"
    )
    d = ks_statistic_sorted(ref.sorted_values, x_sorted)
    return Outcome(dist, ks_pvalue(d, ref.sorted_values.size, x_sorted.size), dist / scale, detail)


# ----------------------------------------------------------------------------- binned distances
def binned_probabilities(ref: NumericReference, x_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = bin_counts(x_sorted, ref.bin_edges)
    return ref.bin_counts / ref.bin_counts.sum(), counts / counts.sum()


def counts_chi2_pvalue(ref_counts: np.ndarray, batch_counts: np.ndarray) -> tuple[float, float]:
    """Chi-squared homogeneity test on two count vectors (cells empty on both sides dropped)."""
    keep = (ref_counts + batch_counts) > 0
    if keep.sum() < 2:
        return 0.0, 1.0
    table = np.vstack([batch_counts[keep], ref_counts[keep]])
    stat, p, _, _ = stats.chi2_contingency(table)
    return float(stat), float(p)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1])."""
    return float(jensenshannon(p, q, base=2))


def hellinger_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance (in [0, 1]), frouros' formula."""
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2))


def psi_value(p: np.ndarray, q: np.ndarray, epsilon: float) -> float:
    """PSI with proportions clipped at epsilon (frouros substitutes the smallest float instead)."""
    p = np.clip(p, epsilon, None)
    q = np.clip(q, epsilon, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _binned(ref: NumericReference, x_sorted: np.ndarray, measure: str, epsilon: float) -> Outcome:
    p, q = binned_probabilities(ref, x_sorted)
    if measure == "js":
        value = js_distance(p, q)
    elif measure == "hellinger":
        value = hellinger_distance(p, q)
    else:
        value = psi_value(p, q, epsilon)
    _, pval = counts_chi2_pvalue(ref.bin_counts, bin_counts(x_sorted, ref.bin_edges))
    return Outcome(value, pval, value, f"{ref.bin_edges.size + 1} reference-quantile bins")


def run_numeric_test(name: str, ref: NumericReference, x_sorted: np.ndarray, config) -> Outcome:
    """Dispatch by registry name."""
    if name == "ks":
        return ks_test(ref, x_sorted)
    if name == "cvm":
        return cvm_test(ref, x_sorted)
    if name == "anderson":
        return anderson_test(ref, x_sorted)
    if name == "mannwhitney":
        return mannwhitney_test(ref, x_sorted)
    if name == "emd":
        return emd_test(ref, x_sorted)
    if name in ("js", "hellinger", "psi"):
        return _binned(ref, x_sorted, name, config.epsilon)
    raise ValueError(f"unknown numeric test {name!r}")
