"""The IPIP kind: block data with an imbalanced binary target, served by the IPIP ensemble, which adapts
on every file. No thresholds and no drift gate (docs/kinds.md, ipip):

1. prequential evaluation: the current champion is scored on every block of the new file first;
2. the ensemble is updated on the file (new ensembles trained, the best ``p`` of old + new kept, never fewer
   than there were), or fit on
   the first file; the column transformer learnt on the first file is kept;
3. the new version is registered and promoted (``train`` for the first, ``retrain_promoted`` afterwards);
4. p, b, ensemble sizes and the share of ensembles replaced are recorded, and a data-drift report against
   the previous file is computed for visibility only.

IPIP is binary: a file to learn from whose labels are not the two classes of the ensemble (a first file: not
exactly two) is quarantined with the column, the values and their rows (:func:`labels_ipip_cannot_learn`).
"""

from __future__ import annotations

import copy
import dataclasses
from functools import partial
from typing import Any

from prefect import flow
from sklearn.pipeline import Pipeline

from calmops.core import registry
from calmops.core.features import make_model
from calmops.core.ipip import IPIPClassifier
from calmops.core.kinds import KINDS
from calmops.core.names import tried_scores
from calmops.core.spec import PipelineSpec
from calmops.core.store import append_history
from calmops.core.verdict import DriftVerdict
from calmops.flows.common import (
    RunContext,
    ended,
    finish,
    predict_without_learning,
    predict_without_training,
    reference_frame,
    register,
    reject,
    run_in_order,
    run_name,
    write_predictions_of,
)
from calmops.tasks import blocks as B
from calmops.tasks import step
from calmops.tasks.drift.data import data_drift
from calmops.tasks.evaluate import evaluate_models
from calmops.tasks.ingest import Batch, RejectedInput
from calmops.tasks.promote import promote_challenger
from calmops.tasks.record import RunOutcome
from calmops.tasks.retrain import TrainingResult
from calmops.tasks.validate import excerpt

IPIP_CLASS = "calmops.core.ipip.IPIPClassifier"


@flow(name=KINDS["ipip"].flow_name, flow_run_name=partial(run_name, "ipip"), persist_result=False)
def ipip_flow(pipeline: str, path: str, sha256: str | None = None) -> dict[str, Any]:
    """Process one file of an IPIP pipeline: gate, ingest, prequential per-block scores, update, promote, record."""
    return ended(run_in_order(pipeline, path, sha256, process_ipip_file))


def process_ipip_file(ctx: RunContext, champion: registry.Champion | None, batch: Batch) -> RunOutcome:
    spec = ctx.spec
    batch = without_block_column(batch, spec)
    if spec.prediction_only or not ctx.training_allowed:  # no block is scored: a prediction-only file may lack the column
        return predict_without_training(ctx, batch, champion)
    blocks = B.split_blocks(batch.frame[spec.block_column].reset_index(drop=True))
    if champion is not None and batch.cannot_train:  # (with no champion, ingest quarantined such a file)
        return predict_without_learning(ctx, batch, champion)
    not_binary = labels_ipip_cannot_learn(ctx, batch, champion)
    if not_binary is not None:
        return reject(ctx, champion, not_binary)
    ctx.params["retrain_mode"] = "ipip"
    if champion is None:
        return fit_first(ctx, batch, blocks)
    return update_champion(ctx, batch, blocks, champion)


def labels_ipip_cannot_learn(ctx: RunContext, batch: Batch, champion: registry.Champion | None) -> RejectedInput | None:
    """Why IPIP, binary by design, cannot learn from this file's labels, or None.

    A first file must hold exactly two classes; a later one only the two the ensemble was fit on (those the
    champion has never seen are ``batch.labels.new_classes``). Anything else is bad input, not a crash of the
    run: the file is quarantined with a reason naming the column, the values and their rows (docs/kinds.md).
    """
    labels = batch.labels
    if champion is None and len(labels.classes) > 2:
        unexpected, why = labels.classes, f"holds {len(labels.classes)} classes"
        fix = "IPIP is binary only and learns from exactly two classes: keep the rows of two of them"
    elif champion is not None and labels.new_classes:
        known = ", ".join(excerpt(c) for c in champion.schema.classes or [])
        unexpected, why = labels.new_classes, f"holds label(s) the IPIP ensemble was not fit on (it knows {known})"
        fix = "IPIP is binary only and cannot learn another class: correct or remove these rows"
    else:
        return None
    counts = batch.y.map(str).value_counts()
    rows = {value: int(counts.get(value, 0)) for value in unexpected[:10]}
    listed = ", ".join(f"{excerpt(value)} in {n} row(s)" for value, n in rows.items())
    more = f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
    return RejectedInput(f"{ctx.path.name}: target column '{ctx.spec.target}' {why}: {listed}{more}. {fix}, or "
                         "use a stream or block pipeline for more classes", column=ctx.spec.target,
                         unexpected_labels=rows)


