"""IPIPClassifier: coverage formulas, subsets, growth rule, update, labels, sklearn conventions, skops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import check_estimator

from calmops.core.ipip import (
    EXPECTED_FAILED_CHECKS,
    SKOPS_TRUSTED_TYPES,
    IPIPClassifier,
    ipip_b,
    ipip_np,
    ipip_p,
)


def _tree():
    return DecisionTreeClassifier(max_depth=3)


def _data(n_min=60, n_maj=240, n_features=4, seed=0, shift=1.5):
    """Minority rows shifted by `shift` on every feature: learnable but overlapping."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(size=(n_maj, n_features)), rng.normal(size=(n_min, n_features)) + shift])
    y = np.array([0] * n_maj + [1] * n_min)
    order = rng.permutation(len(y))
    return X[order], y[order]


# ---------------------------------------------------------------- formulas


def test_formulas_by_hand_for_n_min_50():
    # np = round(0.75 * 50) = round(37.5) -> 38 (halves rounded up)
    assert ipip_np(50, 0.75) == 38
    expected_p = math.ceil(math.log(1 - 0.99) / (math.log(1 - 1 / 50) * 38))
    expected_b = math.ceil(math.log(1 - 0.99) / (math.log(1 - 1 / 38) * 38))
    assert ipip_p(50, 38, 0.99) == expected_p
    assert ipip_b(38, 0.99) == expected_b
    # sanity of the numbers themselves: -4.605 / (-0.0202 * 38) = 5.998 -> 6 ; -4.605 / -1.0134 = 4.54 -> 5
    assert (expected_p, expected_b) == (6, 5)


def test_formulas_degenerate_counts_give_one():
    assert ipip_p(1, 1, 0.99) == 1
    assert ipip_b(1, 0.99) == 1
    assert ipip_np(1, 0.1) == 1


def test_fitted_p_b_match_formulas_on_known_counts():
    # 60 minority rows, holdout 1/6 per class -> 10 held out, n_min = 50 training minority rows
    X, y = _data(n_min=60, n_maj=240)
    clf = IPIPClassifier(base_estimator=_tree(), holdout_size=1 / 6, random_state=0).fit(X, y)
    assert clf.n_minority_ == 50
    assert clf.np_ == 38
    assert clf.n_majority_per_subset_ == 38  # majority_share 0.5 -> equal counts
    assert clf.p_ == math.ceil(math.log(0.01) / (math.log(1 - 1 / 50) * 38))
    assert clf.b_ == math.ceil(math.log(0.01) / (math.log(1 - 1 / 38) * 38))
    assert len(clf.ensembles_) == clf.p_
    assert clf.ensemble_sizes_ == [len(e) for e in clf.ensembles_]
    assert all(1 <= s <= clf.b_ for s in clf.ensemble_sizes_)
    assert len(clf.holdout_index_) == 10 + 40  # round(240 / 6) = 40 majority rows held out


def test_majority_share_and_overrides():
    X, y = _data(n_min=60, n_maj=240)
    clf = IPIPClassifier(
        base_estimator=_tree(), holdout_size=1 / 6, majority_share=0.75, p=3, b=2, random_state=0
    ).fit(X, y)
    assert clf.n_majority_per_subset_ == round(38 * 0.75 / 0.25)  # 114
    assert (clf.p_, clf.b_) == (3, 2)
    assert len(clf.ensembles_) == 3 and max(clf.ensemble_sizes_) <= 2
    for info in clf.ensemble_info_:
        assert len(info["subset"]) == 38 + 114


# ---------------------------------------------------------------- subsets and seeding


def test_subsets_are_drawn_from_training_rows_and_differ():
    X, y = _data()
    clf = IPIPClassifier(base_estimator=_tree(), random_state=1).fit(X, y)
    hold = set(clf.holdout_index_.tolist())
    subsets = [info["subset"] for info in clf.ensemble_info_]
    assert len(subsets) == clf.p_ >= 2
    for s in subsets:
        assert not hold & set(s.tolist())
        assert (y[s] == 1).sum() == clf.np_ and (y[s] == 0).sum() == clf.n_majority_per_subset_
        assert len(set(s.tolist())) == len(s)  # drawn without replacement
    as_sets = [frozenset(s.tolist()) for s in subsets]
    assert len(set(as_sets)) == len(as_sets)


