"""compare(): a batch against the reference profile, every configured test, one report."""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from .categorical import OTHER, CategoricalReference, run_categorical_test
from .columns import categorical_values, numeric_values
from .config import DriftConfig
from .policy import adjust_pvalues, aggregate, is_drift, rank_culprits
from .profile import ReferenceProfile
from .report import (
    Distribution,
    DriftReport,
    FeatureResult,
    MultivariateResult,
    SchemaSignal,
    new_column_signal,
)
from .univariate import NumericReference, bin_counts, run_numeric_test


def compare(
    profile: ReferenceProfile,
    batch: pd.DataFrame,
    config: DriftConfig | None = None,
    importances: dict[str, float] | None = None,
) -> DriftReport:
    """Test every profiled column of ``batch`` against the reference and decide.

    A result is drift when its (corrected) p-value is below ``alpha`` AND its effect size reaches the
    minimum effect, with at least ``min_samples`` non-missing values on each side. A feature drifts when
    any of its tests does, when its null rate moves by ``null_rate_change`` (significantly), or when it
    is missing from the batch. Features are then aggregated (any / share / weighted); a multivariate
    drift also makes the batch drift.

    >>> import numpy as np, pandas as pd
    >>> from calmops.detectors import ReferenceProfile, infer_feature_types
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "z": rng.normal(0, 1, 2000)})
    >>> profile = ReferenceProfile.build(ref, infer_feature_types(ref), DriftConfig())
    >>> shifted = pd.DataFrame({"x": rng.normal(1.5, 1, 500), "z": rng.normal(0, 1, 500)})
    >>> report = compare(profile, shifted)
    >>> report.drift_detected, report.drifted_features
    (True, ['x'])
    """
    config = config or DriftConfig()
    n_batch = len(batch)
    results: list[FeatureResult] = []
    signals: list[SchemaSignal] = []
    feature_flags: dict[str, float] = {}  # feature -> culprit score from schema signals
    distributions: dict[str, Distribution] = {}

    for col in batch.columns:
        if str(col) not in profile.feature_types:
            signals.append(new_column_signal(str(col)))

    for col, kind in profile.feature_types.items():
        if col not in batch.columns:
            signals.append(SchemaSignal("missing_column", col, "column missing from the batch", drift=True))
            feature_flags[col] = math.inf
            tests = config.numeric_tests if col in profile.numeric else config.categorical_tests
            for t in tests:
                results.append(
                    FeatureResult(
                        col,
                        kind,
                        t,
                        None,
                        None,
                        None,
                        None,
                        config.effect_threshold(t),
                        False,
                        "error",
                        "column missing from the batch",
                        profile.n_rows,
                        0,
                    )
                )
            continue
        s = batch[col]
        if col in profile.numeric:
            ref = profile.numeric[col]
            values = numeric_values(s, kind)
            finite = np.sort(values[np.isfinite(values)])
            n_missing = n_batch - finite.size
            n_ref = ref.sorted_values.size
            distributions[col] = numeric_distribution(ref, finite)
            for t in config.numeric_tests:
                results.append(
                    _run(
                        col,
                        kind,
                        t,
                        n_ref,
                        finite.size,
                        config,
                        partial(run_numeric_test, t, ref, finite, config),
                        n_batch,
                    )
                )
        else:
            ref = profile.categorical[col]
            values = categorical_values(s, kind)
            n_missing = n_batch - values.size
            n_ref = int(ref.counts.sum())
            distributions[col] = categorical_distribution(ref, values)
            for t in config.categorical_tests:
                results.append(
                    _run(
                        col,
                        kind,
                        t,
                        n_ref,
                        values.size,
                        config,
                        partial(run_categorical_test, t, ref, values, config),
                        n_batch,
                    )
                )
            unseen = (
                sorted({str(v) for v in np.unique(values.astype(str))} - set(ref.known))
                if values.size and len(ref.known) < 10000
                else []
            )
            if unseen:
                signals.append(
                    SchemaSignal(
                        "new_categories",
                        col,
                        f"unseen categories: {unseen[:20]}",
                        drift=False,
                        batch=float(np.isin(values.astype(str), unseen).mean()),
                    )
                )
        sig = _null_rate_signal(col, ref.null_rate, profile.n_rows, n_missing, n_batch, config)
        if sig is not None:
            signals.append(sig)
            if sig.drift:
                feature_flags[col] = max(
                    feature_flags.get(col, 0.0),
                    abs(sig.batch - sig.reference) / max(config.null_rate_change, 1e-12),
                )

    _apply_policy(results, config)

    scores: dict[str, float] = dict(feature_flags)
    for r in results:
        if r.drift:
            ratio = r.effect_size / r.threshold if r.threshold else (r.effect_size or 0.0) * 1e6
            scores[r.feature] = max(scores.get(r.feature, 0.0), ratio)
    evaluated = sorted({r.feature for r in results if r.status in ("drift", "no_drift")} | set(feature_flags))
    univariate_drift, agg_value = aggregate(
        list(scores), evaluated, config.aggregation, config.share_threshold, importances
    )
    ranked = rank_culprits(scores, importances)

    multivariate: list[MultivariateResult] = []
    if config.multivariate:
        from .multivariate import run_multivariate

        multivariate = run_multivariate(profile, batch, config)
    mv_drift = [m.method for m in multivariate if m.drift]
    drift = univariate_drift or bool(mv_drift)
    reason = _reason(
        drift, univariate_drift, ranked, evaluated, mv_drift, agg_value, config, results, n_batch
    )
    finite_scores = {f: (v if math.isfinite(v) else None) for f, v in scores.items()}
    return DriftReport(
        results,
        multivariate,
        signals,
        drift,
        ranked,
        reason,
        profile.n_rows,
        n_batch,
        config.model_dump(),
        finite_scores,
        distributions=distributions,
    )


