"""Drift: data drift against the champion's reference profile, performance drift of the champion
on the labelled batch, a steady decay of its score over the files since promotion, streaming
concept-drift detectors fed with its per-row errors, and the label-free signals of prediction-only
pipelines. Returns one verdict for the retrain decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.features import drift_types
from calmops.core.metrics import HIGHER_IS_BETTER, threshold_failures
from calmops.core.spec import PipelineSpec
from calmops.core.store import write_atomic
from calmops.detectors import DriftReport, ReferenceProfile, compare
from calmops.detectors.concept import ConceptDriftMonitor
from calmops.detectors.decay import decay_test
from calmops.detectors.label_free import label_free_compare
from calmops.tasks import step


@dataclass
class DriftVerdict:
    """Every drift signal of one batch and whether they call for a retrain."""

    data: DriftReport | None
    performance: dict[str, Any] = field(default_factory=dict)
    decay: dict[str, Any] = field(default_factory=dict)
    concept: dict[str, Any] = field(default_factory=dict)
    label_free: dict[str, Any] = field(default_factory=dict)
    drift_detected: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return list(self.data.drifted_features) if self.data else []

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no drift signal"

    def to_dict(self) -> dict:
        return {"drift_detected": self.drift_detected, "reasons": self.reasons,
                "data": self.data.to_dict() if self.data else None, "performance": self.performance,
                "decay": self.decay, "concept": self.concept, "label_free": self.label_free}


def build_profile(X: pd.DataFrame, feature_types: dict[str, str], spec: PipelineSpec, model: Any = None) -> ReferenceProfile:
    """The reference profile stored with a model version (computed once, reused by every comparison)."""
    predictions = confidences = None
    if model is not None:
        sample = X if len(X) <= 20_000 else X.sample(20_000, random_state=spec.seed)
        predictions = np.asarray(model.predict(sample))
        if hasattr(model, "predict_proba"):
            try:
                confidences = np.asarray(model.predict_proba(sample)).max(axis=1)
            except Exception:  # noqa: BLE001 - some estimators expose predict_proba but cannot use it
                confidences = None
    return ReferenceProfile.build(X, _drift_feature_types(feature_types, spec), spec.drift,
                                  predictions=predictions, confidences=confidences)


def _drift_feature_types(feature_types: dict[str, str], spec: PipelineSpec) -> dict[str, str]:
    """The block column names a row's block (a site, a month): it routes rows, it is not a feature whose
    distribution can drift (a file of new months would always 'drift'), so it is never profiled."""
    return {c: t for c, t in drift_types(feature_types).items() if c != spec.block_column}


def data_drift(profile: ReferenceProfile, X: pd.DataFrame, spec: PipelineSpec, importances=None) -> DriftReport:
    if spec.block_column and spec.block_column in X.columns and spec.block_column not in profile.feature_types:
        X = X.drop(columns=[spec.block_column])
    return compare(profile, X, spec.drift, importances=importances)


def performance_drift(now: dict[str, Any], at_promotion: dict[str, Any], spec: PipelineSpec, metric: str) -> dict:
    """The champion's score on this batch against its thresholds and its score at promotion."""
    out: dict[str, Any] = {"metric": metric, "now": now.get(metric), "at_promotion": at_promotion.get(metric),
                           "threshold_failures": threshold_failures(now, spec.evaluation.thresholds)}
    drop = None
    if out["now"] is not None and out["at_promotion"] not in (None, 0):
        sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
        drop = sign * (out["at_promotion"] - out["now"]) / abs(out["at_promotion"])
    out["relative_drop"] = drop
    out["tolerance"] = spec.evaluation.performance_tolerance
    fell = drop is not None and drop > spec.evaluation.performance_tolerance
    noise = sampling_noise(metric, now, at_promotion)
    if noise is not None:  # the fall must also exceed what the two estimates' sampling error explains
        out["noise_band"] = noise
        fell = fell and (out["at_promotion"] - out["now"]) > noise
    out["drift"] = bool(out["threshold_failures"]) or fell
    return out


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