def test_same_seed_same_model_different_seed_differs():
    X, y = _data()
    a = IPIPClassifier(base_estimator=_tree(), random_state=7).fit(X, y)
    b = IPIPClassifier(base_estimator=_tree(), random_state=7).fit(X, y)
    c = IPIPClassifier(base_estimator=_tree(), random_state=8).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.ensemble_sizes_ == b.ensemble_sizes_
    for ia, ib in zip(a.ensemble_info_, b.ensemble_info_):
        np.testing.assert_array_equal(ia["subset"], ib["subset"])
    assert any(
        not np.array_equal(ia["subset"], ic["subset"]) for ia, ic in zip(a.ensemble_info_, c.ensemble_info_)
    )
    # updates are reproducible too
    Xn, yn = _data(seed=3)
    a.update(Xn, yn)
    b.update(Xn, yn)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ---------------------------------------------------------------- growth rule


@pytest.mark.parametrize(
    "metric, score", [("balanced_accuracy", balanced_accuracy_score), ("kappa", cohen_kappa_score)]
)
def test_growth_keeps_only_strictly_improving_members(metric, score):
    X, y = _data(n_min=80, n_maj=320, shift=0.8)
    clf = IPIPClassifier(base_estimator=_tree(), metric=metric, max_failed_attempts=2, random_state=3).fit(
        X, y
    )
    hold = clf.holdout_index_
    saw_rejection = False
    for members, info in zip(clf.ensembles_, clf.ensemble_info_):
        trace = info["trace"]
        # independent recomputation: each prefix of the kept members scores strictly better than the last
        proba_sum = np.zeros((len(hold), 2))
        previous = -np.inf
        for k, m in enumerate(members, start=1):
            proba_sum += m.predict_proba(X[hold])
            current = score(y[hold], (proba_sum / k).argmax(axis=1))
            assert current > previous
            previous = current
        # the trace: kept exactly when strictly better than the best so far; kept count = members
        best = -np.inf
        failed = 0
        for t in trace:
            assert t["best_before"] == best
            assert t["kept"] == (t["score"] > best)
            if t["kept"]:
                best, failed = t["score"], 0
            else:
                failed += 1
                saw_rejection = True
            assert failed <= clf.max_failed_attempts
        assert sum(t["kept"] for t in trace) == len(members)
        assert best == pytest.approx(previous)
        # stopped because it reached b members or after max_failed_attempts consecutive failures
        assert len(members) == clf.b_ or failed == clf.max_failed_attempts
    assert saw_rejection, "the run should exercise the rejection branch"


# ---------------------------------------------------------------- update


def test_update_keeps_p_best_and_reports_replaced_share():
    X, y = _data(seed=0)
    clf = IPIPClassifier(base_estimator=_tree(), random_state=0).fit(X, y)
    assert clf.replaced_share_ == 1.0 and clf.history_[0]["event"] == "fit"
    Xn, yn = _data(n_min=40, n_maj=200, seed=1)
    clf.update(Xn, yn)
    rec = clf.history_[-1]
    assert rec["event"] == "update" and len(clf.history_) == 2
    # p is recomputed from the new batch: 40 minority, round(0.2*40)=8 held out -> n_min 32, np 24
    assert clf.n_minority_ == 32 and clf.np_ == 24
    assert clf.p_ == math.ceil(math.log(0.01) / (math.log(1 - 1 / 32) * 24))
    assert len(clf.ensembles_) == clf.p_ == len(clf.ensemble_sizes_) == len(clf.ensemble_info_)
    n_new = sum(info["batch"] == 1 for info in clf.ensemble_info_)
    assert rec["n_new_kept"] == n_new
    assert clf.replaced_share_ == rec["replaced_share"] == n_new / clf.p_
    # kept = the best p: nothing dropped scores above anything kept
    n_old_kept = clf.p_ - n_new
    old_sorted = sorted(rec["old_scores"], reverse=True)
    new_sorted = sorted(rec["new_scores"], reverse=True)
    kept_scores = old_sorted[:n_old_kept] + new_sorted[:n_new]
    dropped = old_sorted[n_old_kept:] + new_sorted[n_new:]
    if dropped:
        assert min(kept_scores) >= max(dropped)


def test_update_after_concept_flip_replaces_everything():
    # the minority moves from +3 to -3: old trees send the new minority to the majority side, so an old
    # ensemble is at best chance (balanced accuracy <= 0.5); new ones learn the new concept and score
    # above chance, so the best p are all new
    X, y = _data(shift=3.0, seed=0)
    clf = IPIPClassifier(base_estimator=_tree(), random_state=0).fit(X, y)
    Xn, yn = _data(shift=-3.0, seed=1)
    clf.update(Xn, yn)
    assert clf.replaced_share_ == 1.0
    assert all(info["batch"] == 1 for info in clf.ensemble_info_)
    assert max(clf.history_[-1]["old_scores"]) <= 0.5 < min(clf.history_[-1]["new_scores"])


