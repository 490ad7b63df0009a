"""Performance estimated without labels: how well is the model doing on a batch whose labels have not come?

Classifiers: confidence-based performance estimation (CBPE). The model's class probabilities are calibrated on
reference rows it was not fit on, with their labels (isotonic regression, one class against the rest). On a new
batch the calibrated probability of each row's predicted class is the chance the prediction is right, so the
expected confusion counts, and every metric built from them, follow without a label:

* accuracy: the mean calibrated probability of the predicted classes;
* balanced accuracy and macro F1: each class's expected true positives, false positives and false negatives.

Regressors: the errors the model made on the reference rows, by level of its prediction (deciles), give the
expected absolute and squared error of each new row, hence MAE and RMSE.

The band is the spread the metric would have from the rows' own chance and from the calibration's own error
(labels drawn from the calibrated probabilities of bootstrap refits of the calibration); the regression band is
the errors' spread in each level. The estimate assumes the relation between features and target is the one of the reference: under a
covariate shift it holds, under a concept shift (the same inputs now mean another answer) it does not, and it
stays where it was while the realized metric falls. Plain JSON state (no pickle).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(size=4000)
>>> y = (rng.uniform(size=4000) < p).astype(int)       # p is the true chance of class 1
>>> proba = np.column_stack([1 - p, p])
>>> estimator = CalibratedEstimator.fit(proba, y, classes=[0, 1])
>>> realized = float(np.mean((p > 0.5).astype(int) == y))
>>> abs(estimator.estimate(proba)["accuracy"].value - realized) < 0.02
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

CLASSIFICATION_ESTIMATES = ("accuracy", "balanced_accuracy", "f1_macro")
REGRESSION_ESTIMATES = ("mae", "rmse")
ESTIMABLE = CLASSIFICATION_ESTIMATES + REGRESSION_ESTIMATES
MIN_REFERENCE_ROWS = 20
_DRAWS = 200  # label draws behind a classifier's band


@dataclass(frozen=True)
class Estimate:
    """One metric estimated on a batch, with the 95 % band of its sampling spread."""

    metric: str
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _isotonic(scores: np.ndarray, hits: np.ndarray) -> tuple[list[float], list[float]]:
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, hits)
    return [float(v) for v in fit.X_thresholds_], [float(v) for v in fit.y_thresholds_]


@dataclass(frozen=True)
class CalibratedEstimator:
    """CBPE for a classifier: per class, the isotonic map from its predicted probability to the observed rate."""

    classes: list[Any]
    curves: list[tuple[list[float], list[float]]]  # per class (binary: class 1 only), thresholds and rates
    reference_rows: int
    bootstrap_curves: list[list[tuple[list[float], list[float]]]] = field(default_factory=list)

    @classmethod
    def fit(cls, proba: np.ndarray, y: Any, classes: list[Any], *, bootstraps: int = 20,
            seed: int = 0) -> CalibratedEstimator:
        """Calibrate on reference rows; ``bootstraps`` refits on resampled rows carry the calibration's own
        uncertainty into the band."""
        proba = np.asarray(proba, dtype=np.float64)
        y = np.asarray(y)
        if proba.ndim != 2 or proba.shape[1] != len(classes) or len(classes) < 2:
            raise ValueError(f"probabilities of shape {proba.shape} do not match the {len(classes)} classes")
        if len(y) < MIN_REFERENCE_ROWS:
            raise ValueError(f"{len(y)} reference rows < {MIN_REFERENCE_ROWS}: too few to calibrate on")
        columns = [1] if len(classes) == 2 else list(range(len(classes)))

        def curves_of(rows):
            return [_isotonic(proba[rows, k], (y[rows] == classes[k]).astype(float)) for k in columns]

        rng = np.random.default_rng(seed)
        resampled = [curves_of(rng.integers(0, len(y), len(y))) for _ in range(bootstraps)]
        return cls(classes=[_plain(c) for c in classes], curves=curves_of(np.arange(len(y))),
                   reference_rows=len(y), bootstrap_curves=resampled)

    def calibrated(self, proba: np.ndarray, curves: list | None = None) -> np.ndarray:
        """Each row's probabilities mapped through the calibration (rows sum to 1)."""
        proba = np.asarray(proba, dtype=np.float64)
        curves = curves or self.curves
        if len(self.classes) == 2:
            p1 = np.interp(proba[:, 1], *curves[0])
            return np.column_stack([1.0 - p1, p1])
        out = np.column_stack([np.interp(proba[:, k], *curve) for k, curve in enumerate(curves)])
        total = out.sum(axis=1, keepdims=True)
        flat = total[:, 0] <= 0  # every class mapped to 0: keep the model's own probabilities
        out[flat] = proba[flat]
        total[flat] = proba[flat].sum(axis=1, keepdims=True)
        return out / total

    def estimate(self, proba: np.ndarray, predicted: Any = None, *, seed: int = 0) -> dict[str, Estimate]:
        """The expected accuracy, balanced accuracy and macro F1 of the model on rows with these probabilities
        and these predicted labels (``predict``'s; the arg-max of the probabilities when not given or not one of
        the classes)."""
        proba = np.asarray(proba, dtype=np.float64)
        if len(proba) == 0:
            return {}
        chosen = proba.argmax(axis=1)
        if predicted is not None:
            index = {c: i for i, c in enumerate(self.classes)}
            given = np.asarray([index.get(_plain(p), -1) for p in np.asarray(predicted)])
            chosen = np.where(given >= 0, given, chosen)
        values = _class_metrics(self.calibrated(proba), chosen)
        draws = _drawn_metrics(lambda i: self.calibrated(proba, self._variant(i)), chosen, np.random.default_rng(seed))
        return {m: Estimate(m, values[m], float(np.nanpercentile(draws[m], 2.5)),
                            float(np.nanpercentile(draws[m], 97.5))) for m in CLASSIFICATION_ESTIMATES}

    def _variant(self, draw: int) -> list:
        """The calibration a label draw goes through: the bootstrap refits in turn (the fit itself without)."""
        return self.bootstrap_curves[draw % len(self.bootstrap_curves)] if self.bootstrap_curves else self.curves

    def to_state(self) -> dict[str, Any]:
        return {"kind": "classification", **asdict(self)}


