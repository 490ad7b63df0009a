"""Block-wise model: one global model plus one model per block of a file.

A "block" is the value of a column (a site, a machine, a month). ``fit`` trains a global model on every row
and a clone of the same template for each block with at least ``min_block_rows`` rows; prediction routes
each row to its block's model. A block without a model of its own (never seen, or too small, or a single
class for a classifier) is routed by ``unseen``: to the global model, or to the mean of all block models
(mean probabilities for classifiers, mean prediction for regressors). ``refit_blocks`` retrains only the
named blocks (those that drifted) and the global model; every other block model stays the same object.

Example
-------
>>> import pandas as pd
>>> from sklearn.linear_model import LinearRegression
>>> X = pd.DataFrame({"site": ["a"] * 40 + ["b"] * 40, "x": list(range(40)) * 2})
>>> y = [2.0 * v for v in range(40)] + [-1.0 * v for v in range(40)]
>>> model = BlockwiseEstimator(LinearRegression(), block_column="site").fit(X, y)
>>> sorted(model.block_estimators_)
['a', 'b']
>>> model.predict(pd.DataFrame({"site": ["a", "b", "c"], "x": [10, 10, 10]})).round(2).tolist()
[20.0, -10.0, 5.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

__all__ = ["SKOPS_TRUSTED_TYPES", "BlockwiseEstimator"]

#: Fully-qualified type names a ``skops.io`` dump of a BlockwiseEstimator needs as ``trusted``, beyond the
#: types of the wrapped estimator itself (a tree-based template adds ``sklearn.tree._tree.Tree``; check a
#: given model with ``skops.io.get_untrusted_types(data=skops.io.dumps(model))``).
SKOPS_TRUSTED_TYPES: list[str] = ["calmops.core.blockwise.BlockwiseEstimator"]

_UNSEEN = ("global", "vote")


def _template_has(attr):
    def check(self):
        getattr(self.estimator, attr)
        return True

    return check


class BlockwiseEstimator(BaseEstimator):
    """One global model plus one model per block; rows routed to their block's model.

    Parameters
    ----------
    estimator : estimator
        Template, cloned for the global model and for each block (never fitted itself). A classifier or a
        regressor; the wrapper takes its estimator type from it.
    block_column : str
        Column of ``X`` (a DataFrame) naming each row's block. It is not a feature: models see the other
        columns.
    unseen : {"global", "vote"}, default="global"
        Where rows of a block without its own model go: the global model, or the mean over all block
        models (classifiers: mean of probabilities mapped onto ``classes_``, then the most probable class;
        regressors: mean of predictions). With no block model at all, "vote" also uses the global model.
    min_block_rows : int, default=30
        Fewest rows a block needs for a model of its own.

    Attributes
    ----------
    global_estimator_ : estimator
        Fitted on every row.
    block_estimators_ : dict
        Block value -> fitted model, for blocks with a model of their own.
    blocks_ : list
        Every block value seen in the last fit / refit, with or without its own model.
    skipped_blocks_ : dict
        Block value -> why it has no model of its own (too few rows, single class).
    classes_ : ndarray
        Classifiers only: the global model's classes; block probabilities are mapped onto them (a block
        that lacks a class gets probability 0 for it).
    feature_columns_ : list
        The columns the models see (every column of ``X`` but ``block_column``), in fit order.
    feature_names_in_ : ndarray of str
        Every column of a DataFrame ``X`` seen in fit, the block column included (scikit-learn's convention).
    n_features_in_ : int
        Number of columns of ``X`` seen in fit, the block column included.
    """

    def __init__(self, estimator, block_column, *, unseen="global", min_block_rows=30):
        self.estimator = estimator
        self.block_column = block_column
        self.unseen = unseen
        self.min_block_rows = min_block_rows

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        return tags

    # ------------------------------------------------------------------ fit

    def fit(self, X, y):
        """Fit the global model on all rows and one model per block with enough rows. Returns self."""
        self._check_params()
        features, blocks, y = self._split(X, y, reset=True)
        self.global_estimator_ = clone(self.estimator).fit(features, y)
        if is_classifier(self.estimator):
            self.classes_ = self.global_estimator_.classes_
        self.block_estimators_, self.skipped_blocks_ = {}, {}
        self.blocks_ = list(pd.unique(blocks))
        for block in self.blocks_:
            self._fit_block(block, features, blocks, y)
        return self

    def refit_blocks(self, X, y, blocks):
        """Retrain only the listed blocks' models (on their rows of ``X``) and the global model (on all of
        ``X``). Every other block model is left as the same object. Returns self."""
        check_is_fitted(self)
        features, block_values, y = self._split(X, y, reset=False)
        present = set(pd.unique(block_values))
        missing = [b for b in blocks if b not in present]
        if missing:
            raise ValueError(f"refit_blocks: blocks {missing} have no rows in X")
        self.global_estimator_ = clone(self.estimator).fit(features, y)
        if is_classifier(self.estimator):
            self.classes_ = self.global_estimator_.classes_
        self.block_estimators_ = dict(self.block_estimators_)
        self.skipped_blocks_ = dict(self.skipped_blocks_)
        for block in blocks:
            self.block_estimators_.pop(block, None)
            self.skipped_blocks_.pop(block, None)
            self._fit_block(block, features, block_values, y)
        self.blocks_ = list(dict.fromkeys([*self.blocks_, *blocks]))
        return self

    # ------------------------------------------------------------------ predict

    def predict(self, X):
        """Each row predicted by its block's model; rows of blocks without one routed by ``unseen``."""
        check_is_fitted(self)
        features, blocks = self._split(X)
        out = np.empty(len(features), dtype=self.classes_.dtype if is_classifier(self) else float)
        for model, rows in self._routes(blocks):
            out[rows] = self._predict_rows(model, features.iloc[rows])
        return out

    @available_if(_template_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities (columns follow ``classes_``), routed like ``predict``."""
        check_is_fitted(self)
        features, blocks = self._split(X)
        out = np.zeros((len(features), len(self.classes_)))
        for model, rows in self._routes(blocks):
            out[rows] = self._proba_rows(model, features.iloc[rows])
        return out

    def score(self, X, y):
        """Accuracy for classifiers, R² for regressors, as scikit-learn's mixins define them."""
        from sklearn.metrics import accuracy_score, r2_score

        pred = self.predict(X)
        return accuracy_score(y, pred) if is_classifier(self) else r2_score(y, pred)

    def model_for(self, block):
        """The model that predicts rows of ``block``: its own, or the ``unseen`` route ("global" returns the
        global model, "vote" returns the string "vote")."""
        check_is_fitted(self)
        if block in self.block_estimators_:
            return self.block_estimators_[block]
        return self.global_estimator_ if self.unseen == "global" or not self.block_estimators_ else "vote"

    # ------------------------------------------------------------------ internals

    def _check_params(self):
        if self.unseen not in _UNSEEN:
            raise ValueError(f"unseen must be one of {_UNSEEN}; got {self.unseen!r}")
        if not isinstance(self.min_block_rows, (int, np.integer)) or self.min_block_rows < 1:
            raise ValueError(f"min_block_rows must be an integer >= 1; got {self.min_block_rows!r}")

    def _split(self, X, y=None, reset=False):
        """(features, block values[, y]) of ``X``: a DataFrame, or an array whose column ``block_column`` (an
        integer position) holds the blocks."""
        X = self._frame(X, reset)
        if self.block_column not in X.columns:
            raise ValueError(f"X has no block column {self.block_column!r}")
        blocks = X[self.block_column].to_numpy()
        if reset:
            features = X.drop(columns=[self.block_column])
            if features.shape[1] == 0:
                raise ValueError(f"X has n_features=1: the block column {self.block_column!r} and no feature")
            self.feature_columns_ = list(features.columns)
        else:
            # models saved before feature_columns_ existed kept the feature columns in feature_names_in_
            columns = getattr(self, "feature_columns_", None) or list(self.feature_names_in_)
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks feature columns seen in fit: {missing}")
            features = X[columns]
        if y is None:
            return features, blocks
        y = column_or_1d(y, warn=True)
        if len(y) != len(features):
            raise ValueError(f"X has {len(features)} rows but y has {len(y)}")
        if is_classifier(self.estimator):
            check_classification_targets(y)
        return features, blocks, y

    def _frame(self, X, reset):
        if sp.issparse(X):
            raise TypeError("BlockwiseEstimator does not accept sparse input: rows are routed by the values of "
                            "the block column; pass a DataFrame or a dense array")
        if isinstance(X, pd.DataFrame):
            if reset:  # n_features_in_ / feature_names_in_ as scikit-learn defines them: every column of X
                validate_data(self, X, reset=True, skip_check_array=True)
            if len(X) == 0:
                raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
            return X
        if not isinstance(self.block_column, (int, np.integer)):
            raise TypeError(f"X must be a pandas DataFrame holding the block column {self.block_column!r} "
                            "(with a numeric array, block_column is the block column's integer position)")
        # an array is numeric throughout (the block column holds numeric codes) and finite
        return pd.DataFrame(validate_data(self, X, reset=reset, dtype="numeric"))

    def _fit_block(self, block, features, blocks, y):
        rows = np.flatnonzero(blocks == block)
        if rows.size < self.min_block_rows:
            self.skipped_blocks_[block] = f"{rows.size} rows < min_block_rows={self.min_block_rows}"
            return
        y_block = y[rows]
        if is_classifier(self.estimator) and np.unique(y_block).size < 2:
            self.skipped_blocks_[block] = "a single class"
            return
        self.block_estimators_[block] = clone(self.estimator).fit(features.iloc[rows], y_block)

    def _routes(self, blocks):
        """Yield (model or "vote", row positions) for each group of rows sharing a route."""
        routed = {}
        for block in pd.unique(blocks):
            rows = np.flatnonzero(blocks == block)
            model = self.model_for(block)
            key = id(model) if not isinstance(model, str) else model
            routed.setdefault(key, (model, []))[1].append(rows)
        for model, parts in routed.values():
            yield model, np.sort(np.concatenate(parts))

    def _proba_rows(self, model, features):
        if isinstance(model, str):  # "vote": mean of every block model's probabilities
            models = list(self.block_estimators_.values())
            return sum(self._proba_rows(m, features) for m in models) / len(models)
        position = {label: i for i, label in enumerate(self.classes_.tolist())}
        unknown = [c for c in model.classes_.tolist() if c not in position]
        if unknown:
            raise ValueError(f"a block model has classes {unknown} outside {self.classes_.tolist()}")
        out = np.zeros((len(features), len(self.classes_)))
        out[:, [position[c] for c in model.classes_.tolist()]] = model.predict_proba(features)
        return out

    def _predict_rows(self, model, features):
        if not isinstance(model, str):
            return model.predict(features)
        models = list(self.block_estimators_.values())
        if not is_classifier(self):
            return np.mean([m.predict(features) for m in models], axis=0)
        if hasattr(self.estimator, "predict_proba"):
            return self.classes_[self._proba_rows(model, features).argmax(axis=1)]
        # no probabilities: majority vote of the block models' labels (ties -> first in classes_)
        votes = np.stack([np.searchsorted(self.classes_, m.predict(features)) for m in models])
        counts = np.apply_along_axis(np.bincount, 0, votes, minlength=len(self.classes_))
        return self.classes_[counts.argmax(axis=0)]
