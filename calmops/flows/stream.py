"""The stream kind: each arriving file is one batch, checked against the champion's reference.

Reads top to bottom like the process it runs (ARCHITECTURE.md, "Data flow of one file").
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import flow

from calmops.core import registry
from calmops.core.spec import build_estimator
from calmops.core.store import append_history, read_history
from calmops.flows.common import (
    RunContext,
    finish,
    predict_without_learning,
    predict_without_training,
    reference_frame,
    register,
    run_name,
    run_one_file,
    write_batch_predictions,
    write_predictions_of,
)
from calmops.tasks.drift import check_drift, save_concept_state
from calmops.tasks.evaluate import evaluate_models, holdout_split, primary_metric, seed_from, task_of
from calmops.tasks.ingest import Batch
from calmops.tasks.promote import decide, promote_challenger
from calmops.tasks.record import RunOutcome
from calmops.tasks.retrain import modes_to_try, retrain, train_first


@flow(name="calmops-stream", flow_run_name=partial(run_name, "stream"), persist_result=False)
def stream_flow(pipeline: str, path: str, sha256: str | None = None) -> dict[str, Any]:
    """Process one file of a stream pipeline: gate, ingest, drift, retrain, promote, predict, record."""
    return run_one_file(pipeline, path, sha256, process_stream_file)


def process_stream_file(ctx: RunContext, champion: registry.Champion | None, batch: Batch) -> RunOutcome:
    spec = ctx.spec
    if spec.prediction_only or not ctx.training_allowed:
        return predict_without_training(ctx, batch, champion)
    if champion is None:
        return train_first_model(ctx, batch)
    if batch.cannot_train:
        return predict_without_learning(ctx, batch, champion)
    return monitor_and_retrain(ctx, batch, champion)


def train_first_model(ctx: RunContext, batch: Batch) -> RunOutcome:
    spec = ctx.spec
    task = task_of(spec, build_estimator(spec.model, spec.allow_modules), batch.y)
    metric = primary_metric(spec, task)
    split = holdout_split(batch.y, spec, task, seed_from(batch.sha256, spec.seed))
    trained = train_first(spec, batch.feature_types, batch.X.iloc[split.train], batch.y.iloc[split.train])
    task = task_of(spec, trained.model, batch.y)
    scores = evaluate_models({"challenger": trained.model}, batch.X.iloc[split.holdout],
                             batch.y.iloc[split.holdout], task)
    verdict = decide(scores["challenger"], None, spec, metric)
    version = register(ctx, trained, batch, task, scores["challenger"], verdict.reason)
    predictions = write_predictions_of(ctx, batch, trained.model, version) if verdict.promote else None
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    champion_version = None
    if verdict.promote:  # the last step: nothing that can fail comes between it and finish
        promote_challenger(spec.name, version)
        save_concept_state(ctx.paths.state, version, None)
        champion_version = version
    decision = "train" if verdict.promote else "retrain_rejected"
    reason = verdict.reason if verdict.promote else f"first model not promoted: {verdict.reason}"
    outcome = ctx.outcome(decision, reason, champion_version=champion_version, challenger_version=version,
                          metrics=scores, rows=batch.n_rows, retrain_mode=trained.mode,
                          details={"training": [{"mode": trained.mode, **trained.info, "challenger_version": version,
                                                 "promoted": verdict.promote, "reason": verdict.reason}]},
                          predictions_file=str(predictions) if predictions else None)
    return finish(ctx, outcome, None)


def monitor_and_retrain(ctx: RunContext, batch: Batch, champion: registry.Champion) -> RunOutcome:
    spec = ctx.spec
    task = champion.schema.task
    metric = primary_metric(spec, task)
    now = evaluate_models({"champion": champion.model}, batch.X, batch.y, task)["champion"]
    verdict = check_drift(champion, batch.X, batch.y, spec, task, metric, now, ctx.paths.state,
                          batch_id=batch.sha256)
    for signal in batch.signals:
        ctx.log.info("schema signal: %s", signal)
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    common = {"drift_detected": verdict.drift_detected, "drifted_features": verdict.drifted_features,
              "rows": batch.n_rows}
    if not verdict.drift_detected and spec.retrain.retrain_on != "always":
        out = write_batch_predictions(ctx, batch, champion)
        outcome = ctx.outcome("no_drift", verdict.reason, champion_version=champion.version,
                              metrics={"champion": now}, predictions_file=str(out), **common)
        return finish(ctx, outcome, verdict.to_dict())

    split = holdout_split(batch.y, spec, task, seed_from(batch.sha256, spec.seed))
    X_hold, y_hold = batch.X.iloc[split.holdout], batch.y.iloc[split.holdout]
    trainings: list[dict] = []
    reference = registry.load_reference(spec.name, champion.version)
    history = read_history(ctx.paths, exclude_sha256=batch.sha256)
    tried: list[str] = []
    for mode in modes_to_try(spec):
        tried.append(mode)
        trained = retrain(mode, spec, batch.feature_types, reference, batch.X.iloc[split.train],
                          batch.y.iloc[split.train], champion=champion.model, history=history, task=task)
        scores = evaluate_models({"champion": champion.model, "challenger": trained.model}, X_hold, y_hold, task)
        decision = decide(scores["challenger"], scores["champion"], spec, metric)
        version = register(ctx, trained, batch, task, scores["challenger"], decision.reason)
        training = {"mode": mode, **trained.info, "challenger_version": version, "promoted": decision.promote,
                    "reason": decision.reason}
        trainings.append(training)
        if decision.promote:
            out = write_predictions_of(ctx, batch, trained.model, version)  # before the champion changes
            promote_challenger(spec.name, version)
            save_concept_state(ctx.paths.state, version, None)
            reason = f"{verdict.reason} → retrained ({mode}): {decision.reason}"
            outcome = ctx.outcome("retrain_promoted", reason, champion_version=version, challenger_version=version,
                                  metrics=scores, retrain_mode=trained.mode, predictions_file=str(out),
                                  details={"training": trainings}, **common)
            return finish(ctx, outcome, verdict.to_dict())
        ctx.log.info("challenger v%s (%s) rejected: %s", version, mode, decision.reason)
    out = write_batch_predictions(ctx, batch, champion)
    reason = f"{verdict.reason} → retrained ({', '.join(tried)}) but not promoted: {decision.reason}"
    outcome = ctx.outcome("retrain_rejected", reason, champion_version=champion.version, challenger_version=version,
                          metrics=scores, retrain_mode=trained.mode, predictions_file=str(out),
                          details={"training": trainings}, **common)
    return finish(ctx, outcome, verdict.to_dict())