# -- performance decay: the champion's score file after file --------------------------------

def performance_decay(value: float | None, batch_id: str, spec: PipelineSpec, metric: str, state_dir: Path,
                      champion_version: int, at_promotion: float | None = None) -> dict:
    """Add this batch's score to the champion's trail and test its last ``decay_window`` scores for a steady
    worsening (:func:`calmops.detectors.decay.decay_test`). The trail lives under ``state/``; a new champion
    or another primary metric starts a new one, and a batch already in it (a retried step) is not added again."""
    ev = spec.evaluation
    if ev.decay_files is None or value is None:
        return {"alarm": False, "files": 0}
    path = state_dir / "performance.json"
    trail: list[dict] = []
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("champion_version") == champion_version and saved.get("metric") == metric:
            trail = saved["scores"]
    if batch_id not in {t["batch"] for t in trail}:
        trail = [*trail, {"batch": batch_id, "value": float(value)}][-ev.decay_window:]
        write_atomic(path, json.dumps({"champion_version": champion_version, "metric": metric, "scores": trail}))
    min_decline = ev.performance_tolerance / 2
    result = decay_test([t["value"] for t in trail], higher_is_better=HIGHER_IS_BETTER.get(metric, True),
                        min_files=ev.decay_files, p_value=ev.decay_p_value, min_decline=min_decline,
                        base=at_promotion)
    return {"metric": metric, "p_value_max": ev.decay_p_value, "min_decline": min_decline, **result.to_dict()}


# -- concept drift: streaming detectors whose state survives between files ---------------


def _state_file(state_dir: Path) -> Path:
    return state_dir / "concept.json"


def per_row_errors(model: Any, X: pd.DataFrame, y: pd.Series, task: str, scale: float | None) -> np.ndarray:
    """0/1 per row: a wrong class, or (regression) a residual above twice the champion's RMSE."""
    pred = model.predict(X)
    if task == "classification":
        return (np.asarray(pred) != np.asarray(y)).astype(float)
    resid = np.abs(np.asarray(pred, dtype=float) - np.asarray(y, dtype=float))
    return (resid > 2 * (scale or np.std(np.asarray(y, dtype=float)) or 1.0)).astype(float)


def concept_drift(errors: np.ndarray, spec: PipelineSpec, state_dir: Path, champion_version: int) -> dict:
    if not spec.drift.concept:
        return {"alarm": False, "detectors": {}}
    path = _state_file(state_dir)
    monitor = None
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("champion_version") == champion_version:
            monitor = ConceptDriftMonitor.from_state(saved["state"], spec.drift)
    monitor = monitor or ConceptDriftMonitor(spec.drift)
    result = monitor.update(errors.tolist())
    save_concept_state(state_dir, champion_version, monitor.to_state())
    return {"alarm": bool(result.alarm), "detectors": result.detectors}


def warm_start_concept(state_dir: Path, champion_version: int, model: Any, X: pd.DataFrame, y: pd.Series,
                       task: str, spec: PipelineSpec, scale: float | None = None) -> int:
    """Start the concept detectors of ``champion_version`` from ``model``'s errors on rows it was not fit on
    (the holdout that chose it, or the file a rejected challenger was tried on): the detectors keep a
    baseline across promotions and alarms instead of starting cold. Returns the rows fed."""
    if not spec.drift.concept:
        save_concept_state(state_dir, champion_version, None)
        return 0
    errors = per_row_errors(model, X, y, task, scale)
    monitor = ConceptDriftMonitor.warm_started(spec.drift, errors.tolist())
    save_concept_state(state_dir, champion_version, monitor.to_state())
    return len(errors)


def save_concept_state(state_dir: Path, champion_version: int, state: dict | None) -> None:
    """Write detector state atomically; ``None`` resets it (a new champion starts fresh)."""
    path = _state_file(state_dir)
    if state is None:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, json.dumps({"champion_version": champion_version, "state": state}))


