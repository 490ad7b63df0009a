"""The decay test: a steady worsening of a score across files, each step inside the tolerance."""

import math

import numpy as np

from calmops.detectors.decay import decay_test

RULE = {"higher_is_better": True, "min_files": 4, "p_value": 0.05, "min_decline": 0.015}


def test_a_steady_decline_of_small_steps_alarms_with_the_exact_trend_p_value():
    scores = [0.90 - 0.01 * i for i in range(5)]  # each file 1 point below the previous one
    result = decay_test(scores, **RULE)
    assert result.alarm and result.files == 5
    assert math.isclose(result.p_value, 1 / math.factorial(5), abs_tol=1e-6)  # one ordering in 5! is this strict
    assert math.isclose(result.slope, -0.01, abs_tol=1e-12)
    assert math.isclose(result.relative_decline, 0.04 / 0.90, rel_tol=1e-9)


def test_noise_around_a_level_rarely_alarms():
    rng = np.random.default_rng(0)
    alarms = [decay_test(0.88 + rng.normal(0, 0.01, n), **RULE).alarm for n in range(4, 12) for _ in range(100)]
    assert np.mean(alarms) <= 0.06  # per file, the test's level is 5 % and the minimum decline only removes alarms


def test_a_significant_but_negligible_trend_does_not_alarm():
    scores = [0.900, 0.899, 0.898, 0.897, 0.896, 0.895]  # strictly falling, 0.6 % in all
    result = decay_test(scores, **RULE)
    assert result.p_value < 0.05 and not result.alarm


def test_lower_is_better_metrics_alarm_on_a_rise():
    rising = [1.00, 1.03, 1.05, 1.08, 1.10]
    assert decay_test(rising, **{**RULE, "higher_is_better": False}).alarm
    assert not decay_test(rising[::-1], **{**RULE, "higher_is_better": False}).alarm
    assert not decay_test(rising, **RULE).alarm  # a rising accuracy is no decay


def test_too_few_files_or_a_flat_score_say_nothing():
    short = decay_test([0.9, 0.8, 0.7], **RULE)
    assert not short.alarm and short.p_value is None and short.files == 3
    assert not decay_test([0.9] * 6, **RULE).alarm


def test_tied_scores_get_the_exact_p_value():
    # orders of (0.90, 0.90, 0.88, 0.87) at least as falling as this one: 2 of 24 (the tie counts both ways)
    result = decay_test([0.90, 0.90, 0.88, 0.87], **RULE)
    assert math.isclose(result.p_value, 2 / 24, abs_tol=1e-6) and not result.alarm


def test_the_decline_is_a_share_of_the_score_at_promotion_and_a_zero_base_still_alarms():
    rmse = {**RULE, "higher_is_better": False}
    assert math.isclose(decay_test([1.0, 1.1, 1.2, 1.3], **rmse, base=2.0).relative_decline, 0.3 / 2.0)
    from_zero = decay_test([0.0, 0.1, 0.2, 0.3, 0.4], **rmse)  # a perfect fit at first: any rise is a decline
    assert from_zero.alarm and from_zero.relative_decline == math.inf
