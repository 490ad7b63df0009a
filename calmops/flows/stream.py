"""The stream kind: each arriving file is one batch, checked against the champion's reference.

Reads top to bottom like the process it runs (ARCHITECTURE.md, "Data flow of one file").
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import flow

from calmops.core import registry
from calmops.core.kinds import KINDS
from calmops.core.names import tried_scores
from calmops.core.spec import build_estimator
from calmops.core.store import append_history, read_history
from calmops.flows.common import (
    RunContext,
    champion_check,
    ended,
    finish,
    predict_without_learning,
    predict_without_training,
    reference_frame,
    register,
    run_in_order,
    run_name,
    write_batch_predictions,
    write_predictions_of,
)
from calmops.flows.labels import is_labels_file, labels_before, run_labels_file
from calmops.tasks.drift import start_monitoring
from calmops.tasks.evaluate import (
    compare_on_holdout,
    evaluate_models,
    holdout_split,
    primary_metric,
    seed_from,
    task_of,
)
from calmops.tasks.ingest import Batch
from calmops.tasks.promote import decide, decide_refresh, follow_up_due, promote_challenger, refresh_due
from calmops.tasks.record import RunOutcome
from calmops.tasks.retrain import (
    auto_default,
    modes_to_try,
    recipe_label,
    refit,
    retrain,
    retrain_auto,
    train_first,
)


@flow(name=KINDS["stream"].flow_name, flow_run_name=partial(run_name, "stream"), persist_result=False)
def stream_flow(pipeline: str, path: str, sha256: str | None = None) -> dict[str, Any]:
    """Process one file of a stream pipeline: gate, ingest, drift, retrain, promote, predict, record (a labels
    file: joined to the rows it labels, then the same steps)."""
    if is_labels_file(pipeline, path):
        return ended(run_labels_file(pipeline, path, sha256, process_stream_file))
    return ended(run_in_order(pipeline, path, sha256, process_stream_file, labels_before(pipeline, process_stream_file)))


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
    selected = trained
    if verdict.promote:  # the holdout vouched for the recipe: the model that serves learns every row
        trained = refit(trained, trained.mode, spec, batch.feature_types, None, batch.X, batch.y, task=task)
        trained.info["selection"].update(holdout_rows=len(split.holdout), score=scores["challenger"].get(metric))
        trained.info["rows_so_far"] = batch.n_rows
    version = register(ctx, trained, batch, task, scores["challenger"], verdict.reason, selected=selected.model,
                       held_out=batch.X.iloc[split.holdout])
    predictions = write_predictions_of(ctx, batch, trained.model, version) if verdict.promote else None
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    champion_version = None
    if verdict.promote:  # the last step: nothing that can fail comes between it and finish
        promote_challenger(spec.name, version)
        start_monitoring(ctx.paths.state, version, selected.model, batch.X.iloc[split.holdout],
                         batch.y.iloc[split.holdout], task, spec, scores["challenger"].get("rmse"))
        champion_version = version
    decision = "train" if verdict.promote else "retrain_rejected"
    reason = verdict.reason if verdict.promote else f"first model not promoted: {verdict.reason}"
    outcome = ctx.outcome(decision, reason, champion_version=champion_version, challenger_version=version,
                          metrics=scores, rows=batch.n_rows, retrain_mode=trained.mode,
                          details={"training": [{"mode": trained.mode, **trained.info, "challenger_version": version,
                                                 "promoted": verdict.promote, "reason": verdict.reason}],
                                   **_predictions_note(champion_version)},
                          predictions_file=str(predictions) if predictions else None)
    return finish(ctx, outcome, None)


def _rows_then(champion: registry.Champion) -> int | None:
    """Rows kept when the champion was trained (or when a refresh was last tried): the base of refresh_growth."""
    tried = champion.tags.get(registry.REFRESH_BASE_TAG)
    if tried:
        return int(tried)
    return champion.training.get("rows_so_far")


def _follow_up_of(champion: registry.Champion) -> dict | None:
    """The follow-up a champion promoted during a change calls for (its score and its predecessor's), once: None
    when it calls for none or has served a file since."""
    if champion.tags.get(registry.FOLLOW_UP_TAG):
        return None
    return champion.training.get("follow_up") or None


def _predictions_note(version: int | None) -> dict:
    """Which version wrote a promoted batch's predictions (it was refit on this batch's rows)."""
    return {"predictions": {"model_version": version, "trained_on_this_file": True}} if version else {}


def monitor_and_retrain(ctx: RunContext, batch: Batch, champion: registry.Champion) -> RunOutcome:
    spec = ctx.spec
    task, metric, now, verdict = champion_check(ctx, batch, champion)
    history = read_history(ctx.paths, exclude_sha256=batch.sha256)
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    common = {"drift_detected": verdict.drift_detected, "drifted_features": verdict.drifted_features,
              "rows": batch.n_rows}
    rows_so_far = sum(len(f) for _, f in history) + batch.n_rows
    rows_then = _rows_then(champion)
    quiet = not verdict.drift_detected and spec.retrain.retrain_on != "always"  # nothing asks for a retrain
    refresh = quiet and refresh_due(rows_so_far, rows_then, spec.retrain.refresh_growth, now, task)
    follow = _follow_up_of(champion)  # the champion's first file after a promotion during a change
    follow_up = bool(follow) and quiet and not refresh
    if quiet and not refresh and not follow_up:
        out = write_batch_predictions(ctx, batch, champion)
        outcome = ctx.outcome("no_drift", verdict.reason, champion_version=champion.version,
                              metrics={"champion": now}, predictions_file=str(out) if out else None, **common)
        return finish(ctx, outcome, verdict)
    if refresh:
        why = (f"no drift signal; refresh: {rows_so_far} rows kept so far, {rows_so_far / rows_then:.1f}× the "
               f"{rows_then} there were when the champion was trained")
        verdict_reason = why
    elif follow_up:
        verdict_reason = (f"no drift signal; follow-up: champion v{champion.version} was promoted during a change "
                          f"(holdout {metric} {follow['score']:.4f}, its predecessor's {follow['predecessor']:.4f}), "
                          "so one more challenger is tried on the next file")
    else:
        verdict_reason = verdict.reason

    seed = seed_from(batch.sha256, spec.seed)
    split = holdout_split(batch.y, spec, task, seed, changing=verdict.real_concept_drift)
    X_hold, y_hold = batch.X.iloc[split.holdout], batch.y.iloc[split.holdout]
    trainings: list[dict] = []
    reference = registry.load_reference(spec.name, champion.version)
    tried: list[str] = []
    for mode in ["history"] if refresh else modes_to_try(spec):
        tried.append(mode)
        X_train, y_train = batch.X.iloc[split.train], batch.y.iloc[split.train]
        if mode == "auto":  # the default for this verdict, unless another recipe is shown better on the holdout
            trained = retrain_auto(spec, batch.feature_types, reference, X_train, y_train, X_hold, y_hold, metric,
                                   champion=champion.model, history=history, task=task, seed=seed,
                                   default=auto_default(verdict.real_concept_drift))
        else:
            trained = retrain(mode, spec, batch.feature_types, reference, X_train, y_train, champion=champion.model,
                              history=history, task=task)
        tried[-1] = recipe_label(mode, trained)
        scores = evaluate_models({"champion": champion.model, "challenger": trained.model}, X_hold, y_hold, task)
        paired = compare_on_holdout(metric, trained.model, champion.model, X_hold, y_hold, task, seed)
        decision = (decide_refresh if refresh else decide)(scores["challenger"], scores["champion"], spec, metric,
                                                           paired)
        selection = {"rows": len(trained.X), "holdout_rows": len(split.holdout), "holdout": split.kind,
                     "score": scores["challenger"].get(metric), "champion_score": scores["champion"].get(metric),
                     "paired_test": paired.to_dict() if paired else None}
        selected = trained
        if decision.promote:
            # the recipe that was scored: auto's pick, or the full refit a mode fell back to on these rows
            trained = refit(trained, trained.mode, spec, batch.feature_types, reference, batch.X, batch.y,
                            champion=champion.model, history=history, task=task)
            trained.info["selection"].update(selection)
            trained.info["rows_so_far"] = rows_so_far
            if not (refresh or follow_up) and follow_up_due(scores["challenger"], champion.scores_at_promotion, spec,
                                                            metric):
                trained.info["follow_up"] = {"score": scores["challenger"].get(metric),
                                             "predecessor": champion.scores_at_promotion.get(metric)}
        else:
            trained.info["selection"] = selection
        version = register(ctx, trained, batch, task, scores["challenger"], decision.reason, selected=selected.model,
                           held_out=X_hold)
        training = {"mode": mode, **trained.info, "challenger_version": version, "promoted": decision.promote,
                    "reason": decision.reason}
        trainings.append(training)
        if decision.promote:
            out = write_predictions_of(ctx, batch, trained.model, version)  # before the champion changes
            promote_challenger(spec.name, version)
            start_monitoring(ctx.paths.state, version, selected.model, X_hold, y_hold, task, spec,
                             scores["challenger"].get("rmse"))
            reason = f"{verdict_reason} → retrained ({tried[-1]}): {decision.reason}"
            outcome = ctx.outcome("retrain_promoted", reason, champion_version=version, challenger_version=version,
                                  metrics=tried_scores(scores, now), retrain_mode=trained.mode, predictions_file=str(out) if out else None,
                                  details={"training": trainings, "compared_with": champion.version,
                                           **_predictions_note(version)}, **common)
            return finish(ctx, outcome, verdict)
        ctx.log.info("challenger v%s (%s) rejected: %s", version, mode, decision.reason)
    # the champion stays. A refresh is tried once per growth step and a follow-up once, drift or not: marked only
    # now that the file is decided, so a run that fails before this point leaves them due for the file's retry
    if refresh:
        registry.set_version_tag(spec.name, champion.version, registry.REFRESH_BASE_TAG, str(rows_so_far))
    if follow:
        registry.set_version_tag(spec.name, champion.version, registry.FOLLOW_UP_TAG, batch.file)
    if verdict.concept and verdict.concept.alarm:  # acted on: the detectors restart from the champion's level on this file
        start_monitoring(ctx.paths.state, champion.version, champion.model, batch.X, batch.y, task, spec,
                         champion.scores_at_promotion.get("rmse"), estimate_with=champion.watched)
    out = write_batch_predictions(ctx, batch, champion)
    reason = f"{verdict_reason} → retrained ({', '.join(tried)}) but not promoted: {decision.reason}"
    outcome = ctx.outcome("no_drift" if refresh or follow_up else "retrain_rejected", reason, champion_version=champion.version, challenger_version=version,
                          metrics=tried_scores(scores, now), retrain_mode=trained.mode, predictions_file=str(out) if out else None,
                          details={"training": trainings, "compared_with": champion.version}, **common)
    return finish(ctx, outcome, verdict)
