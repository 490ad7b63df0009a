"""Column values as the detectors see them: each feature's type (numeric, categorical, boolean, datetime)
and its values converted for the tests of that type."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FEATURE_TYPES = ("numeric", "categorical", "boolean", "datetime")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


# ----------------------------------------------------------------------------- type inference
def infer_feature_types(df: pd.DataFrame) -> dict[str, str]:
    """numeric / categorical / boolean / datetime for every column.

    Rules: bool dtype, or values only in {True, False} / {0, 1} (integers) -> boolean; datetime dtype,
    or strings that all parse as dates -> datetime; numeric dtype, or objects that are all numbers ->
    numeric; everything else (strings, mixed types, pandas categories) -> categorical.

    >>> import pandas as pd
    >>> infer_feature_types(pd.DataFrame({"age": [31.5, 40.0], "smoker": [0, 1], "site": ["a", "b"],
    ...                                   "day": ["2026-01-02", "2026-01-03"]}))
    {'age': 'numeric', 'smoker': 'boolean', 'site': 'categorical', 'day': 'datetime'}
    """
    return {str(c): _infer_one(df[c]) for c in df.columns}


def _infer_one(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if isinstance(s.dtype, pd.CategoricalDtype):
        return "categorical"
    non_null = s.dropna()
    if pd.api.types.is_numeric_dtype(s):
        if pd.api.types.is_integer_dtype(s) and non_null.size and set(np.unique(non_null)) <= {0, 1}:
            return "boolean"
        return "numeric"
    if non_null.empty:
        return "categorical"
    sample = non_null.iloc[:2000]
    kinds = {type(v) for v in sample}
    if kinds <= {bool, np.bool_}:
        return "boolean"
    if all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in sample
    ):
        return "numeric"
    if kinds <= {str}:
        lowered = {v.strip().lower() for v in sample}
        if lowered <= (_TRUE | _FALSE) - {"1", "0", "1.0", "0.0"} and len(lowered) <= 2:
            return "boolean"
        if any(ch in v for v in sample.iloc[:50] for ch in "-/:") and _all_dates(sample):
            return "datetime"
    return "categorical"


def _all_dates(sample: pd.Series) -> bool:
    try:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        return False
    return bool(parsed.notna().all())


# ----------------------------------------------------------------------------- column conversion
def numeric_values(s: pd.Series, kind: str) -> np.ndarray:
    """Float64 values; missing and non-finite become NaN. Datetimes become epoch seconds."""
    if kind == "datetime" or pd.api.types.is_datetime64_any_dtype(s):
        dt = (
            s
            if pd.api.types.is_datetime64_any_dtype(s)
            else pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
        )
        if getattr(dt.dt, "tz", None) is not None:
            dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
        out = (
            dt.astype("datetime64[ns]")
            .to_numpy()
            .astype("datetime64[ns]")
            .astype(np.int64)
            .astype(np.float64)
            / 1e9
        )
        out[dt.isna().to_numpy()] = np.nan
        return out
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float).to_numpy()
    out = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def categorical_values(s: pd.Series, kind: str) -> np.ndarray:
    """Non-missing values as strings. Integral floats lose their '.0' so 1 and 1.0 are one category;
    booleans of any spelling become 'True'/'False'.

    >>> import pandas as pd
    >>> categorical_values(pd.Series([1.0, 2.5, None]), "categorical").tolist()
    ['1', '2.5']
    >>> categorical_values(pd.Series(["yes", "N"]), "boolean").tolist()
    ['True', 'False']
    """
    s = s.dropna()
    if kind == "boolean":
        return (
            np.asarray([_bool_str(v) for v in s.to_numpy()], dtype=object)
            if s.size
            else np.empty(0, dtype=object)
        )
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64)
        integral = np.isfinite(v) & (v == np.floor(v)) & (np.abs(v) < 2**53)
        out = s.astype(str).to_numpy(dtype=object)
        out[integral] = v[integral].astype(np.int64).astype(str)
        return out
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s) or pd.api.types.is_string_dtype(s):
        return s.astype(str).to_numpy(dtype=object)
    return np.asarray([_cat_str(v) for v in s.to_numpy()], dtype=object)


def _cat_str(v) -> str:
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _bool_str(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return str(bool(v))
    t = str(v).strip().lower()
    if t in _TRUE:
        return "True"
    if t in _FALSE:
        return "False"
    return str(v)
