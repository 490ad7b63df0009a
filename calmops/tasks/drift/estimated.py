"""Performance estimated without labels: the champion's estimator is fit on rows it was not trained on when it
takes office (``state/estimation.json``, kept for one champion) and estimates its metrics on every batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.metrics import HIGHER_IS_BETTER
from calmops.core.spec import PipelineSpec
from calmops.core.store import read_champion_state, write_champion_state
from calmops.core.verdict import EstimatedSignal
from calmops.detectors.estimation import (
    MIN_REFERENCE_ROWS,
    CalibratedEstimator,
    ErrorLevelEstimator,
    estimator_from_state,
)
from calmops.tasks.drift.data import model_outputs

STATE_FILE = "estimation.json"  # under the pipeline's state folder


def fit_estimator(state_dir: Path, champion_version: int, model: Any, X: pd.DataFrame, y: pd.Series,
                  task: str) -> bool:
    """Fit the performance estimator of ``champion_version`` on ``model``'s outputs for rows it was not fit on,
    with their labels: at promotion, the model the holdout chose (before its refit on the whole file, which
    then serves with the same calibration); after a concept alarm, the champion on the file that raised it.
    False when it cannot be fit (a classifier without probabilities, too few rows): the champion keeps the
    estimator it has, if any."""
    path = state_dir / STATE_FILE
    estimator: CalibratedEstimator | ErrorLevelEstimator | None = None
    if len(y) >= MIN_REFERENCE_ROWS:
        if task == "classification":
            proba, classes = model_outputs(model, X)[1], list(getattr(model, "classes_", []))
            if proba is not None and len(classes) == proba.shape[1] >= 2:
                estimator = CalibratedEstimator.fit(proba, y, classes)
        else:
            estimator = ErrorLevelEstimator.fit(model.predict(X), y)
    if estimator is None:  # none for this champion; one it already has (fit at promotion) is kept
        if read_champion_state(path, champion_version) is None:
            path.unlink(missing_ok=True)
        return False
    write_champion_state(path, champion_version, state=estimator.to_state())
    return True


def estimated_performance(model: Any, X: pd.DataFrame, spec: PipelineSpec, metric: str, state_dir: Path,
                          champion_version: int, at_promotion: float | None, *, labelled: bool,
                          outputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> EstimatedSignal | None:
    """The champion's metrics on ``X`` estimated from its outputs (``outputs``: its :func:`.data.model_outputs`
    when already computed); None when it has no estimator. On a batch without labels,
    ``evaluation.estimated_trigger`` turns a fall of the primary metric into a drift signal."""
    saved = read_champion_state(state_dir / STATE_FILE, champion_version)
    if saved is None or len(X) == 0:
        return None
    estimator = estimator_from_state(saved["state"])
    predictions, proba = outputs or model_outputs(model, X)
    if isinstance(estimator, CalibratedEstimator):
        if proba is None or proba.shape[1] != len(estimator.classes):
            return None
        estimates = estimator.estimate(proba, predictions, seed=spec.seed)
    else:
        estimates = estimator.estimate(predictions)
    trigger = spec.evaluation.estimated_trigger
    signal = EstimatedSignal(estimates={m: {"value": e.value, "low": e.low, "high": e.high}
                                        for m, e in estimates.items()},
                             reference_rows=estimator.reference_rows, metric=metric if metric in estimates else None,
                             at_promotion=at_promotion)
    if labelled or trigger is None or signal.metric is None or not at_promotion:
        return signal
    now = estimates[metric].value
    drop = (at_promotion - now if HIGHER_IS_BETTER.get(metric, True) else now - at_promotion) / abs(at_promotion)
    return EstimatedSignal(**{**signal.to_dict(), "trigger": trigger, "relative_drop": drop, "drift": drop > trigger})


