"""The checks of the ingest step that look at what a parsed file holds, before anything learns from it.

Each problem is either a refusal (:class:`~calmops.tasks.ingest.RejectedInput`: the file is quarantined
with a reason naming the column and the rows) or a documented degraded decision (the file is scored and
predicted but cannot train: :func:`training_blocker` says why). Data rows are counted from 1, the header
excluded, as a spreadsheet user would count them below the header line.

- one name per column (read from the file's own header: parsers rename duplicates silently);
- declared types: a column with date-times where the model expects numbers is refused;
- finite numbers: ``inf`` / ``-inf`` (or a number too large for a float) in a feature or a numeric target;
- labels: classes never seen by the champion are reported (a signal, not an error); a file with a single
  class, or with too few rows to hold out an evaluation set, cannot train (the champion still predicts).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from calmops.core.features import CoercionError, coerce_features, read_numbers
from calmops.core.spec import TEXT_FORMATS, PipelineSpec

MAX_ROWS_LISTED = 5
EXCERPT_CHARS = 40
MAX_PROBLEMS_LISTED = 5  # problems a reason found before a failed preprocess lists
TOO_LARGE = "a number too large for a float (beyond ±1.8e308)"  # finite, written, but no float holds it


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A bounded, escaped excerpt of a raw value for a reason: never more than ``limit`` characters of it,
    control characters escaped, so a reason cannot carry a file's content or break a log line."""
    text = str(value)
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def rows_phrase(positions: np.ndarray | list[int]) -> str:
    """``row(s) 4, 8 and 3 more`` from 0-based positions (data rows counted from 1)."""
    positions = list(positions)
    listed = ", ".join(str(int(p) + 1) for p in positions[:MAX_ROWS_LISTED])
    more = f" and {len(positions) - MAX_ROWS_LISTED} more" if len(positions) > MAX_ROWS_LISTED else ""
    return f"{len(positions)} row(s): data row {listed}{more}"


# -- refusals --------------------------------------------------------------------------------------


def duplicated_header(path: Path, fmt: str, sep: str | None) -> list[str]:
    """Column names that appear more than once in the file's own header (text tables and workbooks).

    pandas renames a repeated ``x2`` to ``x2.1``, so the parsed frame cannot tell; the header can.
    """
    names: list[str] = []
    try:
        if fmt in TEXT_FORMATS:
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
                # the first line that is not blank, as the parser takes it (it skips empty and white lines)
                names = next((row for row in csv.reader(fh, delimiter=sep or ",")
                              if len(row) > 1 or (row and row[0].strip())), [])
        elif fmt == "xlsx":
            head = pd.read_excel(path, engine="openpyxl", header=None, nrows=1)
            names = [str(v) for v in head.iloc[0].tolist()] if len(head) else []
    except (OSError, csv.Error, ValueError, StopIteration):
        return []
    seen: set[str] = set()
    dupes: list[str] = []
    for name in names:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    return dupes


def type_mismatches(frame: pd.DataFrame, types: dict[str, str]) -> list[str]:
    """Columns whose values are date-times (or durations) where the model expects numbers or flags."""
    out = []
    for col, kind in types.items():
        if col in frame.columns and kind in ("numeric", "boolean"):
            s = frame[col]
            if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s) \
                    or isinstance(s.dtype, pd.PeriodDtype):
                out.append(f"column '{col}' should be {kind} but holds date-times ({s.dtype})")
    return out


