"""Drift injection into any DataFrame.

Every function returns a new DataFrame (the input is never modified) in which only what the method
names has changed, and only in the chosen rows: :class:`Rows` picks them by positional range, block
value or time window (``None`` means every row).

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [1.0] * 6, "y": [0, 1] * 3})
>>> feature_drift(df, ["x"], shift=2.0, rows=Rows(start=3))["x"].tolist()  # std 0: shift in units of 1
[1.0, 1.0, 1.0, 3.0, 3.0, 3.0]
>>> missing_values(df, ["x"], share=0.5, seed=0)["x"].isna().sum()
np.int64(3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .dynamics import evaluate

__all__ = [
    "FEATURE_DRIFT_KINDS",
    "INJECTORS",
    "Rows",
    "concept_drift",
    "correlation_change",
    "feature_drift",
    "label_drift",
    "label_shift",
    "missing_values",
    "new_categories",
    "outliers",
]

FEATURE_DRIFT_KINDS = ("abrupt", "gradual", "incremental", "recurrent")


@dataclass(frozen=True)
class Rows:
    """Which rows an injection touches: all conditions given must hold.

    ``start``/``stop``: positional range ``[start, stop)``; ``column``/``values``: rows whose block column
    is in ``values``; ``time_column``/``since``/``until``: rows with ``since <= time < until``.
    """

    start: int | None = None
    stop: int | None = None
    column: str | None = None
    values: Sequence | None = None
    time_column: str | None = None
    since: object = None
    until: object = None

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        m = np.ones(len(df), dtype=bool)
        if self.start is not None or self.stop is not None:
            pos = np.arange(len(df))
            if self.start is not None:
                m &= pos >= self.start
            if self.stop is not None:
                m &= pos < self.stop
        if self.column is not None:
            _need(df, [self.column])
            values = self.values if self.values is not None else []
            col = df[self.column]
            m &= col.isin(list(values)).to_numpy() | col.astype(str).isin([str(v) for v in values]).to_numpy()
        if self.time_column is not None:
            _need(df, [self.time_column])
            m &= _in_window(df[self.time_column], self.since, self.until)
        return m


def _in_window(column: pd.Series, since: object, until: object) -> np.ndarray:
    """Rows with ``since <= time < until``: a column of numbers against numbers, anything else read as date-times
    (text such as ``2024-03-01`` included; naive times are taken as UTC). A bound or a cell that is not a time,
    an empty window and a window outside the column's values are said with the column's range."""
    name = column.name
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        t, kind = column.astype(float), "numbers"

        def bound(value, label):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{label} {value!r} is not a number, and time column {name!r} holds numbers "
                                 f"({_span(t)})") from None
    else:
        t, kind = pd.to_datetime(column, errors="coerce", utc=True, format="mixed"), "date-times"
        filled = column.notna() & column.astype(str).str.strip().ne("")  # a blank cell is a missing time
        unread = np.flatnonzero(t.isna().to_numpy() & filled.to_numpy())
        if unread.size:
            raise ValueError(f"time column {name!r} holds {unread.size} value(s) that are not date-times, e.g. "
                             f"{str(column.iloc[unread[0]])[:40]!r} in data row {unread[0] + 1}")

        def bound(value, label):
            if isinstance(value, (int, float, np.number)):  # not nanoseconds since 1970
                raise ValueError(f"{label} {value!r} is a number, and time column {name!r} holds date-times "  # noqa: TRY004 - bad input, said like the rest
                                 f"({_span(t)})")
            try:  # text as ISO 8601 ('March' is no time, not 1 March of year 1)
                stamp = pd.to_datetime(value, format="ISO8601") if isinstance(value, str) else pd.Timestamp(value)
            except (TypeError, ValueError):
                stamp = pd.NaT
            if stamp is pd.NaT:
                raise ValueError(f"{label} {value!r} is not a date or time (e.g. 2024-03-01 or 2024-03-01T12:00); "
                                 f"time column {name!r} runs {_span(t)}") from None
            return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    low = None if since is None else bound(since, "since")
    high = None if until is None else bound(until, "until")
    if low is not None and high is not None and not low < high:
        raise ValueError(f"the time window is empty: since ({since}) is not before until ({until})")
    m = t.notna().to_numpy()
    if low is not None:
        m &= (t >= low).to_numpy()
    if high is not None:
        m &= (t < high).to_numpy()
    if not m.any():
        raise ValueError(f"no row of time column {name!r} is in the window [{since if since is not None else '…'}, "
                         f"{until if until is not None else '…'}): its {kind} run {_span(t)}")
    return m


def _span(t: pd.Series) -> str:
    shown = t.dropna()
    if shown.empty:
        return "empty"
    low, high = shown.min(), shown.max()
    if isinstance(low, pd.Timestamp):
        return f"from {low.isoformat()} to {high.isoformat()}"
    return f"from {low:g} to {high:g}"


def _need(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"unknown column(s) {missing}; columns: {', '.join(map(str, df.columns))}")


def _selected(df: pd.DataFrame, rows: Rows | None) -> np.ndarray:
    m = np.ones(len(df), dtype=bool) if rows is None else rows.mask(df)
    idx = np.flatnonzero(m)
    if len(idx) == 0:
        raise ValueError("no rows selected: check the row range, block values or time window")
    return idx


def _share(share: float) -> float:
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    return share


def _pick(rng: np.random.Generator, idx: np.ndarray, share: float) -> np.ndarray:
    k = max(1, round(_share(share) * len(idx)))
    return np.sort(rng.choice(idx, size=min(k, len(idx)), replace=False))


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _put(out: pd.DataFrame, column: str, positions: np.ndarray, values) -> None:
    """Assign values at positions, keeping an integer column integer when the values allow it."""
    s = out[column]
    values = np.asarray(values)
    if pd.api.types.is_integer_dtype(s) and values.dtype.kind == "f":
        if np.isnan(values).any():
            out[column] = s.astype(float)
        else:
            values = np.round(values).astype(s.dtype)
    out.iloc[positions, out.columns.get_loc(column)] = values


def _weights(kind: str, m: int, rng: np.random.Generator, period: int | None) -> np.ndarray:
    """Strength in [0, 1] of the drift for each of the m selected rows, in order."""
    if kind == "abrupt":
        return np.ones(m)
    ramp = np.arange(1, m + 1) / m
    if kind == "incremental":
        return ramp
    if kind == "gradual":
        return (rng.random(m) < ramp).astype(float)
    if kind == "recurrent":
        period = period or max(1, m // 4)
        return ((np.arange(m) // period) % 2 == 0).astype(float)
    raise ValueError(f"unknown feature drift kind {kind!r}; valid kinds: {', '.join(FEATURE_DRIFT_KINDS)}")


def feature_drift(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    kind: str = "abrupt",
    shift: float = 1.0,
    scale: float = 1.0,
    rows: Rows | None = None,
    period: int | None = None,
    category: object = None,
    share: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Move the distribution of ``columns`` in the chosen rows.

    Numeric columns: ``x -> mean + (x - mean) * scale + shift * std`` (mean and std of the column over
    all rows; a constant column uses std 1). Categorical columns: a share ``share`` of rows takes the
    value ``category`` (by default the rarest one). ``kind`` spreads it over the selected rows in order:
    ``abrupt`` (all at full strength), ``incremental`` (strength grows linearly from 0 to 1),
    ``gradual`` (each row is fully drifted with a probability growing linearly from 0 to 1),
    ``recurrent`` (on for ``period`` rows, off for ``period`` rows, …).
    """
    _need(df, columns)
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    w = _weights(kind, len(idx), rng, period)
    out = df.copy()
    for column in columns:
        s = df[column]
        if _is_numeric(s):
            x = s.to_numpy(dtype=float)
            mean, std = float(np.nanmean(x)), float(np.nanstd(x))
            std = std if std > 0 else 1.0
            xs = x[idx]
            new = mean + (xs - mean) * (1 + w * (scale - 1)) + w * shift * std
            if shift == 0 and scale == 1:
                raise ValueError("feature drift with shift=0 and scale=1 changes nothing")
            _put(out, column, idx, new)
        else:
            counts = s.value_counts()
            if len(counts) == 0:
                raise ValueError(f"column {column!r} has no values")
            cat = counts.index[-1] if category is None else category
            hit = rng.random(len(idx)) < w * _share(share)
            hit &= (s.iloc[idx] != cat).to_numpy()
            if isinstance(s.dtype, pd.CategoricalDtype) and cat not in s.cat.categories:
                out[column] = out[column].cat.add_categories([cat])
            out.iloc[idx[hit], out.columns.get_loc(column)] = cat
    return out


