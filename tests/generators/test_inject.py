"""Drift injection: every method measurably changes what it names, in the chosen rows, and nothing else."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calmops.generators.inject import (
    Rows,
    concept_drift,
    correlation_change,
    feature_drift,
    label_drift,
    label_shift,
    missing_values,
    new_categories,
    outliers,
)

N = 2000


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    x1 = rng.normal(10, 2, N)
    x2 = 0.6 * (x1 - 10) / 2 + 0.8 * rng.normal(size=N)
    x3 = rng.normal(size=N) + 0.5 * (x1 - 10) / 2
    x4 = rng.normal(size=N)
    y = (rng.random(N) < 1 / (1 + np.exp(-(x1 - 10)))).astype(int)
    return pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=N, freq="h"),
        "block": np.repeat(np.arange(1, 5), N // 4),
        "x1": x1, "x2": x2, "x3": x3, "x4": x4,
        "count": rng.integers(0, 50, N),
        "color": rng.choice(["red", "green", "blue"], N, p=[0.5, 0.3, 0.2]),
        "y": y,
    })


def assert_only(before, after, columns, rows=None):
    """Columns not named are identical; named ones are identical outside ``rows`` (positions)."""
    others = [c for c in before.columns if c not in columns]
    pd.testing.assert_frame_equal(before[others], after[others])
    if rows is not None:
        outside = np.setdiff1d(np.arange(len(before)), rows)
        pd.testing.assert_frame_equal(before[columns].iloc[outside].astype(object),
                                      after[columns].iloc[outside].astype(object))


def test_abrupt_feature_drift(df):
    out = feature_drift(df, ["x1"], shift=1.5, rows=Rows(start=1000))
    assert_only(df, out, ["x1"], rows=np.arange(1000, N))
    std = df["x1"].std(ddof=0)
    np.testing.assert_allclose(out["x1"].iloc[1000:] - df["x1"].iloc[1000:], 1.5 * std)
    assert stats.ks_2samp(out["x1"].iloc[:1000], out["x1"].iloc[1000:]).pvalue < 1e-10


def test_gradual_feature_drift_mixes_old_and_new(df):
    out = feature_drift(df, ["x4"], kind="gradual", shift=3.0)
    moved = ~np.isclose(out["x4"], df["x4"])
    assert_only(df, out, ["x4"])
    shares = [moved[a:a + 500].mean() for a in range(0, N, 500)]
    expected = [np.mean(np.arange(a + 1, a + 501) / N) for a in range(0, N, 500)]
    np.testing.assert_allclose(shares, expected, atol=0.07)
    delta = (out["x4"] - df["x4"])[moved]
    np.testing.assert_allclose(delta, 3.0 * df["x4"].std(ddof=0))  # each drifted row fully drifted


def test_incremental_feature_drift_moves_steadily(df):
    out = feature_drift(df, ["x1"], kind="incremental", shift=2.0, rows=Rows(column="block", values=[3, 4]))
    assert_only(df, out, ["x1"], rows=np.arange(1000, N))
    delta = (out["x1"] - df["x1"]).to_numpy()[1000:]
    assert (np.diff(delta) > 0).all()
    assert delta[-1] == pytest.approx(2.0 * df["x1"].std(ddof=0))


def test_recurrent_feature_drift_switches_on_and_off(df):
    out = feature_drift(df, ["x2"], kind="recurrent", shift=-1.0, scale=2.0, period=250)
    on = ~np.isclose(out["x2"], df["x2"])
    assert [bool(on[a:a + 250].all()) for a in range(0, N, 250)] == [True, False] * 4
    assert not on[250:500].any()
    assert out["x2"][on].std() > 1.8 * df["x2"][on].std()


def test_categorical_feature_drift(df):
    out = feature_drift(df, ["color"], share=0.6, category="blue")
    assert_only(df, out, ["color"])
    assert (out["color"] == "blue").mean() > (df["color"] == "blue").mean() + 0.3


def test_label_shift_changes_priors_not_class_conditionals(df):
    rows = Rows(time_column="when", since=df["when"].iloc[1000])
    out = label_shift(df, "y", {0: 0.85, 1: 0.15}, rows=rows, keep=["block"], seed=1)
    after = out.iloc[1000:]
    assert after["y"].mean() == pytest.approx(0.15, abs=1 / 1000)
    assert abs(df["y"].iloc[1000:].mean() - 0.15) > 0.2  # the priors really moved
    pd.testing.assert_frame_equal(out.iloc[:1000], df.iloc[:1000])
    assert out["when"].equals(df["when"]) and out["block"].equals(df["block"])  # timeline kept
    # every new row is an original row of the same class from the same period: P(x | y) unchanged
    features = ["x1", "x2", "x3", "x4", "count", "color", "y"]
    originals = set(map(tuple, df[features].iloc[1000:].itertuples(index=False)))
    assert all(tuple(r) in originals for r in after[features].itertuples(index=False))
    for cls in (0, 1):
        p = stats.ks_2samp(after.loc[after["y"] == cls, "x1"], df.iloc[1000:].query("y == @cls")["x1"]).pvalue
        assert p > 0.01


def test_label_shift_keeps_the_rows_in_their_order(df):
    """Without `keep`, the resampled rows come in the order of their original positions: the time and block
    columns, resampled with the rows, stay in order."""
    out = label_shift(df, "y", {0: 0.9, 1: 0.1}, seed=2)
    assert out["y"].mean() == pytest.approx(0.1, abs=1 / N)
    assert out["when"].is_monotonic_increasing and out["block"].is_monotonic_increasing
    rows = Rows(start=500, stop=1500)
    part = label_shift(df, "y", {0: 0.2, 1: 0.8}, rows=rows, seed=2)
    assert part["when"].is_monotonic_increasing
    pd.testing.assert_frame_equal(part.drop(index=range(500, 1500)), df.drop(index=range(500, 1500)))


@pytest.mark.parametrize("priors, total", [({0: 0.9, 1: 0.3}, "1.2"), ({0: 0.5, 1: 0.4}, "0.9"), ({0: 0, 1: 0}, "0")])
def test_label_shift_priors_must_add_up_to_1(df, priors, total):
    with pytest.raises(ValueError, match=rf"priors must add up to 1; .* add up to {total}$"):
        label_shift(df, "y", priors)
    near = label_shift(df, "y", {0: 0.1 + 0.2, 1: 0.7})  # 0.30000000000000004 + 0.7: within 1e-6 of 1
    assert near["y"].mean() == pytest.approx(0.7, abs=1 / N)


def test_label_shift_names_the_classes_as_the_column_holds_them(df):
    """A class the column does not hold is refused listing the classes as they are (numbers, not texts)."""
    with pytest.raises(ValueError, match=r"^class\(es\) \[2\] not in 'y'; classes: \[0, 1\]$"):
        label_shift(df, "y", {0: 0.5, 2: 0.5})


def test_label_drift_changes_only_the_label(df):
    out = label_drift(df, "y", share=0.3, to_class=1, rows=Rows(start=500, stop=1500))
    assert_only(df, out, ["y"], rows=np.arange(500, 1500))
    changed = out["y"] != df["y"]
    zeros = (df["y"].iloc[500:1500] == 0).sum()
    assert changed.sum() == round(0.3 * zeros) and (out["y"][changed] == 1).all()


def test_concept_drift_flips_labels_where_the_condition_holds(df):
    out = concept_drift(df, "y", condition="x1 > 11 and color == 'red'")
    assert_only(df, out, ["y"])
    region = (df["x1"] > 11) & (df["color"] == "red")
    assert (out["y"][region] == 1 - df["y"][region]).all()
    assert (out["y"][~region] == df["y"][~region]).all()
    partial = concept_drift(df, "y", condition=lambda d: d["x1"] < 9, share=0.5, seed=3)
    flipped = partial["y"] != df["y"]
    assert flipped.sum() == round(0.5 * (df["x1"] < 9).sum()) and (df["x1"][flipped] < 9).all()


def test_correlation_change_moves_the_pair_only(df):
    before = df[["x1", "x2", "x3", "x4"]].corr()
    out = correlation_change(df, "x1", "x2", target=-0.5, rows=Rows(start=1000))
    assert_only(df, out, ["x2"], rows=np.arange(1000, N))
    sel = out.iloc[1000:]
    assert np.corrcoef(sel["x1"], sel["x2"])[0, 1] == pytest.approx(-0.5, abs=0.02)
    assert np.corrcoef(df["x1"].iloc[1000:], df["x2"].iloc[1000:])[0, 1] > 0.4  # it really moved
    # x2's values are only re-ordered among the chosen rows: its marginal is exactly kept
    np.testing.assert_array_equal(np.sort(sel["x2"]), np.sort(df["x2"].iloc[1000:]))
    after = out[["x1", "x2", "x3", "x4"]].corr()
    for a, b in [("x1", "x3"), ("x1", "x4"), ("x3", "x4")]:
        assert after.loc[a, b] == pytest.approx(before.loc[a, b], abs=1e-12)
    # x2 and x4 were independent and stay so (the part of x2 independent of x1 is kept)
    assert abs(after.loc["x2", "x4"]) < 0.1


def test_new_categories_takes_a_list_of_one_column_as_the_other_functions_take_lists(df):
    """feature_drift, outliers and missing_values take a list of columns: new_categories takes one, and a list
    of one as well; a longer list is refused saying to call it once per column (not pandas' unhashable list)."""
    same = {"categories": ["purple"], "share": 0.2, "seed": 3}
    pd.testing.assert_frame_equal(new_categories(df, ["color"], **same), new_categories(df, "color", **same))
    with pytest.raises(ValueError, match=r"new_categories changes one column; got \['color', 'x1'\]: call it once"):
        new_categories(df, ["color", "x1"], **same)


def test_new_categories(df):
    out = new_categories(df, "color", categories=["purple", "teal"], share=0.2, rows=Rows(column="block", values=[4]))
    assert_only(df, out, ["color"], rows=np.arange(1500, N))
    new = out["color"].isin(["purple", "teal"])
    assert new.sum() == 100 and new.iloc[:1500].sum() == 0
    assert set(out["color"][new]) == {"purple", "teal"}
    with pytest.raises(ValueError, match="already present"):
        new_categories(df, "color", categories=["red"])


def test_outliers(df):
    out = outliers(df, ["x3", "count"], share=0.05, magnitude=6)
    assert_only(df, out, ["x3", "count"])
    for c in ("x3", "count"):
        changed = out[c] != df[c]
        assert changed.sum() == 100
        z = (out[c][changed] - df[c].median()).abs() / df[c].std(ddof=0)
        assert (z >= 5.9).all()
    assert out["count"].dtype == df["count"].dtype


def test_missing_values(df):
    out = missing_values(df, ["x1", "color", "count"], share=0.1, rows=Rows(start=0, stop=1000))
    assert_only(df, out, ["x1", "color", "count"], rows=np.arange(0, 1000))
    for c in ("x1", "color", "count"):
        assert out[c].isna().sum() == 100 and out[c].iloc[1000:].notna().all()
        kept = out[c].notna()
        assert (out[c][kept].astype(object) == df[c][kept].astype(object)).all()


def test_input_is_never_modified(df):
    copy = df.copy()
    feature_drift(df, ["x1"])
    label_shift(df, "y", {0: 0.5, 1: 0.5})
    missing_values(df, ["x1"])
    pd.testing.assert_frame_equal(df, copy)


def test_empty_selection_is_an_error(df):
    with pytest.raises(ValueError, match="no rows selected"):
        feature_drift(df, ["x1"], rows=Rows(column="block", values=[99]))
    with pytest.raises(ValueError, match="unknown column"):
        outliers(df, ["nope"])


def test_a_time_window_takes_blank_cells_as_missing_and_refuses_a_number_for_a_date_column():
    frame = pd.DataFrame({"t": ["2024-01-01", "", "2024-02-01", None], "x": [1.0, 2.0, 3.0, 4.0]})
    assert Rows(time_column="t", since="2024-01-15").mask(frame).tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="since 5 is a number, and time column 't' holds date-times"):
        Rows(time_column="t", since=5).mask(frame)  # not 5 ns after 1970
