"""Scenario dynamics: trends, cycles and sigmoids over time, targets from formulas, projection ahead.

Formulas are evaluated by walking a whitelisted Python syntax tree: column names, numbers, strings (for
comparisons), arithmetic (``+ - * / // % **``), comparisons, ``and``/``or``/``not`` (element-wise), and the
functions in :data:`FUNCTIONS`. Attribute access, subscripts, lambdas, keywords and any other name are
refused, so a formula can never run arbitrary code.

>>> import pandas as pd
>>> df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
>>> evaluate("2 * a + exp(b) - 1", df).round(3).tolist()
[2.0, 5.718, 6.0]
>>> evaluate("__import__('os')", df)
Traceback (most recent call last):
...
calmops.generators.dynamics.FormulaError: function '__import__' is not allowed; allowed: abs, arctan, ceil, clip, cos, exp, floor, log, log10, log1p, log2, maximum, minimum, round, sigmoid, sign, sin, sqrt, tan, tanh, where
>>> Trend(slope=0.5)(np.arange(3)).tolist()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "FUNCTIONS",
    "Cycle",
    "FormulaError",
    "Sigmoid",
    "Trend",
    "apply_dynamics",
    "evaluate",
    "project",
    "target_from_formula",
    "time_index",
]


class FormulaError(ValueError):
    """A formula uses something outside the whitelist, or a column that does not exist."""


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


#: Functions a formula may call.
FUNCTIONS = {
    "abs": np.abs,
    "arctan": np.arctan,
    "ceil": np.ceil,
    "clip": np.clip,
    "cos": np.cos,
    "exp": np.exp,
    "floor": np.floor,
    "log": np.log,
    "log10": np.log10,
    "log1p": np.log1p,
    "log2": np.log2,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "round": np.round,
    "sigmoid": _sigmoid,
    "sign": np.sign,
    "sin": np.sin,
    "sqrt": np.sqrt,
    "tan": np.tan,
    "tanh": np.tanh,
    "where": np.where,
}
_CONSTANTS = {"pi": np.pi, "e": np.e}
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_MAX_LEN = 2000
_MAX_NODES = 400      # operations in one formula
_MAX_DEPTH = 100      # nesting of operations (parentheses, unary minus chains, calls)
_MAX_INT_BITS = 256   # a whole number in a formula never grows past this (10**77 or so)
_MAX_TEXT = 1000      # characters of a text value


def evaluate(formula: str, df: pd.DataFrame | Mapping) -> np.ndarray:
    """Evaluate ``formula`` over the columns of ``df`` (element-wise); returns a numpy array.

    A column whose name is not an identifier can be read with ``col("my column")``. The formula runs under
    limits (length, operation count, nesting depth, size of whole numbers, no arithmetic on text), so a
    formula such as ``9**9**9`` or ``'a' * 10**10`` is refused at once with a one-line :class:`FormulaError`;
    anything else that goes wrong while computing is reported the same way, never as a traceback.

    >>> evaluate("9**9**9", {"x": [1.0]})
    Traceback (most recent call last):
    ...
    calmops.generators.dynamics.FormulaError: exponents above 100 are not allowed
    """
    if not isinstance(formula, str) or not formula.strip():
        raise FormulaError("empty formula")
    if len(formula) > _MAX_LEN:
        raise FormulaError(f"formula longer than {_MAX_LEN} characters")
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"invalid formula {formula[:80]!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError("invalid formula: nested too deeply") from None
    _check_shape(tree.body)
    n = len(df) if isinstance(df, pd.DataFrame) else None
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(_Eval(df).visit(tree.body))
    except FormulaError:
        raise
    except (ArithmeticError, ValueError, TypeError, MemoryError, RecursionError, IndexError, KeyError) as exc:
        message = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FormulaError(f"formula {formula[:80]!r} cannot be computed: {message}") from None
    if n is not None and out.ndim == 0:
        out = np.full(n, out.item())
    return out


def _check_shape(root: ast.AST) -> None:
    """Refuse formulas with too many operations or nested too deeply, before computing anything."""
    count = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > _MAX_NODES:
            raise FormulaError(f"formula has more than {_MAX_NODES} operations")
        if depth > _MAX_DEPTH:
            raise FormulaError(f"formula is nested more than {_MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _bounded(value):
    """Whole numbers and text stay small: a result past the limits is refused, not computed further."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        raise FormulaError(f"a whole number in the formula exceeds {_MAX_INT_BITS} bits; use a decimal (1e100)")
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        raise FormulaError(f"text longer than {_MAX_TEXT} characters")
    return value


