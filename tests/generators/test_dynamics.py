"""Dynamics: the safe formula evaluator, components over time, targets, projection."""

import numpy as np
import pandas as pd
import pytest

from calmops.generators.dynamics import (
    Cycle,
    FormulaError,
    Sigmoid,
    Trend,
    apply_dynamics,
    evaluate,
    project,
    target_from_formula,
)

DF = pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [0.0, 1.0, 2.0], "color": ["red", "blue", "red"],
                   "my col": [1.0, 1.0, 1.0]})


def test_formulas_compute_elementwise():
    np.testing.assert_allclose(evaluate("a ** 2 + 3 * b - 1", DF), [0.0, 6.0, 21.0])
    np.testing.assert_allclose(evaluate("where(a > 1.5, log(a), sqrt(b))", DF), [0.0, np.log(2), np.log(4)])
    assert evaluate("(a > 1) and color == 'red'", DF).tolist() == [False, False, True]
    assert evaluate("not (b < 1) or a == 1", DF).tolist() == [True, True, True]
    np.testing.assert_allclose(evaluate('col("my col") * pi', DF), [np.pi] * 3)
    assert evaluate("2", DF).tolist() == [2, 2, 2]


@pytest.mark.parametrize("bad", [
    "__import__('os')",
    "__import__('os').system('echo hacked')",
    "a.__class__",
    "(lambda: 1)()",
    "[a][0]",
    "open('/etc/passwd')",
    "eval('1')",
    "exp(a, out=a)",
    "a if b else 1",
    "globals",
    "2 ** 1000",
    "a; b",
])
def test_formula_evaluator_refuses_code(bad):
    with pytest.raises(FormulaError):
        evaluate(bad, DF)


def test_components():
    t = np.arange(5.0)
    np.testing.assert_allclose(Trend(2)(t), [0, 2, 4, 6, 8])
    np.testing.assert_allclose(Cycle(period=4, amplitude=3)(t), [0, 3, 0, -3, 0], atol=1e-12)
    s = Sigmoid(midpoint=2, height=10, steepness=5)(t)
    assert s[2] == pytest.approx(5) and s[0] < 0.1 and s[4] > 9.9
    df = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=3, freq="D"), "x": [1.0, 1.0, 1.0]})
    assert apply_dynamics(df, "x", [Trend(0.5)], time_column="when")["x"].tolist() == [1.0, 1.5, 2.0]
    assert apply_dynamics(df, "x", [Trend(1.0)], multiplicative=True)["x"].tolist() == [1.0, 2.0, 3.0]


def test_target_from_formula():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=2000)})
    reg = target_from_formula(df, "3 * x + 1", noise=0.1, seed=1)
    assert np.corrcoef(reg["x"], reg["y"])[0, 1] > 0.99
    binary = target_from_formula(df, "x", kind="binary", name="label")
    assert binary["label"].tolist() == (df["x"] > 0).astype(int).tolist()
    logistic = target_from_formula(df, "4 * x", kind="logistic", seed=2)
    assert logistic.loc[df["x"] > 1, "y"].mean() > 0.9 and logistic.loc[df["x"] < -1, "y"].mean() < 0.1
    pd.testing.assert_frame_equal(logistic, target_from_formula(df, "4 * x", kind="logistic", seed=2))


def test_project_continues_the_dynamics():
    months = pd.date_range("2024-01-01", periods=6, freq="MS")
    df = pd.DataFrame({"month": np.repeat(months, 50), "x": np.tile(np.linspace(0, 1, 50), 6)})
    df = apply_dynamics(df, "x", [Trend(0.1)], time_column="month", unit="D")
    future = project(df, 3, time_column="month", dynamics={"x": [Trend(0.1)]}, target=("y", "2 * x"), seed=0)
    assert sorted(future["month"].unique()) == list(pd.date_range("2024-07-01", periods=3, freq="MS"))
    last_mean = df.loc[df["month"] == months[-1], "x"].mean()
    means = future.groupby("month")["x"].mean().to_numpy()
    days = np.array([30, 61, 92])  # July, August, September after June 1st
    np.testing.assert_allclose(means - last_mean, 0.1 * days, atol=0.15)
    np.testing.assert_allclose(future["y"], 2 * future["x"])


def test_a_time_column_of_text_is_refused_with_what_to_do():
    from calmops.generators import Trend, apply_dynamics, project

    df = pd.DataFrame({"month": ["2023-01", "2023-02", "2023-03"] * 2, "demand": [1.0, 2.0, 3.0] * 2})
    for call in (lambda: project(df, 6, time_column="month", dynamics={"demand": [Trend(0.02)]}),
                 lambda: apply_dynamics(df, "demand", [Trend(0.02)], time_column="month")):
        with pytest.raises(ValueError, match=r"time column 'month' must hold dates or numbers, not text such as "
                                             r"'2023-01': convert it first, e.g. df\['month'\] = pd.to_datetime"):
            call()
    df["month"] = pd.to_datetime(df["month"])  # what the message says to do
    assert project(df, 2, time_column="month")["month"].max() == pd.Timestamp("2023-05-01")
