import numpy as np
import pytest

from calmops.detectors.policy import adjust_pvalues, aggregate, is_drift, rank_culprits

P = [0.01, 0.04, 0.03, 0.005]


def test_bonferroni():
    np.testing.assert_allclose(adjust_pvalues(P, "bonferroni"), [0.04, 0.16, 0.12, 0.02])


def test_holm_by_hand():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max -> 0.02,0.03,0.06,0.06
    np.testing.assert_allclose(adjust_pvalues(P, "holm"), [0.03, 0.06, 0.06, 0.02])


def test_bh_by_hand():
    # sorted p: 0.005,0.01,0.03,0.04 ; m/i*p: 0.02,0.02,0.04,0.04 ; running min from the top -> same
    np.testing.assert_allclose(adjust_pvalues(P, "bh"), [0.02, 0.04, 0.04, 0.02])


def test_none_and_caps():
    np.testing.assert_allclose(adjust_pvalues(P, "none"), P)
    assert adjust_pvalues([0.5, 0.9], "bonferroni").max() == 1.0
    assert adjust_pvalues([], "holm").size == 0


def test_holm_matches_the_stepdown_definition_on_random_p():
    rng = np.random.default_rng(3)
    p = rng.random(30) ** 3
    adj = adjust_pvalues(p, "holm")
    order = np.argsort(p)
    m = p.size
    expected = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        expected[j] = running
    np.testing.assert_allclose(adj, expected)


def test_evidence_and_effect_both_needed():
    assert is_drift(0.001, 0.2, 0.1, 0.05)
    assert not is_drift(0.001, 0.05, 0.1, 0.05)  # significant but small
    assert not is_drift(0.2, 0.5, 0.1, 0.05)  # large but not significant
    assert is_drift(None, 0.2, 0.1, 0.05)  # no p-value: effect alone
    assert not is_drift(0.001, None, 0.1, 0.05)


def test_aggregation_modes():
    ev = ["a", "b", "c", "d"]
    assert aggregate(["a"], ev, "any", 0.25) == (True, 1.0)
    assert aggregate([], ev, "any", 0.25) == (False, 0.0)
    assert aggregate(["a"], ev, "share", 0.5) == (False, 0.25)
    assert aggregate(["a", "b"], ev, "share", 0.5) == (True, 0.5)
    imp = {"a": 6.0, "b": 2.0, "c": 1.0, "d": 1.0}
    assert aggregate(["a"], ev, "weighted", 0.5, imp) == (True, 0.6)
    assert aggregate(["c", "d"], ev, "weighted", 0.5, imp) == (False, pytest.approx(0.2))


def test_ranking_by_effect_then_importance():
    scores = {"a": 2.0, "b": 3.0, "c": 1.5}
    assert rank_culprits(scores) == ["b", "a", "c"]
    # with importances a becomes the worst: 2*3 > 3*0.5
    assert rank_culprits(scores, {"a": 3.0, "b": 0.5, "c": 1.0})[0] == "a"
