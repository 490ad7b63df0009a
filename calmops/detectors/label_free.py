"""Label-free signals: has the distribution of the model's outputs or of its confidence moved?

Used when a batch has no labels. Predictions of a classifier are compared as categories (chi2,
total-variation effect), of a regressor as numbers (KS); confidences (max class probability) with KS.
The reference outputs are the champion's on its reference data, stored in the profile or passed in.
"""

from __future__ import annotations

import numpy as np

from .categorical import CategoricalReference, run_categorical_test
from .policy import adjust_pvalues, is_drift
from .report import FeatureResult
from .univariate import NumericReference, run_numeric_test


def _is_categorical(values: np.ndarray) -> bool:
    if values.dtype.kind in "OUSb":
        return True
    if values.dtype.kind in "iu":
        return np.unique(values).size <= 50
    return False


def _numeric_result(name, kind, ref_values, batch_values, config) -> FeatureResult:
    ref_v = np.asarray(ref_values, dtype=np.float64)
    b = np.asarray(batch_values, dtype=np.float64)
    b = np.sort(b[np.isfinite(b)])
    ref = NumericReference.build(ref_v, ref_v.size, config.n_bins)
    return _finish(
        name,
        kind,
        "ks",
        ref.sorted_values.size,
        b.size,
        config,
        lambda: run_numeric_test("ks", ref, b, config),
    )


def _categorical_result(name, ref_values, batch_values, config) -> FeatureResult:
    ref_s = np.asarray([str(v) for v in ref_values], dtype=object)
    b = np.asarray([str(v) for v in batch_values], dtype=object)
    ref = CategoricalReference.build(ref_s, ref_s.size, config.max_categories)
    return _finish(
        name,
        "prediction",
        "chi2",
        ref_s.size,
        b.size,
        config,
        lambda: run_categorical_test("chi2", ref, b, config),
    )


def _finish(name, kind, test, n_ref, n_batch, config, fn) -> FeatureResult:
    threshold = config.effect_threshold(test)
    if min(n_ref, n_batch) < config.min_samples:
        return FeatureResult(
            name,
            kind,
            test,
            None,
            None,
            None,
            None,
            threshold,
            False,
            "insufficient_data",
            f"{min(n_ref, n_batch)} values < min_samples {config.min_samples}",
            n_ref,
            n_batch,
        )
    out = fn()
    return FeatureResult(
        name,
        kind,
        test,
        out.statistic,
        out.p_value,
        None,
        out.effect_size,
        threshold,
        False,
        "pending",
        out.detail,
        n_ref,
        n_batch,
    )


def prediction_drift(reference_predictions, batch_predictions, config) -> FeatureResult:
    """Class labels (or few distinct integers) -> chi2; continuous outputs -> KS."""
    ref = np.asarray(reference_predictions)
    if _is_categorical(ref):
        res = _categorical_result("prediction", ref, batch_predictions, config)
    else:
        res = _numeric_result("prediction", "prediction", ref, batch_predictions, config)
    return _decide([res], config)[0]


def confidence_drift(reference_confidences, batch_confidences, config) -> FeatureResult:
    """KS on the max class probability (accepts an (n, k) probability matrix or the max already)."""
    ref, b = _max_proba(reference_confidences), _max_proba(batch_confidences)
    return _decide([_numeric_result("confidence", "confidence", ref, b, config)], config)[0]


def label_free_compare(
    profile,
    config,
    predictions=None,
    confidences=None,
    reference_predictions=None,
    reference_confidences=None,
) -> list[FeatureResult]:
    """Both signals against the profile's stored outputs (or the ones passed in), Holm/BH-corrected
    together with the configured correction."""
    results = []
    ref_pred = reference_predictions if reference_predictions is not None else profile.predictions
    ref_conf = reference_confidences if reference_confidences is not None else profile.confidences
    if predictions is not None and ref_pred is not None:
        ref = np.asarray(ref_pred)
        results.append(
            _categorical_result("prediction", ref, predictions, config)
            if _is_categorical(ref)
            else _numeric_result("prediction", "prediction", ref, predictions, config)
        )
    if confidences is not None and ref_conf is not None:
        results.append(
            _numeric_result("confidence", "confidence", _max_proba(ref_conf), _max_proba(confidences), config)
        )
    return _decide(results, config)


def _max_proba(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    return a.max(axis=1) if a.ndim == 2 else a


def _decide(results: list[FeatureResult], config) -> list[FeatureResult]:
    pending = [r for r in results if r.status == "pending"]
    adj = adjust_pvalues([r.p_value for r in pending], config.correction)
    for r, pa in zip(pending, adj):
        r.p_adjusted = float(pa)
        r.drift = is_drift(r.p_adjusted, r.effect_size, r.threshold, config.alpha)
        r.status = "drift" if r.drift else "no_drift"
    return results
