"""The block kind: each file holds several blocks (named by the spec's ``block_column``), served by a
block-wise model (one global model plus one model per block).

Per file: drift of each block against the champion's reference and between the blocks of the file; on
drift, only the drifted (and new) blocks' models are retrained, with the global model refit on current
data; champion and challenger are scored on the evaluation blocks (default: the newest block, held out)
and the challenger is promoted by the stream kind's rule plus per-block approval.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from prefect import flow

from calmops.core import registry
from calmops.core.kinds import KINDS
from calmops.core.metrics import threshold_failures
from calmops.core.names import tried_scores
from calmops.core.store import append_history
from calmops.core.verdict import BlockDrift, DriftVerdict
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
from calmops.tasks import blocks as B
from calmops.tasks.drift import start_monitoring
from calmops.tasks.evaluate import compare_on_holdout, evaluate_models, primary_metric, seed_from, task_of
from calmops.tasks.ingest import Batch
from calmops.tasks.promote import decide, promote_challenger
from calmops.tasks.record import RunOutcome
from calmops.tasks.retrain import TrainingResult


@flow(name=KINDS["block"].flow_name, flow_run_name=partial(run_name, "block"), persist_result=False)
def block_flow(pipeline: str, path: str, sha256: str | None = None) -> dict[str, Any]:
    """Process one file of a block pipeline: gate, ingest, per-block drift, selective retrain, promote, record."""
    return ended(run_in_order(pipeline, path, sha256, process_block_file))


def process_block_file(ctx: RunContext, champion: registry.Champion | None, batch: Batch) -> RunOutcome:
    spec = ctx.spec
    if spec.prediction_only or not ctx.training_allowed:
        return predict_without_training(ctx, batch, champion)
    blocks = B.split_blocks(batch.X[spec.block_column])
    if champion is None:
        return train_first_model(ctx, batch, blocks)
    if batch.cannot_train:
        return predict_without_learning(ctx, batch, champion)
    return monitor_and_refit(ctx, batch, blocks, champion)


def train_first_model(ctx: RunContext, batch: Batch, blocks: list[B.Block]) -> RunOutcome:
    spec, settings = ctx.spec, B.block_settings(ctx.spec)
    template = B.blockwise_model(spec, batch.feature_types, settings)
    task = task_of(spec, template, batch.y)
    metric = primary_metric(spec, task)
    split, eval_names, how = B.evaluation_split(blocks, settings, batch.y, spec, task,
                                                seed_from(batch.sha256, spec.seed))
    X_train, y_train = batch.X.iloc[split.train], batch.y.iloc[split.train]
    model = B.fit_blocks(spec, batch.feature_types, settings, X_train, y_train)
    X_hold, y_hold = batch.X.iloc[split.holdout], batch.y.iloc[split.holdout]
    scores = evaluate_models({"challenger": model}, X_hold, y_hold, task)
    per_eval = {"challenger": _eval_block_scores(model, X_hold, y_hold, spec, task)}
    approval = _approval(per_eval["challenger"], spec)
    verdict = decide(scores["challenger"], None, spec, metric)
    promote = verdict.promote and all(approval.values())
    reason = verdict.reason if promote else (
        f"first model not promoted: {verdict.reason if not verdict.promote else _approval_reason(approval)}")
    trained = TrainingResult(model, X_train, y_train, "blocks", {"rows": len(X_train), "blocks": _names(model)})
    selected = model
    if promote:  # the evaluation blocks vouched for it: the model that serves learns every block of the file
        selection = {"rows": len(X_train), "holdout_rows": len(split.holdout), "score": scores["challenger"].get(metric)}
        model = B.fit_blocks(spec, batch.feature_types, settings, batch.X, batch.y)
        trained = TrainingResult(model, batch.X, batch.y, "blocks", {
            "rows": len(batch.X), "blocks": _names(model), "selection": selection,
            "refit": {"rows": len(batch.X), "batch_rows": len(batch.X)}})
    version = register(ctx, trained, batch, task, scores["challenger"], reason, **_label_free_reference(trained))
    predictions = write_predictions_of(ctx, batch, model, version) if promote else None
    champion_version = None
    if promote:  # after the predictions: a failure to write them leaves no new champion
        promote_challenger(spec.name, version)
        start_monitoring(ctx.paths.state, version, selected, X_hold, y_hold, task, spec,
                         scores["challenger"].get("rmse"))
        champion_version = version
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    details = {
        "blocks": _block_details(blocks, eval_names, {}, {}, per_eval, approval, retrained=_names(model)),
        "drift_matrix": B.drift_matrix(batch.X, blocks, batch.feature_types, spec),
        "evaluation": {"blocks": eval_names, "how": how},
        "retrained_blocks": _names(model), "new_blocks": [b.name for b in blocks],
        "skipped_blocks": {B.block_name(k): v for k, v in model.skipped_blocks_.items()},
        "unseen": settings.unseen,
    }
    B.log_metrics(ctx.mlflow_run_id, B.mlflow_block_metrics(per_eval["challenger"], "challenger"))
    outcome = ctx.outcome("train" if promote else "retrain_rejected", reason, champion_version=champion_version,
                          challenger_version=version, metrics=scores, rows=batch.n_rows, retrain_mode="blocks",
                          predictions_file=str(predictions) if predictions else None, details=details)
    return finish(ctx, outcome, None)


def monitor_and_refit(ctx: RunContext, batch: Batch, blocks: list[B.Block], champion: registry.Champion) -> RunOutcome:
    spec, settings = ctx.spec, B.block_settings(ctx.spec)
    task, metric, now, verdict = champion_check(ctx, batch, champion)
    reference = registry.load_reference(spec.name, champion.version)
    vs_reference = B.blocks_vs_reference(reference, champion.profile, batch.X, blocks, batch.feature_types, spec)
    matrix = B.drift_matrix(batch.X, blocks, batch.feature_types, spec)
    monitoring = B.block_scores(champion.model, batch.X, batch.y, blocks, task)
    performance = {name: B.block_performance_drift(s, champion.scores_at_promotion, spec, metric)
                   for name, s in monitoring.items()}
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    # the champion's per-block scores are logged with the run's other metrics after any registration: MLflow's
    # log_model logs every metric the run already holds once more (to link it to the model), a duplicate row
    monitored = B.mlflow_block_metrics(monitoring)

    by_block = {n: replace(d, performance=performance.get(n)) for n, d in vs_reference.items()}
    verdict = replace(verdict, blocks={b.name: by_block[b.name] for b in blocks})
    drifted, reasons = verdict.drifted_blocks, verdict.signals
    drift_reason = "; ".join(reasons) if reasons else "no drift signal in the file or any block"
    verdict = replace(verdict, drift_detected=bool(reasons))
    details = {"drift_matrix": matrix, "drifted_blocks": drifted, "unseen": settings.unseen}
    common = {"drift_detected": bool(reasons), "drifted_features": _drifted_features(verdict),
              "rows": batch.n_rows}

    def block_details(eval_names=(), per_eval=None, approval=None, retrained=()):
        return _block_details(blocks, list(eval_names), by_block, monitoring, per_eval or {}, approval or {},
                              retrained=list(retrained))

    if not reasons and spec.retrain.retrain_on != "always":
        B.log_metrics(ctx.mlflow_run_id, monitored)
        out = write_batch_predictions(ctx, batch, champion)
        # blocks the champion has no model of (a new site): served by the unseen route until a retrain learns them
        unknown = [b.name for b in blocks if b.value not in champion.model.block_estimators_
                   and b.value not in champion.model.skipped_blocks_]  # a block too small has its own reason
        if unknown:
            drift_reason += (f"; new block(s) {', '.join(unknown)}: no model of their own yet, their rows served by "
                             f"the '{settings.unseen}' route until a retrain")
        outcome = ctx.outcome("no_drift", drift_reason, champion_version=champion.version,
                              metrics={"champion": now}, predictions_file=str(out),
                              details={**details, "blocks": block_details(), "new_blocks": unknown}, **common)
        return finish(ctx, outcome, verdict)

    seed = seed_from(batch.sha256, spec.seed)
    split, eval_names, how = B.evaluation_split(blocks, settings, batch.y, spec, task, seed)
    split, split_names = B.split_drifted_evaluation(split, blocks, drifted, batch.y, spec, task, seed)
    if split_names:
        how += (f"; drifted evaluation block(s) {', '.join(split_names)}: {spec.evaluation.holdout:g} of "
                "their rows held out, the rest trained on")
    X_train, y_train = batch.X.iloc[split.train], batch.y.iloc[split.train]
    X_hold, y_hold = batch.X.iloc[split.holdout], batch.y.iloc[split.holdout]
    train_blocks = B.split_blocks(X_train[spec.block_column])
    known = set(champion.model.block_estimators_)
    new = [b for b in train_blocks if b.value not in known]
    to_refit = [b for b in train_blocks if b.name in drifted or b.value not in known]  # each block once
    why_refit = "drifted and new blocks"
    every_block = not to_refit
    if every_block:  # a file-level signal no single block explains, or only held-out blocks drifted
        held_out = [name for name in drifted if name in eval_names]
        to_refit, why_refit = train_blocks, (
            f"every training block: the drifted block(s) {', '.join(held_out)} are held out to judge the challenger"
            if held_out else "every training block: no block singled out by the drift signals")
    values = [b.value for b in to_refit]
    X_fit, y_fit = B.refit_data(reference, X_train, y_train, spec, values)
    model = B.refit_blocks(champion.model, settings, X_fit, y_fit, values)

    scores = evaluate_models({"champion": champion.model, "challenger": model}, X_hold, y_hold, task)
    per_eval = {who: _eval_block_scores(m, X_hold, y_hold, spec, task)
                for who, m in (("champion", champion.model), ("challenger", model))}
    approval = _approval(per_eval["challenger"], spec)
    paired = compare_on_holdout(metric, model, champion.model, X_hold, y_hold, task, seed)
    verdict_promote = decide(scores["challenger"], scores["champion"], spec, metric, paired)
    promote = verdict_promote.promote and all(approval.values())
    rule = verdict_promote.reason if not verdict_promote.promote or promote else _approval_reason(approval)
    retrained, too_small = _fitted(model, to_refit)
    info = {"rows": len(X_fit), "rows_new": len(X_train), "retrained_blocks": retrained, "why": why_refit}
    trained = TrainingResult(model, X_fit, y_fit, "blocks", info)
    selected = model
    if promote:  # refit the same blocks on the whole file, evaluation blocks included
        whole = blocks if every_block else [b for b in blocks if b.name in drifted or b.value not in known]
        values_all = [b.value for b in whole]
        X_all, y_all = B.refit_data(reference, batch.X, batch.y, spec, values_all)
        info.update(selection={"rows": len(X_fit), "holdout_rows": len(split.holdout),
                               "score": scores["challenger"].get(metric),
                               "paired_test": paired.to_dict() if paired else None},
                    refit={"rows": len(X_all), "batch_rows": len(batch.X), "blocks": [b.name for b in whole]})
        trained = TrainingResult(B.refit_blocks(champion.model, settings, X_all, y_all, values_all), X_all, y_all,
                                 "blocks", info)
        model = trained.model
        retrained, too_small = _fitted(model, whole)
        info["retrained_blocks"] = retrained
    said = f"retrained blocks {', '.join(retrained) or 'none'}" + (f" ({why_refit})" if every_block and not promote else "") + (
        f" (no model for {'; '.join(f'{name}: {why}' for name, why in too_small.items())})" if too_small else "")
    version = register(ctx, trained, batch, task, scores["challenger"], rule, **_label_free_reference(trained))
    B.log_metrics(ctx.mlflow_run_id, {**monitored, **B.mlflow_block_metrics(per_eval["challenger"], "challenger"),
                                      "n_retrained_blocks": float(len(retrained))})
    details.update({
        "blocks": block_details(eval_names, per_eval, approval, retrained),
        "evaluation": {"blocks": eval_names, "how": how},
        "retrained_blocks": retrained, "new_blocks": [b.name for b in new], "why_retrained": why_refit,
        "kept_blocks": sorted(B.block_name(v) for v in known if v not in values),
        "skipped_blocks": {B.block_name(k): v for k, v in model.skipped_blocks_.items()},
    })
    if promote:
        out = write_predictions_of(ctx, batch, model, version)  # before the champion changes
        promote_challenger(spec.name, version)
        start_monitoring(ctx.paths.state, version, selected, X_hold, y_hold, task, spec,
                         scores["challenger"].get("rmse"))
        outcome = ctx.outcome("retrain_promoted",
                              f"{drift_reason} → {said}: {rule}",
                              champion_version=version, challenger_version=version,
                              metrics=tried_scores(scores, now),
                              retrain_mode="blocks", predictions_file=str(out),
                              details={**details, "compared_with": champion.version}, **common)
        return finish(ctx, outcome, verdict)
    ctx.log.info("challenger v%s (blocks %s) rejected: %s", version, retrained, rule)
    out = write_batch_predictions(ctx, batch, champion)
    outcome = ctx.outcome("retrain_rejected",
                          f"{drift_reason} → {said} but not promoted: {rule}",
                          champion_version=champion.version, challenger_version=version,
                          metrics=tried_scores(scores, now),
                          retrain_mode="blocks", predictions_file=str(out), details=details, **common)
    return finish(ctx, outcome, verdict)


# -- small helpers of this flow ------------------------------------------------------------------


def _fitted(model, refit: list) -> tuple[list[str], dict[str, str]]:
    """Of the blocks asked to refit, the ones that got a model, and why the others got none (too few rows, or
    one class: ``skipped_blocks_``)."""
    return ([b.name for b in refit if b.value not in model.skipped_blocks_],
            {b.name: model.skipped_blocks_[b.value] for b in refit if b.value in model.skipped_blocks_})


def _names(model) -> list[str]:
    return sorted(B.block_name(v) for v in model.block_estimators_)


def _eval_block_scores(model, X_hold, y_hold, spec, task) -> dict[str, dict]:
    return B.block_scores(model, X_hold, y_hold, B.split_blocks(X_hold[spec.block_column]), task)


def _approval(per_block: dict[str, dict], spec) -> dict[str, bool]:
    """Per evaluation block: does the challenger pass every threshold there (blocks with too few rows to
    judge, fewer than ``evaluation.min_holdout_rows``, are not held against it)."""
    return {name: s["rows"] < spec.evaluation.min_holdout_rows
            or not threshold_failures(s, spec.evaluation.thresholds) for name, s in per_block.items()}


def _approval_reason(approval: dict[str, bool]) -> str:
    return "challenger fails the thresholds on evaluation block(s) " + ", ".join(n for n, ok in approval.items() if not ok)


def _drifted_features(verdict: DriftVerdict) -> list[str]:
    names = list(verdict.drifted_features)
    for d in verdict.blocks.values():
        names += [f for f in d.report.drifted_features if f not in names]
    return names


def _label_free_reference(trained: TrainingResult) -> dict[str, Any]:
    """A block version's label-free reference: the outputs of the model that serves on the rows it learnt. The
    holdout is whole blocks, which the fit judged there serves by its unseen route (the global model): its outputs
    on them are one block's through another model, nothing like a later file's through every block's own."""
    return {"selected": trained.model, "held_out": None}


def _block_details(blocks, eval_names, by_block: dict[str, BlockDrift], monitoring, per_eval, approval, *,
                   retrained) -> dict[str, dict]:
    """One entry per block of the file: rows, role, drift, metrics, retrained, approval."""
    out = {}
    for b in blocks:
        entry: dict[str, Any] = {"rows": int(b.rows.size),
                                 "role": "evaluation" if b.name in eval_names else "train",
                                 "retrained": b.name in retrained}
        if b.name in by_block:
            d = by_block[b.name]
            entry["drift"] = {"reference": d.reference, **B.drift_summary(d.report)}
            if d.performance:
                p = d.performance
                entry["performance_drift"] = {"drift": p.drift, "now": p.now, "at_promotion": p.at_promotion,
                                              "relative_drop": p.relative_drop}
        if b.name in monitoring:
            entry["champion"] = monitoring[b.name]
        for who, per_block in per_eval.items():
            if b.name in per_block:
                entry[f"holdout_{who}"] = per_block[b.name]
        if b.name in approval:
            entry["approved"] = approval[b.name]
        out[b.name] = entry
    return out
