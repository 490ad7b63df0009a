"""Decision policy: multiple-testing correction, evidence AND effect, aggregation, culprit ranking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def adjust_pvalues(p_values: Sequence[float], method: str) -> np.ndarray:
    """Adjusted p-values (capped at 1) for none / bonferroni / holm / bh (Benjamini-Hochberg).

    >>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(2).tolist()
    [0.03, 0.06, 0.06]
    >>> adjust_pvalues([0.01, 0.5], "bonferroni").tolist()
    [0.02, 1.0]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adj = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def is_drift(p_adjusted: float | None, effect: float | None, threshold: float, alpha: float) -> bool:
    """Statistical evidence (when the test has a p-value) AND an effect at least the minimum.

    A tiny p-value with a negligible effect is not drift (large batches make every difference significant):

    >>> is_drift(1e-9, effect=0.01, threshold=0.1, alpha=0.05)
    False
    >>> is_drift(1e-9, effect=0.3, threshold=0.1, alpha=0.05)
    True
    """
    if effect is None:
        return False
    evidence = True if p_adjusted is None else p_adjusted < alpha
    return bool(evidence and effect >= threshold)


def aggregate(
    drifted: Sequence[str],
    evaluated: Sequence[str],
    aggregation: str,
    share_threshold: float,
    importances: dict[str, float] | None = None,
) -> tuple[bool, float]:
    """Whether the batch drifts, and the value compared (count, share or weighted share)."""
    drifted = list(dict.fromkeys(drifted))
    evaluated = list(dict.fromkeys(evaluated))
    if aggregation == "any":
        return bool(drifted), float(len(drifted))
    if not evaluated:
        return False, 0.0
    if aggregation == "share":
        share = len(drifted) / len(evaluated)
        return share >= share_threshold, share
    if aggregation == "weighted":
        w = _weights(evaluated, importances)
        total = sum(w.values())
        share = sum(w[f] for f in drifted if f in w) / total if total > 0 else 0.0
        return share >= share_threshold, share
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _weights(features: Sequence[str], importances: dict[str, float] | None) -> dict[str, float]:
    """Non-negative importances; uniform when none are given (a missing feature weighs 0)."""
    if not importances:
        return {f: 1.0 for f in features}
    return {f: max(float(importances.get(f, 0.0)), 0.0) for f in features}


def rank_culprits(scores: dict[str, float], importances: dict[str, float] | None = None) -> list[str]:
    """Drifted features, worst first: effect relative to its minimum, times relative importance."""
    if importances:
        pos = [max(float(v), 0.0) for v in importances.values()]
        mean = (sum(pos) / len(pos)) if pos and sum(pos) > 0 else 1.0
        weighted = {
            f: s * (max(float(importances.get(f, 0.0)), 0.0) / mean if f in importances else 1.0)
            for f, s in scores.items()
        }
    else:
        weighted = dict(scores)
    return sorted(weighted, key=lambda f: (-weighted[f], f))