def _shares(counts) -> list[float]:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return (counts / total).tolist() if total else [0.0] * counts.size


def numeric_distribution(ref: NumericReference, finite: np.ndarray) -> Distribution:
    """Both sides over the reference's quantile bins (``< e₁``, ``e₁–e₂``, …, ``≥ eₖ``).

    >>> ref = NumericReference.build(np.arange(100.0), 100, 4)
    >>> d = numeric_distribution(ref, np.array([1.0, 2.0, 80.0, 90.0]))
    >>> d.bins, d.reference, d.batch
    (['< 24.8', '24.8–49.5', '49.5–74.2', '≥ 74.2'], [0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.0, 0.5])
    """
    edges = [f"{e:.3g}" for e in ref.bin_edges]
    bins = ([f"< {edges[0]}", *(f"{a}–{b}" for a, b in itertools.pairwise(edges)), f"≥ {edges[-1]}"]
            if edges else ["all values"])
    return Distribution(bins, _shares(ref.bin_counts), _shares(bin_counts(finite, ref.bin_edges)))


def categorical_distribution(ref: CategoricalReference, values: np.ndarray) -> Distribution:
    """Both sides over the reference's categories; batch values the reference did not list go to the reference's
    ``OTHER`` bin, or to a last bin ``(not in reference)``."""
    names, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    seen = dict(zip(names.tolist(), counts.tolist()))
    batch = [seen.pop(c, 0) for c in ref.categories]
    bins, reference, rest = list(ref.categories), list(ref.counts), sum(seen.values())
    if OTHER in bins:
        batch[bins.index(OTHER)] += rest
    elif rest:
        bins, reference, batch = [*bins, "(not in reference)"], [*reference, 0], [*batch, rest]
    return Distribution(bins, _shares(reference), _shares(batch))


