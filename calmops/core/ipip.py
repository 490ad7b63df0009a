"""IPIP: Identical Partitions for Imbalance Problems, as a scikit-learn classifier.

IPIP (Univ. of Murcia; FILM paper, arXiv 2503.04370) trains ``p`` ensembles, each on its own
balanced-ish subset of the training rows, and grows each ensemble greedily: a new member (fitted on a
class-wise bootstrap of the subset) is kept only when it strictly improves the chosen metric on a held-out
split. ``p`` and the largest ensemble size ``b`` come from coverage formulas: with ``n_min`` minority rows
and ``np`` minority rows per subset,

    np = round(prop_minority * n_min)
    p  = ceil(ln(1 - confidence) / (ln(1 - 1/n_min) * np))   # every minority row in some subset
    b  = ceil(ln(1 - confidence) / (ln(1 - 1/np)   * np))    # every subset row in some bootstrap

``update`` adapts to a new batch without a drift gate: new ensembles are trained on the batch, old and new
are ranked on the batch's held-out rows, and the best ``p`` survive (never fewer than there were).

Example
-------
>>> from sklearn.datasets import make_classification
>>> from sklearn.tree import DecisionTreeClassifier
>>> X, y = make_classification(n_samples=400, weights=[0.85], random_state=0)
>>> clf = IPIPClassifier(base_estimator=DecisionTreeClassifier(max_depth=3), random_state=0).fit(X, y)
>>> clf.p_ == ipip_p(clf.n_minority_, clf.np_, 0.99), clf.b_ == ipip_b(clf.np_, 0.99)
(True, True)
>>> len(clf.ensembles_) == clf.p_ and max(clf.ensemble_sizes_) <= clf.b_
True
>>> clf.predict_proba(X[:2]).shape
(2, 2)
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "EXPECTED_FAILED_CHECKS",
    "SKOPS_TRUSTED_TYPES",
    "IPIPClassifier",
    "ipip_b",
    "ipip_np",
    "ipip_p",
]

#: Fully-qualified type names a ``skops.io`` dump of an IPIPClassifier with tree members (the default
#: random forest, or a decision tree) needs as ``trusted``; skops trusts scikit-learn estimators and numpy
#: types itself, but not the fitted tree structure. Other base estimators may add their own internal types:
#: ``skops.io.get_untrusted_types(data=skops.io.dumps(model))`` lists them.
SKOPS_TRUSTED_TYPES: list[str] = ["calmops.core.ipip.IPIPClassifier", "sklearn.tree._tree.Tree"]

#: ``check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS)``: the checks this estimator is
#: known to fail, with the reason. Empty: every check that scikit-learn 1.9 yields for it passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

_METRICS = {"balanced_accuracy": balanced_accuracy_score, "kappa": cohen_kappa_score}


def _too_few(counts: np.ndarray, classes: np.ndarray) -> str | None:
    """Why a batch with these class ``counts`` cannot update the ensemble, None when it can: it needs two rows of
    each class, one to train new ensembles on and one to judge them on (with one, they would be judged on the
    very row they were trained on)."""
    if (counts > 0).sum() < 2:
        return "holds a single class"
    if counts.min() < 2:
        rare = int(np.argmin(counts))
        return (f"holds {int(counts[rare])} row of class {str(classes[rare])!r}: too few to train new ensembles "
                "and judge them on rows they were not trained on")
    return None


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def ipip_np(n_min: int, prop_minority: float) -> int:
    """Minority rows per subset: ``round(prop_minority * n_min)`` (halves rounded up), at least 1."""
    return max(1, _round_half_up(prop_minority * n_min))


def ipip_p(n_min: int, np_: int, confidence: float) -> int:
    """Number of ensembles: ``ceil(ln(1-confidence) / (ln(1 - 1/n_min) * np))``; 1 when ``n_min <= 1``."""
    if n_min <= 1:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / (math.log(1 - 1 / n_min) * np_)))


def ipip_b(np_: int, confidence: float) -> int:
    """Largest ensemble size: ``ceil(ln(1-confidence) / (ln(1 - 1/np) * np))``; 1 when ``np <= 1``."""
    if np_ <= 1:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / (math.log(1 - 1 / np_) * np_)))


class IPIPClassifier(ClassifierMixin, BaseEstimator):
    """IPIP ensemble of balanced-subset ensembles for imbalanced binary classification.

    Parameters
    ----------
    base_estimator : classifier, default=None
        Template for every member (cloned, never fitted itself). ``None`` means
        ``RandomForestClassifier(n_estimators=10)``. A ``random_state`` parameter of the template is set
        per member from the IPIP generator, so the whole model is reproducible.
    prop_minority : float in (0, 1], default=0.75
        Share of the training minority rows drawn into each subset: ``np = round(prop_minority * n_min)``.
    majority_share : float in (0, 1), default=0.5
        Share of majority rows in a subset: ``round(np * majority_share / (1 - majority_share))`` majority
        rows are drawn (0.5 gives equal counts).
    confidence : float in (0, 1), default=0.99
        Coverage confidence in the formulas for ``p`` and ``b``.
    metric : {"balanced_accuracy", "kappa"}, default="balanced_accuracy"
        Held-out metric that each new member must strictly improve, and that ranks ensembles in ``update``.
    max_failed_attempts : int, default=3
        Growth of an ensemble stops after this many consecutive candidates that did not strictly improve
        the metric (such candidates are discarded), or when it has ``b`` members.
    holdout_size : float in (0, 1), default=0.2
        Share of each class held out (stratified) for scoring: per class
        ``round(holdout_size * n_class)`` rows, clipped to ``[1, n_class - 1]``. A class with a single row
        cannot be split; then scoring uses the training rows.
    random_state : int, RandomState instance or None, default=None
        Seeds the single numpy ``Generator`` every subset, bootstrap and member seed is drawn from.
    p, b : int or None, default=None
        Override the number of ensembles / the largest ensemble size given by the formulas.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels, sorted; any labels (strings included).
    minority_class_ : label
        The rarer label in the training part of the last fit/update batch (on a tie, ``classes_[1]``);
        found from the data of each batch, so a batch whose prevalence flips is still subset correctly.
    n_minority_, np_, n_majority_per_subset_ : int
        ``n_min`` (minority rows in the training part), ``np`` and the majority rows per subset of the
        last fit/update.
    p_, b_ : int
        The batch's number of ensembles and largest ensemble size (formulas or overrides) of the last
        fit/update; an update keeps ``max(p_, ensembles before)`` (``len(ensembles_)``).
    ensembles_ : list of list of estimators
        The kept ensembles, each a list of fitted members (trained on labels encoded as 0/1 =
        ``classes_`` positions).
    ensemble_sizes_ : list of int
        Members per kept ensemble.
    ensemble_info_ : list of dict
        Per kept ensemble: ``batch`` (0 = fit, k = k-th update), ``subset`` (row positions of that batch
        the ensemble was drawn from) and ``trace`` (each growth candidate: ``score`` with it,
        ``best_before``, ``kept``).
    holdout_index_ : ndarray of int
        Row positions of the last fit/update batch held out for scoring.
    replaced_share_ : float
        Share of the kept ensembles that are new after the last fit/update (1.0 after ``fit``).
    history_ : list of dict
        One JSON-able record per fit (first) and update: sizes, p, b, scores, replaced share.
    seed_ : int
        Seed drawn from ``random_state``; update ``k`` uses ``np.random.default_rng([seed_, k])``.
    n_features_in_, feature_names_in_ :
        As usual in scikit-learn.

    Notes
    -----
    Binary only: ``fit`` raises ``ValueError("Only binary classification is supported...")`` otherwise
    (the estimator tag ``classifier_tags.multi_class`` is False, so ``check_estimator`` tests it on binary
    data). ``check_estimator`` passes with no expected failures in scikit-learn 1.9
    (``EXPECTED_FAILED_CHECKS`` is empty; a check that starts failing is listed there with its reason).
    In ``update``, the held-out rows of the new batch both guide the growth of the new ensembles and rank
    old against new ensembles; ties in the ranking keep the newer ensemble.
    """

    def __init__(
        self,
        base_estimator=None,
        *,
        prop_minority=0.75,
        majority_share=0.5,
        confidence=0.99,
        metric="balanced_accuracy",
        max_failed_attempts=3,
        holdout_size=0.2,
        random_state=None,
        p=None,
        b=None,
    ):
        self.base_estimator = base_estimator
        self.prop_minority = prop_minority
        self.majority_share = majority_share
        self.confidence = confidence
        self.metric = metric
        self.max_failed_attempts = max_failed_attempts
        self.holdout_size = holdout_size
        self.random_state = random_state
        self.p = p
        self.b = b

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ public API

    def fit(self, X, y):
        """Fit ``p`` ensembles on ``X, y`` (binary labels of any type). Returns self."""
        self._check_params()
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        n_classes = np.unique(y).size
        if y_type != "binary" or n_classes != 2:
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}; IPIPClassifier needs exactly two classes and got {n_classes} "
                f"class{'es' if n_classes != 1 else ''}."
            )
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        rng = np.random.default_rng(self.seed_)

        ensembles, infos, hold, stats = self._train_batch(X, y_enc, rng, batch=0)
        self.ensembles_, self.ensemble_info_ = ensembles, infos
        self.holdout_index_ = hold
        self.ensemble_sizes_ = [len(e) for e in ensembles]
        self.replaced_share_ = 1.0
        holdout_score = self._metric(y_enc[hold], self._proba_of(ensembles, X[hold]).argmax(axis=1))
        self.history_ = [
            {
                "event": "fit",
                **stats,
                "ensemble_sizes": list(self.ensemble_sizes_),
                "n_new_kept": len(ensembles),
                "replaced_share": 1.0,
                "holdout_score": holdout_score,
            }
        ]
        return self

    def update(self, X, y):
        """Adapt to a new batch: train new ensembles on it, keep the best of old + new.

        ``p`` and ``b`` are recomputed from the batch (unless overridden). Old and new ensembles are each
        scored with ``metric`` on the batch's held-out rows; the best ``max(p, number of ensembles before)``
        are kept (ties keep the newer): a batch with few minority rows, whose formulas give a smaller ``p``,
        does not cut the ensemble down. A batch holding only one of the two classes cannot form subsets, and
        one with a single row of a class cannot judge what it trains: the model is left unchanged and the
        history records why. Calling ``update`` on an unfitted estimator is ``fit``. Returns self.
        """
        if not hasattr(self, "ensembles_"):
            return self.fit(X, y)
        self._check_params()
        X, y = validate_data(self, X, y, reset=False)
        check_classification_targets(y)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"update got labels {unknown.tolist()} not seen in fit: {self.classes_.tolist()}"
            )
        y_enc = np.searchsorted(self.classes_, y)
        k = len(self.history_)
        counts = np.bincount(y_enc, minlength=2)
        if (skipped := _too_few(counts, self.classes_)) is not None:
            self.history_.append({"event": "update", "n_rows": len(y), "skipped": skipped})
            return self
        rng = np.random.default_rng([self.seed_, k])
        new, new_infos, hold, stats = self._train_batch(X, y_enc, rng, batch=k)
        y_hold, X_hold = y_enc[hold], X[hold]
        old_scores = [
            self._metric(y_hold, self._proba_of([e], X_hold).argmax(axis=1)) for e in self.ensembles_
        ]
        new_scores = [self._metric(y_hold, self._proba_of([e], X_hold).argmax(axis=1)) for e in new]
        # candidates: (score, is_new, order) — sorting on (-score, not new, order) keeps the newer on ties
        pool = [(s, False, i) for i, s in enumerate(old_scores)] + [
            (s, True, i) for i, s in enumerate(new_scores)
        ]
        pool.sort(key=lambda c: (-c[0], not c[1], c[2]))
        kept = pool[: max(self.p_, len(self.ensembles_))]  # a batch with fewer minority rows does not cut it down
        self.ensembles_ = [new[i] if is_new else self.ensembles_[i] for _, is_new, i in kept]
        self.ensemble_info_ = [new_infos[i] if is_new else self.ensemble_info_[i] for _, is_new, i in kept]
        self.ensemble_sizes_ = [len(e) for e in self.ensembles_]
        n_new_kept = sum(1 for _, is_new, _ in kept if is_new)
        self.replaced_share_ = n_new_kept / len(kept)
        self.holdout_index_ = hold
        self.history_.append(
            {
                "event": "update",
                **stats,
                "ensemble_sizes": list(self.ensemble_sizes_),
                "old_scores": [float(s) for s in old_scores],
                "new_scores": [float(s) for s in new_scores],
                "n_new_kept": n_new_kept,
                "replaced_share": self.replaced_share_,
                "holdout_score": self._metric(y_hold, self._proba_of(self.ensembles_, X_hold).argmax(axis=1)),
            }
        )
        return self

    def predict_proba(self, X):
        """Mean over ensembles of each ensemble's mean member probability; columns follow ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self._proba_of(self.ensembles_, X)

    def predict(self, X):
        """The label with the highest mean probability."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    # ------------------------------------------------------------------ internals

    def _check_params(self):
        def real_in(name, lo, hi, lo_closed=False, hi_closed=False):
            v = getattr(self, name)
            ok = (
                isinstance(v, numbers.Real)
                and (v >= lo if lo_closed else v > lo)
                and (v <= hi if hi_closed else v < hi)
            )
            if not ok:
                raise ValueError(
                    f"{name} must be a number in {'[' if lo_closed else '('}{lo}, {hi}"
                    f"{']' if hi_closed else ')'}; got {v!r}"
                )

        real_in("prop_minority", 0, 1, hi_closed=True)
        real_in("majority_share", 0, 1)
        real_in("confidence", 0, 1)
        real_in("holdout_size", 0, 1)
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}; got {self.metric!r}")
        for name in ("max_failed_attempts", "p", "b"):
            v = getattr(self, name)
            if (v is not None or name == "max_failed_attempts") and not (
                isinstance(v, numbers.Integral) and v >= 1
            ):
                raise ValueError(
                    f"{name} must be an integer >= 1{'' if name == 'max_failed_attempts' else ' or None'}; got {v!r}"
                )

    def _metric(self, y_true, y_pred) -> float:
        with warnings.catch_warnings():
            # a held-out part may miss a class on tiny data; the metric is still defined
            warnings.simplefilter("ignore")
            score = _METRICS[self.metric](y_true, y_pred)
        return float(np.nan_to_num(score, nan=0.0))

    def _template(self):
        return RandomForestClassifier(n_estimators=10) if self.base_estimator is None else self.base_estimator

    def _holdout_split(self, y_enc, rng):
        train, hold = [], []
        for code in (0, 1):
            idx = np.flatnonzero(y_enc == code)
            idx = idx[rng.permutation(idx.size)]
            if idx.size < 2:
                return np.arange(y_enc.size), np.arange(y_enc.size)
            n_hold = min(max(_round_half_up(self.holdout_size * idx.size), 1), idx.size - 1)
            hold.append(idx[:n_hold])
            train.append(idx[n_hold:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(hold))

    def _proba_of(self, ensembles, X):
        total = np.zeros((X.shape[0], 2))
        for members in ensembles:
            total += sum(self._member_proba(m, X) for m in members) / len(members)
        return total / len(ensembles)

    @staticmethod
    def _member_proba(member, X):
        proba = member.predict_proba(X)
        out = np.zeros((X.shape[0], 2))
        out[:, np.asarray(member.classes_, dtype=int)] = proba
        return out

    def _train_batch(self, X, y_enc, rng, batch):
        """Draw the split, the subsets and grow the ensembles of one batch."""
        train, hold = self._holdout_split(y_enc, rng)
        counts = np.bincount(y_enc[train], minlength=2)
        min_code = int(np.argmin(counts)) if counts[0] != counts[1] else 1
        self.minority_class_ = self.classes_[min_code]
        minority_rows = train[y_enc[train] == min_code]
        majority_rows = train[y_enc[train] != min_code]
        n_min = int(minority_rows.size)
        np_ = ipip_np(n_min, self.prop_minority)
        n_maj = max(1, _round_half_up(np_ * self.majority_share / (1 - self.majority_share)))
        self.n_minority_, self.np_, self.n_majority_per_subset_ = n_min, np_, n_maj
        self.p_ = self.p if self.p is not None else ipip_p(n_min, np_, self.confidence)
        self.b_ = self.b if self.b is not None else ipip_b(np_, self.confidence)

        X_hold, y_hold = X[hold], y_enc[hold]
        ensembles, infos = [], []
        for _ in range(self.p_):
            sub_min = rng.choice(minority_rows, size=np_, replace=False)
            sub_maj = rng.choice(majority_rows, size=n_maj, replace=n_maj > majority_rows.size)
            members, trace = self._grow(X, y_enc, sub_min, sub_maj, X_hold, y_hold, rng)
            ensembles.append(members)
            infos.append({"batch": batch, "subset": np.concatenate([sub_min, sub_maj]), "trace": trace})
        stats = {
            "n_rows": int(y_enc.size),
            "n_train": int(train.size),
            "n_holdout": int(hold.size),
            "n_minority": n_min,
            "np": np_,
            "n_majority_per_subset": n_maj,
            "p": int(self.p_),
            "b": int(self.b_),
        }
        return ensembles, infos, hold, stats

    def _grow(self, X, y_enc, sub_min, sub_maj, X_hold, y_hold, rng):
        """Add members while the held-out metric strictly improves (at most b, stop after failures)."""
        template = self._template()
        members, trace = [], []
        proba_sum = np.zeros((X_hold.shape[0], 2))
        best, failed = -np.inf, 0
        while len(members) < self.b_ and failed < self.max_failed_attempts:
            rows = np.concatenate(
                [
                    rng.choice(sub_min, size=sub_min.size, replace=True),
                    rng.choice(sub_maj, size=sub_maj.size, replace=True),
                ]
            )
            member = clone(template)
            if "random_state" in member.get_params(deep=False):
                member.set_params(random_state=int(rng.integers(np.iinfo(np.int32).max)))
            member.fit(X[rows], y_enc[rows])
            candidate = proba_sum + self._member_proba(member, X_hold)
            score = self._metric(y_hold, (candidate / (len(members) + 1)).argmax(axis=1))
            kept = score > best
            trace.append({"score": score, "best_before": float(best), "kept": bool(kept)})
            if kept:
                members.append(member)
                proba_sum, best, failed = candidate, score, 0
            else:
                failed += 1
        return members, trace
