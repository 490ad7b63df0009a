"""The decision policy on seeded data: false alarms, power, and large-n triviality.

Expectations are reasoned, not measured: under no drift Holm keeps the family-wise error at or below
alpha, and the minimum effect (KS D >= 0.1) removes alarms whose effect is only sampling noise.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from calmops.detectors import DriftConfig, ReferenceProfile, compare

N_FEATURES = 20
COLS = [f"f{i}" for i in range(N_FEATURES)]


def _frame(rng, n, shift=None):
    x = rng.standard_normal((n, N_FEATURES))
    if shift:
        x[:, 0] += shift
    return pd.DataFrame(x, columns=COLS)


def _profile(n, seed, config):
    ref = _frame(np.random.default_rng(seed), n)
    return ReferenceProfile.build(ref, {c: "numeric" for c in COLS}, config)


def _alarm_rate(n, config, trials, seed, shift=None):
    prof = _profile(n, seed, config)
    rng = np.random.default_rng(seed + 1)
    return np.mean([compare(prof, _frame(rng, n, shift), config).drift_detected for _ in range(trials)])


@pytest.mark.parametrize("n", [1000, 10000])
def test_false_alarm_rate_under_no_drift(n):
    cfg = DriftConfig()  # ks, Holm, alpha 0.05, min effect 0.1
    assert _alarm_rate(n, cfg, trials=200, seed=n) <= 0.05


def _ks_size(n, alpha):
    """Exact size of the two-sample KS test at n = m: the largest attainable p-value below alpha
    (D lives on the lattice k/n, so the test is conservative)."""
    from calmops.detectors.univariate import ks_pvalue

    return max(p for p in (ks_pvalue(k / n, n, n) for k in range(1, n + 1)) if p < alpha)


def test_holm_alone_controls_family_wise_error():
    """Without the effect floor, Holm still keeps false alarms at or below alpha; no correction does not.

    Fresh reference and batch each trial, 20 independent null features. Holm: family-wise error
    <= 0.05. Uncorrected: 1 - (1 - size)**20 with the exact KS size. Tolerance 3 binomial sd.
    """
    n, trials = 1000, 200
    rng = np.random.default_rng(7)
    alarms = {"holm": 0, "none": 0}
    for _ in range(trials):
        ref, batch = _frame(rng, n), _frame(rng, n)
        for correction in alarms:
            cfg = DriftConfig(min_effect={"ks": 0.0}, correction=correction)
            prof = ReferenceProfile.build(ref, {c: "numeric" for c in COLS}, cfg)
            alarms[correction] += compare(prof, batch, cfg).drift_detected
    expected_none = 1 - (1 - _ks_size(n, 0.05)) ** N_FEATURES
    sd = np.sqrt(expected_none * (1 - expected_none) / trials)
    assert alarms["holm"] / trials <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)
    assert abs(alarms["none"] / trials - expected_none) <= 3 * sd


@pytest.mark.parametrize(
    "n,shift",
    [
        # KS population distance of a location shift s of N(0,1): D = 2*Phi(s/2) - 1.
        # n=10k: s=0.3 -> D=0.119, 1.2x the minimum; sampling sd of D ~ sqrt(0.25*2/n) = 0.007 so
        #        P(D_hat < 0.1) ~ Phi(-2.7) = 0.4%.
        # n=1k:  s=0.4 -> D=0.159; sd ~ 0.022 so P(D_hat < 0.1) ~ Phi(-2.7) too.
        # (A shift exactly at the minimum is, by construction, detected about half the time.)
        (10000, 0.3),
        (1000, 0.4),
    ],
)
def test_shift_above_minimum_effect_is_detected(n, shift):
    assert 2 * norm.cdf(shift / 2) - 1 > DriftConfig().effect_threshold("ks")
    rate = _alarm_rate(n, DriftConfig(), trials=100, seed=3 * n, shift=shift)
    assert rate >= 0.95


def test_tiny_shift_at_one_million_rows_is_not_drift():
    """0.01 sigma at n=1M: D ~ 2*Phi(0.005)-1 = 0.004. Significant, but far below the minimum effect."""
    n, cols = 1_000_000, ["a", "b"]
    rng = np.random.default_rng(11)
    ref = pd.DataFrame(rng.standard_normal((n, 2)), columns=cols)
    batch = pd.DataFrame(rng.standard_normal((n, 2)) + [0.01, 0.0], columns=cols)
    cfg = DriftConfig()
    rep = compare(ReferenceProfile.build(ref, {c: "numeric" for c in cols}, cfg), batch, cfg)
    a = next(r for r in rep.features if r.feature == "a")
    assert a.p_adjusted < cfg.alpha  # the test sees it...
    assert a.effect_size < 0.01 and not a.drift  # ...but it is not a drift worth acting on
    assert not rep.drift_detected