def without_block_column(batch: Batch, spec: PipelineSpec) -> Batch:
    """The block column names a block; IPIP does not learn from it (it is kept in ``batch.frame``)."""
    if spec.block_column not in batch.X.columns:
        return batch
    types = {c: t for c, t in batch.feature_types.items() if c != spec.block_column}
    return dataclasses.replace(batch, X=batch.X.drop(columns=[spec.block_column]), feature_types=types)


def ipip_model(spec: PipelineSpec, feature_types: dict[str, str]) -> Pipeline:
    """The spec's model as an IPIP ensemble behind the column transformer.

    ``model.class`` is normally ``calmops.core.ipip.IPIPClassifier`` (its params are IPIP's); any other
    classifier becomes IPIP's base estimator. IPIP is seeded from the spec's ``seed`` unless its params
    give a ``random_state``.
    """
    model = make_model(spec, feature_types)
    if not isinstance(model, Pipeline):
        model = Pipeline([("model", model)])
    name, final = model.steps[-1]
    if not isinstance(final, IPIPClassifier):
        final = IPIPClassifier(base_estimator=final)
        model.steps[-1] = (name, final)
    if final.random_state is None:
        final.set_params(random_state=spec.seed)
    return model


def _ensemble(model: Pipeline) -> IPIPClassifier:
    return model.steps[-1][1]


@step("train")
def fit_ipip(spec: PipelineSpec, feature_types: dict[str, str], X, y) -> Pipeline:
    return ipip_model(spec, feature_types).fit(X, y)


@step("update")
def update_ipip(champion_model: Pipeline, X, y) -> Pipeline:
    """A copy of the champion updated on the batch; the transformer fit on the first file is kept."""
    model = copy.deepcopy(champion_model)
    features = model[:-1].transform(X) if len(model.steps) > 1 else X
    _ensemble(model).update(features, y.to_numpy())
    return model


def ipip_details(ensemble: IPIPClassifier) -> dict[str, Any]:
    last = ensemble.history_[-1]
    return {"p": int(ensemble.p_), "b": int(ensemble.b_), "ensemble_sizes": list(map(int, ensemble.ensemble_sizes_)),
            "n_ensembles": len(ensemble.ensembles_), "replaced_share": float(ensemble.replaced_share_),
            "n_new_kept": last.get("n_new_kept"), "n_minority": int(ensemble.n_minority_), "np": int(ensemble.np_),
            "minority_class": str(ensemble.minority_class_), "holdout_score": last.get("holdout_score"),
            "metric": ensemble.metric, "event": last.get("event"), "skipped": last.get("skipped"),
            "updates": len(ensemble.history_) - 1}


def ipip_metrics(info: dict[str, Any]) -> dict[str, float]:
    return {"ipip_p": float(info["p"]), "ipip_b": float(info["b"]), "ipip_replaced_share": info["replaced_share"],
            "ipip_n_ensembles": float(info["n_ensembles"]),
            "ipip_mean_ensemble_size": sum(info["ensemble_sizes"]) / max(1, len(info["ensemble_sizes"]))}


def fit_first(ctx: RunContext, batch: Batch, blocks: list[B.Block]) -> RunOutcome:
    spec = ctx.spec
    model = fit_ipip(spec, batch.feature_types, batch.X, batch.y)
    info = ipip_details(_ensemble(model))
    hold = _ensemble(model).holdout_index_
    scores = evaluate_models({"challenger": model}, batch.X.iloc[hold], batch.y.iloc[hold], "classification")
    reason = (f"IPIP ensemble fit on the first file: p={info['p']} ensembles, b={info['b']} at most, "
              f"sizes {info['ensemble_sizes']}")
    version, predictions = _register_and_promote(ctx, model, batch, scores["challenger"], reason)
    B.log_metrics(ctx.mlflow_run_id, ipip_metrics(info))
    outcome = ctx.outcome("train", reason, champion_version=version, challenger_version=version, metrics=scores,
                          rows=batch.n_rows, retrain_mode="ipip",
                          predictions_file=predictions,
                          details={"ipip": info, "blocks": {b.name: {"rows": int(b.rows.size)} for b in blocks},
                                   "evaluation": "IPIP's own held-out rows of the file"})
    return finish(ctx, outcome, None)


