"""The stream kind: each arriving file is one batch, checked against the champion's reference.

Reads top to bottom like the process it runs (ARCHITECTURE.md, "Data flow of one file").
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow

from calmops.core import registry
from calmops.core.registry import InputSchema
from calmops.flows.common import (
    RunContext,
    fail,
    finish,
    load_champion,
    open_run,
    read_batch,
    reference_frame,
    run_name,
)
from calmops.tasks.drift import build_profile, check_drift, save_concept_state
from calmops.tasks.evaluate import evaluate_models, holdout_split, primary_metric, seed_from, task_of
from calmops.tasks.ingest import Batch
from calmops.tasks.predict import predict
from calmops.tasks.promote import decide, promote_challenger
from calmops.tasks.record import RunOutcome
from calmops.tasks.retrain import TrainingResult, modes_to_try, retrain, train_first
from calmops.core.spec import build_estimator
from calmops.core.store import append_history, read_history


@flow(name="calmops-stream", flow_run_name=partial(run_name, "stream"), persist_result=False)
def stream_flow(pipeline: str, path: str, sha256: str | None = None) -> dict[str, Any]:
    """Process one file of a stream pipeline: gate, ingest, drift, retrain, promote, predict, record."""
    ctx = open_run(pipeline, path, sha256)
    if isinstance(ctx, RunOutcome):  # duplicate: done already
        return ctx.to_dict()
    try:
        return process_stream_file(ctx).to_dict()
    except Exception as exc:
        raise fail(ctx, exc) from exc


def process_stream_file(ctx: RunContext) -> RunOutcome:
    spec = ctx.spec
    champion = load_champion(spec.name)
    batch = read_batch(ctx, champion)
    if isinstance(batch, RunOutcome):
        return batch
    if spec.prediction_only or not ctx.training_allowed:
        return predict_without_training(ctx, batch, champion)
    if champion is None:
        return train_first_model(ctx, batch)
    return monitor_and_retrain(ctx, batch, champion)


def predict_without_training(ctx: RunContext, batch: Batch, champion: registry.Champion | None) -> RunOutcome:
    """Prediction-only pipelines, and any pipeline while its breaker is open."""
    spec = ctx.spec
    breaker_open = not spec.prediction_only
    if champion is None:
        raise LookupError(f"pipeline {spec.name!r} has no champion to predict with; "
                          "train one first (a labelled file with prediction_only: false)")
    verdict = check_drift(champion, batch.X, None, spec, champion.schema.task, "", None, ctx.paths.state)
    out = _write_predictions(ctx, batch, champion)
    decision, reason = ("skipped_breaker_open", "circuit breaker is open: training skipped, predictions written") \
        if breaker_open else ("predict_only", "prediction-only pipeline: predictions written")
    outcome = ctx.outcome(decision, reason, drift_detected=verdict.drift_detected,
                          drifted_features=verdict.drifted_features, champion_version=champion.version,
                          rows=batch.n_rows, predictions_file=str(out))
    return finish(ctx, outcome, verdict.to_dict(), keep_pending=breaker_open)


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
    champion_version = None
    if verdict.promote:
        promote_challenger(spec.name, version)
        save_concept_state(ctx.paths.state, version, None)
        champion_version = version
    decision = "train" if verdict.promote else "retrain_rejected"
    reason = verdict.reason if verdict.promote else f"first model not promoted: {verdict.reason}"
    predictions = _write_predictions(ctx, batch, registry.champion(spec.name)) if verdict.promote else None
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
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
    verdict = check_drift(champion, batch.X, batch.y, spec, task, metric, now, ctx.paths.state)
    for signal in batch.signals:
        ctx.log.info("schema signal: %s", signal)
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    common = dict(drift_detected=verdict.drift_detected, drifted_features=verdict.drifted_features,
                  rows=batch.n_rows)
    if not verdict.drift_detected and spec.retrain.retrain_on != "always":
        out = _write_predictions(ctx, batch, champion)
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
            promote_challenger(spec.name, version)
            save_concept_state(ctx.paths.state, version, None)
            new_champion = registry.champion(spec.name)
            out = _write_predictions(ctx, batch, new_champion)
            reason = f"{verdict.reason} → retrained ({mode}): {decision.reason}"
            outcome = ctx.outcome("retrain_promoted", reason, champion_version=version, challenger_version=version,
                                  metrics=scores, retrain_mode=trained.mode, predictions_file=str(out),
                                  details={"training": trainings}, **common)
            return finish(ctx, outcome, verdict.to_dict())
        ctx.log.info("challenger v%s (%s) rejected: %s", version, mode, decision.reason)
    out = _write_predictions(ctx, batch, champion)
    reason = f"{verdict.reason} → retrained ({', '.join(tried)}) but not promoted: {decision.reason}"
    outcome = ctx.outcome("retrain_rejected", reason, champion_version=champion.version, challenger_version=version,
                          metrics=scores, retrain_mode=trained.mode, predictions_file=str(out),
                          details={"training": trainings}, **common)
    return finish(ctx, outcome, verdict.to_dict())


def register(ctx: RunContext, trained: TrainingResult, batch: Batch, task: str, scores: dict, reason: str) -> int:
    """Log the candidate with its reference and profile, and point ``challenger`` at it."""
    spec = ctx.spec
    classes = list(getattr(trained.model, "classes_", [])) or None
    schema = InputSchema(columns=list(trained.X.columns), dtypes={c: str(t) for c, t in trained.X.dtypes.items()},
                         feature_types=batch.feature_types, target=spec.target, task=task, classes=classes)
    profile = build_profile(trained.X, batch.feature_types, spec, trained.model)
    version = registry.log_candidate(ctx.mlflow_run_id, spec.name, trained.model,
                                     reference_frame(trained.X, trained.y, spec.target), schema, profile,
                                     scores=scores, description=f"{trained.mode} on {batch.file}: {reason}")
    registry.mark_challenger(spec.name, version)
    registry.set_version_tag(spec.name, version, "calmops.training", {"mode": trained.mode, **trained.info,
                                                                       "file": batch.file, "sha256": batch.sha256})
    return version


def _write_predictions(ctx: RunContext, batch: Batch, champion: registry.Champion | None) -> Path | None:
    if champion is None:
        return None
    ids = batch.frame[ctx.spec.id_columns] if ctx.spec.id_columns else None
    return predict(champion.model, batch.X, champion.version, ctx.paths.predictions, batch.file, ids)
