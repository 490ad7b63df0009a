"""Multivariate drift over all features at once: MMD, a domain classifier, PCA reconstruction error.

Every column is encoded to one number per row from the reference profile: numeric and datetime
columns standardised with the reference mean/std (missing -> 0, the reference mean), categorical and
boolean columns replaced by the category's reference frequency (unseen -> 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .columns import categorical_values, numeric_values
from .report import MultivariateResult


@dataclass
class MultivariateReference:
    columns: list[str]
    sample: np.ndarray  # encoded reference rows (seeded subsample)
    pca_mean: np.ndarray
    pca_components: np.ndarray  # (k, d)
    pca_band: float  # reference reconstruction error at the band quantile
    pca_quantile: float

    @classmethod
    def build(cls, reference: pd.DataFrame, profile, config) -> MultivariateReference:
        columns = list(profile.feature_types)
        x = encode(reference, profile, columns)
        rng = np.random.default_rng(config.seed)
        size = max(config.mmd_subsample, config.domain_subsample)
        sample = x if x.shape[0] <= size else x[rng.choice(x.shape[0], size, replace=False)]
        fit_rows = x if x.shape[0] <= 100_000 else x[rng.choice(x.shape[0], 100_000, replace=False)]
        mean, comps = _pca_fit(fit_rows, config.pca_variance)
        errors = _pca_error(fit_rows, mean, comps)
        band = float(np.quantile(errors, config.pca_band_quantile)) if errors.size else 0.0
        return cls(columns, sample, mean, comps, band, config.pca_band_quantile)

    def save_into(self, arrays: dict) -> dict:
        arrays["mv_sample"] = self.sample
        arrays["mv_pca_mean"] = self.pca_mean
        arrays["mv_pca_components"] = self.pca_components
        return {"columns": self.columns, "pca_band": self.pca_band, "pca_quantile": self.pca_quantile}

    @classmethod
    def load_from(cls, meta: dict, arrays: dict) -> MultivariateReference:
        return cls(
            meta["columns"],
            arrays["mv_sample"],
            arrays["mv_pca_mean"],
            arrays["mv_pca_components"],
            float(meta["pca_band"]),
            float(meta["pca_quantile"]),
        )


def encode(df: pd.DataFrame, profile, columns: list[str]) -> np.ndarray:

    out = np.zeros((len(df), len(columns)))
    for j, col in enumerate(columns):
        if col not in df.columns:
            continue  # a missing column reads as the reference mean / an unseen category
        kind = profile.feature_types[col]
        if col in profile.numeric:
            ref = profile.numeric[col]
            v = numeric_values(df[col], kind)
            scale = ref.std if ref.std and ref.std > 0 else 1.0
            z = (v - (ref.mean if np.isfinite(ref.mean) else 0.0)) / scale
            out[:, j] = np.where(np.isfinite(z), z, 0.0)
        else:
            ref = profile.categorical[col]
            freq = dict(zip(ref.categories, ref.counts / max(ref.counts.sum(), 1)))
            s = df[col]
            mask = s.notna().to_numpy()
            vals = categorical_values(s, kind)
            out[mask, j] = np.fromiter((freq.get(v, 0.0) for v in vals), float, count=vals.size)
    return out


# ----------------------------------------------------------------------------- MMD
def median_bandwidth(x: np.ndarray, max_rows: int = 1000, seed: int = 0) -> float:
    """Median pairwise distance of (a subsample of) the reference: the usual RBF bandwidth."""
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(seed)
    s = x if x.shape[0] <= max_rows else x[rng.choice(x.shape[0], max_rows, replace=False)]
    d = pdist(s)
    med = float(np.median(d[d > 0])) if np.any(d > 0) else 1.0
    return med


def rbf(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """frouros.utils.kernels.rbf_kernel."""
    from scipy.spatial.distance import cdist

    return np.exp(-cdist(x, y, "sqeuclidean") / (2 * sigma**2))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 with an RBF kernel, the estimator frouros' MMD computes."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = rbf(x, x, sigma), rbf(y, y, sigma), rbf(x, y, sigma)
    return float((kxx.sum() - m) / (m * (m - 1)) + (kyy.sum() - n) / (n * (n - 1)) - 2 * kxy.mean())


def mmd_permutation_test(x: np.ndarray, y: np.ndarray, sigma: float, permutations: int, seed: int):
    """Statistic and permutation p-value, all permutations in one matrix product."""
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    k = rbf(z, z, sigma)
    rng = np.random.default_rng(seed)
    labels = np.zeros((m + n, permutations + 1))
    labels[:m, 0] = 1.0
    for p in range(1, permutations + 1):
        labels[rng.permutation(m + n)[:m], p] = 1.0
    ka = k @ labels
    k1 = k.sum(axis=1, keepdims=True)
    other = 1.0 - labels
    sxx = (labels * ka).sum(axis=0)
    sxy = (other * ka).sum(axis=0)
    syy = (other * (k1 - ka)).sum(axis=0)
    # diagonal of an RBF kernel is 1: remove it from the within-sample sums
    mmd = (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2 * sxy / (m * n)
    observed = mmd[0]
    p = (1 + np.sum(mmd[1:] >= observed - 1e-12)) / (permutations + 1)
    return float(observed), float(p)


def mmd_result(ref: MultivariateReference, xb: np.ndarray, config) -> MultivariateResult:
    rng = np.random.default_rng(config.seed)
    k = config.mmd_subsample
    xr = ref.sample if len(ref.sample) <= k else ref.sample[rng.choice(len(ref.sample), k, replace=False)]
    xs = xb if len(xb) <= k else xb[rng.choice(len(xb), k, replace=False)]
    sigma = median_bandwidth(xr, seed=config.seed)
    stat, p = mmd_permutation_test(xr, xs, sigma, config.permutations, config.seed)
    drift = bool(p < config.alpha)
    return MultivariateResult(
        "mmd",
        stat,
        p,
        config.alpha,
        drift,
        "drift" if drift else "no_drift",
        f"unbiased MMD^2, RBF sigma {sigma:.3g} (median heuristic), {len(xr)} vs {len(xs)} rows, "
        f"{config.permutations} permutations",
    )


# ----------------------------------------------------------------------------- domain classifier
def domain_classifier_result(ref: MultivariateReference, xb: np.ndarray, config) -> MultivariateResult:
    """Can a classifier tell reference rows from batch rows? Cross-validated AUC against a threshold."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(config.seed)
    k = config.domain_subsample
    xr = ref.sample if len(ref.sample) <= k else ref.sample[rng.choice(len(ref.sample), k, replace=False)]
    xs = xb if len(xb) <= k else xb[rng.choice(len(xb), k, replace=False)]
    x = np.vstack([xr, xs])
    y = np.r_[np.zeros(len(xr)), np.ones(len(xs))]
    scores = np.zeros(len(y))
    importances = np.zeros(x.shape[1])
    folds = StratifiedKFold(config.domain_folds, shuffle=True, random_state=config.seed)
    for train, test in folds.split(x, y):
        clf = RandomForestClassifier(
            n_estimators=40, min_samples_leaf=10, max_features="sqrt", random_state=config.seed, n_jobs=1
        )
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
        importances += clf.feature_importances_ / config.domain_folds
    u = stats.mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(u.statistic / (len(xr) * len(xs)))
    drift = bool(auc >= config.domain_auc_threshold and u.pvalue < config.alpha)
    ranking = dict(sorted(zip(ref.columns, importances.round(6).tolist()), key=lambda kv: -kv[1]))
    return MultivariateResult(
        "domain_classifier",
        auc,
        float(u.pvalue),
        config.domain_auc_threshold,
        drift,
        "drift" if drift else "no_drift",
        f"{config.domain_folds}-fold cross-validated AUC, {len(xr)} vs {len(xs)} rows",
        ranking,
    )


