import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calmops.detectors import (
    DriftConfig,
    ReferenceProfile,
    confidence_drift,
    label_free_compare,
    prediction_drift,
)


def test_prediction_drift_classes_chi2():
    rng = np.random.default_rng(0)
    ref = rng.choice(["yes", "no"], 2000, p=[0.3, 0.7])
    same = rng.choice(["yes", "no"], 1000, p=[0.3, 0.7])
    moved = rng.choice(["yes", "no"], 1000, p=[0.6, 0.4])  # TVD 0.3
    cfg = DriftConfig()
    assert not prediction_drift(ref, same, cfg).drift
    r = prediction_drift(ref, moved, cfg)
    assert r.drift and r.test == "chi2" and r.effect_size == pytest.approx(0.3, abs=0.05)


def test_prediction_drift_regression_ks_equals_scipy():
    rng = np.random.default_rng(1)
    ref, batch = rng.normal(size=3000), rng.normal(0.5, size=800)
    r = prediction_drift(ref, batch, DriftConfig())
    expected = stats.ks_2samp(ref, batch)
    assert r.test == "ks" and r.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert r.p_value == pytest.approx(expected.pvalue, abs=1e-9) and r.drift


def test_confidence_drift_from_probability_matrix():
    rng = np.random.default_rng(2)
    ref = rng.dirichlet([8, 1, 1], 2000)  # confident model
    unsure = rng.dirichlet([1, 1, 1], 1000)  # confidence collapses
    cfg = DriftConfig()
    assert confidence_drift(ref, unsure, cfg).drift
    assert not confidence_drift(ref, rng.dirichlet([8, 1, 1], 1000), cfg).drift


def test_label_free_against_profile_and_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.normal(size=1000)})
    prof = ReferenceProfile.build(
        df, None, DriftConfig(), predictions=rng.choice(["a", "b"], 1000), confidences=rng.beta(8, 2, 1000)
    )
    prof.save(tmp_path)
    loaded = ReferenceProfile.load(tmp_path)
    res = label_free_compare(
        loaded, DriftConfig(), predictions=np.array(["a"] * 500), confidences=rng.beta(2, 2, 500)
    )
    assert [r.feature for r in res] == ["prediction", "confidence"]
    assert all(r.drift for r in res) and all(r.p_adjusted >= r.p_value for r in res)


def test_label_free_small_batch_insufficient():
    r = prediction_drift(np.zeros(100) + np.arange(100), np.arange(5.0), DriftConfig())
    assert r.status == "insufficient_data" and not r.drift