def test_update_single_class_batch_is_skipped_and_unknown_label_rejected():
    X, y = _data()
    clf = IPIPClassifier(base_estimator=_tree(), random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.update(X[y == 0][:50], y[y == 0][:50])
    assert clf.history_[-1]["skipped"]
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    with pytest.raises(ValueError, match="not seen in fit"):
        clf.update(X[:10], np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]))


def test_an_update_needs_two_rows_of_each_class_and_never_cuts_the_ensemble_down():
    """One row of a class: new ensembles would be judged on the row they were trained on; skipped, said why.
    Three rows of it: the coverage formulas give a smaller p for the batch (two training rows), and the best of
    old and new are kept as many as there were."""
    X, y = _data()
    clf = IPIPClassifier(base_estimator=_tree(), random_state=0).fit(X, y)
    before, n = clf.predict_proba(X), len(clf.ensembles_)
    Xn, yn = _data(n_min=1, n_maj=60, seed=1)
    clf.update(Xn, yn)
    assert clf.history_[-1]["skipped"] == ("holds 1 row of class '1': too few to train new ensembles and judge "
                                           "them on rows they were not trained on")
    np.testing.assert_array_equal(clf.predict_proba(X), before)

    Xs, ys = _data(n_min=3, n_maj=60, seed=2)
    clf.update(Xs, ys)
    assert clf.history_[-1]["p"] == ipip_p(2, ipip_np(2, clf.prop_minority), clf.confidence) < n
    assert len(clf.ensembles_) == n


def test_update_on_unfitted_is_fit():
    X, y = _data()
    a = IPIPClassifier(base_estimator=_tree(), random_state=4).update(X, y)
    b = IPIPClassifier(base_estimator=_tree(), random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ---------------------------------------------------------------- labels and conventions


def test_string_labels_and_minority_found_from_data():
    X, y = _data()
    # the minority is the label that sorts FIRST, so it is classes_[0], not the "positive" column
    labels = np.where(y == 1, "alarm", "normal")
    clf = IPIPClassifier(base_estimator=_tree(), random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["alarm", "normal"]
    assert clf.minority_class_ == "alarm"
    pred = clf.predict(X)
    assert set(pred) <= {"alarm", "normal"}
    assert balanced_accuracy_score(labels, pred) > 0.75  # shift 1.5 on 4 features is easy
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)


@pytest.mark.parametrize("labels", [[0, 1, 2], [5]])
def test_not_two_classes_is_a_clear_error(labels):
    X = np.random.default_rng(0).normal(size=(30, 2))
    y = np.resize(np.array(labels), 30)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        IPIPClassifier().fit(X, y)


def test_invalid_parameter_is_reported_at_fit():
    X, y = _data()
    with pytest.raises(ValueError, match="metric"):
        IPIPClassifier(metric="f1").fit(X, y)
    with pytest.raises(ValueError, match="confidence"):
        IPIPClassifier(confidence=1.0).fit(X, y)


def test_clone_keeps_params_and_drops_state():
    X, y = _data()
    clf = IPIPClassifier(base_estimator=_tree(), metric="kappa", p=2, random_state=5).fit(X, y)
    twin = clone(clf)
    assert twin.get_params()["metric"] == "kappa" and twin.get_params()["p"] == 2
    assert not hasattr(twin, "ensembles_")
    np.testing.assert_array_equal(twin.fit(X, y).predict_proba(X), clf.predict_proba(X))


def test_check_estimator():
    results = check_estimator(
        IPIPClassifier(base_estimator=_tree()),
        expected_failed_checks=EXPECTED_FAILED_CHECKS,
        on_fail=None,
        on_skip=None,
    )
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert failed == {}
    assert sum(r["status"] == "passed" for r in results) > 40


# ---------------------------------------------------------------- skops


def test_skops_round_trip_with_listed_trusted_types():
    X, y = _data()
    clf = IPIPClassifier(random_state=0).fit(X, np.where(y == 1, "yes", "no"))  # default random forest
    dumped = sio.dumps(clf)
    assert sorted(sio.get_untrusted_types(data=dumped)) == sorted(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(dumped, trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
