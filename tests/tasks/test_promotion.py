"""Promotion by a paired test on the same holdout rows, with an effect floor."""

import numpy as np

from calmops.core.metrics import paired_test
from calmops.core.spec import PipelineSpec
from calmops.tasks.promote import decide


def _spec(**evaluation) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "p", "kind": "stream", "target": "y",
                                        "model": {"class": "sklearn.tree.DecisionTreeClassifier"},
                                        "evaluation": {"primary_metric": "accuracy", **evaluation}})


def _pair(n: int, both_right: int, only_new: int, only_old: int, seed: int = 0):
    """Labels and two prediction vectors with the given agreement counts (the rest: both wrong)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    new, old = 1 - y, 1 - y
    idx = rng.permutation(n)
    right_both, right_new, right_old = np.split(idx[: both_right + only_new + only_old], [both_right, both_right + only_new])
    new[right_both], old[right_both] = y[right_both], y[right_both]
    new[right_new] = y[right_new]
    old[right_old] = y[right_old]
    return y, new, old


def _decision(metric, y, new, old, **evaluation):
    test = paired_test(metric, y, new, old)
    scores_new = {metric: test.challenger}
    scores_old = {metric: test.champion}
    return test, decide(scores_new, scores_old, _spec(primary_metric=metric, **evaluation), metric, test)


def test_a_small_gain_on_300_rows_does_not_promote():
    # challenger right on 2 more of 300 rows (+0.0067), both models disagreeing on 40 rows
    y, new, old = _pair(300, 200, 21, 19)
    test, verdict = _decision("accuracy", y, new, old)
    assert abs(test.gain - 2 / 300) < 1e-9 and test.test == "McNemar exact"
    assert not verdict.promote
    assert "McNemar" in verdict.reason and "not significant" in verdict.reason
    # the raw rule would have promoted it
    raw = decide({"accuracy": test.challenger}, {"accuracy": test.champion}, _spec(promotion_test="raw"),
                 "accuracy", test)
    assert raw.promote


def test_a_metric_without_a_paired_test_needs_a_gain_above_the_effect_floor():
    """roc_auc, pr_auc and log_loss have no paired test: their raw scores decide, but a gain below
    promotion_min_effect no more promotes than under the paired test (0.9825 over 0.9802 did)."""
    spec = _spec(primary_metric="roc_auc")
    small = decide({"roc_auc": 0.9825}, {"roc_auc": 0.9802}, spec, "roc_auc", None)
    assert not small.promote
    assert small.reason == ("challenger roc_auc 0.9825 does not beat champion 0.9802 (no paired test for roc_auc: "
                            "raw scores, effect floor 0.005)")
    assert decide({"roc_auc": 0.9900}, {"roc_auc": 0.9802}, spec, "roc_auc", None).promote
    lower = _spec(primary_metric="log_loss")  # lower is better: the floor applies downwards
    assert not decide({"log_loss": 0.300}, {"log_loss": 0.303}, lower, "log_loss", None).promote
    assert decide({"log_loss": 0.290}, {"log_loss": 0.303}, lower, "log_loss", None).promote
    # promotion_test: raw keeps the margin alone
    assert decide({"roc_auc": 0.9825}, {"roc_auc": 0.9802}, _spec(primary_metric="roc_auc", promotion_test="raw"),
                  "roc_auc", None).promote


def test_a_large_gain_promotes_and_the_reason_states_the_test():
    y, new, old = _pair(300, 200, 40, 5)
    test, verdict = _decision("accuracy", y, new, old)
    assert verdict.promote and test.p_value < 1e-6
    assert "McNemar exact p =" in verdict.reason and "300 holdout rows" in verdict.reason


def test_significant_but_below_the_effect_floor_does_not_promote():
    # 8 wins, 0 losses on 3000 rows: significant, gain 0.0027 < floor 0.005
    y, new, old = _pair(3000, 2000, 8, 0)
    test, verdict = _decision("accuracy", y, new, old)
    assert test.p_value < 0.05 and not verdict.promote and "effect floor" in verdict.reason


def test_paired_bootstrap_for_balanced_accuracy_and_rmse():
    y, new, old = _pair(300, 200, 21, 19)
    small, verdict = _decision("balanced_accuracy", y, new, old)
    assert small.test.startswith("paired bootstrap") and not verdict.promote
    y, new, old = _pair(300, 200, 40, 5)
    large, verdict = _decision("balanced_accuracy", y, new, old)
    assert verdict.promote and large.p_value < 0.01
    # regression: lower rmse is a positive gain
    rng = np.random.default_rng(1)
    target = rng.normal(size=300)
    good, bad = target + rng.normal(0, 0.5, 300), target + rng.normal(0, 1.0, 300)
    test, verdict = _decision("rmse", target, good, bad)
    assert test.gain > 0.3 and verdict.promote
    test, verdict = _decision("rmse", target, bad, good)
    assert test.gain < 0 and not verdict.promote


def test_bootstrap_matches_the_plain_metric_on_all_rows():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    a, b = np.where(rng.random(200) < 0.8, y, rng.integers(0, 3, 200)), rng.integers(0, 3, 200)
    assert abs(paired_test("balanced_accuracy", y, a, b).challenger - balanced_accuracy_score(y, a)) < 1e-12
    assert abs(paired_test("f1_macro", y, a, b).champion - f1_score(y, b, average="macro")) < 1e-12


def test_a_refresh_is_due_after_the_history_grew_and_promotes_unless_worse():
    from calmops.tasks.promote import decide_refresh, refresh_due

    assert not refresh_due(1500, 1000, 2.0) and refresh_due(2000, 1000, 2.0)
    assert not refresh_due(5000, None, 2.0) and not refresh_due(5000, 1000, None)
    # a champion without an error on the file has nothing for more rows to correct: the refresh waits
    assert not refresh_due(2000, 1000, 2.0, {"accuracy": 1.0, "balanced_accuracy": 1.0}, "classification")
    assert refresh_due(2000, 1000, 2.0, {"accuracy": 0.999, "balanced_accuracy": 0.998}, "classification")
    assert not refresh_due(2000, 1000, 2.0, {"rmse": 0.0, "r2": 1.0}, "regression")
    assert refresh_due(2000, 1000, 2.0, {"rmse": 0.01}, "regression")
    spec = _spec()
    y, new, old = _pair(300, 200, 20, 21)  # the refresh is 1 row worse: noise, promoted
    test = paired_test("accuracy", y, new, old)
    assert decide_refresh({"accuracy": test.challenger}, {"accuracy": test.champion}, spec, "accuracy", test).promote
    y, new, old = _pair(300, 200, 5, 40)  # clearly worse: kept out
    test = paired_test("accuracy", y, new, old)
    verdict = decide_refresh({"accuracy": test.challenger}, {"accuracy": test.champion}, spec, "accuracy", test)
    assert not verdict.promote and "worse by at least" in verdict.reason and "McNemar" in verdict.reason


def test_a_refresh_that_loses_on_a_small_holdout_without_evidence_is_promoted():
    """75 holdout rows (30 % of a 250-row file): a refresh 3 rows worse (4 points) is not shown worse (McNemar
    p(worse) = P(X >= 5 | 7 discordant rows, 1/2) = 0.23), so more rows of the same data win; 12 rows worse out
    of 12 discordant is evidence (p = 0.0002), and it stays out."""
    from calmops.tasks.promote import decide_refresh

    spec = _spec()
    y, new, old = _pair(75, 60, 2, 5)  # the refresh right on 2 rows the champion misses, wrong on 5 it gets
    test = paired_test("accuracy", y, new, old)
    assert test.gain < -spec.evaluation.promotion_min_effect and abs(test.p_worse - 0.2265625) < 1e-9
    verdict = decide_refresh({"accuracy": test.challenger}, {"accuracy": test.champion}, spec, "accuracy", test)
    assert verdict.promote
    # the p-value is said as what it is (a "p(worse) = 0.987" read as "98.7 % likely worse")
    assert "McNemar exact, one-sided for a loss: p = 0.227: not shown worse" in verdict.reason, verdict.reason
    y, new, old = _pair(75, 50, 0, 12)
    test = paired_test("accuracy", y, new, old)
    assert test.p_worse < 0.001
    assert not decide_refresh({"accuracy": test.challenger}, {"accuracy": test.champion}, spec, "accuracy",
                              test).promote


def test_a_follow_up_is_due_when_the_promoted_challenger_scores_below_its_predecessor_beyond_the_tolerance():
    from calmops.tasks.promote import follow_up_due

    spec = _spec()  # performance_tolerance 0.03
    before = {"accuracy": 0.95, "rmse": 0.50}
    # 0.92 is 3.2 % below 0.95: fit while the change was under way
    assert follow_up_due({"accuracy": 0.92}, before, spec, "accuracy")
    # 0.93 is 2.1 % below: within the tolerance, as good as the old concept allowed
    assert not follow_up_due({"accuracy": 0.93}, before, spec, "accuracy")
    # an error metric is worse upward: 0.52 is 4 % above 0.50
    assert follow_up_due({"rmse": 0.52}, before, spec, "rmse")
    assert not follow_up_due({"rmse": 0.48}, before, spec, "rmse")
    # switched off, or nothing to compare with
    off = PipelineSpec.model_validate({**spec.model_dump(), "retrain": {"follow_up": False}})
    assert not follow_up_due({"accuracy": 0.5}, before, off, "accuracy")
    assert not follow_up_due({"accuracy": 0.5}, {}, spec, "accuracy")
