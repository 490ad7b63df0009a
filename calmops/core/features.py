"""From a validated table to model input: feature selection, type coercion, the model pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from calmops.core.kinds import KINDS
from calmops.core.spec import PipelineSpec, build_estimator
from calmops.detectors import infer_feature_types


def feature_columns(spec: PipelineSpec, columns: list[str]) -> list[str]:
    excluded = spec.excluded_columns()
    if spec.block_column and not KINDS[spec.kind].block_column_is_feature:
        excluded.add(spec.block_column)  # it only splits the file
    return [c for c in columns if c not in excluded]


def is_labels_table(spec: PipelineSpec, columns: list[str], model_inputs: list[str] | tuple = ()) -> bool:
    """Whether a table of these columns is a labels file of a pipeline whose labels come later (spec ``labels``):
    it has every ``join_on`` column and the target, no feature column (anything else is an id or dropped) and
    none of ``model_inputs`` (the champion's input columns, when there is one)."""
    if spec.labels is None:
        return False
    names = [str(c) for c in columns]
    return ({*spec.labels.join_on, spec.target} <= set(names) and not feature_columns(spec, names)
            and not set(map(str, model_inputs)) & set(names))


def resolve_feature_types(spec: PipelineSpec, frame: pd.DataFrame) -> dict[str, str]:
    """Explicit types from the spec win; the rest are inferred from the data."""
    inferred = infer_feature_types(frame)
    if KINDS[spec.kind].block_column_is_feature and inferred.get(spec.block_column) == "datetime":
        inferred[spec.block_column] = "categorical"  # block names keep their text ("2024-05"), not epoch seconds
    return {c: spec.feature_types.get(c, inferred[c]) for c in frame.columns}


class CoercionError(ValueError):
    """A column's values cannot be read as its type; names the column and an offending value."""


def _read_float(value: object) -> float:
    """A cell as Python reads a number (``1e400``, ``1_000``, Unicode digits), NaN when it is not one."""
    try:
        return float(str(value).strip())
    except ValueError:
        return float("nan")


def read_numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A column's cells as floats, read as Python reads a number (``1e400``, ``1_000``, Unicode digits), and
    the mask of its filled cells that are not numbers. Raises OverflowError for an integer too large for a
    float (a JSON number hundreds of digits long)."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float), pd.Series(False, index=s.index)
    num = pd.to_numeric(s, errors="coerce")
    filled = s.notna() & (s.astype(str).str.strip() != "")
    bad = num.isna() & filled
    if bad.any():  # text Python still reads as a number, e.g. '1e400' (out of range: infinite)
        num = num.astype(float).where(~bad, s[bad].map(_read_float))
        bad = num.isna() & filled
    return num.astype(float), bad


def coerce_features(frame: pd.DataFrame, feature_types: dict[str, str]) -> pd.DataFrame:
    """Give every column the representation its type expects (numbers as float, categories as str)."""
    out = {}
    for col, kind in feature_types.items():
        s = frame[col]
        if kind == "numeric":
            try:
                num, bad = read_numbers(s)
            except OverflowError:
                raise CoercionError(f"column '{col}' holds a number too large to represent") from None
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                example = str(s.iloc[first])  # a bounded excerpt: a reason never carries a whole cell
                raise CoercionError(
                    f"column '{col}' should be numeric but holds {int(bad.sum())} non-numeric value(s), "
                    f"e.g. {example[:40] + ('…' if len(example) > 40 else '')!r} in data row {first + 1}"
                )
            out[col] = num
        elif kind == "boolean":
            mapped = s.map(lambda v: _as_bool(v), na_action="ignore")
            out[col] = mapped.astype(float)
        elif kind == "datetime":
            ts = pd.to_datetime(s, errors="coerce", utc=True)
            out[col] = (ts.astype("int64") // 10**9).where(ts.notna()).astype(float)
        else:
            out[col] = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))
    return pd.DataFrame(out, index=frame.index)


def _as_bool(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    text = str(v).strip().lower()
    if text in ("true", "t", "yes", "y", "1", "1.0"):
        return 1.0
    if text in ("false", "f", "no", "n", "0", "0.0"):
        return 0.0
    return np.nan


def drift_types(feature_types: dict[str, str]) -> dict[str, str]:
    """After coercion datetimes are numbers (seconds); the detectors see them as numeric."""
    return {c: ("numeric" if t == "datetime" else t) for c, t in feature_types.items()}


def make_model(spec: PipelineSpec, feature_types: dict[str, str]):
    """The spec's estimator behind a column transformer that handles missing values and categories.

    A user who gives ``model.steps`` owns the whole pipeline and gets it unchanged.
    """
    estimator = build_estimator(spec.model, spec.allow_modules)
    if spec.model.steps is not None:
        return estimator
    numeric = [c for c, t in feature_types.items() if t != "categorical"]
    categorical = [c for c, t in feature_types.items() if t == "categorical"]
    transformers = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median", keep_empty_features=True), numeric))
    if categorical:
        transformers.append((
            "categorical",
            Pipeline([
                ("fill", SimpleImputer(strategy="constant", fill_value="__missing__", keep_empty_features=True)),
                ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
            ]),
            categorical,
        ))
    columns = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("features", columns), ("model", estimator)])