def text_where_numbers(frame: pd.DataFrame, types: dict[str, str]) -> list[str]:
    """The file's columns the model takes as numbers that hold numbers but for some text cells (at most half of
    the filled ones; a column of text is another problem), with the first such value and the rows: what a
    preprocess doing arithmetic on the column trips over. Cells are read as the pipeline's coercion reads them
    (:func:`calmops.core.features.read_numbers`: ``1e400``, ``1_000`` are numbers)."""
    out = []
    for col, kind in types.items():
        if kind != "numeric" or col not in frame.columns or pd.api.types.is_numeric_dtype(frame[col]):
            continue
        raw = frame[col]
        try:
            _, unread = read_numbers(raw)
        except OverflowError:  # a number too large: coercion names it
            continue
        filled = raw.notna() & raw.astype(str).str.strip().ne("")
        bad = np.flatnonzero(unread.to_numpy())
        if bad.size and bad.size * 2 <= int(filled.sum()):
            out.append(f"column '{col}' holds text where the champion was trained on numbers: "
                       f"{excerpt(raw.iloc[bad[0]])} in {rows_phrase(bad)}")
    return out


def infinite_values(X: pd.DataFrame, types: dict[str, str], written: pd.DataFrame | None = None) -> list[str]:
    """Feature columns (numeric after coercion) holding +/-inf, with the rows. With ``written``, the parsed table
    ``X`` was coerced from, a cell written as a finite number too large for a float (``1e400``, an integer of
    hundreds of digits) is said as such, not as an infinite value."""
    out = []
    for col in X.columns:
        if types.get(col) == "categorical":
            continue
        values = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = np.flatnonzero(np.isinf(values))
        if not bad.size:
            continue
        cells = written[col] if written is not None and col in written.columns else None
        large = np.array([cells is not None and _too_large(cells.iloc[i]) for i in bad], dtype=bool)
        if (~large).any():
            out.append(f"column '{col}' holds infinite values in {rows_phrase(bad[~large])}")
        if large.any():
            out.append(f"column '{col}' holds {TOO_LARGE} in {rows_phrase(bad[large])}")
    return out


def _too_large(cell: object) -> bool:
    """A cell that reads as an infinite float while its text is a finite number: ``1e400``, 401 digits."""
    return isinstance(cell, str) and cell.strip().lstrip("+-").lower() not in ("inf", "infinity")


def infinite_target(y: pd.Series, target: str) -> str | None:
    if not (pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)):
        return None
    bad = np.flatnonzero(np.isinf(y.to_numpy(dtype=float, na_value=np.nan)))
    return f"target column '{target}' holds infinite values in {rows_phrase(bad)}" if bad.size else None


def missing_features(missing: list[str], columns: list | None = None, unexpected: list | tuple = ()) -> str:
    """``missing`` named; with ``unexpected``, the file's feature columns the model does not know (a misnamed or
    renumbered column: ``x0`` where ``x3`` was expected), each escaped; with ``columns``, the columns the file has.

    >>> missing_features(["x3"], ["x0", "x1", "x2", "y"], ["x0"])
    "feature column(s) missing: x3; unexpected: 'x0' (columns: 'x0', 'x1', 'x2', 'y')"
    """
    more = f", and {len(unexpected) - 20} more" if len(unexpected) > 20 else ""
    said = f"; unexpected: {', '.join(excerpt(c, 30) for c in unexpected[:20])}{more}" if unexpected else ""
    return f"feature column(s) missing: {', '.join(missing)}{said}" + (f" ({_columns(columns)})" if columns else "")


def missing_target(target: str, columns: list) -> str:
    return f"target column '{target}' is missing ({_columns(columns)})"


def _columns(columns: list) -> str:
    """The columns a file has, the first 20 and each cut to 30 characters."""
    more = f", and {len(columns) - 20} more" if len(columns) > 20 else ""
    return f"columns: {', '.join(excerpt(c, 30) for c in columns[:20])}{more}"


