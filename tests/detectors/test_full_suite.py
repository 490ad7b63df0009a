"""Every numeric/categorical test and correction through compare()."""

import numpy as np
import pandas as pd
import pytest

from calmops.detectors import DriftConfig, ReferenceProfile, compare
from calmops.detectors.config import CATEGORICAL_TESTS, NUMERIC_TESTS


def _frame(rng, n, shift=0.0, p=(0.5, 0.3, 0.2)):
    return pd.DataFrame(
        {"x": rng.normal(shift, 1, n), "y": rng.gamma(2, 1, n), "c": rng.choice(list("abc"), n, p=p)}
    )


@pytest.fixture(scope="module")
def profile():
    cfg = DriftConfig(numeric_tests=list(NUMERIC_TESTS), categorical_tests=list(CATEGORICAL_TESTS))
    return ReferenceProfile.build(_frame(np.random.default_rng(0), 5000), None, cfg), cfg


def test_every_test_quiet_on_same_distribution(profile):
    prof, cfg = profile
    rep = compare(prof, _frame(np.random.default_rng(1), 3000), cfg)
    assert len(rep.features) == 2 * len(NUMERIC_TESTS) + len(CATEGORICAL_TESTS)
    assert not rep.drift_detected, rep.summary_markdown()
    for r in rep.features:
        assert r.status == "no_drift" and r.threshold == cfg.effect_threshold(r.test)
        assert r.p_value is not None and r.effect_size is not None


def test_every_test_fires_on_a_large_shift(profile):
    prof, cfg = profile
    # x: 1 sigma shift (KS D 0.38, EMD 1.0 sd ...); c: TVD 0.4
    rep = compare(prof, _frame(np.random.default_rng(2), 3000, shift=1.0, p=(0.1, 0.3, 0.6)), cfg)
    fired = {(r.feature, r.test) for r in rep.features if r.drift}
    assert {("x", t) for t in NUMERIC_TESTS} <= fired
    assert {("c", t) for t in CATEGORICAL_TESTS} <= fired
    assert rep.drifted_features[:2] in (["x", "c"], ["c", "x"]) and "y" not in rep.drifted_features


@pytest.mark.parametrize("correction", ["none", "bonferroni", "holm", "bh"])
def test_corrections_order(profile, correction):
    prof, cfg = profile
    cfg = cfg.model_copy(update={"correction": correction})
    rep = compare(prof, _frame(np.random.default_rng(3), 1000, shift=0.1), cfg)
    for r in rep.features:
        assert r.p_adjusted >= r.p_value - 1e-15
        if correction == "none":
            assert r.p_adjusted == r.p_value
        if correction == "bonferroni":
            assert r.p_adjusted == pytest.approx(min(1.0, r.p_value * len(rep.features)))


def test_share_and_weighted_aggregation(profile):
    prof, _ = profile
    batch = _frame(np.random.default_rng(4), 3000, shift=1.0)  # only x drifts, 1 of 3 features
    share = DriftConfig(aggregation="share", share_threshold=0.5)
    rep = compare(prof, batch, share)
    assert rep.drifted_features == ["x"] and not rep.drift_detected and "below" in rep.reason
    weighted = DriftConfig(aggregation="weighted", share_threshold=0.5)
    assert compare(prof, batch, weighted, importances={"x": 3, "y": 1, "c": 1}).drift_detected  # 0.6
    assert not compare(prof, batch, weighted, importances={"x": 1, "y": 2, "c": 2}).drift_detected  # 0.2
