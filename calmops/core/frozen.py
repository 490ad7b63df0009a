"""Frozen estimator: a fitted model that stays as it is inside anything that clones and fits.

scikit-learn 1.6+ ships :class:`sklearn.frozen.FrozenEstimator`, re-exported here so the project has one
import path for it. It wraps an already fitted estimator: ``fit`` is a no-op (it only checks the wrapped
model is fitted), ``clone`` returns the wrapper itself (so the SAME fitted model), ``fit_predict`` and
``fit_transform`` are disabled, and every other method and attribute is the wrapped model's. Typical use:
stacking the champion with a challenger without retraining the champion::

    StackingClassifier(
        estimators=[("champion", FrozenEstimator(champion)), ("new", clone(template))],
        final_estimator=LogisticRegression(), cv=5,
    )

Note: its ``set_params`` returns ``None`` (scikit-learn 1.9) and only accepts ``estimator``.

Example
-------
>>> from sklearn.base import clone
>>> from sklearn.datasets import make_classification
>>> from sklearn.linear_model import LogisticRegression
>>> X, y = make_classification(random_state=0)
>>> champion = LogisticRegression().fit(X, y)
>>> frozen = FrozenEstimator(champion)
>>> clone(frozen).estimator is champion
True
>>> frozen.fit(X[:10], 1 - y[:10]).estimator is champion
True
"""

from __future__ import annotations

from sklearn.frozen import FrozenEstimator

__all__ = ["SKOPS_TRUSTED_TYPES", "FrozenEstimator"]

#: ``FrozenEstimator`` is among the scikit-learn types skops trusts by default, so a dump needs nothing
#: beyond the wrapped model's own untrusted types (e.g. ``sklearn.tree._tree.Tree`` for tree models).
SKOPS_TRUSTED_TYPES: list[str] = []