def update_champion(ctx: RunContext, batch: Batch, blocks: list[B.Block], champion: registry.Champion) -> RunOutcome:
    spec = ctx.spec
    # 1. prequential: the champion on every block of the file, before it learns from it
    now = evaluate_models({"champion": champion.model}, batch.X, batch.y, "classification")["champion"]
    per_block = B.block_scores(champion.model, batch.X, batch.y, blocks, "classification")
    prequential = B.mlflow_block_metrics(per_block)  # logged after the registration (block.py says why)
    report = data_drift(champion.profile, batch.X, spec)  # for the record: IPIP has no drift gate
    verdict = DriftVerdict.of(report, data_reason="data drift (not a gate for IPIP)")
    append_history(ctx.paths, reference_frame(batch.X, batch.y, spec.target), batch.sha256,
                   spec.retrain.history_max_batches)
    # 2. update on the whole file
    model = update_ipip(champion.model, batch.X, batch.y)
    ensemble = _ensemble(model)
    info = ipip_details(ensemble)
    if info["skipped"]:  # one class, or a single row of one: nothing new to judge or register
        info = {**info, "replaced_share": 0.0, "n_new_kept": 0,  # nothing replaced; no batch figures of its own
                **dict.fromkeys(("p", "b", "n_minority", "np", "minority_class", "holdout_score"))}
        outcome = ctx.outcome("no_drift", f"IPIP update skipped: the file {info['skipped']}; champion unchanged",
                              champion_version=champion.version, metrics={"champion": now}, rows=batch.n_rows,
                              drift_detected=verdict.drift_detected, drifted_features=verdict.drifted_features,
                              predictions_file=_predictions(ctx, batch, champion.model, champion.version),
                              details={"ipip": info, "drift_gate": False})
        B.log_metrics(ctx.mlflow_run_id, prequential)
        return finish(ctx, outcome, verdict)
    if not info["n_new_kept"]:  # every new ensemble lost to the kept ones: a new version would serve the same
        score = info["holdout_score"]  # ensembles as the champion, and `previous` would hold them too
        said = f" ({info['metric']} {score:.4f} there)" if score is not None else ""
        outcome = ctx.outcome("no_drift", f"IPIP update on {batch.file} kept the champion's {info['n_ensembles']} "
                              f"ensembles: none of the {info['p']} new ones scored better on the file's held-out rows"
                              f"{said}; champion unchanged", champion_version=champion.version,
                              metrics={"champion": now}, rows=batch.n_rows, drift_detected=verdict.drift_detected,
                              drifted_features=verdict.drifted_features,
                              predictions_file=_predictions(ctx, batch, champion.model, champion.version),
                              details={"ipip": info, "drift_gate": False})
        B.log_metrics(ctx.mlflow_run_id, {**prequential, **ipip_metrics(info)})
        return finish(ctx, outcome, verdict)
    hold = ensemble.holdout_index_
    scores = evaluate_models({"champion": champion.model, "challenger": model},
                             batch.X.iloc[hold], batch.y.iloc[hold], "classification")
    reason = (f"IPIP updated on {batch.file}: {info['n_new_kept']} of {info['n_ensembles']} ensembles replaced "
              f"(share {info['replaced_share']:.2f}), p={info['p']}, b={info['b']}; "
              f"prequential {_metric(now)} before the update")
    # 3. register and promote, always
    version, predictions = _register_and_promote(ctx, model, batch, scores["challenger"], reason)
    B.log_metrics(ctx.mlflow_run_id, {**prequential, **ipip_metrics(info)})
    details = {"ipip": info, "blocks": {name: {"rows": s["rows"], "prequential": s} for name, s in per_block.items()},
               "evaluation": "prequential: the champion scored on each block before the update; "
                             "champion and challenger also on IPIP's held-out rows of the file",
               "drift_gate": False, "compared_with": champion.version}
    outcome = ctx.outcome("retrain_promoted", reason, champion_version=version, challenger_version=version,
                          metrics=tried_scores(scores, now), rows=batch.n_rows, retrain_mode="ipip",
                          drift_detected=verdict.drift_detected, drifted_features=verdict.drifted_features,
                          predictions_file=predictions, details=details)
    return finish(ctx, outcome, verdict)


def _metric(scores: dict[str, Any]) -> str:
    value = scores.get("balanced_accuracy")
    return "balanced accuracy n/a" if value is None else f"balanced accuracy {value:.4f}"


def _register_and_promote(ctx: RunContext, model: Pipeline, batch: Batch, scores: dict,
                          reason: str) -> tuple[int, str]:
    """The file's rows become the version's reference (the next file's drift report compares against it); the
    model's outputs on IPIP's held-out rows of the file (no ensemble learnt them) the label-free signals' reference.

    The new version's predictions are written first and the promotion comes last, so a failure to write
    them leaves the champion unchanged. Returns the version and the predictions file.
    """
    trained = TrainingResult(model, batch.X, batch.y, "ipip", {"rows": batch.n_rows})
    version = register(ctx, trained, batch, "classification", scores, reason, selected=model,
                       held_out=batch.X.iloc[_ensemble(model).holdout_index_])
    predictions = _predictions(ctx, batch, model, version)
    promote_challenger(ctx.spec.name, version)
    return version, predictions


def _predictions(ctx: RunContext, batch: Batch, model: Pipeline, version: int) -> str:
    return str(write_predictions_of(ctx, batch, model, version))
