"""Predict: the champion's predictions for a batch, written next to the input's name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.tasks import step


def predictions_frame(model: Any, X: pd.DataFrame, version: int, ids: pd.DataFrame | None = None) -> pd.DataFrame:
    out = pd.DataFrame(index=X.index)
    if ids is not None:
        for col in ids.columns:
            out[col] = ids[col].to_numpy()
    out["prediction"] = model.predict(X)
    if hasattr(model, "predict_proba"):
        try:
            proba = np.asarray(model.predict_proba(X))
            for i, label in enumerate(getattr(model, "classes_", range(proba.shape[1]))):
                out[f"proba_{label}"] = proba[:, i]
        except Exception:  # noqa: BLE001, S110 - a model may expose predict_proba it cannot serve
            pass
    out["model_version"] = version
    return out


def write_predictions(frame: pd.DataFrame, folder: Path, input_name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{input_name}.predictions.csv"
    tmp = folder / f".{target.name}.part"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, target)
    return target


@step("predict", retries=2)
def predict(model: Any, X: pd.DataFrame, version: int, folder: Path, input_name: str,
            ids: pd.DataFrame | None = None) -> Path:
    return write_predictions(predictions_frame(model, X, version, ids), folder, input_name)