# ----------------------------------------------------------------------------- PCA
def _pca_fit(x: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    if len(x) < 2:
        return mean, np.zeros((0, x.shape[1]))
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    ratio = np.cumsum(s**2) / max(np.sum(s**2), 1e-300)
    k = int(np.searchsorted(ratio, variance) + 1)
    # at least one direction is left out: keeping every component reconstructs every row exactly, and a check on
    # the reconstruction error could never fire (3 independent features need all 3 for 90 % of the variance)
    k = min(k, vt.shape[0], x.shape[1] - 1)
    return mean, vt[:k]


def _pca_error(x: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    c = x - mean
    recon = (c @ comps.T) @ comps
    return np.sqrt(((c - recon) ** 2).sum(axis=1))


def pca_result(ref: MultivariateReference, xb: np.ndarray, config) -> MultivariateResult:
    """Share of batch rows whose reconstruction error leaves the reference band (its q-quantile).

    Without drift about 1 - q of the rows do; drift needs that share to exceed it by at least
    ``pca_outlier_share`` and a one-sided binomial test below alpha.
    """
    errors = _pca_error(xb, ref.pca_mean, ref.pca_components)
    expected = 1.0 - ref.pca_quantile
    above = int(np.sum(errors > ref.pca_band + 1e-12))
    share = above / max(len(errors), 1)
    p = (
        float(stats.binomtest(above, len(errors), expected, alternative="greater").pvalue)
        if len(errors)
        else 1.0
    )
    threshold = expected + config.pca_outlier_share
    drift = bool(share >= threshold and p < config.alpha)
    return MultivariateResult(
        "pca",
        share,
        p,
        threshold,
        drift,
        "drift" if drift else "no_drift",
        f"{ref.pca_components.shape[0]} components; reference band {ref.pca_band:.4g}; "
        f"batch median error {float(np.median(errors)) if len(errors) else 0:.4g}",
    )


def run_multivariate(profile, batch: pd.DataFrame, config) -> list[MultivariateResult]:
    ref = profile.multivariate
    if ref is None:
        return [
            MultivariateResult(
                m,
                None,
                None,
                None,
                False,
                "error",
                "profile has no multivariate reference; build it with multivariate methods configured",
            )
            for m in config.multivariate
        ]
    if len(batch) < config.min_samples:
        return [
            MultivariateResult(
                m,
                None,
                None,
                None,
                False,
                "insufficient_data",
                f"{len(batch)} rows < min_samples {config.min_samples}",
            )
            for m in config.multivariate
        ]
    xb = encode(batch, profile, ref.columns)
    out = []
    for method in config.multivariate:
        fn = {"mmd": mmd_result, "domain_classifier": domain_classifier_result, "pca": pca_result}[method]
        try:
            out.append(fn(ref, xb, config))
        except Exception as exc:  # noqa: BLE001 - one failing method must not hide the others
            out.append(
                MultivariateResult(method, None, None, None, False, "error", f"{type(exc).__name__}: {exc}")
            )
    return out
