"""Clinical cohorts: disease effects are visible between groups, longitudinal changes show up."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calmops.generators.clinic import cohort, longitudinal


@pytest.mark.parametrize("omics", ["rnaseq", "microarray", "proteins"])
def test_disease_effects_are_visible(omics):
    df = cohort(400, seed=1, omics=omics, n_features=40, de_share=0.25, effect_size=1.0)
    truth = df.attrs["truth"]
    assert len(truth["de"]) == 10
    features = [c for c in df.columns if c.startswith(("gene_", "probe_", "prot_"))]
    assert len(features) == 40
    log2 = df[features] if omics == "microarray" else np.log2(df[features] + 1)
    ctrl, dis = log2[df["group"] == "control"], log2[df["group"] == "disease"]
    for f in features:
        p = stats.ttest_ind(dis[f], ctrl[f], equal_var=False).pvalue
        diff = dis[f].mean() - ctrl[f].mean()
        if f in truth["de"]:
            assert p < 1e-6 and np.sign(diff) == np.sign(truth["de"][f])
            assert abs(diff - truth["de"][f]) < 0.35
        else:
            assert abs(diff) < 0.35
    if omics == "rnaseq":
        assert pd.api.types.is_integer_dtype(df[features[0]]) and (df[features] >= 0).all().all()
        # negative binomial: over-dispersed counts (variance above the mean)
        f = features[-1]
        assert ctrl[f].size and df.loc[df["group"] == "control", f].var() > df.loc[df["group"] == "control", f].mean()


def test_groups_demographics_and_severity():
    df = cohort(300, seed=2, omics=None, groups={"healthy": 1, "mild": 1, "severe": 1})
    assert df["group"].value_counts().to_dict() == {"healthy": 100, "mild": 100, "severe": 100}
    assert set(df.columns) == {"patient_id", "group", "age", "sex", "bmi", "smoker"}
    assert df["patient_id"].is_unique and df["age"].between(18, 95).all()
    assert df.attrs["truth"]["groups"] == {"healthy": 0.0, "mild": 1.0, "severe": 2.0}
    omic = cohort(300, seed=2, groups={"healthy": 1, "mild": 1, "severe": 1}, omics="microarray", n_features=10)
    f = next(iter(omic.attrs["truth"]["de"]))
    means = omic.groupby("group")[f].mean()
    lfc = omic.attrs["truth"]["de"][f]
    assert means["severe"] - means["healthy"] == pytest.approx(2 * lfc, abs=0.3)


def test_longitudinal_transitions_and_module_drift():
    df = longitudinal(300, 4, seed=3, n_features=20, n_modules=4, de_share=0.0, module_drift={1: 0.5},
                      transitions={"control": {"control": 0.8, "disease": 0.2}})
    assert df.shape[0] == 1200 and sorted(df["time"].unique()) == [0, 1, 2, 3]
    share = df.groupby("time")["group"].apply(lambda g: (g == "disease").mean()).to_numpy()
    assert (np.diff(share) > 0).all()  # controls fall ill, nobody recovers
    assert share[-1] == pytest.approx(1 - 0.5 * 0.8**3, abs=0.07)
    per_patient = df.groupby("patient_id")["group"].apply(list)
    assert all(not (a == "disease" and b == "control") for seq in per_patient for a, b in itertools.pairwise(seq))
    modules = df.attrs["truth"]["modules"]
    drifting = [f for f, m in modules.items() if m == 1]
    steady = [f for f, m in modules.items() if m == 2]
    lm = np.log2(df[drifting + steady] + 1).groupby(df["time"]).mean()
    slope_drift = np.polyfit(range(4), lm[drifting].mean(axis=1), 1)[0]
    slope_steady = np.polyfit(range(4), lm[steady].mean(axis=1), 1)[0]
    assert slope_drift == pytest.approx(0.5, abs=0.1) and abs(slope_steady) < 0.1
    ages = df.pivot(index="patient_id", columns="time", values="age")
    assert ((ages[3] - ages[0]) == 3).all()


def test_same_seed_same_cohort():
    pd.testing.assert_frame_equal(cohort(50, seed=4, n_features=10), cohort(50, seed=4, n_features=10))
    assert not cohort(50, seed=4, n_features=10).equals(cohort(50, seed=5, n_features=10))
    pd.testing.assert_frame_equal(longitudinal(20, 3, seed=4, n_features=5), longitudinal(20, 3, seed=4, n_features=5))


def test_bad_parameters():
    with pytest.raises(ValueError, match="valid: rnaseq"):
        cohort(10, omics="metabolome")
    with pytest.raises(ValueError, match="unknown groups"):
        longitudinal(10, 2, transitions={"control": {"cured": 1.0}})


def test_module_drift_without_omics_is_refused_not_ignored():
    with pytest.raises(ValueError, match="module_drift shifts omics modules, but omics is None"):
        longitudinal(10, 2, omics=None, module_drift={1: 0.4})
