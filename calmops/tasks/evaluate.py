"""Evaluate: the held-out split and the scores champion and challenger are compared on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from calmops.core.metrics import PairedTest, evaluate, infer_task, paired_test
from calmops.core.names import DEFAULT_PRIMARY
from calmops.core.spec import PipelineSpec
from calmops.tasks import step


@dataclass
class Split:
    """Row positions of a batch: what a challenger may train on and what both models are scored on."""

    train: np.ndarray
    holdout: np.ndarray
    kind: Literal["random", "latest"] = "random"  # stratified random rows, or the batch's last rows


def seed_from(sha256: str, base: int = 0) -> int:
    return (int(hashlib.sha256(f"{base}:{sha256}".encode()).hexdigest()[:8], 16)) % (2**31 - 1)


def holdout_split(y: pd.Series, spec: PipelineSpec, task: str, seed: int, *, changing: bool = False) -> Split:
    """Hold out ``evaluation.holdout`` of the rows (at least ``min_holdout_rows``), stratified for classes.

    ``changing``: the concept is moving (:attr:`~calmops.core.verdict.DriftVerdict.real_concept_drift`, which
    only a drift verdict has: never on a refresh or a follow-up). With ``evaluation.holdout_during_change: latest`` the holdout is then the batch's last rows: in the middle of
    a change the rows that arrived last are the closest to the next file, and a random holdout rewards the model
    that fits the mixture of old and new. If those rows lack a class the batch has, the random split is used."""
    n = len(y)
    positions = np.arange(n)
    n_hold = max(spec.evaluation.min_holdout_rows, round(spec.evaluation.holdout * n))
    if n_hold >= n:
        raise ValueError(f"the batch has {n} rows: too few to hold out {n_hold} for evaluation and still train")
    if changing and spec.evaluation.holdout_during_change == "latest":
        train, hold = positions[:n - n_hold], positions[n - n_hold:]
        if task != "classification" or set(y.iloc[hold]) == set(y):
            return Split(train, hold, "latest")
    stratify = None
    if task == "classification":
        counts = y.value_counts()
        if counts.min() >= 2 and n_hold >= len(counts):
            stratify = y.to_numpy()
    train, hold = train_test_split(positions, test_size=n_hold, random_state=seed, stratify=stratify)
    return Split(np.sort(train), np.sort(hold))


def task_of(spec: PipelineSpec, model: Any, y: pd.Series | None) -> str:
    return spec.evaluation.task or infer_task(model, y)


def primary_metric(spec: PipelineSpec, task: str) -> str:
    return spec.evaluation.primary_metric or DEFAULT_PRIMARY[task]


def score(model: Any, X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, Any]:
    return evaluate(model, X, y, task)


def compare_on_holdout(metric: str, challenger: Any, champion: Any, X_hold, y_hold, task: str,
                       seed: int = 0, champion_pred: Any = None) -> PairedTest | None:
    """The paired test of two fitted models on the same holdout rows (None: no paired test for ``metric``).
    ``champion_pred``: the champion's predictions on those rows, when the caller has them already."""
    pos = None
    classes = getattr(challenger, "classes_", None)
    if task == "classification" and classes is not None and len(classes) == 2:
        pos = classes[1]
    if champion_pred is None:
        champion_pred = champion.predict(X_hold)
    return paired_test(metric, y_hold, challenger.predict(X_hold), champion_pred, seed=seed, pos_label=pos)


@step("evaluate")
def evaluate_models(models: dict[str, Any], X: pd.DataFrame, y: pd.Series, task: str) -> dict[str, dict]:
    """Scores of each named model on the same rows."""
    return {name: score(model, X, y, task) for name, model in models.items() if model is not None}