def label_free_drift(profile: ReferenceProfile, model: Any, X: pd.DataFrame, spec: PipelineSpec) -> dict:
    """Prediction-distribution and confidence drift, for batches without labels."""
    predictions = np.asarray(model.predict(X))
    confidences = None
    if hasattr(model, "predict_proba"):
        try:
            confidences = np.asarray(model.predict_proba(X)).max(axis=1)
        except Exception:  # noqa: BLE001 - as in build_profile
            confidences = None
    results = label_free_compare(profile, spec.drift, predictions=predictions, confidences=confidences)
    return {"drift": any(r.drift for r in results), "results": [r.to_dict() for r in results]}


def model_importances(model: Any, columns: list[str]) -> dict[str, float] | None:
    """Feature importances of a fitted model by input column (for importance-weighted aggregation).

    Uses ``feature_importances_`` or the magnitude of ``coef_`` of the final estimator, mapped back through
    the column transformer's output names; None when the model exposes neither.
    """
    from sklearn.pipeline import Pipeline

    estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    raw = getattr(estimator, "feature_importances_", None)
    if raw is None and getattr(estimator, "coef_", None) is not None:
        raw = np.abs(np.atleast_2d(estimator.coef_)).mean(axis=0)
    if raw is None:
        return None
    names = columns
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        try:
            names = list(model[:-1].get_feature_names_out())
        except Exception:  # noqa: BLE001 - a transformer without names: fall back to input order
            names = columns
    if len(names) != len(raw):
        return None
    total = float(np.sum(raw)) or 1.0
    return {str(n): float(v) / total for n, v in zip(names, raw) if str(n) in columns}


@step("drift")
def check_drift(
    champion: Any, X: pd.DataFrame, y: pd.Series | None, spec: PipelineSpec, task: str, metric: str,
    champion_scores_now: dict | None, state_dir: Path, *, batch_id: str,
) -> DriftVerdict:
    """All drift signals for one batch against the current champion (``batch_id``: the file's sha256, so a
    retried step does not count the batch twice in the champion's score trail)."""
    importances = model_importances(champion.model, list(X.columns)) if spec.drift.aggregation == "weighted" else None
    report = data_drift(champion.profile, X, spec, importances=importances)
    verdict = DriftVerdict(data=report)
    if report.drift_detected:
        verdict.reasons.append(f"data drift: {report.reason.removeprefix('Drift: ')}")  # said once
    if y is not None and champion_scores_now is not None:
        verdict.performance = performance_drift(champion_scores_now, champion.scores_at_promotion, spec, metric)
        if verdict.performance["drift"]:
            why = verdict.performance["threshold_failures"] or [
                (f"{metric} fell {verdict.performance['relative_drop']:.1%} since promotion "
                 f"({verdict.performance['at_promotion']:.4f} → {verdict.performance['now']:.4f})")]
            verdict.reasons.append("performance drift: " + "; ".join(why))
        verdict.decay = performance_decay(champion_scores_now.get(metric), batch_id, spec, metric, state_dir,
                                          champion.version, champion.scores_at_promotion.get(metric))
        if verdict.decay["alarm"]:
            d = verdict.decay
            verdict.reasons.append(
                f"performance decay: {metric} worsened {d['relative_decline']:.1%} over the champion's last "
                f"{d['files']} files (trend p = {d['p_value']:.3f})")
        scale = champion.scores_at_promotion.get("rmse")
        errors = per_row_errors(champion.model, X, y, task, scale)
        verdict.concept = concept_drift(errors, spec, state_dir, champion.version)
        if verdict.concept["alarm"]:
            fired = [n for n, d in verdict.concept["detectors"].items() if d.get("alarm")]
            verdict.reasons.append(f"concept drift alarm: {', '.join(fired)}")
    else:
        verdict.label_free = label_free_drift(champion.profile, champion.model, X, spec)
        if verdict.label_free.get("drift"):
            verdict.reasons.append("label-free drift in the champion's predictions")
    verdict.drift_detected = bool(verdict.reasons)
    return verdict
