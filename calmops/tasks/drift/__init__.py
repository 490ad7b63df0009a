"""The drift step: every drift signal of one batch against the champion, in one typed verdict.

One module per signal: :mod:`.data` (data drift against the champion's reference profile, and the
label-free signals of batches without labels), :mod:`.performance` (the champion's score against its
thresholds and its score at promotion, and its decay over the files since promotion) and :mod:`.concept`
(streaming detectors fed with its per-row errors), :mod:`.estimated` (its performance estimated without
labels). :func:`check_drift` runs the ones the batch allows and returns a
:class:`~calmops.core.verdict.DriftVerdict` for the retrain decision; :func:`start_monitoring` sets up the
state a new champion is watched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from calmops.core.spec import PipelineSpec
from calmops.core.verdict import DriftVerdict
from calmops.tasks import step
from calmops.tasks.drift.concept import concept_drift, per_row_errors, warm_start_concept
from calmops.tasks.drift.data import data_drift, label_free_drift, model_importances, model_outputs
from calmops.tasks.drift.estimated import estimated_performance, fit_estimator
from calmops.tasks.drift.performance import performance_decay, performance_drift

if TYPE_CHECKING:  # the champion comes from the registry (MLflow); the step only reads it
    from calmops.core.registry import Champion


@dataclass(frozen=True)
class DriftInput:
    """What the drift step looks at: the champion, one batch, and where the champion's state is kept."""

    champion: Champion
    X: pd.DataFrame
    y: pd.Series | None  # None: a batch without labels (only the label-free signals can be checked)
    spec: PipelineSpec
    task: str
    metric: str  # the primary metric
    scores_now: dict | None  # the champion's scores on this batch (labelled batches)
    state_dir: Path
    batch_id: str  # the file's sha256: a retried step does not count the batch twice in the score trail
    new_columns: tuple[str, ...] = ()  # the file's columns the model does not know (named in the report)


@step("drift")
def check_drift(batch: DriftInput) -> DriftVerdict:
    """All drift signals for one batch against the current champion."""
    champion, spec, metric = batch.champion, batch.spec, batch.metric
    importances = (model_importances(champion.model, list(batch.X.columns))
                   if spec.drift.aggregation == "weighted" else None)
    report = data_drift(champion.profile, batch.X, spec, importances=importances, new_columns=batch.new_columns)
    at_promotion = champion.scores_at_promotion
    unlabelled = batch.y is None or batch.scores_now is None
    # the label-free signals and the estimate read the outputs of the model measured on the holdout (its
    # reference): computed once, shared
    watched = champion.watched
    outputs = model_outputs(watched, batch.X) if unlabelled else None
    estimated = estimated_performance(watched, batch.X, spec, metric, batch.state_dir, champion.version,
                                      at_promotion.get(metric), labelled=batch.y is not None, outputs=outputs)
    if unlabelled:
        return DriftVerdict.of(report, label_free=label_free_drift(champion.profile, watched, batch.X, spec,
                                                                   outputs),
                               estimated=estimated)
    errors = per_row_errors(champion.model, batch.X, batch.y, batch.task, at_promotion.get("rmse"))
    return DriftVerdict.of(
        report,
        performance=performance_drift(batch.scores_now, at_promotion, spec, metric),
        decay=performance_decay(batch.scores_now.get(metric), batch.batch_id, spec, metric, batch.state_dir,
                                champion.version, at_promotion.get(metric)),
        concept=concept_drift(errors, spec, batch.state_dir, champion.version), estimated=estimated)


def start_monitoring(state_dir: Path, champion_version: int, model: Any, X: pd.DataFrame, y: pd.Series, task: str,
                     spec: PipelineSpec, scale: float | None = None, *, estimate_with: Any = None) -> None:
    """The state ``champion_version`` is watched with, from ``model``'s outputs on labelled rows it was not fit on
    (the holdout that chose it, or a file it was just scored on): its concept detectors' baseline
    (:func:`~.concept.warm_start_concept`) and its performance estimator (:func:`~.estimated.fit_estimator`), fit on
    the outputs of ``estimate_with`` when given (the model the estimate reads: :attr:`Champion.watched`)."""
    warm_start_concept(state_dir, champion_version, model, X, y, task, spec, scale)
    fit_estimator(state_dir, champion_version, model if estimate_with is None else estimate_with, X, y, task)

__all__ = ["DriftInput", "DriftVerdict", "check_drift", "start_monitoring"]
