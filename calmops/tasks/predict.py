"""Predict: the champion's predictions for a batch, written under the name the input is kept under in processed/.

The CSV is safe to open in a spreadsheet: a text cell (or a column name) that would run as a formula is
made inert (:func:`calmops.core.store.formula_safe`); numbers are written as numbers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.store import bounded_name, formula_safe, free_name
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


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell and column name that a spreadsheet would run as a formula neutralised."""
    out = frame.copy()
    out.columns = [formula_safe(str(c)) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(formula_safe)
    return out


def predictions_path(folder: Path, input_name: str, sha256: str, processed: Path) -> Path:
    """``<name>.predictions.csv``, ``<name>`` being the name the input (content ``sha256``) is kept under in
    ``processed`` by the rule that folder follows (:func:`calmops.core.store.free_name`): its own name, or
    ``<sha256[:12]>-<name>`` when a file of that name was processed before. Two files of one name never write
    over each other's predictions, a run of the same content again (a retry, a pending file re-run) writes the
    same file, and each file in processed/ has its predictions next to its own name. Shortened (with a hash of
    the name) when the name is long."""
    return folder / bounded_name(free_name(processed, input_name, sha256), ".predictions.csv")


def write_predictions(frame: pd.DataFrame, target: Path) -> Path:
    """Write atomically; a failure (a full disk) leaves no partial file behind."""
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{target.name}.part"
    try:
        spreadsheet_safe(frame).to_csv(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


@step("predict", retries=2)
def predict(model: Any, X: pd.DataFrame, version: int, folder: Path, input_name: str,
            ids: pd.DataFrame | None = None, *, sha256: str, processed: Path) -> Path:
    """Write the predictions of the input ``input_name`` (content ``sha256``) into ``folder``; returns the file
    written (what the decision records as ``predictions_file``). ``processed`` is the pipeline's processed/
    folder, whose naming the file follows (:func:`predictions_path`)."""
    target = predictions_path(folder, input_name, sha256, processed)
    return write_predictions(predictions_frame(model, X, version, ids), target)
