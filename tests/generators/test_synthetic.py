"""Synthetic streams: each drift kind does what it says, seeded and reproducible."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calmops.generators.synthetic import GENERATORS, DriftSpec, Timestamps, synthetic

SEA_THRESHOLD = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}


def sea_label(df, variant):
    return (df["x0"] + df["x1"] > SEA_THRESHOLD[variant]).astype(int)


def test_abrupt_changes_the_concept_only_after_the_position():
    df = synthetic("sea", 4000, drift=DriftSpec("abrupt", position=2500, concepts=(0, 3)), seed=1)
    before, after = df.iloc[:2500], df.iloc[2500:]
    assert (before["y"] == sea_label(before, 0)).all()
    assert (after["y"] == sea_label(after, 3)).all()
    # The new concept really differs on the rows after the position …
    assert (after["y"] != sea_label(after, 0)).mean() > 0.05
    # … while the inputs keep their distribution.
    for c in ("x0", "x1", "x2"):
        assert stats.ks_2samp(before[c], after[c]).pvalue > 0.001


def test_abrupt_drift_position_in_blocks():
    df = synthetic("stagger", 1000, drift=DriftSpec("abrupt", position=3, unit="blocks", concepts=(0, 2)),
                   seed=2, block_column="block", rows_per_block=100, include_concept=True)
    assert df["block"].tolist() == [i // 100 + 1 for i in range(1000)]
    assert (df["concept"].iloc[:300] == 0).all() and (df["concept"].iloc[300:] == 2).all()


def test_gradual_share_of_new_concept_follows_the_sigmoid():
    n, pos, width = 20_000, 10_000, 4_000
    df = synthetic("sea", n, drift=DriftSpec("gradual", position=pos, width=width, concepts=(0, 1)),
                   seed=3, include_concept=True)
    i = np.arange(n)
    expected = 1 / (1 + np.exp(-4 * (i - pos) / width))
    new = (df["concept"] == 1).to_numpy()
    for a in range(0, n, 1000):
        p, share = expected[a:a + 1000].mean(), new[a:a + 1000].mean()
        tol = 4 * np.sqrt(max(p * (1 - p), 1e-4) / 1000) + 0.005
        assert abs(share - p) <= tol, (a, share, p)
    # and each row follows its own concept
    for c in (0, 1):
        rows = df[df["concept"] == c]
        assert (rows["y"] == sea_label(rows, c)).all()


def test_gradual_linear_curve():
    df = synthetic("sine", 6000, drift=DriftSpec("gradual", position=3000, width=2000, curve="linear"),
                   seed=4, include_concept=True)
    new = (df["concept"] == 1).to_numpy()
    assert new[:2000].sum() == 0 and new[4000:].all()
    assert abs(new[2000:3000].mean() - 0.25) < 0.06 and abs(new[3000:4000].mean() - 0.75) < 0.06


def test_incremental_moves_the_threshold_steadily():
    n, pos, width = 6000, 3000, 2000
    df = synthetic("sea", n, drift=DriftSpec("incremental", position=pos, width=width, concepts=(0, 3)), seed=5)
    i = np.arange(n)
    threshold = 8.0 + 1.5 * np.clip((i - (pos - width / 2)) / width, 0, 1)
    assert ((df["x0"] + df["x1"] > threshold).astype(int) == df["y"]).all()
    # share of positives falls steadily across the window as the threshold rises
    shares = [df["y"].iloc[a:a + 500].mean() for a in range(2000, 4000, 500)]
    assert shares[0] > shares[-1] + 0.05


def test_incremental_hyperplane_drifts_steadily():
    from sklearn.linear_model import LogisticRegression

    params = {"noise_percentage": 0.0, "n_features": 4, "n_drift_features": 2}
    df = synthetic("hyperplane", 8000, drift=DriftSpec("incremental", position=4000, width=4000), seed=6,
                   params=params)
    X, y = df[["x0", "x1", "x2", "x3"]], df["y"]
    model = LogisticRegression(C=100).fit(X.iloc[:2000], y.iloc[:2000])
    acc = [model.score(X.iloc[a:a + 1000], y.iloc[a:a + 1000]) for a in range(0, 8000, 1000)]
    assert min(acc[:2]) > 0.95  # before the window: the original concept
    assert acc[-1] < acc[2] - 0.05  # the concept has moved away
    assert all(a >= b - 0.02 for a, b in itertools.pairwise(acc))  # steadily, not at once
    assert abs(acc[-1] - acc[-2]) < 0.05  # and stops moving after the window


def test_incremental_needs_a_moving_parameter():
    with pytest.raises(ValueError, match="supported generators: sea, hyperplane, randomrbf"):
        synthetic("agrawal", 100, drift=DriftSpec("incremental", width=10))


def test_recurrent_first_concept_returns():
    df = synthetic("sea", 4000, drift=DriftSpec("recurrent", period=1000, concepts=(0, 3)), seed=7,
                   include_concept=True)
    segments = [df.iloc[a:a + 1000] for a in range(0, 4000, 1000)]
    assert [int(s["concept"].iloc[0]) for s in segments] == [0, 3, 0, 3]
    assert (segments[2]["y"] == sea_label(segments[2], 0)).all()
    assert (segments[1]["y"] != sea_label(segments[1], 0)).any()


def test_recurrent_agrawal_by_blocks():
    df = synthetic("agrawal", 1200, drift=DriftSpec("recurrent", period=2, unit="blocks", concepts=(0, 2)),
                   seed=8, block_column="block", rows_per_block=100, include_concept=True)
    per_block = df.groupby("block")["concept"].unique().map(lambda v: int(v[0])).tolist()
    assert per_block == [0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2]


def test_virtual_drift_changes_inputs_not_the_concept():
    df = synthetic("sea", 6000, drift=DriftSpec("virtual", position=3000, feature="x0"), seed=9)
    before, after = df.iloc[:3000], df.iloc[3000:]
    # the labelling function applied to the inputs gives the same labels, before and after
    assert (df["y"] == sea_label(df, 0)).all()
    # the inputs changed: x0 is pushed up; x1 (independent of x0) is not
    assert after["x0"].mean() > before["x0"].mean() + 1.0
    assert stats.ks_2samp(before["x0"], after["x0"]).pvalue < 1e-10
    assert stats.ks_2samp(before["x1"], after["x1"]).pvalue > 0.001


def test_virtual_drift_on_a_categorical_input():
    df = synthetic("stagger", 4000, drift=DriftSpec("virtual", position=2000, feature="color"), seed=10)
    b = df["color"].iloc[:2000].value_counts(normalize=True)
    a = df["color"].iloc[2000:].value_counts(normalize=True)
    assert (a - b).abs().max() > 0.15
    # STAGGER function 0: size small and color red
    expected = ((df["size"] == "small") & (df["color"] == "red")).astype(int)
    assert (df["y"] == expected).all()


def test_class_balance_by_rejection_sampling():
    df = synthetic("agrawal", 3000, seed=11, class_balance=0.3)
    assert abs(df["y"].mean() - 0.3) < 0.03
    natural = synthetic("agrawal", 3000, seed=12)
    # P(x | y) is kept: the rows of one class look like that class's rows without rebalancing
    for cls in (0, 1):
        p = stats.ks_2samp(df.loc[df["y"] == cls, "salary"], natural.loc[natural["y"] == cls, "salary"]).pvalue
        assert p > 0.001
    led = synthetic("led", 1000, seed=13, class_balance={"3": 0.5, 7: 0.5})
    assert set(led["y"]) == {3, 7}


def test_timestamps_and_blocks():
    df = synthetic("friedman", 50, seed=14, timestamps=Timestamps("2024-03-01", "1h"), block_column="month",
                   rows_per_block=10)
    assert list(df.columns[:2]) == ["timestamp", "month"]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-03-01") and df["timestamp"].diff().iloc[1] == pd.Timedelta("1h")
    assert df["month"].iloc[-1] == 5


@pytest.mark.parametrize("name", list(GENERATORS))
def test_every_generator_is_reproducible_and_drifts(name):
    drift = DriftSpec("abrupt", position=150)
    a = synthetic(name, 300, drift=drift, seed=21, include_concept=True)
    b = synthetic(name, 300, drift=drift, seed=21, include_concept=True)
    c = synthetic(name, 300, drift=drift, seed=22, include_concept=True)
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns="concept").equals(c.drop(columns="concept"))
    assert a["concept"].tolist() == [0] * 150 + [1] * 150
    assert a["y"].notna().all()


def test_bad_parameters_are_clear():
    with pytest.raises(ValueError, match="valid generators: sea, agrawal"):
        synthetic("seaa", 10)
    with pytest.raises(ValueError, match="valid kinds"):
        DriftSpec("sudden")
    with pytest.raises(ValueError, match="need 3 concepts"):
        synthetic("sea", 100, drift=DriftSpec("abrupt", position=[30, 60], concepts=(0, 1)))
    with pytest.raises(ValueError, match="not valid for sea"):
        synthetic("sea", 100, drift=DriftSpec("abrupt", concepts=(0, 7)))
    with pytest.raises(ValueError, match="outside the data"):
        synthetic("sea", 100, drift=DriftSpec("abrupt", position=500))
    with pytest.raises(ValueError, match="rows_per_block"):
        synthetic("sea", 100, drift=DriftSpec("abrupt", position=2, unit="blocks"))
    with pytest.raises(ValueError, match="regression"):
        synthetic("friedman", 100, class_balance=0.5)


@pytest.mark.parametrize("freq, second", [("1QE", "2024-04-01"), ("1ME", "2024-02-01"), ("2W", "2024-01-15"),
                                          ("1YE", "2025-01-01"), ("6h", "2024-01-01 06:00")])
def test_timestamps_begin_at_start_whatever_the_calendar_step(freq, second):
    """`--start 2024-01-01 --freq 1QE` begins on 2024-01-01, then every quarter from it (pandas alone would
    begin on the quarter's end, 2024-03-31, and a week on the next Sunday)."""
    df = synthetic("sea", 3, seed=1, timestamps=Timestamps("2024-01-01", freq))
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-01-01")
    assert df["timestamp"].iloc[1] == pd.Timestamp(second)
