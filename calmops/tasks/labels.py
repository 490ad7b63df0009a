"""Labels that arrive later (spec ``labels``): read a labels file, keep predicted rows for it, join the two.

A labels file holds the id columns (``labels.join_on``) and the target. Its rows are matched to the rows the
pipeline predicted without labels (:mod:`calmops.core.awaiting`); the matched rows, features and labels
together, become a labelled batch that goes through the stream's own steps, and the predictions as they were
made are scored per model version (the realized metrics of the versions that served those rows).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.awaiting import PREDICTION, VERSION, Awaiting, Match, keys_of, whole_number
from calmops.core.logs import RunLog
from calmops.core.metrics import evaluate
from calmops.core.spec import TEXT_FORMATS, PipelineSpec
from calmops.core.store import pipeline_paths
from calmops.tasks import validate as V
from calmops.tasks.ingest import RejectedInput, accepted_format, check_limit, read_table, text_delimiter


def read_labels(path: Path, spec: PipelineSpec, classes: list | None = None) -> tuple[pd.DataFrame, str]:
    """The labels file's table and format; RejectedInput (quarantine) when it cannot be matched as it is.

    The id columns of a delimited text file (CSV, TSV, TXT) are read as written ("000001" stays "000001"), as is the
    target when the model's ``classes`` are text. With ``classes`` (the champion's), the labels are taken as
    those classes: whole numbers written as floats (``1.0``) are the integer classes; labels of another kind
    (booleans or fractions for integer classes, numbers for text classes, text for numbers) are refused.
    """
    assert spec.labels is not None
    fmt = accepted_format(path, spec)
    as_text = list(spec.labels.join_on) + ([spec.target] if _kind_of_classes(classes) == "text" else [])
    frame = read_table(path, fmt, text_delimiter(path, fmt, spec.delimiter), as_text)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise RejectedInput(f"{path.name}: a labels file with no rows")
    check_limit(path.name, len(frame), "rows", "max_rows", spec)
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
            fix = ("remove the rows without a label and drop the file in again (the rows they would label keep "
                   "waiting for a later labels file)" if column == spec.target else
                   "a row without its id labels nothing: give it its id, or remove it")
            raise RejectedInput(f"{path.name}: column '{column}' has {empty} missing value(s) (first at row "
                                f"{first + 1}); every row of a labels file needs its ids and its label: {fix}",
                                column=column, missing_values=empty)
    frame[spec.target] = as_classes(frame[spec.target], classes, path.name, spec.target)
    return frame, fmt


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not _is_bool(v)


def _kind_of_classes(classes: list | None) -> str | None:
    """What the model's classes are: "bool", "int", "float", "text", or None (unknown or mixed)."""
    if not classes:
        return None
    if all(_is_bool(c) for c in classes):
        return "bool"
    if all(isinstance(c, (int, np.integer)) and not _is_bool(c) for c in classes):
        return "int"
    if all(_is_number(c) for c in classes):
        return "float"
    if all(isinstance(c, str) for c in classes):
        return "text"
    return None


#: a kind of values (of the classes, or of the labels) as a reason names it
_PLURAL = {"bool": "booleans", "int": "numbers", "float": "numbers", "number": "numbers", "text": "text"}


def as_classes(y: pd.Series, classes: list | None, file: str, target: str) -> pd.Series:
    """The labels as the model's classes (their type), or RejectedInput with a one-line reason that names the
    file, the column, a few offending values and the classes. Whole numbers written as floats (``1.0``) are
    the integer classes; booleans, fractions, text for numbers or numbers for text can never equal a class."""
    kind = _kind_of_classes(classes)
    if kind is None:
        return y
    values = y.to_numpy()
    if pd.api.types.is_bool_dtype(y) or (len(values) and all(_is_bool(v) for v in values)):
        label = "bool"
    elif pd.api.types.is_numeric_dtype(y) or all(_is_number(v) for v in values):
        label = "number"
    else:
        label = "text"
    if kind == "text" and label == "text":
        return y.astype(str).astype(object)
    if kind == "bool" and label == "bool":
        return y.astype(bool)
    if kind in ("int", "float") and label == "number":
        numbers = pd.to_numeric(y)
        if kind == "float":
            return numbers.astype(float)
        if pd.api.types.is_integer_dtype(numbers):
            return numbers.astype(np.int64)
        numbers = numbers.astype(float)
        fractional = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers.abs() >= 2 ** 53)
        if not fractional.any():
            return numbers.astype(np.int64)  # 1.0 is the class 1
        raise _refused(file, target, "numbers that are not whole", y[fractional], "whole numbers", classes)
    offending = y[[isinstance(v, str) for v in values]] if label == "text" else y
    offending = offending if len(offending) else y
    raise _refused(file, target, _PLURAL[label], offending, _PLURAL[kind], classes)