def _arithmetic(op: ast.operator, left, right):
    if isinstance(left, str) or isinstance(right, str):
        raise FormulaError("arithmetic on text is not allowed (text is for comparisons and where())")
    for side in (left, right):
        if isinstance(side, np.ndarray) and side.dtype.kind in "OUS":
            raise FormulaError("arithmetic on text columns is not allowed")
    if isinstance(op, ast.Pow):
        if np.max(np.abs(np.asarray(right, dtype=float))) > 100:
            raise FormulaError("exponents above 100 are not allowed")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() * max(right, 0) > _MAX_INT_BITS:
            raise FormulaError(f"a whole number in the formula exceeds {_MAX_INT_BITS} bits; "
                               "use a decimal (e.g. 9.0**99)")
    return _bounded(_BINOPS[type(op)](left, right))


class _Eval:
    def __init__(self, data):
        self.data = data

    def column(self, name: str):
        if name not in self.data:
            cols = ", ".join(map(str, list(self.data.keys() if isinstance(self.data, Mapping) else
                                           self.data.columns)))
            raise FormulaError(f"unknown name {name!r}; columns: {cols}")
        return np.asarray(self.data[name])

    def visit(self, node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise FormulaError(f"constant {str(node.value)[:40]!r} is not allowed")
            return _bounded(node.value)
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS and node.id not in self.data:
                return _CONSTANTS[node.id]
            return self.column(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _arithmetic(node.op, self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp):
            v = self.visit(node.operand)
            if isinstance(node.op, (ast.USub, ast.UAdd)) and (
                    isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype.kind in "OUS")):
                raise FormulaError("arithmetic on text is not allowed")
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return +v
            if isinstance(node.op, ast.Not):
                return np.logical_not(v)
        if isinstance(node, ast.BoolOp):
            vals = [np.asarray(self.visit(v), dtype=bool) for v in node.values]
            fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = vals[0]
            for v in vals[1:]:
                out = fn(out, v)
            return out
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            result = None
            for op, comp in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _CMPOPS:
                    raise FormulaError(f"comparison {type(op).__name__} is not allowed")
                right = self.visit(comp)
                r = _CMPOPS[type(op)](left, right)
                result = r if result is None else np.logical_and(result, r)
                left = right
            return result
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise FormulaError("only plain function calls such as exp(x) are allowed")
            if node.keywords:
                raise FormulaError("keyword arguments are not allowed")
            name = node.func.id
            if name == "col":
                if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant) or not isinstance(
                    node.args[0].value, str
                ):
                    raise FormulaError('col() takes one column name, e.g. col("my column")')
                return self.column(node.args[0].value)
            if name not in FUNCTIONS:
                raise FormulaError(f"function {name!r} is not allowed; allowed: {', '.join(sorted(FUNCTIONS))}")
            return FUNCTIONS[name](*[self.visit(a) for a in node.args])
        raise FormulaError(f"{type(node).__name__} is not allowed in a formula")


# --- components over time ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """``slope * t`` (linear trend per time unit)."""

    slope: float

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(t, dtype=float)


@dataclass(frozen=True)
class Cycle:
    """``amplitude * sin(2π (t - phase) / period)`` (seasonality)."""

    period: float
    amplitude: float = 1.0
    phase: float = 0.0

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return self.amplitude * np.sin(2 * np.pi * (t - self.phase) / self.period)


@dataclass(frozen=True)
class Sigmoid:
    """A smooth step of ``height`` centred at ``midpoint``; ``steepness`` per time unit."""

    midpoint: float
    height: float = 1.0
    steepness: float = 1.0

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return self.height * _sigmoid(self.steepness * (t - self.midpoint))


def _time_values(df: pd.DataFrame, time_column: str) -> pd.Series:
    """The time column, datetime or numeric; anything else (e.g. months written as '2023-01') is refused with
    what to do."""
    if time_column not in df.columns:
        raise ValueError(f"time column {time_column!r} is not a column of the data ({', '.join(map(str, df.columns[:10]))})")
    s = df[time_column]
    if not (pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_numeric_dtype(s)):
        example = s.dropna().iloc[0] if s.notna().any() else None
        raise ValueError(f"time column {time_column!r} must hold dates or numbers, not text such as {example!r}: "
                         f"convert it first, e.g. df[{time_column!r}] = pd.to_datetime(df[{time_column!r}])")
    return s


def time_index(df: pd.DataFrame, time_column: str | None = None, unit: str = "D") -> np.ndarray:
    """Time of each row as a float: row number, a numeric column, or a datetime column in ``unit``
    (days by default) since its first value."""
    if time_column is None:
        return np.arange(len(df), dtype=float)
    s = _time_values(df, time_column)
    if pd.api.types.is_datetime64_any_dtype(s):
        return ((s - s.min()) / pd.Timedelta(1, unit=unit)).to_numpy(dtype=float)
    return s.to_numpy(dtype=float)


