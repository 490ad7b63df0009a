from functools import partial

import numpy as np
import pandas as pd
import pytest
from frouros.detectors.data_drift import MMD
from frouros.utils.kernels import rbf_kernel

from calmops.detectors import DriftConfig, ReferenceProfile, compare
from calmops.detectors.multivariate import mmd2_unbiased, mmd_permutation_test

COLS = list("abcdef")


def test_mmd_statistic_equals_frouros():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.normal(0.2, size=(250, 4))
    d = MMD(kernel=partial(rbf_kernel, sigma=1.5))
    d.fit(X=x)
    expected = d.compare(X=y)[0].distance
    assert mmd2_unbiased(x, y, 1.5) == pytest.approx(expected, abs=1e-9)
    assert mmd_permutation_test(x, y, 1.5, 20, 0)[0] == pytest.approx(expected, abs=1e-9)


def test_mmd_permutation_p_value_equals_explicit_loop():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 3)), rng.normal(0.3, size=(50, 3))
    stat, p = mmd_permutation_test(x, y, 1.0, 30, seed=5)
    # redo the same permutations with the plain estimator
    z = np.vstack([x, y])
    prng = np.random.default_rng(5)
    perms = [prng.permutation(110)[:60] for _ in range(30)]
    exceed = 0
    for idx in perms:
        mask = np.zeros(110, bool)
        mask[idx] = True
        exceed += mmd2_unbiased(z[mask], z[~mask], 1.0) >= stat - 1e-12
    assert p == pytest.approx((exceed + 1) / 31)


def _frames(seed, n_ref=4000, n_batch=1500):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(n_ref, 6)), columns=COLS)
    same = pd.DataFrame(rng.normal(size=(n_batch, 6)), columns=COLS)
    corr = pd.DataFrame(rng.normal(size=(n_batch, 6)), columns=COLS)
    # a and b become correlated (rho = 0.9) while both marginals stay N(0, 1): univariate tests are blind
    corr["b"] = 0.9 * corr["a"] + np.sqrt(1 - 0.81) * corr["b"]
    return ref, same, corr


@pytest.fixture(scope="module")
def setup():
    ref, same, corr = _frames(2)
    cfg = DriftConfig(multivariate=["mmd", "domain_classifier", "pca"])
    return ReferenceProfile.build(ref, None, cfg), same, corr, cfg


def test_no_multivariate_drift_on_same_distribution(setup):
    prof, same, _, cfg = setup
    rep = compare(prof, same, cfg)
    assert [m.status for m in rep.multivariate] == ["no_drift"] * 3
    assert not rep.drift_detected


def test_correlation_change_seen_by_multivariate_only(setup):
    prof, _, corr, cfg = setup
    rep = compare(prof, corr, cfg)
    by = {m.method: m for m in rep.multivariate}
    assert not any(r.drift for r in rep.features)  # marginals unchanged
    assert by["domain_classifier"].drift and by["domain_classifier"].statistic > 0.6
    # the classifier's ranking puts the two features that changed on top
    assert set(list(by["domain_classifier"].feature_importances)[:2]) == {"a", "b"}
    assert by["mmd"].drift
    assert rep.drift_detected and "multivariate" in rep.reason


def test_pca_error_leaves_band_when_structure_breaks():
    """Reference lives on a 2-D plane in 6-D; a batch off the plane has large reconstruction error."""
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(2, 6))
    ref = pd.DataFrame(rng.normal(size=(3000, 2)) @ basis + 0.01 * rng.normal(size=(3000, 6)), columns=COLS)
    same = pd.DataFrame(rng.normal(size=(1000, 2)) @ basis + 0.01 * rng.normal(size=(1000, 6)), columns=COLS)
    off = same + 0.5 * rng.normal(size=(1000, 6)) * ref.std().to_numpy()
    cfg = DriftConfig(multivariate=["pca"])
    prof = ReferenceProfile.build(ref, None, cfg)
    assert prof.multivariate.pca_components.shape[0] <= 2
    assert not compare(prof, same, cfg).multivariate[0].drift
    res = compare(prof, off, cfg).multivariate[0]
    assert res.drift and res.statistic > 0.5


def test_multivariate_state_survives_save_load(setup, tmp_path):
    prof, _, corr, cfg = setup
    prof.save(tmp_path)
    loaded = ReferenceProfile.load(tmp_path)
    assert compare(loaded, corr, cfg).to_dict() == compare(prof, corr, cfg).to_dict()


def test_multivariate_without_reference_is_error_not_crash():
    ref, same, _ = _frames(4, 500, 200)
    prof = ReferenceProfile.build(ref, None, DriftConfig())
    rep = compare(prof, same, DriftConfig(multivariate=["mmd"]))
    assert rep.multivariate[0].status == "error" and not rep.drift_detected


def test_multivariate_small_batch_insufficient(setup):
    prof, same, _, cfg = setup
    rep = compare(prof, same.iloc[:10], cfg)
    assert all(m.status == "insufficient_data" for m in rep.multivariate)


def test_mixed_types_encode(tmp_path):
    rng = np.random.default_rng(5)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=800),
            "c": rng.choice(list("pq"), 800),
            "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 1000, 800), unit="h"),
        }
    )
    cfg = DriftConfig(multivariate=["mmd", "pca", "domain_classifier"])
    prof = ReferenceProfile.build(ref, None, cfg)
    batch = ref.sample(300, random_state=1).assign(c="r")  # unseen category everywhere
    rep = compare(prof, batch, cfg)
    assert all(m.status in ("drift", "no_drift") for m in rep.multivariate)
    assert {m.method: m.drift for m in rep.multivariate}["domain_classifier"]


def test_pca_keeps_a_direction_out_so_it_can_fire_on_few_independent_features():
    """Three independent features need all three components for 90 % of the variance; kept whole, every row
    was reconstructed exactly (band about 1e-15) and the check could never fire. One direction stays out: the
    same distribution stays calm, and rows spread twice as wide are seen."""
    rng = np.random.default_rng(5)
    cols = ["x0", "x1", "x2"]
    ref = pd.DataFrame(rng.normal(size=(3000, 3)), columns=cols)
    same = pd.DataFrame(rng.normal(size=(1000, 3)), columns=cols)
    wide = pd.DataFrame(2 * rng.normal(size=(1000, 3)), columns=cols)
    cfg = DriftConfig(multivariate=["pca"])
    prof = ReferenceProfile.build(ref, None, cfg)
    assert prof.multivariate.pca_components.shape[0] == 2 and prof.multivariate.pca_band > 0.1
    assert not compare(prof, same, cfg).multivariate[0].drift
    assert compare(prof, wide, cfg).multivariate[0].drift
