"""Performance drift: the champion's score on a labelled batch against its thresholds and its score at
promotion, and a steady decay of that score over the files since promotion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from calmops.core.metrics import HIGHER_IS_BETTER, relative_fall, threshold_failures
from calmops.core.spec import PipelineSpec
from calmops.core.store import read_champion_state, write_champion_state
from calmops.core.verdict import DecaySignal, PerformanceSignal
from calmops.detectors.decay import decay_test

TRAIL_FILE = "performance.json"  # under the pipeline's state folder


def performance_drift(now: dict[str, Any], at_promotion: dict[str, Any], spec: PipelineSpec,
                      metric: str) -> PerformanceSignal:
    """The champion's score on this batch against its thresholds and its score at promotion."""
    value, then = now.get(metric), at_promotion.get(metric)
    failures = threshold_failures(now, spec.evaluation.thresholds)
    # a fall counts when it exceeds the tolerance and what the two estimates' sampling error explains
    signal = PerformanceSignal(metric=metric, now=value, at_promotion=then, threshold_failures=failures,
                               relative_drop=relative_fall(metric, then, value),
                               tolerance=spec.evaluation.performance_tolerance,
                               noise_band=sampling_noise(metric, now, at_promotion))
    return replace(signal, drift=bool(failures) or signal.fell)


BOUNDED_RATES = ("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall")


def sampling_noise(metric: str, now: dict[str, Any], at_promotion: dict[str, Any], z: float = 1.645) -> float | None:
    """One-sided 95 % band of the difference of two rates estimated on n₀ (the holdout at promotion) and n₁ rows
    (this file): z·√(p₀(1−p₀)/n₀ + p₁(1−p₁)/n₁). A score at promotion measured on a few hundred holdout rows is
    itself uncertain by a point or two; None when the metric is not a rate or the row counts are unknown."""
    def rows(scores):
        cm = (scores.get("confusion_matrix") or {}).get("matrix")
        return int(np.sum(cm)) if cm else None

    p0, p1, n0, n1 = at_promotion.get(metric), now.get(metric), rows(at_promotion), rows(now)
    if metric not in BOUNDED_RATES or None in (p0, p1) or not n0 or not n1:
        return None
    return float(z * np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1))


def performance_decay(value: float | None, batch_id: str, spec: PipelineSpec, metric: str, state_dir: Path,
                      champion_version: int, at_promotion: float | None = None) -> DecaySignal:
    """Add this batch's score to the champion's trail and test its last ``decay_window`` scores for a steady
    worsening (:func:`calmops.detectors.decay.decay_test`). The trail lives under ``state/``; a new champion
    or another primary metric starts a new one, and a batch already in it (a retried step) is not added again."""
    ev = spec.evaluation
    if ev.decay_files is None or value is None:
        return DecaySignal()
    path = state_dir / TRAIL_FILE
    saved = read_champion_state(path, champion_version, metric=metric)
    trail: list[dict] = saved["scores"] if saved else []
    if batch_id not in {t["batch"] for t in trail}:
        trail = [*trail, {"batch": batch_id, "value": float(value)}][-ev.decay_window:]
        write_champion_state(path, champion_version, metric=metric, scores=trail)
    min_decline = ev.performance_tolerance / 2
    scores = [t["value"] for t in trail]
    result = decay_test(scores, higher_is_better=HIGHER_IS_BETTER.get(metric, True), min_files=ev.decay_files,
                        p_value=ev.decay_p_value, min_decline=min_decline, base=at_promotion)
    return DecaySignal(metric=metric, p_value_max=ev.decay_p_value, min_decline=min_decline, scores=scores,
                       **result.to_dict())