def before_preprocess(frame: pd.DataFrame, types: dict[str, str], target: str | None, named: list[str],
                      error: BaseException, champion: bool) -> list[str]:
    """What the checks above find wrong in a parsed table whose preprocess raised ``error``, in the columns the
    spec names: ``types`` (the features and their types: the champion's, else the spec's ``feature_types``),
    ``target`` (None when the file need not hold it), ``named`` (the columns the spec itself names). Said as the
    same checks say it without a preprocess: the preprocess's error is then the symptom, this the cause.

    A preprocess may make columns the file does not have, so a column is said missing only when the error names
    it (``KeyError: 'x0'``); the spec's other ``named`` columns the file lacks are then added as such. With
    ``champion``, a column of numbers with a few text cells is said as :func:`text_where_numbers` says it."""
    out: list[str] = []
    absent = [c for c in [*types, *([target] if target else [])] if c not in frame.columns]
    text = str(error)
    if isinstance(error, (LookupError, ValueError)) and absent:
        gone = [c for c in absent if f"'{c}'" in text or f'"{c}"' in text]
        if target in gone:
            out.append(missing_target(target, list(frame.columns)))
        if features := [c for c in gone if c != target]:
            also = [c for c in named if c in absent and c not in gone]
            shown = [] if target in gone else list(frame.columns)  # the target's line lists them already
            if also:
                out += [missing_features(features), f"the file also lacks {', '.join(also)}, which the spec names"
                        + (f" ({_columns(shown)})" if shown else "")]
            else:
                out.append(missing_features(features, shown))
    present = {c: kind for c, kind in types.items() if c in frame.columns}
    coerced = {}
    for col, kind in present.items():
        one = {col: kind}
        found = type_mismatches(frame, one) or (text_where_numbers(frame, one) if champion else [])
        if not found:
            try:
                coerced[col] = coerce_features(frame[[col]], one)[col]
            except CoercionError as exc:
                found = [str(exc)]
        out += found
    if coerced:
        out += infinite_values(pd.DataFrame(coerced, index=frame.index), present, frame)
    if target and target in frame.columns and (inf := infinite_target(frame[target], target)):
        out.append(inf)
    if len(out) > MAX_PROBLEMS_LISTED:
        out = [*out[:MAX_PROBLEMS_LISTED], f"and {len(out) - MAX_PROBLEMS_LISTED} more problem(s)"]
    return out


# -- labels and degraded decisions -----------------------------------------------------------------


@dataclass
class Labels:
    """What the target of a classification file holds, against the classes the champion knows."""

    classes: list[str] = field(default_factory=list)       # in this file, as text
    new_classes: list[str] = field(default_factory=list)   # never seen by the champion

    @classmethod
    def of(cls, y: pd.Series | None, known: list | None) -> Labels:
        if y is None:
            return cls()
        classes = sorted({str(v) for v in y.dropna().unique()})
        seen = {str(v) for v in known or []}
        return cls(classes, [c for c in classes if known is not None and c not in seen])


#: a first model's target looks like a number to predict, not classes, from this many different values on
CONTINUOUS_MIN_VALUES = 20


def looks_continuous(y: pd.Series) -> str | None:
    """Why ``y`` reads as numbers to predict rather than classes (more than :data:`CONTINUOUS_MIN_VALUES`
    different numbers, and more of them than half its rows: no class could be learnt from so few rows of it), or
    None.

    >>> looks_continuous(pd.Series([151.0, 75.0, 141.0, 206.0] * 5 + [float(v) for v in range(100, 140)]))
    'holds 44 different numbers in 60 rows (e.g. 151.0, 75.0, 141.0)'
    >>> looks_continuous(pd.Series([0, 1, 2] * 20)) is None
    True
    """
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return None
    values = y.dropna()
    distinct = values.nunique()
    if distinct <= CONTINUOUS_MIN_VALUES or distinct * 2 <= len(values):
        return None
    return (f"holds {distinct} different numbers in {len(values)} rows "
            f"(e.g. {', '.join(str(v) for v in pd.unique(values)[:3])})")


#: the fewest rows of a first file in which a column moving one way on every row is taken for a time index
INDEX_MIN_ROWS = 100