def _run(col, kind, test, n_ref, n_batch_valid, config, fn, n_batch) -> FeatureResult:
    threshold = config.effect_threshold(test)
    base = {
        "feature": col,
        "kind": kind,
        "test": test,
        "p_adjusted": None,
        "threshold": threshold,
        "drift": False,
        "n_reference": n_ref,
        "n_batch": n_batch_valid,
    }
    if n_batch_valid == 0:
        detail = "all values missing in batch" if n_batch else "batch is empty"
        return FeatureResult(
            statistic=None, p_value=None, effect_size=None, status="insufficient_data", detail=detail, **base
        )
    if n_ref == 0:
        return FeatureResult(
            statistic=None,
            p_value=None,
            effect_size=None,
            status="insufficient_data",
            detail="all values missing in reference",
            **base,
        )
    if min(n_ref, n_batch_valid) < config.min_samples:
        return FeatureResult(
            statistic=None,
            p_value=None,
            effect_size=None,
            status="insufficient_data",
            detail=f"{min(n_ref, n_batch_valid)} values < min_samples {config.min_samples}",
            **base,
        )
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - one failing test must not hide the others; the report says what failed
        return FeatureResult(
            statistic=None,
            p_value=None,
            effect_size=None,
            status="error",
            detail=f"{type(exc).__name__}: {exc}",
            **base,
        )
    return FeatureResult(
        statistic=out.statistic,
        p_value=out.p_value,
        effect_size=out.effect_size,
        status="pending",
        detail=out.detail,
        **base,
    )


def _apply_policy(results: list[FeatureResult], config: DriftConfig) -> None:
    """Correct the p-values of all tests run (one family), then flag evidence AND effect."""
    pending = [r for r in results if r.status == "pending"]
    with_p = [r for r in pending if r.p_value is not None and math.isfinite(r.p_value)]
    adjusted = adjust_pvalues([r.p_value for r in with_p], config.correction)
    for r, pa in zip(with_p, adjusted):
        r.p_adjusted = float(pa)
    for r in pending:
        r.drift = is_drift(r.p_adjusted, r.effect_size, r.threshold, config.alpha)
        r.status = "drift" if r.drift else "no_drift"


def _null_rate_signal(col, ref_rate, n_ref, n_missing, n_batch, config) -> SchemaSignal | None:
    if n_batch == 0:
        return None
    batch_rate = n_missing / n_batch
    delta = batch_rate - ref_rate
    if delta == 0:
        return None
    p = _two_proportion_p(ref_rate, n_ref, batch_rate, n_batch)
    big = abs(delta) >= config.null_rate_change
    enough = min(n_ref, n_batch) >= config.min_samples
    drift = bool(big and enough and p < config.alpha)
    if not big and not drift:
        return (
            None
            if abs(delta) < config.null_rate_change / 2
            else SchemaSignal(
                "null_rate",
                col,
                f"null rate {ref_rate:.3f} -> {batch_rate:.3f} (below the {config.null_rate_change} change that counts)",
                False,
                ref_rate,
                batch_rate,
                p,
            )
        )
    why = "" if drift else (" (too few rows to judge)" if not enough else " (not significant)")
    return SchemaSignal(
        "null_rate", col, f"null rate {ref_rate:.3f} -> {batch_rate:.3f}{why}", drift, ref_rate, batch_rate, p
    )


def _two_proportion_p(p1: float, n1: int, p2: float, n2: int) -> float:
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    if pooled <= 0 or pooled >= 1:
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * stats.norm.sf(abs(p1 - p2) / se))


def _reason(drift, univariate_drift, ranked, evaluated, mv_drift, agg_value, config, results, n_batch) -> str:
    if not evaluated and not mv_drift:
        return f"No drift declared: no feature had enough data to test (batch of {n_batch} rows, min_samples {config.min_samples})."
    parts = []
    if univariate_drift:
        top = ", ".join(ranked[:3]) + (" …" if len(ranked) > 3 else "")
        if config.aggregation == "any":
            parts.append(f"{len(ranked)} of {len(evaluated)} features drifted (worst: {top})")
        else:
            parts.append(
                f"{config.aggregation} of drifted features {agg_value:.2f} >= {config.share_threshold} (worst: {top})"
            )
    if mv_drift:
        parts.append("multivariate drift by " + ", ".join(mv_drift))
    if drift:
        return "Drift: " + "; ".join(parts) + "."
    if ranked:
        return (
            f"No drift declared: {len(ranked)} of {len(evaluated)} features drifted, "
            f"{config.aggregation} {agg_value:.2f} below {config.share_threshold}."
        )
    insufficient = sum(r.status == "insufficient_data" for r in results)
    tail = f" ({insufficient} results had insufficient data)" if insufficient else ""
    return (
        f"No drift: none of {len(evaluated)} features shows a significant change (alpha {config.alpha}, "
        f"{config.correction}) at least the minimum effect{tail}."
    )
