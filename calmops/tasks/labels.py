"""Labels that arrive later (spec ``labels``): read a labels file, keep predicted rows for it, join the two.

A labels file holds the id columns (``labels.join_on``) and the target. Its rows are matched to the rows the
pipeline predicted without labels (:mod:`calmops.core.awaiting`); the matched rows, features and labels
together, become a labelled batch that goes through the stream's own steps, and the predictions as they were
made are scored per model version (the realized metrics of the versions that served those rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.awaiting import PREDICTION, VERSION, Awaiting, Match, keys_of
from calmops.core.metrics import evaluate
from calmops.core.spec import PipelineSpec
from calmops.tasks import validate as V
from calmops.tasks.ingest import RejectedInput, detect_format, read_table, text_delimiter


def read_labels(path: Path, spec: PipelineSpec) -> tuple[pd.DataFrame, str]:
    """The labels file's table and format; RejectedInput (quarantine) when it cannot be matched as it is."""
    assert spec.labels is not None
    size = path.stat().st_size
    if size > spec.limits.max_bytes:
        raise RejectedInput(f"{path.name}: {size} bytes is over the limit of {spec.limits.max_bytes}")
    fmt = detect_format(path)
    if fmt not in spec.formats:
        raise RejectedInput(f"{path.name}: format {fmt!r} is not accepted by this pipeline "
                            f"(accepted: {', '.join(spec.formats)})", format=fmt)
    frame = read_table(path, fmt, text_delimiter(path, fmt, spec.delimiter))
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise RejectedInput(f"{path.name}: a labels file with no rows")
    if len(frame) > spec.limits.max_rows:
        raise RejectedInput(f"{path.name}: {len(frame)} rows is over the limit of {spec.limits.max_rows}")
    needed = [*spec.labels.join_on, spec.target]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RejectedInput(f"{path.name}: labels file without column(s) {', '.join(missing)} (a labels file "
                            f"holds the ids {', '.join(spec.labels.join_on)} and the target {spec.target!r}; "
                            f"columns: {', '.join(V.excerpt(c, 30) for c in frame.columns[:20])})", missing=missing)
    for column in needed:
        empty = int(frame[column].isna().sum())
        if empty:
            first = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise RejectedInput(f"{path.name}: column '{column}' has {empty} missing value(s) (first at row "
                                f"{first + 1}); every row of a labels file needs its ids and its label")
    return frame, fmt


class _AsServed:
    """The predictions as they were made, in the shape :func:`calmops.core.metrics.evaluate` scores."""

    def __init__(self, predictions: np.ndarray, classes: list | None):
        self._predictions = predictions
        if classes:
            self.classes_ = np.asarray(classes)

    def predict(self, X: Any) -> np.ndarray:
        return self._predictions


def realized_scores(match: Match, task: str, classes: list | None = None) -> dict[int, dict[str, Any]]:
    """The score of each model version on the rows it predicted, now that their labels are known (for a
    classifier, over the champion's classes, so each version's scores have the same metrics)."""
    out: dict[int, dict[str, Any]] = {}
    versions = match.rows[VERSION].to_numpy()
    for version in sorted(set(versions.tolist())):
        rows = versions == version
        predictions = match.rows[PREDICTION].to_numpy()[rows]
        y = match.labels[rows].reset_index(drop=True)
        known = classes
        if task == "classification" and _numeric(predictions) != _numeric(y.to_numpy()):
            # numbers against text (the label type check lets this through only for new classes): as text
            predictions, y = predictions.astype(str), y.astype(str)
            known = [str(c) for c in classes] if classes else None
        scores = evaluate(_AsServed(predictions, known), pd.DataFrame(index=range(int(rows.sum()))), y, task)
        scores.pop("confusion_matrix", None)
        out[int(version)] = {**scores, "rows": int(rows.sum())}
    return out


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf" or (values.dtype == object and all(
        isinstance(v, (int, float, np.number, bool)) for v in values[:100]))


def labelled_rows(match: Match, spec: PipelineSpec) -> pd.DataFrame:
    """The matched rows as a labelled batch: the features file's columns and the target."""
    frame = match.rows.drop(columns=[PREDICTION, VERSION])
    frame[spec.target] = match.labels.to_numpy()
    return frame


def keep_for_labels(awaiting: Awaiting, spec: PipelineSpec, frame: pd.DataFrame, X: pd.DataFrame, predictions: Any,
                    version: int, sha256: str, file: str) -> dict[str, Any]:
    """Keep a batch predicted without labels for its labels file: its features as the model read them (typed,
    so rows joined from several files agree) and its ids; returns what was kept (rows, and ids the file names
    more than once: one label will label each of their rows)."""
    assert spec.labels is not None
    keys = keys_of(frame, spec.labels.join_on)
    kept = X.copy()
    for column in spec.labels.join_on:
        kept[column] = frame[column].to_numpy()
    awaiting.keep(kept, keys, predictions, version, sha256, file)
    return {"rows": len(frame), "join_on": spec.labels.join_on, "repeated_ids": len(keys) - len(set(keys))}