def _confusion_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 from a confusion matrix (rows: true class, columns: predicted),
    of counts or of expected counts."""
    tp = np.diag(confusion)
    fn = confusion.sum(axis=1) - tp
    fp = confusion.sum(axis=0) - tp
    k = len(tp)
    present = (tp + fn) > 0  # classes with (expected) rows
    seen = present | (fp > 0)  # ... or predicted: scikit-learn's labels for a macro average
    recall = np.divide(tp, tp + fn, out=np.zeros(k), where=present)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(k), where=(2 * tp + fp + fn) > 0)
    return {"accuracy": float(tp.sum() / confusion.sum()),
            "balanced_accuracy": float(recall[present].mean()) if present.any() else math.nan,
            "f1_macro": float(f1[seen].mean()) if seen.any() else math.nan}


def _class_metrics(weights: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Metrics from soft labels: ``weights[i, k]`` is the chance row i is of class k."""
    k = weights.shape[1]
    return _confusion_metrics((np.eye(k)[predicted].T @ weights).T)


def _drawn_metrics(calibrated_for: Any, predicted: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The metrics over label sets drawn from calibrated probabilities (draw ``i`` from ``calibrated_for(i)``,
    the calibration's bootstrap variants in turn): the spread of the realized metric, the calibration's error
    included. One batch-sized array at a time."""
    out: dict[str, list[float]] = {m: [] for m in CLASSIFICATION_ESTIMATES}
    for i in range(_DRAWS):
        c = np.cumsum(calibrated_for(i), axis=1)
        c[:, -1] = 1.0
        k = c.shape[1]
        labels = (rng.random(len(c))[:, None] > c).sum(axis=1)
        confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).astype(np.float64)
        for m, v in _confusion_metrics(confusion).items():
            out[m].append(v)
    return {m: np.asarray(v) for m, v in out.items()}


#: the fewest reference rows from which an error level's own spread is taken (fewer: the holdout's spread)
_LEVEL_SPREAD_ROWS = 5


@dataclass(frozen=True)
class ErrorLevelEstimator:
    """A regressor's expected error by level of its prediction: the reference rows' errors in prediction bins."""

    edges: list[float]  # inner bin edges of the predictions (deciles at most)
    abs_mean: list[float]
    abs_var: list[float]
    sq_mean: list[float]
    sq_var: list[float]
    reference_rows: int
    level_rows: list[int] | None = None  # reference rows behind each level's means (None: a state made before)

    @classmethod
    def fit(cls, predictions: Any, y: Any, *, bins: int = 10, min_rows: int = 30) -> ErrorLevelEstimator:
        pred = np.asarray(predictions, dtype=np.float64)
        resid = pred - np.asarray(y, dtype=np.float64)
        if len(pred) < MIN_REFERENCE_ROWS:
            raise ValueError(f"{len(pred)} reference rows < {MIN_REFERENCE_ROWS}: too few to learn errors from")
        n_bins = max(1, min(bins, len(pred) // min_rows))
        edges = np.unique(np.quantile(pred, np.linspace(0, 1, n_bins + 1)[1:-1])) if n_bins > 1 else np.array([])
        level = np.searchsorted(edges, pred, side="right")
        filled = [b for b in range(len(edges) + 1) if np.any(level == b)]
        stats: dict[str, list] = {"abs_mean": [], "abs_var": [], "sq_mean": [], "sq_var": [], "level_rows": []}
        pooled = {"abs": float(np.abs(resid).var(ddof=1)), "sq": float((resid ** 2).var(ddof=1))}
        for b in range(len(edges) + 1):
            # a level no reference row fell in borrows its nearest filled level's errors (never "no error")
            rows = level == min(filled, key=lambda f: abs(f - b))
            a, s = np.abs(resid[rows]), resid[rows] ** 2
            for key, v in (("abs", a), ("sq", s)):
                stats[f"{key}_mean"].append(float(v.mean()))
                # a level of a few rows (tied predictions) cannot tell its own spread: the holdout's is used
                stats[f"{key}_var"].append(float(v.var(ddof=1)) if len(v) >= _LEVEL_SPREAD_ROWS else pooled[key])
            stats["level_rows"].append(int(rows.sum()))
        return cls(edges=[float(e) for e in edges], reference_rows=len(pred), **stats)

    def estimate(self, predictions: Any) -> dict[str, Estimate]:
        pred = np.asarray(predictions, dtype=np.float64)
        n = len(pred)
        if n == 0:
            return {}
        level = np.searchsorted(np.asarray(self.edges), pred, side="right")
        share = np.bincount(level, minlength=len(self.abs_mean)) / n  # of the batch's rows at each level
        behind = np.asarray(self.level_rows or [max(1, self.reference_rows // len(self.abs_mean))] * len(self.abs_mean),
                            dtype=np.float64)

        def mean_and_band(mean, var):
            """The batch's expected error, and its 95 % band: the rows' own spread around their level's mean, and
            the uncertainty of each level's mean, learnt from its reference rows (a few dozen on a small file's
            holdout: most of the band then)."""
            var = np.asarray(var, dtype=np.float64)
            value = float(np.asarray(mean)[level].mean())
            half = 1.96 * math.sqrt(float(var[level].sum()) / n**2 + float((share**2 * var / behind).sum()))
            return value, value - half, value + half

        mae, mae_low, mae_high = mean_and_band(self.abs_mean, self.abs_var)
        mse, mse_low, mse_high = mean_and_band(self.sq_mean, self.sq_var)
        return {"mae": Estimate("mae", mae, max(mae_low, 0.0), mae_high),
                "rmse": Estimate("rmse", math.sqrt(mse), math.sqrt(max(mse_low, 0.0)), math.sqrt(mse_high))}

    def to_state(self) -> dict[str, Any]:
        return {"kind": "regression", **asdict(self)}


def estimator_from_state(state: dict[str, Any]) -> CalibratedEstimator | ErrorLevelEstimator:
    """Read back what ``to_state`` wrote."""
    if state.get("kind") == "classification":
        def pairs(curves):
            return [(list(x), list(y)) for x, y in curves]

        return CalibratedEstimator(classes=list(state["classes"]), curves=pairs(state["curves"]),
                                   reference_rows=int(state["reference_rows"]),
                                   bootstrap_curves=[pairs(c) for c in state.get("bootstrap_curves") or []])
    if state.get("kind") == "regression":
        return ErrorLevelEstimator(**{k: v for k, v in state.items() if k != "kind"})
    raise ValueError(f"not a performance estimator's state: kind {state.get('kind')!r}")


def _plain(value: Any) -> Any:
    """A class label as JSON keeps it (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value