def _refused(file: str, target: str, what: str, offending: pd.Series, kind: str, classes: list) -> RejectedInput:
    sample = list(pd.unique(offending.to_numpy()))[:3]
    return RejectedInput(f"{file}: {V.labels_cannot_match(target, what, sample, kind, classes)}",
                         column=target, values=[str(v) for v in sample], classes=[str(c) for c in classes[:20]])


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
    versions = match.rows[VERSION].to_numpy()
    return {int(version): _as_served(match, versions == version, task, classes)
            for version in sorted(set(versions.tolist()))}


def realized_score(match: Match, task: str, classes: list | None = None) -> dict[str, Any]:
    """The score of the predictions as they were made, on every matched row whatever version made them: the
    serving score of a labels file (``calmops history``, the viewer)."""
    return _as_served(match, np.ones(len(match.rows), dtype=bool), task, classes)


def _as_served(match: Match, rows: np.ndarray, task: str, classes: list | None) -> dict[str, Any]:
    predictions = match.rows[PREDICTION].to_numpy()[rows]
    y = match.labels[rows].reset_index(drop=True)
    known = classes
    if task == "classification" and _numeric(predictions) != _numeric(y.to_numpy()):
        # numbers against text (the label type check lets this through only for new classes): as text
        predictions, y = predictions.astype(str), y.astype(str)
        known = [str(c) for c in classes] if classes else None
    scores = evaluate(_AsServed(predictions, known), pd.DataFrame(index=range(int(rows.sum()))), y, task)
    scores.pop("confusion_matrix", None)
    return {**scores, "rows": int(rows.sum())}


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf" or (values.dtype == object and all(
        isinstance(v, (int, float, np.number, bool)) for v in values[:100]))


def labelled_rows(match: Match, spec: PipelineSpec) -> pd.DataFrame:
    """The matched rows as a labelled batch: the features file's columns and the target."""
    frame = match.rows.drop(columns=[PREDICTION, VERSION])
    frame[spec.target] = match.labels.to_numpy()
    return frame


def _ids_as_typed(ids: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The id columns of a features file as they are joined. A delimited text file's ids are read as written (its
    predictions file repeats them so); a column of them that holds only whole numbers (``000001``, ``1.0``) is
    joined on those numbers, exactly however many digits they have, as a column of integers is, so labels files
    that write them with or without the zeros join (late-labels.md). Other ids (``1.50``, ``A7``) join as
    written, as the predictions file shows them."""
    if fmt not in TEXT_FORMATS:
        return ids
    out = ids.copy()
    for column in out.columns:
        written = out[column].dropna().astype(str)
        whole = written.map(whole_number)
        if len(written) and whole.notna().all():
            out[column] = out[column].astype(object)
            out.loc[written.index, column] = whole
    return out


def keep_for_labels(awaiting: Awaiting, spec: PipelineSpec, frame: pd.DataFrame, X: pd.DataFrame, predictions: Any,
                    version: int, sha256: str, file: str, fmt: str) -> dict[str, Any]:
    """Keep a batch predicted without labels for its labels file: its features as the model read them (typed,
    so rows joined from several files agree) and its ids; returns what was kept (rows, and ids the file names
    more than once: one label will label each of their rows). A row with an empty id is not kept: no labels
    file can name it (one with an empty id is refused); how many there were, and which, is returned and
    logged, so no row is left waiting for ever in silence."""
    assert spec.labels is not None
    has_id = frame[spec.labels.join_on].notna().all(axis=1).to_numpy()
    without_id = np.flatnonzero(~has_id)
    frame, X, predictions = frame[has_id], X[has_id], np.asarray(predictions)[has_id]
    ids = _ids_as_typed(frame[spec.labels.join_on], fmt)
    keys = keys_of(ids, spec.labels.join_on)
    kept = X.copy()
    for column in spec.labels.join_on:
        kept[column] = ids[column].to_numpy()
    elsewhere = awaiting.keep(kept, keys, predictions, version, sha256, file) if len(kept) else {}
    repeated = sum(1 for count in Counter(keys).values() if count > 1)  # ids named more than once
    out = {"rows": len(frame), "join_on": spec.labels.join_on, "repeated_ids": repeated}
    if elsewhere:  # one label would label the rows of both files: said now, not when the labels come
        files = sorted(set(elsewhere.values()))
        out |= {"ids_waiting_elsewhere": len(elsewhere), "ids_waiting_elsewhere_in": files[:20]}
        RunLog(spec.name, pipeline_paths(spec).logs).warning(
            "%s: %s id(s) of its rows (e.g. %s) already wait for labels in %s: a labels file naming one labels the "
            "rows of both files with the same label; give each row an id of its own (an id should name one "
            "prediction)", file, len(elsewhere), ", ".join(list(elsewhere)[:5]), ", ".join(files[:5]))
    if len(without_id):
        out |= {"without_id": len(without_id), "without_id_rows": [int(p) + 1 for p in without_id[:20]]}
        RunLog(spec.name, pipeline_paths(spec).logs).warning(
            "%s: %s without an id in %s: predicted, not kept for labels (no labels file can name them)",
            file, V.rows_phrase(without_id), ", ".join(spec.labels.join_on))
    return out