def index_like(X: pd.DataFrame, types: dict[str, str]) -> list[str]:
    """The columns of a first file that look like a time index or a running id: dates, or whole numbers a fixed
    step apart, moving one way on every row, each value new (:data:`INDEX_MIN_ROWS` rows at least). A later file
    holds only values the model never saw, so such a column drifts on every file. A number column an export is
    sorted by is not one: its steps vary.

    >>> X = pd.DataFrame({"day": range(200), "x": [1.0, 2.0] * 100, "id": range(400, 0, -2),
    ...                   "score": np.sort(np.random.default_rng(0).normal(size=200))})
    >>> index_like(X, {"day": "numeric", "x": "numeric", "id": "numeric", "score": "numeric"})
    ['day', 'id']
    """
    found = []
    for column in X.columns:
        values = X[column].dropna()
        if (types.get(column) not in ("numeric", "datetime") or len(values) < INDEX_MIN_ROWS or not values.is_unique
                or not (values.is_monotonic_increasing or values.is_monotonic_decreasing)):
            continue
        steps = np.diff(values.to_numpy(dtype=float))
        if types[column] == "datetime" or (np.all(values.to_numpy(dtype=float) % 1 == 0)
                                           and np.all(steps == steps[0])):
            found.append(column)
    return found


def label_type_mismatch(y: pd.Series | None, known: list | None, target: str) -> str | None:
    """Why the target's labels can never equal the champion's classes (numbers against text), or None."""
    if y is None or not known:
        return None
    known_numeric = all(isinstance(k, (int, float)) for k in known)
    y_numeric = pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)
    if known_numeric == y_numeric:
        return None
    if all(isinstance(k, (bool, np.bool_)) for k in known):  # True/False written among other labels
        text = y.astype(str).str.strip().str.lower()
        bad = np.flatnonzero(~text.isin(["true", "false"]).to_numpy() & y.notna().to_numpy())
        if 0 < bad.size * 2 <= len(y):
            return (f"target column '{target}' holds {bad.size} label(s) that are neither True nor False, the "
                    f"champion's classes: {excerpt(y.iloc[bad[0]])} in {rows_phrase(bad)}; correct or remove these "
                    "rows")
    if known_numeric:  # a few text cells among numbers are bad rows, not a column written the wrong way
        _, unread = read_numbers(y)
        bad = np.flatnonzero(unread.to_numpy())
        if 0 < bad.size * 2 <= len(y):
            return (f"target column '{target}' holds {bad.size} label(s) that are not numbers, while the champion's "
                    f"classes are ({', '.join(excerpt(k) for k in known[:5])}): {excerpt(y.iloc[bad[0]])} in "
                    f"{rows_phrase(bad)}; correct or remove these rows")
    return labels_cannot_match(target, "numbers" if y_numeric else "text", pd.unique(y)[:3],
                               "numbers" if known_numeric else "text", known)


def labels_cannot_match(target: str, held: str, sample, classes_are: str, known: list) -> str:
    """The one-line reason a target's labels can never equal the champion's classes: what they hold (with a few
    of them) against what the classes are (with a few of those)."""
    return (f"target column '{target}' holds {held} ({', '.join(excerpt(v) for v in sample)}) but the champion's "
            f"classes are {classes_are} ({', '.join(excerpt(k) for k in known[:5])}): no label could match a "
            "prediction; write the labels as the model learnt them")


def min_training_rows(spec: PipelineSpec) -> int:
    """Rows a file needs to train: an evaluation holdout of ``min_holdout_rows`` and as many to learn from."""
    return 2 * spec.evaluation.min_holdout_rows


def training_blocker(n_rows: int, labels: Labels, task: str | None, spec: PipelineSpec) -> str | None:
    """Why this file cannot train a model (it can still be scored and predicted), or None."""
    need = min_training_rows(spec)
    if n_rows < need:
        return (f"{n_rows} row(s) is too few to train: training needs at least {need} "
                f"(evaluation.min_holdout_rows {spec.evaluation.min_holdout_rows} held out, as many to learn from)")
    if task == "classification" and len(labels.classes) == 1:
        return (f"target column '{spec.target}' holds a single class ({excerpt(labels.classes[0])}): "
                "no model can learn to tell classes apart from it")
    return None
