"""Model metrics for classification (binary and multiclass, string labels too) and regression."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.base import is_classifier, is_regressor

from calmops.core.names import HIGHER_IS_BETTER


def infer_task(estimator: Any, y: pd.Series | None = None) -> str:
    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    if y is not None and (y.dtype == object or y.dtype == bool or str(y.dtype) == "category" or y.nunique() <= 20):
        return "classification"
    return "regression"


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """True when score ``a`` beats ``b`` by at least ``margin`` in the metric's direction."""
    if HIGHER_IS_BETTER.get(metric, True):
        return a >= b + margin and a > b
    return a <= b - margin and a < b


def relative_fall(metric: str, then: float | None, now: float | None) -> float | None:
    """How much worse ``now`` is than ``then``, as a share of ``then`` (positive: worse in the metric's
    direction); None when either is missing or ``then`` is 0."""
    if now is None or then in (None, 0):
        return None
    sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
    return sign * (then - now) / abs(then)


def flawless(scores: dict[str, Any] | None, task: str) -> bool:
    """Did the model make no error on the rows it was scored on (every label right; no residual)?"""
    if not scores:
        return False
    return scores.get("accuracy") == 1.0 if task == "classification" else scores.get("rmse") == 0.0


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def evaluate(estimator: Any, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, Any]:
    """Score a fitted estimator on labelled rows; metrics that do not apply are left out."""
    if task == "regression":
        pred = np.asarray(estimator.predict(X), dtype=float)
        yt = np.asarray(y, dtype=float)
        mse = skm.mean_squared_error(yt, pred)
        out = {"rmse": math.sqrt(mse), "mse": mse, "mae": skm.mean_absolute_error(yt, pred),
               "r2": skm.r2_score(yt, pred) if len(yt) > 1 else None}
        if np.all(yt != 0):
            out["mape"] = skm.mean_absolute_percentage_error(yt, pred)
        return {k: _clean(v) for k, v in out.items() if v is not None}

    pred = estimator.predict(X)
    yt = np.asarray(y)
    known = list(getattr(estimator, "classes_", np.unique(np.concatenate([yt, pred]))))
    # a class the model never saw joins the labels: metrics stay per class (macro-averaged), never "binary"
    labels = known + [c for c in pd.unique(yt) if c not in set(known)]
    out: dict[str, Any] = {
        "accuracy": skm.accuracy_score(yt, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(yt, pred) if len(np.unique(yt)) > 1 else None,
        "f1_macro": skm.f1_score(yt, pred, average="macro", zero_division=0),
    }
    binary = len(labels) == 2
    if binary:
        pos = labels[1]
        out["f1"] = skm.f1_score(yt, pred, pos_label=pos, zero_division=0)
        out["precision"] = skm.precision_score(yt, pred, pos_label=pos, zero_division=0)
        out["recall"] = skm.recall_score(yt, pred, pos_label=pos, zero_division=0)
    if hasattr(estimator, "predict_proba") and len(np.unique(yt)) > 1:
        try:
            if len(labels) > len(known):
                raise ValueError("probabilities do not cover a class new to the model")
            proba = estimator.predict_proba(X)
            out["log_loss"] = skm.log_loss(yt, proba, labels=labels)
            if binary:
                out["roc_auc"] = skm.roc_auc_score(yt == labels[1], proba[:, 1])
                out["pr_auc"] = skm.average_precision_score(yt == labels[1], proba[:, 1])
            elif set(np.unique(yt)) <= set(labels):
                out["roc_auc"] = skm.roc_auc_score(yt, proba, multi_class="ovr", labels=labels)
        except (ValueError, AttributeError):
            pass  # probabilities unusable for this batch; the label metrics still stand
    result = {k: _clean(v) for k, v in out.items() if v is not None}
    result = {k: v for k, v in result.items() if v is not None}
    result["confusion_matrix"] = {
        "labels": [str(x) for x in labels],
        "matrix": skm.confusion_matrix(yt, pred, labels=labels).tolist(),
    }
    return result


def threshold_failures(scores: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Plain-word reasons for every threshold the scores break (empty when all pass)."""
    failures = []
    for metric, bound in thresholds.items():
        value = scores.get(metric)
        if value is None:
            failures.append(f"{metric} could not be computed")
            continue
        if bound.min is not None and value < bound.min:
            failures.append(f"{metric} {_past(value, bound.min, below=True)} < min {bound.min}")
        if bound.max is not None and value > bound.max:
            failures.append(f"{metric} {_past(value, bound.max, below=False)} > max {bound.max}")
    return failures


def _past(value: float, bound: float, *, below: bool) -> str:
    """A score past its bound, to 4 decimals when they show it past, else in full (``1.2e-07 > max 1e-10``, not
    ``0.0000 > max 1e-10``).

    >>> _past(0.7123456, 0.75, below=True), _past(1.2e-07, 1e-10, below=False), _past(0.74999, 0.75, below=True)
    ('0.7123', '1.2e-07', '0.74999')
    """
    short = f"{value:.4f}"
    return short if (float(short) < bound if below else float(short) > bound) else repr(float(value))


# -- paired comparison of two models on the same rows ---------------------------------------

ACCURACY_LIKE = ("accuracy",)
PAIRED_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall",
                  "rmse", "mae", "mse", "r2")


@dataclass
class PairedTest:
    """Is the challenger better than the champion on the same rows? ``gain`` is the challenger's advantage in
    the metric's better direction (positive: challenger better); ``p_value`` is one-sided (H0: no gain)."""

    metric: str
    test: str            # "McNemar exact" or "paired bootstrap (N resamples)"
    rows: int
    challenger: float
    champion: float
    gain: float
    p_value: float
    p_worse: float | None = None  # one-sided p-value the other way (H0: the challenger is not worse)

    def shows_gain(self, alpha: float, floor: float) -> bool:
        """The challenger is shown better: one-sided p below ``alpha`` and a gain of at least ``floor``."""
        return self.p_value < alpha and self.gain >= floor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weighted_metric(metric: str, W: np.ndarray, y: np.ndarray, pred: np.ndarray, pos) -> np.ndarray:
    """The metric under each row of weights ``W`` (resamples × rows), vectorised."""
    if metric in ("rmse", "mae", "mse", "r2"):
        e = pred.astype(float) - y.astype(float)
        total = W.sum(axis=1)
        if metric == "mae":
            return (W @ np.abs(e)) / total
        mse = (W @ (e * e)) / total
        if metric == "mse":
            return mse
        if metric == "rmse":
            return np.sqrt(mse)
        mean = (W @ y.astype(float)) / total
        sst = (W @ (y.astype(float) ** 2)) / total - mean ** 2
        return 1 - mse / np.where(sst > 0, sst, np.nan)
    if metric == "accuracy":
        return (W @ (pred == y).astype(float)) / W.sum(axis=1)
    classes = np.unique(np.concatenate([y, pred]))
    Y = (y[:, None] == classes[None, :]).astype(float)
    P = (pred[:, None] == classes[None, :]).astype(float)
    tp, actual, predicted = W @ (Y * P), W @ Y, W @ P
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "balanced_accuracy":
            return np.nanmean(np.where(actual > 0, tp / actual, np.nan), axis=1)
        f1 = np.where(actual + predicted > 0, 2 * tp / (actual + predicted), 0.0)
        if metric == "f1_macro":
            return f1.mean(axis=1)
        k = int(np.flatnonzero(classes == pos)[0]) if pos in classes else len(classes) - 1
        if metric == "f1":
            return f1[:, k]
        if metric == "precision":
            return np.where(predicted[:, k] > 0, tp[:, k] / predicted[:, k], 0.0)
        return np.where(actual[:, k] > 0, tp[:, k] / actual[:, k], 0.0)  # recall


def paired_test(metric: str, y, pred_challenger, pred_champion, *, resamples: int = 2000, seed: int = 0,
                pos_label=None) -> PairedTest | None:
    """McNemar's exact test for accuracy, a paired bootstrap of the metric for the others (both models scored
    on the same resampled rows). None for a metric this cannot test from predictions (e.g. roc_auc)."""
    if metric not in PAIRED_METRICS:
        return None
    y, a, b = np.asarray(y), np.asarray(pred_challenger), np.asarray(pred_champion)
    n = len(y)
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    if metric in ("rmse", "mae", "mse", "r2"):
        y, a, b = y.astype(float), a.astype(float), b.astype(float)
    pos = pos_label if pos_label is not None else (np.unique(np.concatenate([y, a, b]))[-1] if n else None)
    ones = np.ones((1, n))
    new, old = float(_weighted_metric(metric, ones, y, a, pos)[0]), float(_weighted_metric(metric, ones, y, b, pos)[0])
    if metric in ACCURACY_LIKE:
        from scipy.stats import binomtest

        wins, losses = int(np.sum((a == y) & (b != y))), int(np.sum((a != y) & (b == y)))
        p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
        worse = binomtest(losses, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
        return PairedTest(metric, "McNemar exact", n, new, old, sign * (new - old), float(p), float(worse))
    rng = np.random.default_rng(seed)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    gains = sign * (_weighted_metric(metric, W, y, a, pos) - _weighted_metric(metric, W, y, b, pos))
    gains = gains[np.isfinite(gains)]
    p = (1 + np.sum(gains <= 0)) / (1 + len(gains))
    worse = (1 + np.sum(gains >= 0)) / (1 + len(gains))
    return PairedTest(metric, f"paired bootstrap ({resamples} resamples)", n, new, old, sign * (new - old), float(p),
                      float(worse))
