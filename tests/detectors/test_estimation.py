"""Performance estimated without labels: CBPE for classifiers, errors by prediction level for regressors.

The data have a known concept (a logistic model of the features), so a covariate shift moves the rows without
changing what a row means: the estimate must follow the realized metric. A concept shift (the same rows now mean
the other class) is the case the docs warn about: the estimate cannot see it.
"""

import json

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    root_mean_squared_error,
)

from calmops.detectors.estimation import CalibratedEstimator, ErrorLevelEstimator, estimator_from_state


def classes_of(n, rng, shift=0.0, flipped=False):
    X = rng.normal(size=(n, 3))
    X[:, 0] += shift
    logit = (-2.0 if flipped else 2.0) * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] - 1.0
    return X, (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)


def fitted(seed):
    """A forest fit on 7,000 rows and its estimator calibrated on 3,000 others (a 10k batch's 70/30 split)."""
    rng = np.random.default_rng(seed)
    X, y = classes_of(10_000, rng)
    model = RandomForestClassifier(30, min_samples_leaf=20, random_state=seed, n_jobs=1).fit(X[:7000], y[:7000])
    return rng, model, CalibratedEstimator.fit(model.predict_proba(X[7000:]), y[7000:], list(model.classes_))


def test_cbpe_follows_a_covariate_shift_within_003_over_10_seeds():
    errors, covered = [], []
    for seed in range(10):
        rng, model, estimator = fitted(seed)
        for shift in (0.75, -0.75):  # fewer, then more rows far from the boundary: accuracy moves both ways
            X, y = classes_of(10_000, rng, shift)
            estimate, predicted = estimator.estimate(model.predict_proba(X)), model.predict(X)
            realized = {"accuracy": accuracy_score(y, predicted),
                        "balanced_accuracy": balanced_accuracy_score(y, predicted),
                        "f1_macro": f1_score(y, predicted, average="macro")}
            errors.append({m: abs(estimate[m].value - v) for m, v in realized.items()})
            covered.append(estimate["accuracy"].low <= realized["accuracy"] <= estimate["accuracy"].high)
    worst = {m: max(e[m] for e in errors) for m in errors[0]}
    assert all(w < 0.03 for w in worst.values()), worst
    # the band carries the rows' chance and the calibration's error: it is no decoration (isotonic's own bias
    # is outside it, so it covers less than its nominal 95 %)
    assert np.mean(covered) >= 0.5, covered


def test_a_shift_that_moves_accuracy_is_seen_by_the_estimate():
    rng, model, estimator = fitted(11)
    easy, hard = (classes_of(10_000, rng, shift)[0] for shift in (-1.5, 0.5))
    est_easy = estimator.estimate(model.predict_proba(easy))["accuracy"]
    est_hard = estimator.estimate(model.predict_proba(hard))["accuracy"]
    assert est_easy.low > est_hard.high  # rows far from the boundary are easier, and the estimate says so


def test_a_concept_shift_is_invisible_to_the_estimate():
    rng, model, estimator = fitted(3)
    X = classes_of(10_000, rng)[0]
    before = estimator.estimate(model.predict_proba(X))["accuracy"].value
    X_new, y_new = classes_of(10_000, rng, flipped=True)
    after = estimator.estimate(model.predict_proba(X_new))["accuracy"].value
    realized = accuracy_score(y_new, model.predict(X_new))
    assert abs(after - before) < 0.03  # the inputs did not move: neither does the estimate
    assert after - realized > 0.2  # while the model is now mostly wrong


def test_multiclass_estimates_match_a_calibrated_model():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12_000, 2))
    logits = np.column_stack([X[:, 0], X[:, 1], -X[:, 0] - X[:, 1]]) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.uniform(size=(len(p), 1)) > p.cumsum(axis=1)).sum(axis=1)  # labels drawn from p: p is calibrated
    estimator = CalibratedEstimator.fit(p[:3000], y[:3000], [0, 1, 2])
    estimate, predicted = estimator.estimate(p[3000:]), p[3000:].argmax(axis=1)
    assert abs(estimate["accuracy"].value - accuracy_score(y[3000:], predicted)) < 0.02
    assert abs(estimate["balanced_accuracy"].value - balanced_accuracy_score(y[3000:], predicted)) < 0.02