def _as_label(s: pd.Series, value):
    """``value`` as one of the labels of ``s`` when only its spelling differs (e.g. "1" for 1)."""
    if value is None or (s == value).any():
        return value
    for label in pd.unique(s.dropna()):
        if str(label) == str(value):
            return label
    return value


def _is_regression(s: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(s) and s.nunique() > 20


def label_drift(
    df: pd.DataFrame,
    target: str,
    *,
    share: float = 0.2,
    to_class: object = None,
    from_class: object = None,
    shift: float = 1.0,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Change the target alone, ignoring the inputs.

    Classification: a share ``share`` of the chosen rows (of class ``from_class`` if given) is relabelled
    ``to_class`` (by default a random other class), so P(y) and P(y | x) change while the inputs stay.
    Regression (a float target with many values): the target moves by ``shift`` standard deviations.
    """
    _need(df, [target])
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    out = df.copy()
    s = df[target]
    if _is_regression(s):
        std = float(s.std()) or 1.0
        _put(out, target, idx, s.to_numpy(dtype=float)[idx] + shift * std)
        return out
    classes = list(pd.unique(s.dropna()))
    to_class, from_class = _as_label(s, to_class), _as_label(s, from_class)
    if len(classes) < 2 and to_class is None:
        raise ValueError("label drift needs two classes or an explicit to_class")
    if from_class is not None:
        idx = idx[(s.iloc[idx] == from_class).to_numpy()]
    if to_class is not None:
        idx = idx[(s.iloc[idx] != to_class).to_numpy()]
    if len(idx) == 0:
        raise ValueError("label drift: no row of the chosen class in the chosen rows")
    chosen = _pick(rng, idx, share)
    if to_class is not None:
        new = [to_class] * len(chosen)
    else:
        new = [rng.choice([c for c in classes if c != s.iloc[i]]) for i in chosen]
    out.iloc[chosen, out.columns.get_loc(target)] = np.asarray(new, dtype=object) if s.dtype == object else new
    return out


def label_shift(
    df: pd.DataFrame,
    target: str,
    priors: Mapping,
    *,
    rows: Rows | None = None,
    keep: Sequence[str] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """Change the class priors in the chosen rows to ``priors`` (shares adding up to 1) while P(x | y) stays the same.

    The chosen rows are replaced by whole rows resampled (with replacement) from the same class, first
    among the chosen rows, else among all rows; class counts follow ``priors``. The resampled rows keep the
    order of their original positions, so a time or block column stays in order. Columns in ``keep``, and
    the block/time columns of ``rows``, stay in place: their values do not change at all.
    """
    _need(df, [target, *keep])
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    s = df[target]
    p = {_as_label(s, k): float(v) for k, v in priors.items()}
    unknown = [k for k in p if not (s == k).any()]
    if unknown:
        raise ValueError(f"class(es) {unknown} not in {target!r}; classes: {sorted(s.dropna().unique().tolist(), key=str)}")
    if any(v < 0 for v in p.values()):
        raise ValueError(f"priors must be >= 0, got {priors}")
    if abs(sum(p.values()) - 1) > 1e-6:  # not rescaled, as class_balance is not
        raise ValueError(f"priors must add up to 1; {priors} add up to {sum(p.values()):g}")
    m = len(idx)
    exact = {k: v * m for k, v in p.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: m - sum(counts.values())]:
        counts[k] += 1
    source = []
    sel_target = s.iloc[idx].to_numpy()
    for k, n in counts.items():
        pool = idx[sel_target == k]
        if len(pool) == 0:
            pool = np.flatnonzero((s == k).to_numpy())
        source.append(rng.choice(pool, size=n, replace=True))
    source = np.sort(np.concatenate(source))  # in the rows' order: the timeline stays
    fixed = set(keep) | {c for c in ((rows.column, rows.time_column) if rows else ()) if c}
    cols = [c for c in df.columns if c not in fixed]
    out = df.copy()
    col_pos = [out.columns.get_loc(c) for c in cols]
    out.iloc[idx, col_pos] = df.iloc[source, col_pos].to_numpy()
    return out.astype(df.dtypes.to_dict())


def concept_drift(
    df: pd.DataFrame,
    target: str,
    *,
    condition: str | Callable[[pd.DataFrame], np.ndarray] | None = None,
    share: float = 1.0,
    mapping: Mapping | None = None,
    shift: float = 1.0,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Change P(y | x) where ``condition`` holds: the inputs stay, the labels there change.

    ``condition`` is a formula over the columns (see :mod:`calmops.generators.dynamics`), e.g.
    ``"age > 60 and income < 30000"``, or a function of the DataFrame returning a boolean mask; ``None``
    means every chosen row. A share ``share`` of those rows gets ``mapping[label]`` (binary default: the
    other class; multiclass default: the next class in sorted order). A regression target moves by
    ``shift`` standard deviations instead.
    """
    _need(df, [target])
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    if condition is not None:
        cond = condition(df) if callable(condition) else evaluate(condition, df)
        cond = np.asarray(cond, dtype=bool)
        idx = idx[cond[idx]]
        if len(idx) == 0:
            raise ValueError(f"no chosen row satisfies the condition {condition!r}")
    out = df.copy()
    s = df[target]
    chosen = _pick(rng, idx, share)
    if _is_regression(s):
        std = float(s.std()) or 1.0
        _put(out, target, chosen, s.to_numpy(dtype=float)[chosen] + shift * std)
        return out
    classes = sorted(pd.unique(s.dropna()), key=str)
    if mapping is None:
        if len(classes) < 2:
            raise ValueError("concept drift needs two classes or a mapping")
        mapping = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
    mapping = {_as_label(s, k): _as_label(s, v) for k, v in mapping.items()}
    new = [mapping.get(v, v) for v in s.iloc[chosen]]
    out.iloc[chosen, out.columns.get_loc(target)] = new
    return out


def _normal_scores(x: np.ndarray) -> np.ndarray:
    r = stats.rankdata(x)
    return stats.norm.ppf(r / (len(x) + 1))


def correlation_change(
    df: pd.DataFrame,
    column_a: str,
    column_b: str,
    *,
    target: float,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Set the Pearson correlation of ``column_a`` and ``column_b`` in the chosen rows to about ``target``.

    ``column_a`` is untouched; the values of ``column_b`` are re-ordered among the chosen rows (so its
    marginal distribution is exactly kept) along a Gaussian-copula score that mixes ``column_a`` with
    the part of ``column_b`` independent of it. Every other column is untouched.
    """
    _need(df, [column_a, column_b])
    if not -1 < target < 1:
        raise ValueError(f"target correlation must be in (-1, 1), got {target}")
    if not (_is_numeric(df[column_a]) and _is_numeric(df[column_b])):
        raise ValueError("correlation change needs two numeric columns")
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    a = df[column_a].to_numpy(dtype=float)[idx]
    b = df[column_b].to_numpy(dtype=float)[idx]
    ok = ~(np.isnan(a) | np.isnan(b))
    idx, a, b = idx[ok], a[ok], b[ok]
    if len(idx) < 3:
        raise ValueError("correlation change needs at least 3 chosen rows with both values")
    za = _normal_scores(a)  # ties keep their average rank
    zb = _normal_scores(b)
    za = (za - za.mean()) / za.std()
    beta = float(np.mean(za * (zb - zb.mean())))
    resid = zb - zb.mean() - beta * za
    if resid.std() == 0:
        resid = rng.normal(size=len(za))
    resid = (resid - resid.mean()) / resid.std()
    sorted_b = np.sort(b)

    def build(rho: float) -> np.ndarray:
        score = rho * za + np.sqrt(1 - rho**2) * resid
        new = np.empty_like(b)
        new[np.argsort(score, kind="stable")] = sorted_b
        return new

    lo, hi = -0.9999, 0.9999
    for _ in range(40):  # Pearson(a, b') grows with rho: bisect
        mid = (lo + hi) / 2
        if np.corrcoef(a, build(mid))[0, 1] < target:
            lo = mid
        else:
            hi = mid
    out = df.copy()
    _put(out, column_b, idx, build((lo + hi) / 2))
    return out


def new_categories(
    df: pd.DataFrame,
    column: str,
    *,
    categories: Sequence = ("NEW",),
    share: float = 0.1,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Give a share of the chosen rows of ``column`` categories never seen in it (one column; a list of one, as
    the other functions take, will do)."""
    if not isinstance(column, str) and isinstance(column, Sequence):
        if len(column) != 1:
            raise ValueError(f"new_categories changes one column; got {list(column)}: call it once per column")
        [column] = column
    _need(df, [column])
    rng = np.random.default_rng(seed)
    seen = set(df[column].dropna().astype(str))
    clash = [c for c in categories if str(c) in seen]
    if not categories or clash:
        raise ValueError(f"new categories must be absent from {column!r}; already present: {clash}")
    idx = _selected(df, rows)
    chosen = _pick(rng, idx, share)
    out = df.copy()
    s = out[column]
    if isinstance(s.dtype, pd.CategoricalDtype):
        out[column] = s.cat.add_categories(list(categories))
    elif _is_numeric(s) and not all(isinstance(c, (int, float, np.number)) for c in categories):
        out[column] = s.astype(object)
    values = rng.choice(np.asarray(list(categories), dtype=object), size=len(chosen))
    out.iloc[chosen, out.columns.get_loc(column)] = values
    return out


def outliers(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    share: float = 0.05,
    magnitude: float = 6.0,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Replace a share of the chosen values of numeric ``columns`` by values ``magnitude`` to
    ``1.5 * magnitude`` standard deviations away from the median (random side)."""
    _need(df, columns)
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    out = df.copy()
    for column in columns:
        s = df[column]
        if not _is_numeric(s):
            raise ValueError(f"outliers need a numeric column; {column!r} is {s.dtype}")
        x = s.to_numpy(dtype=float)
        med, std = float(np.nanmedian(x)), float(np.nanstd(x)) or 1.0
        chosen = _pick(rng, idx, share)
        sign = rng.choice([-1.0, 1.0], size=len(chosen))
        _put(out, column, chosen, med + sign * magnitude * std * rng.uniform(1.0, 1.5, len(chosen)))
    return out


def missing_values(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    share: float = 0.1,
    rows: Rows | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Blank a share of the chosen values of ``columns`` (missing completely at random). Integer
    columns become float, as pandas stores missing numbers."""
    _need(df, columns)
    rng = np.random.default_rng(seed)
    idx = _selected(df, rows)
    out = df.copy()
    for column in columns:
        chosen = _pick(rng, idx, share)
        if pd.api.types.is_integer_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype(float if _is_numeric(out[column]) else object)
        out.iloc[chosen, out.columns.get_loc(column)] = None
    return out


#: Injection methods by name (the CLI's ``--method``).
INJECTORS: dict[str, Callable[..., pd.DataFrame]] = {
    "feature_drift": feature_drift,
    "label_drift": label_drift,
    "label_shift": label_shift,
    "concept_drift": concept_drift,
    "correlation_change": correlation_change,
    "new_categories": new_categories,
    "outliers": outliers,
    "missing_values": missing_values,
}
