"""Slow decay of a model's score across files: a one-sided Mann–Kendall trend test (Kendall's tau of the
score against its position) with the decline estimated by the Theil–Sen slope. It catches incremental drift
whose per-file steps each stay inside the performance tolerance.

>>> decay_test([0.90, 0.89, 0.875, 0.86, 0.85], higher_is_better=True, min_files=4, p_value=0.05,
...            min_decline=0.02).alarm
True
>>> decay_test([0.90, 0.88, 0.91, 0.89, 0.90], higher_is_better=True, min_files=4, p_value=0.05,
...            min_decline=0.02).alarm
False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class DecayResult:
    alarm: bool
    files: int                          # scores tested (the champion's files since promotion)
    p_value: float | None = None        # one-sided Mann–Kendall p-value (None: too few files)
    slope: float | None = None          # Theil–Sen change of the score per file
    relative_decline: float | None = None  # fitted worsening over the files, as a share of the first fitted value

    def to_dict(self) -> dict:
        return asdict(self)


def decay_test(scores: Sequence[float], *, higher_is_better: bool, min_files: int, p_value: float,
               min_decline: float) -> DecayResult:
    """Alarm when the scores worsen steadily (trend p-value below ``p_value``) and the fitted worsening over
    the files is at least ``min_decline`` of the first fitted value (a significant but negligible trend
    does not call for a retrain)."""
    values = np.asarray([s for s in scores if s is not None and np.isfinite(s)], dtype=float)
    n = len(values)
    if n < max(min_files, 3):
        return DecayResult(False, n)
    position = np.arange(n)
    if np.ptp(values) == 0:
        return DecayResult(False, n, 1.0, 0.0, 0.0)
    worse = "less" if higher_is_better else "greater"
    p = float(stats.kendalltau(position, values, alternative=worse).pvalue)
    fit = stats.theilslopes(values, position)
    start = fit.intercept
    decline = (-fit.slope if higher_is_better else fit.slope) * (n - 1) / abs(start) if start else 0.0
    alarm = p < p_value and decline >= min_decline
    return DecayResult(bool(alarm), n, round(p, 6), float(fit.slope), float(decline))