def test_error_levels_follow_a_shift_towards_noisier_predictions():
    rng = np.random.default_rng(7)

    def rows(n, shift=0.0):
        X = rng.normal(shift, 1, size=(n, 2))
        return X, 3 * X[:, 0] + rng.normal(0, 0.5 + np.abs(X[:, 0]), n)  # noise grows with |x0|

    X, y = rows(6000)
    model = RandomForestRegressor(30, min_samples_leaf=20, random_state=0, n_jobs=1).fit(X[:4000], y[:4000])
    estimator = ErrorLevelEstimator.fit(model.predict(X[4000:]), y[4000:])
    X_new, y_new = rows(8000, shift=1.0)
    predicted = model.predict(X_new)
    estimate = estimator.estimate(predicted)
    reference_mae = mean_absolute_error(y[4000:], model.predict(X[4000:]))
    realized = mean_absolute_error(y_new, predicted)
    assert realized > 1.2 * reference_mae  # the shift made the model worse...
    assert abs(estimate["mae"].value - realized) < 0.1 * realized  # ...and the estimate saw it
    assert abs(estimate["rmse"].value - root_mean_squared_error(y_new, predicted)) < 0.1 * realized


def test_the_error_band_of_a_small_holdout_covers_the_realized_error_as_often_as_it_says():
    """30 holdout rows (a 100-row file's 30 %) teach one error level; a 1,000-row batch of the same data is then
    estimated. The band must carry the uncertainty of that level's mean, learnt from 30 rows, not only the
    batch's own spread: over 300 draws it holds the realized RMSE about as often as a 95 % band should (it held
    it 24 % of the time; the mean of 30 squared errors is skewed, so somewhat below 95 %)."""
    rng = np.random.default_rng(0)
    held = 0
    for _ in range(300):
        x = rng.normal(size=30)
        estimator = ErrorLevelEstimator.fit(x, x + rng.normal(size=30))
        batch = rng.normal(size=1000)
        realized = float(np.sqrt(np.mean(rng.normal(size=1000) ** 2)))  # the batch's errors, same law
        band = estimator.estimate(batch)["rmse"]
        held += band.low <= realized <= band.high
    assert held / 300 >= 0.85, held / 300


def test_a_level_of_one_reference_row_has_a_band_not_a_point():
    """Tied predictions can leave a level with a single holdout row: its spread is unknown, not zero (the
    band of a batch at that level was a point)."""
    rng = np.random.default_rng(2)
    pred = np.r_[np.zeros(30), [1.0], np.full(59, 2.0)]
    estimator = ErrorLevelEstimator.fit(pred, pred + rng.normal(size=90))
    assert 1 in estimator.level_rows
    band = estimator.estimate(np.ones(500))["rmse"]
    assert band.high - band.low > 0.2, band


def test_a_state_saved_before_the_level_counts_still_estimates_with_a_band():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    state = ErrorLevelEstimator.fit(x, x + rng.normal(size=300)).to_state()
    del state["level_rows"]
    old = estimator_from_state(state).estimate(rng.normal(size=500))["rmse"]
    assert old.low < old.value < old.high


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_state_is_plain_json_and_estimates_the_same(kind):
    rng, model, estimator = fitted(1)
    X = classes_of(2000, rng)[0]
    outputs = model.predict_proba(X)
    if kind == "regression":
        estimator, outputs = ErrorLevelEstimator.fit(outputs[:1000, 1], rng.uniform(size=1000)), outputs[:, 1]
    back = estimator_from_state(json.loads(json.dumps(estimator.to_state())))
    assert back == estimator and back.estimate(outputs) == estimator.estimate(outputs)


def test_too_few_reference_rows_are_refused_by_name():
    with pytest.raises(ValueError, match="5 reference rows"):
        CalibratedEstimator.fit(np.full((5, 2), 0.5), [0, 1, 0, 1, 0], [0, 1])
