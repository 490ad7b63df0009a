"""Performance estimated without labels: the champion's estimator is fit on rows it was not trained on when it
takes office (``state/estimation.json``, kept per champion version) and estimates its metrics on every batch."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.metrics import HIGHER_IS_BETTER
from calmops.core.spec import PipelineSpec
from calmops.core.store import read_state, write_atomic
from calmops.core.verdict import EstimatedSignal
from calmops.detectors.estimation import (
    MIN_REFERENCE_ROWS,
    CalibratedEstimator,
    ErrorLevelEstimator,
    estimator_from_state,
)
from calmops.tasks.drift.data import model_outputs

STATE_FILE = "estimation.json"  # under the pipeline's state folder
#: versions whose estimator is kept, the last fit ones: a rollback serves ``previous`` again, whose estimator is
#: the one fit before the champion's; the others are for a champion set back by hand in the registry
KEPT_VERSIONS = 5


def fit_estimator(state_dir: Path, champion_version: int, model: Any, X: pd.DataFrame, y: pd.Series,
                  task: str) -> bool:
    """Fit the performance estimator of ``champion_version`` on ``model``'s outputs for rows it was not fit on,
    with their labels: at promotion, the fit the holdout chose (before its refit on the whole file; kept with the
    version, its outputs are the ones the estimate reads); after a concept alarm, that fit on the file that raised it.
    False when it cannot be fit (a classifier without probabilities, too few rows): the champion keeps the
    estimator it has, if any, else the reason it has none is kept for the runs to say."""
    estimator, unavailable = _fit(model, X, y, task)
    path = state_dir / STATE_FILE
    if estimator is None:  # none for this champion; one it already has (fit at promotion) is kept
        if "state" not in _kept(path).get(str(champion_version), {}):
            _keep(path, champion_version, {"unavailable": unavailable})
        return False
    _keep(path, champion_version, {"state": estimator.to_state()})
    return True


def _fit(model: Any, X: pd.DataFrame, y: pd.Series,
         task: str) -> tuple[CalibratedEstimator | ErrorLevelEstimator | None, str | None]:
    """``model``'s estimator fit on these labelled rows, or None and why it cannot be."""
    if len(y) < MIN_REFERENCE_ROWS:
        return None, f"{len(y)} labelled rows to fit it on, fewer than {MIN_REFERENCE_ROWS}"
    if task != "classification":
        return ErrorLevelEstimator.fit(model.predict(X), y), None
    proba, classes = model_outputs(model, X)[1], list(getattr(model, "classes_", []))
    if proba is None or not len(classes) == proba.shape[1] >= 2:
        return None, "the classifier gives no probability per class"
    return CalibratedEstimator.fit(proba, y, classes), None


def _kept(path: Path) -> dict[str, dict[str, Any]]:
    """What ``path`` keeps per champion version (JSON's text keys), the last fit last: ``{"state": …}`` (the
    estimator's) or ``{"unavailable": why}``. A file of one champion (``champion_version`` and ``state``, as
    CalmOps wrote it when it kept one) reads as that champion's."""
    saved = read_state(path) or {}
    if "champion_version" in saved:
        return {str(saved["champion_version"]): {"state": saved["state"]}}
    return dict(saved.get("versions") or {})


def _keep(path: Path, champion_version: int, entry: dict[str, Any]) -> None:
    """Keep ``entry`` as ``champion_version``'s, the last fit, and the last :data:`KEPT_VERSIONS` versions fit:
    a champion served again (a rollback) finds the estimator it had."""
    kept = _kept(path)
    kept.pop(str(champion_version), None)
    kept[str(champion_version)] = entry
    write_atomic(path, json.dumps({"versions": dict(list(kept.items())[-KEPT_VERSIONS:])}))


def _champion_estimator(state_dir: Path, champion_version: int) -> CalibratedEstimator | ErrorLevelEstimator | None:
    """The estimator kept for ``champion_version``; None, said in the run's log with the reason, when there is
    none (its absence would otherwise show only as metrics missing from the run)."""
    kept = _kept(state_dir / STATE_FILE)
    entry = kept.get(str(champion_version))
    if entry is not None and "state" in entry:
        return estimator_from_state(entry["state"])
    if entry is not None:
        _run_log().info("no performance estimate for champion v%s: none could be fit when it took office (%s)",
                        champion_version, entry.get("unavailable"))
    elif kept:
        others = ", ".join(f"v{v}" for v in kept)
        _run_log().warning("no performance estimate for champion v%s: no estimator is kept for it (kept: %s); it "
                           "became champion without one fit here, or its estimator was dropped after %s newer ones",
                           champion_version, others, KEPT_VERSIONS)
    else:
        _run_log().info("no performance estimate for champion v%s: no champion of this pipeline has an estimator",
                        champion_version)
    return None


def _run_log() -> logging.Logger | logging.LoggerAdapter:
    """The log of the run the drift step is in (Prefect's, shown with the run); this module's outside a run."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def estimated_performance(model: Any, X: pd.DataFrame, spec: PipelineSpec, metric: str, state_dir: Path,
                          champion_version: int, at_promotion: float | None, *, labelled: bool,
                          outputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> EstimatedSignal | None:
    """The champion's metrics on ``X`` estimated from its outputs (``outputs``: its :func:`.data.model_outputs`
    when already computed); None when it has no estimator. On a batch without labels,
    ``evaluation.estimated_trigger`` turns a fall of the primary metric into a drift signal."""
    if len(X) == 0:
        return None
    estimator = _champion_estimator(state_dir, champion_version)
    if estimator is None:
        return None
    predictions, proba = outputs or model_outputs(model, X)
    if isinstance(estimator, CalibratedEstimator):
        if proba is None or proba.shape[1] != len(estimator.classes):
            _run_log().warning("no performance estimate for champion v%s: its class probabilities do not match "
                               "the %s classes its estimator was fit on", champion_version, len(estimator.classes))
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