def apply_dynamics(
    df: pd.DataFrame,
    column: str,
    components: Sequence,
    *,
    time_column: str | None = None,
    unit: str = "D",
    multiplicative: bool = False,
) -> pd.DataFrame:
    """Add (or, with ``multiplicative``, multiply by ``1 + …``) the sum of ``components`` evaluated at
    each row's time to ``column``; returns a new DataFrame.

    >>> df = pd.DataFrame({"x": [10.0, 10.0, 10.0]})
    >>> apply_dynamics(df, "x", [Trend(1.0)])["x"].tolist()
    [10.0, 11.0, 12.0]
    """
    t = time_index(df, time_column, unit)
    total = np.zeros(len(df))
    for comp in components:
        total = total + comp(t)
    out = df.copy()
    base = out[column].to_numpy(dtype=float)
    out[column] = base * (1 + total) if multiplicative else base + total
    return out


def target_from_formula(
    df: pd.DataFrame,
    formula: str,
    *,
    name: str = "y",
    kind: str = "regression",
    noise: float = 0.0,
    threshold: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Add a target computed from a formula over the columns.

    ``kind="regression"``: the value plus Gaussian noise of standard deviation ``noise``.
    ``kind="binary"``: 1 where value + noise > ``threshold``. ``kind="logistic"``: 1 with probability
    ``sigmoid(value)`` (seeded).

    >>> df = pd.DataFrame({"a": [-2.0, 0.5, 3.0]})
    >>> target_from_formula(df, "a * 2", kind="binary")["y"].tolist()
    [0, 1, 1]
    """
    rng = np.random.default_rng(seed)
    value = np.asarray(evaluate(formula, df), dtype=float)
    out = df.copy()
    if kind == "regression":
        out[name] = value + (rng.normal(0, noise, len(df)) if noise else 0.0)
    elif kind == "binary":
        out[name] = ((value + (rng.normal(0, noise, len(df)) if noise else 0.0)) > threshold).astype(int)
    elif kind == "logistic":
        out[name] = (rng.random(len(df)) < _sigmoid(value)).astype(int)
    else:
        raise ValueError(f"kind must be regression, binary or logistic; got {kind!r}")
    return out


def project(
    df: pd.DataFrame,
    periods: int,
    *,
    time_column: str,
    freq: str | None = None,
    rows_per_period: int | None = None,
    dynamics: Mapping[str, Sequence] | None = None,
    target: tuple[str, str] | None = None,
    unit: str = "D",
    seed: int = 0,
) -> pd.DataFrame:
    """Project ``df`` ``periods`` periods ahead.

    Each future period holds rows bootstrapped from the last observed period (``rows_per_period`` of
    them, by default as many as that period has). The components in ``dynamics`` (``{column: [Trend(…),
    …]}``) are evaluated at the future times and added to the resampled values, minus their value at
    the last observed time, so the projection continues the given dynamics from where the data ends.
    ``target=(name, formula)`` recomputes the target from the projected columns. Datetime time columns
    step by ``freq`` (inferred when possible); numeric ones by 1.
    """
    if periods < 1:
        raise ValueError(f"periods must be >= 1, got {periods}")
    rng = np.random.default_rng(seed)
    times = pd.Series(_time_values(df, time_column).unique()).sort_values()
    last = times.iloc[-1]
    last_rows = df[df[time_column] == last]
    n = rows_per_period or len(last_rows)
    is_dt = pd.api.types.is_datetime64_any_dtype(df[time_column])
    if is_dt:
        if freq is None and len(times) >= 3:
            freq = pd.infer_freq(pd.DatetimeIndex(times))
        if freq is None:
            raise ValueError("cannot infer the period of the time column; give freq, e.g. 'MS' or '1D'")
        future_times = pd.date_range(last, periods=periods + 1, freq=freq)[1:]
        t0 = times.iloc[0]
        as_t = lambda v: (v - t0) / pd.Timedelta(1, unit=unit)
    else:
        step = float(np.median(np.diff(times.to_numpy(dtype=float)))) if len(times) > 1 else 1.0
        future_times = [last + step * (k + 1) for k in range(periods)]
        as_t = float
    parts = []
    for ft in future_times:
        part = last_rows.iloc[rng.integers(0, len(last_rows), n)].copy()
        part[time_column] = ft
        for column, comps in (dynamics or {}).items():
            delta = sum(c(np.array([as_t(ft)])) - c(np.array([as_t(last)])) for c in comps)
            part[column] = part[column].astype(float) + float(np.asarray(delta).ravel()[0])
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if target is not None:
        name, formula = target
        out[name] = evaluate(formula, out)
    return out
