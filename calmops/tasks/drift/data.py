"""Data drift: the champion's reference profile, built once per model version, against each batch; and the
label-free signals (its predictions and confidences) of batches without labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from calmops.core.features import drift_types
from calmops.core.spec import PipelineSpec
from calmops.core.verdict import LabelFreeSignal
from calmops.detectors import DriftReport, ReferenceProfile, SchemaSignal, compare, new_column_signal
from calmops.detectors.label_free import label_free_compare


def build_profile(X: pd.DataFrame, feature_types: dict[str, str], spec: PipelineSpec, model: Any = None,
                  held_out: pd.DataFrame | None = None) -> ReferenceProfile:
    """The reference profile stored with a model version (computed once, reused by every comparison): the
    features of ``X``, and ``model``'s outputs on ``held_out``, rows it was not fit on (``X`` without them), the
    reference of the label-free signals. A model is surer of the rows it learnt than of any new row, so its
    outputs on those would make every later file look drifted."""
    predictions = confidences = None
    if model is not None:
        rows = X if held_out is None else held_out
        sample = rows if len(rows) <= 20_000 else rows.sample(20_000, random_state=spec.seed)
        predictions, confidences = _outputs(model, sample)
    return ReferenceProfile.build(X, _drift_feature_types(feature_types, spec), spec.drift,
                                  predictions=predictions, confidences=confidences)


def model_outputs(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's predictions and class probabilities (None without usable ones), computed once for every
    signal of a batch that reads them."""
    predictions = np.asarray(model.predict(X))
    probabilities = None
    if hasattr(model, "predict_proba"):
        try:
            probabilities = np.asarray(model.predict_proba(X), dtype=np.float64)
        except Exception:  # noqa: BLE001 - some estimators expose predict_proba but cannot use it
            probabilities = None
    return predictions, probabilities


def _outputs(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's predictions and its confidence in each (the top class probability; None without one)."""
    predictions, probabilities = model_outputs(model, X)
    return predictions, None if probabilities is None else probabilities.max(axis=1)


def _drift_feature_types(feature_types: dict[str, str], spec: PipelineSpec) -> dict[str, str]:
    """The block column names a row's block (a site, a month): it routes rows, it is not a feature whose
    distribution can drift (a file of new months would always 'drift'), so it is never profiled."""
    return {c: t for c, t in drift_types(feature_types).items() if c != spec.block_column}


MAX_NEW_COLUMNS = 100  # new columns named one by one in a report


def data_drift(profile: ReferenceProfile, X: pd.DataFrame, spec: PipelineSpec, importances=None,
               new_columns: list[str] | tuple[str, ...] = ()) -> DriftReport:
    """The data-drift report of the batch's features; ``new_columns``: the file's columns that are not features of
    the model (not in ``X``), each named as a ``new_column`` schema signal (told, not tested, not drift)."""
    if spec.block_column and spec.block_column in X.columns and spec.block_column not in profile.feature_types:
        X = X.drop(columns=[spec.block_column])
    report = compare(profile, X, spec.drift, importances=importances)
    new = [column for column in new_columns if column not in X.columns]
    report.schema_signals += [new_column_signal(column) for column in new[:MAX_NEW_COLUMNS]]
    if len(new) > MAX_NEW_COLUMNS:  # a file of thousands of columns: the report stays readable
        report.schema_signals.append(SchemaSignal("new_column", f"(and {len(new) - MAX_NEW_COLUMNS} more)",
                                                  "more columns not in the reference, not named", drift=False))
    return report


def label_free_drift(profile: ReferenceProfile, model: Any, X: pd.DataFrame, spec: PipelineSpec,
                     outputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> LabelFreeSignal:
    """Prediction-distribution and confidence drift, for batches without labels (``outputs``: the model's
    :func:`model_outputs` on ``X`` when already computed)."""
    predictions, probabilities = outputs or model_outputs(model, X)
    confidences = None if probabilities is None else probabilities.max(axis=1)
    results = label_free_compare(profile, spec.drift, predictions=predictions, confidences=confidences)
    return LabelFreeSignal(drift=any(r.drift for r in results), results=list(results))


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
