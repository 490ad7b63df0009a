"""Real-like data: marginals and pairwise correlations of real datasets are preserved."""

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from calmops.generators.real import GaussianCopula, quality_report, synthesize_like


def load(name: str) -> pd.DataFrame:
    df = getattr(datasets, f"load_{name}")(as_frame=True).frame
    df["target"] = df["target"].map(lambda v: f"class_{v}")  # a categorical column: mixed types
    return df


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_marginals_and_correlations_are_preserved(name):
    real = load(name)
    fake = synthesize_like(real, 2000, seed=0)
    assert list(fake.columns) == list(real.columns) and len(fake) == 2000
    q = quality_report(real, fake)
    assert q["summary"]["median_ks_pvalue"] > 0.01
    assert q["summary"]["max_corr_diff"] < 0.1, sorted(q["pairs"], key=lambda p: -p["abs_diff"])[:3]
    assert q["columns"]["target"]["tvd"] < 0.05
    assert set(fake["target"]) == set(real["target"])


def test_dependence_with_a_categorical_column_is_kept():
    real = load("iris")
    fake = synthesize_like(real, 3000, seed=1)
    r = real.groupby("target")["petal length (cm)"].mean()
    f = fake.groupby("target")["petal length (cm)"].mean()
    assert f.sort_values().index.tolist() == r.sort_values().index.tolist()
    assert (f.max() - f.min()) > 0.5 * (r.max() - r.min())


def test_by_block_fits_each_block():
    real = load("wine")
    real["block"] = np.where(real.index < 90, "early", "late")
    real.loc[real["block"] == "late", "alcohol"] += 3  # the blocks really differ
    fake = synthesize_like(real, 1000, seed=2, by="block")
    assert fake["block"].value_counts().to_dict() == {"early": round(1000 * 90 / 178), "late": 1000 - round(1000 * 90 / 178)}
    for block in ("early", "late"):
        assert fake.loc[fake["block"] == block, "alcohol"].mean() == pytest.approx(
            real.loc[real["block"] == block, "alcohol"].mean(), abs=0.15)


def test_missing_values_datetimes_and_integers():
    rng = np.random.default_rng(0)
    n = 500
    real = pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=n, freq="D"),
        "count": rng.poisson(5, n),
        "value": rng.normal(size=n),
        "flag": rng.random(n) < 0.3,
    })
    real.loc[rng.random(n) < 0.2, "value"] = np.nan
    fake = synthesize_like(real, 4000, seed=3)
    assert fake["value"].isna().mean() == pytest.approx(0.2, abs=0.03)
    assert pd.api.types.is_datetime64_any_dtype(fake["when"]) and fake["when"].min() >= real["when"].min()
    assert pd.api.types.is_integer_dtype(fake["count"]) and set(fake["count"]) <= set(real["count"])
    assert fake["flag"].mean() == pytest.approx(0.3, abs=0.05)


def test_same_seed_same_data():
    real = load("iris")
    pd.testing.assert_frame_equal(synthesize_like(real, 100, seed=5), synthesize_like(real, 100, seed=5))
    assert not synthesize_like(real, 100, seed=5).equals(synthesize_like(real, 100, seed=6))
    assert GaussianCopula(seed=1).fit(real).correlation_.shape == (5, 5)


def test_quality_report_sees_a_bad_copy():
    real = load("iris")
    bad = real.copy()
    bad["sepal length (cm)"] = bad["sepal length (cm)"] + 2
    bad["petal width (cm)"] = bad["petal width (cm)"].sample(frac=1, random_state=0).to_numpy()
    q = quality_report(real, bad)
    assert q["columns"]["sepal length (cm)"]["ks_pvalue"] < 1e-6
    assert q["summary"]["max_corr_diff"] > 0.5
