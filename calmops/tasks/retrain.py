"""Retrain: build a challenger from the champion's reference and the new rows.

One function per mode; :func:`train_challenger` picks the spec's mode. Modes that are not
built yet are refused with a clear error rather than silently replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from calmops.core.features import make_model
from calmops.core.spec import PipelineSpec
from calmops.tasks import step


class RetrainModeUnavailable(NotImplementedError):
    pass


@dataclass
class TrainingResult:
    model: Any
    X: pd.DataFrame            # the rows the model was fit on (becomes the new reference)
    y: pd.Series
    mode: str
    info: dict[str, Any] = field(default_factory=dict)


def fit_new(spec: PipelineSpec, feature_types: dict[str, str], X: pd.DataFrame, y: pd.Series) -> TrainingResult:
    """A fresh model on the given rows: the first model of a pipeline."""
    model = make_model(spec, feature_types)
    model.fit(X, y)
    return TrainingResult(model, X, y, "train", {"rows": len(X)})


def retrain_full(spec, feature_types, reference: pd.DataFrame | None, X_new, y_new) -> TrainingResult:
    if spec.retrain.data == "reference_and_new" and reference is not None:
        ref_X = reference[list(X_new.columns)]
        ref_y = reference[spec.target]
        X = pd.concat([ref_X, X_new], ignore_index=True)
        y = pd.concat([ref_y, y_new.reset_index(drop=True)], ignore_index=True)
    else:
        X, y = X_new.reset_index(drop=True), y_new.reset_index(drop=True)
    model = make_model(spec, feature_types)
    model.fit(X, y)
    return TrainingResult(model, X, y, "full", {"rows": len(X), "rows_new": len(X_new),
                                               "rows_reference": len(X) - len(X_new)})


MODES = {"full": retrain_full}


def train_challenger(mode: str, spec: PipelineSpec, feature_types: dict[str, str],
                     reference: pd.DataFrame | None, X_new: pd.DataFrame, y_new: pd.Series) -> TrainingResult:
    if mode not in MODES:
        raise RetrainModeUnavailable(
            f"retrain mode {mode!r} is not implemented yet; use one of: {', '.join(MODES)}"
        )
    return MODES[mode](spec, feature_types, reference, X_new, y_new)


@step("retrain")
def retrain(mode: str, spec: PipelineSpec, feature_types: dict[str, str],
            reference: pd.DataFrame | None, X_new: pd.DataFrame, y_new: pd.Series) -> TrainingResult:
    return train_challenger(mode, spec, feature_types, reference, X_new, y_new)


@step("train")
def train_first(spec: PipelineSpec, feature_types: dict[str, str], X: pd.DataFrame, y: pd.Series) -> TrainingResult:
    return fit_new(spec, feature_types, X, y)
