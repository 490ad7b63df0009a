"""The names CalmOps shows to other systems and to people, in one place: decisions, the file event, the tags and
resource ids on Prefect objects. Everything that writes or reads one of these imports it from here.

>>> Decision.RETRAIN_PROMOTED == "retrain_promoted"
True
>>> f"{Decision.HELD}", Decision("train").name
('held', 'TRAIN')
>>> resource_id("sea"), pipeline_tag("sea")
('calmops.pipeline.sea', 'calmops.pipeline.sea')
>>> model_name("sea")
'calmops.sea'
>>> shown_decision("rejected_input"), shown_decision("no_drift")
('quarantined', 'no_drift')
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

#: the name of the Cancelled state of a flow run whose file another run decided first, in the pipeline's turn
#: (``order: arrival``): the Prefect UI's badge, and how the viewer tells such a run from one that never recorded
DECIDED_ELSEWHERE = "Decided by another run"


class Decision(StrEnum):
    """What a run decided about one file, as recorded (MLflow tag ``calmops.decision``, the ledger, the flow's
    outcome); ``decision`` in the JSON CalmOps prints is :func:`shown_decision` of it."""

    TRAIN = "train"  # the first labelled file: the first champion
    NO_DRIFT = "no_drift"  # nothing to retrain (or the breaker is open and nothing asks for it)
    RETRAIN_PROMOTED = "retrain_promoted"  # a challenger beat the champion and took its place
    RETRAIN_REJECTED = "retrain_rejected"  # a challenger was trained and lost
    PREDICT_ONLY = "predict_only"  # a prediction-only pipeline: checks and predictions, no training
    SKIPPED_BREAKER_OPEN = "skipped_breaker_open"  # a retrain was due while the breaker is open: kept pending
    REJECTED_INPUT = "rejected_input"  # quarantined with a reason (shown as ``quarantined``: see shown_decision)
    FAILED = "failed"  # the run raised; the file is pending
    DUPLICATE = "duplicate"  # the same bytes were decided already
    HELD = "held"  # waits behind an earlier file of its pipeline (order: arrival)


#: the words decisions are shown under where they differ from the value recorded (MLflow's ``calmops.decision``
#: tag, the ledger): a file set aside is *quarantined*, as its folder (``quarantine/``) and its flow run's state
#: (*Quarantined*) say
SHOWN_DECISIONS = {Decision.REJECTED_INPUT: "quarantined"}
QUARANTINED = SHOWN_DECISIONS[Decision.REJECTED_INPUT]


def shown_decision(decision: str | None) -> str | None:
    """A recorded decision as people and the JSON CalmOps prints read it (``rejected_input`` is ``quarantined``);
    the others as recorded. Everything that prints a decision passes it through here."""
    return SHOWN_DECISIONS.get(decision, decision) if decision is not None else None


#: decisions made before (or without) a drift check: their drift is unknown, not "no"
DRIFT_UNCHECKED = frozenset({Decision.TRAIN, Decision.REJECTED_INPUT, Decision.DUPLICATE, Decision.HELD,
                             Decision.FAILED})

#: the metrics a spec may name (``evaluation.primary_metric``, ``evaluation.thresholds``), and which way is better
HIGHER_IS_BETTER = {
    "accuracy": True, "balanced_accuracy": True, "f1_macro": True, "f1": True, "precision": True,
    "recall": True, "roc_auc": True, "pr_auc": True, "log_loss": False,
    "rmse": False, "mae": False, "mse": False, "r2": True, "mape": False,
}
#: the lowest and the highest value each of those metrics can take: scores in [0, 1], errors 0 or more, r2 at most
#: 1; a threshold's ``min`` above the highest, or ``max`` below the lowest, is one no model could pass
METRIC_RANGE = {
    **dict.fromkeys(("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall", "roc_auc", "pr_auc"),
                    (0.0, 1.0)),
    **dict.fromkeys(("log_loss", "rmse", "mae", "mse", "mape"), (0.0, math.inf)),
    "r2": (-math.inf, 1.0),
}
assert METRIC_RANGE.keys() == HIGHER_IS_BETTER.keys(), "every metric a spec may name has its range"

#: where a run keeps the serving model's score on every row of the file, most specific first: a labels file
#: (the predictions as they were made, by the versions that served its rows; its ``champion_`` scores are those
#: of the champion at the time its labels came), a stream or block run that retrained and was logged before
#: :data:`HOLDOUT_CHAMPION` (its ``champion_`` scores were the holdout the challenger was compared on), an IPIP
#: run logged before it (its ``champion_`` scores were IPIP's own held-out rows), any other run
SERVING_SCORE_PREFIXES = ("realized_", "serving_full_batch_", "champion_prequential_", "champion_")
#: a run that tried a challenger (IPIP: every update): the champion's scores on the holdout the two were compared on
#: (the challenger's are ``challenger_``); its ``champion_`` scores are the whole file's, as on every other run
HOLDOUT_CHAMPION = "holdout_champion"


def tried_scores(holdout: dict[str, dict], whole: dict) -> dict[str, dict]:
    """The scores a run that tried a challenger logs: the serving champion's on every row of the file
    (``champion``, as every run logs it) and both models' on the holdout they were compared on.

    >>> sorted(tried_scores({"champion": {"accuracy": 0.8}, "challenger": {"accuracy": 0.9}}, {"accuracy": 0.85}))
    ['challenger', 'champion', 'holdout_champion']
    """
    return {"champion": whole, HOLDOUT_CHAMPION: holdout["champion"], "challenger": holdout["challenger"]}


def compared_champion(metrics: Mapping[str, Any], metric: str, prefix: str = "") -> Any:
    """From a run's logged ``metrics`` (keys ``<prefix><who>_<metric>``): the champion's score on the holdout a
    challenger was compared on, or None when the run tried none. A run logged before :data:`HOLDOUT_CHAMPION`
    that scored a challenger kept it as ``champion_`` (now every such run logs ``holdout_champion_``).

    >>> compared_champion({"champion_rmse": 1.0, "holdout_champion_rmse": 1.2, "challenger_rmse": 1.1}, "rmse")
    1.2
    >>> compared_champion({"champion_rmse": 1.2, "challenger_rmse": 1.1}, "rmse")
    1.2
    >>> compared_champion({"champion_rmse": 1.0}, "rmse") is None
    True
    """
    value = metrics.get(f"{prefix}{HOLDOUT_CHAMPION}_{metric}")
    if _present(value):
        return value
    older = metrics.get(f"{prefix}champion_{metric}")
    return older if _present(older) and _present(metrics.get(f"{prefix}challenger_{metric}")) else None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))  # a frame's empty cell


def had_serving_model(decision: str | None) -> bool:
    """Whether a model was serving when a run's file came: a first model (``train``) had none before it, so
    such a run has no serving score."""
    return decision != Decision.TRAIN


def serving_score(metrics: dict[str, float], metric: str) -> float | None:
    """From a run's logged ``metrics``: the serving model's ``metric`` on every row of the file.

    >>> serving_score({"champion_accuracy": 0.8, "serving_full_batch_accuracy": 0.9}, "accuracy")
    0.9
    """
    return next((metrics[f"{prefix}{metric}"] for prefix in SERVING_SCORE_PREFIXES
                 if f"{prefix}{metric}" in metrics), None)
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall",
                          "roc_auc", "pr_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "mse", "r2", "mape")
#: the metric a pipeline decides on when its spec names none (``evaluation.primary_metric``)
DEFAULT_PRIMARY = {"classification": "balanced_accuracy", "regression": "rmse"}


def decided_metric(chosen: str | None, logged: Iterable[str]) -> str | None:
    """The metric a pipeline decides on, read back from the metric names its runs logged (``accuracy``, or
    prefixed: ``champion_accuracy``): the spec's ``chosen`` one, else the default of the task whose default was
    logged (the flows' rule), else None.

    >>> decided_metric(None, ["champion_accuracy", "champion_balanced_accuracy"])
    'balanced_accuracy'
    >>> decided_metric(None, ["rmse", "r2"]), decided_metric("f1", []), decided_metric(None, ["mape"])
    ('rmse', 'f1', None)
    """
    if chosen:
        return chosen
    names = set(logged)
    for default in DEFAULT_PRIMARY.values():
        if any(name == default or name.endswith(f"_{default}") for name in names):
            return default
    return None

EVENT = "calmops.file.arrived"  # the watcher's Prefect event: one complete file arrived
TAG = "calmops"  # on every deployment, automation and flow run CalmOps makes
#: a model version's tag: when it last became the champion (epoch milliseconds), promoted or served again by a
#: rollback (the viewer's "champion age")
CHAMPION_SINCE_TAG = "calmops.champion_since"
#: a model version's tag: where its reference (rows, ``schema.json``, ``profile/``) is in its run's artifacts,
#: ``reference/v<version>`` (a run registers a fallback's version beside a rejected one, and each keeps its own);
#: a version registered without it has it under ``reference``
REFERENCE_PATH_TAG = "calmops.reference"
PIPELINE_PREFIX = "calmops.pipeline."
MODEL_PREFIX = "calmops."  # of MLflow registered models: see model_name


def reference_path(tags: dict[str, str]) -> str:
    """Where the model version with these tags keeps its reference in its run's artifacts (:data:`REFERENCE_PATH_TAG`)."""
    return tags.get(REFERENCE_PATH_TAG) or "reference"


def retired_stamp() -> str:
    """The UTC time in the names of what a deleted pipeline leaves aside (its folder, experiment and state
    tables), to the microsecond: names must not clash when a pipeline is deleted twice in one second (a script
    that deletes, re-creates and deletes again)."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def model_name(pipeline: str) -> str:
    """The MLflow registered model of a pipeline, prefixed so that it cannot collide with other teams' models in
    a shared registry (``calmops.<pipeline>``; models registered before the prefix are renamed on first use,
    see :func:`calmops.core.registry.migrate_model_name`)."""
    return f"{MODEL_PREFIX}{pipeline}"


def resource_id(pipeline: str) -> str:
    """The Prefect resource id of a pipeline's file events (what its automation matches)."""
    return f"{PIPELINE_PREFIX}{pipeline}"


def file_resource(pipeline: str, kind: str, path: Path, size: int, sha256: str) -> dict[str, str]:
    """The resource of a :data:`EVENT` event: the pipeline (what its automation matches) and the file (what the
    run it starts is given). The watcher sends it for each complete file; a turn that gives way sends it for the
    next file of its queue."""
    return {
        "prefect.resource.id": resource_id(pipeline),
        "prefect.resource.name": pipeline,
        "calmops.pipeline": pipeline,
        "calmops.pipeline.kind": kind,
        "calmops.file.path": str(path),
        "calmops.file.name": path.name,
        "calmops.file.size": str(size),
        "calmops.file.sha256": sha256,
    }


def pipeline_tag(pipeline: str) -> str:
    """The tag on a pipeline's deployments and flow runs."""
    return f"{PIPELINE_PREFIX}{pipeline}"


def kind_tag(kind: str) -> str:
    return f"calmops.kind.{kind}"


def block_name(value: object) -> str:
    """A block column's value as its block is named: "3" for 3 and 3.0 (any float type), the text otherwise."""
    if (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isfinite(value)
            and float(value).is_integer()):
        return str(int(value))
    return str(value)


def block_order(name: str) -> tuple[int, float, str]:
    """Sort key of block names (:func:`block_name`) in the order the flows take blocks, the sort order of the
    block column's values: names that read as numbers by value ("9" before "10"), text as text ("2024-09"
    before "2024-10"); where both meet, numbers first.

    >>> sorted(["10", "9", "2.5"], key=block_order), sorted(["b", "10", "a", "9"], key=block_order)
    (['2.5', '9', '10'], ['9', '10', 'a', 'b'])
    """
    try:
        number = float(name)
    except (TypeError, ValueError):
        number = math.nan
    return (0, number, "") if math.isfinite(number) else (1, 0.0, str(name))
