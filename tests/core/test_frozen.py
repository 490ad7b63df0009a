"""FrozenEstimator: the champion stays untouched when stacked with a new model."""

from __future__ import annotations

import numpy as np
import sklearn.frozen
import skops.io as sio
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from calmops.core.frozen import SKOPS_TRUSTED_TYPES, FrozenEstimator


def _data():
    return make_classification(n_samples=300, n_features=6, random_state=0)


def test_is_sklearns_own_frozen_estimator():
    assert FrozenEstimator is sklearn.frozen.FrozenEstimator


def test_clone_and_fit_keep_the_same_fitted_model():
    X, y = _data()
    champion = LogisticRegression().fit(X, y)
    coef = champion.coef_.copy()
    frozen = FrozenEstimator(champion)
    assert clone(frozen).estimator is champion
    frozen.fit(X[:50], 1 - y[:50])  # a no-op, even with reversed labels
    np.testing.assert_array_equal(champion.coef_, coef)


def test_stacking_leaves_the_frozen_champion_predictions_unchanged():
    X, y = _data()
    X_old, y_old, X_new, y_new = X[:150], y[:150], X[150:], y[150:]
    champion = LogisticRegression().fit(X_old, y_old)
    before_proba = champion.predict_proba(X)
    before_pred = champion.predict(X)
    stack = StackingClassifier(
        estimators=[
            ("champion", FrozenEstimator(champion)),
            ("new", clone(RandomForestClassifier(n_estimators=20, random_state=0))),
        ],
        final_estimator=LogisticRegression(),
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
    ).fit(X_new, y_new)
    np.testing.assert_array_equal(champion.predict_proba(X), before_proba)
    np.testing.assert_array_equal(champion.predict(X), before_pred)
    # the stack's first fitted base model is the frozen wrapper around the very same champion
    assert stack.estimators_[0].estimator is champion
    assert stack.predict_proba(X).shape == (len(X), 2)


def test_skops_round_trip_with_listed_trusted_types():
    X, y = _data()
    frozen = FrozenEstimator(LogisticRegression().fit(X, y))
    dumped = sio.dumps(frozen)
    assert sorted(sio.get_untrusted_types(data=dumped)) == sorted(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(dumped, trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(X), frozen.predict_proba(X))
