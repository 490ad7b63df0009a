"""Slow decay of a model's score across files: a one-sided Mann–Kendall trend test (the score against its
position) with the worsening estimated by the Theil–Sen slope. It catches incremental drift whose per-file
steps each stay inside the performance tolerance.

>>> decay_test([0.90, 0.89, 0.875, 0.86, 0.85], higher_is_better=True, min_files=4, p_value=0.05,
...            min_decline=0.02).alarm
True
>>> decay_test([0.90, 0.88, 0.91, 0.89, 0.90], higher_is_better=True, min_files=4, p_value=0.05,
...            min_decline=0.02).alarm
False
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

EXACT_UP_TO = 8  # files: up to here the p-value enumerates every order of the scores (8! = 40,320)


@dataclass(frozen=True)
class DecayResult:
    alarm: bool
    files: int                          # scores tested
    p_value: float | None = None        # one-sided Mann–Kendall p-value (None: too few files)
    slope: float | None = None          # Theil–Sen change of the score per file
    relative_decline: float | None = None  # fitted worsening over the files, as a share of the base score

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=EXACT_UP_TO)
def _orders(n: int) -> np.ndarray:
    """Every order of ``n`` positions, one per row (built once per process)."""
    return np.array(list(itertools.permutations(range(n))), dtype=np.int8)


def trend_p_value(values: np.ndarray, *, worse: str) -> float:
    """One-sided Mann–Kendall p-value for a trend in the ``worse`` direction ("less" or "greater").

    Up to :data:`EXACT_UP_TO` values it is exact, over every order of the observed values, ties included
    (the normal approximation is poor there, and tied scores are common: accuracies are counts); beyond,
    Kendall's tau with scipy's tie-corrected normal approximation."""
    n = len(values)
    if n > EXACT_UP_TO:
        return float(stats.kendalltau(np.arange(n), values, alternative=worse).pvalue)
    sign = np.sign(values[None, :] - values[:, None])  # [a, b] = sign(x_b − x_a)
    first, second = np.triu_indices(n, k=1)
    observed = sign[first, second].sum()  # Mann–Kendall S: Σ_{i<j} sign(x_j − x_i)
    orders = _orders(n)
    s = sign[orders[:, first], orders[:, second]].sum(axis=1)  # S of every order of the same scores
    return float(np.mean(s <= observed if worse == "less" else s >= observed))


def decay_test(scores: Sequence[float], *, higher_is_better: bool, min_files: int, p_value: float,
               min_decline: float, base: float | None = None) -> DecayResult:
    """Alarm when the scores worsen steadily (trend p-value below ``p_value``) and the fitted worsening over
    the files is at least ``min_decline`` of ``base`` (the score at promotion; the first fitted score when
    not given), so a significant but negligible trend does not call for a retrain."""
    values = np.asarray([s for s in scores if s is not None and np.isfinite(s)], dtype=float)
    n = len(values)
    if n < max(min_files, 3):
        return DecayResult(False, n)
    if np.ptp(values) == 0:
        return DecayResult(False, n, 1.0, 0.0, 0.0)
    p = trend_p_value(values, worse="less" if higher_is_better else "greater")
    position = np.arange(n)
    fit = stats.theilslopes(values, position)
    worsening = (-fit.slope if higher_is_better else fit.slope) * (n - 1)
    scale = abs(base) if base else abs(fit.intercept)
    decline = worsening / scale if scale else (math.inf if worsening > 0 else 0.0)
    alarm = p < p_value and decline >= min_decline
    return DecayResult(bool(alarm), n, round(p, 6), float(fit.slope), float(decline))
