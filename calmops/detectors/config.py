"""Drift detection settings: which tests run and how their results become a decision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NUMERIC_TESTS = ("ks", "cvm", "anderson", "mannwhitney", "emd", "js", "hellinger", "psi")
CATEGORICAL_TESTS = ("chi2", "js", "hellinger")
MULTIVARIATE_METHODS = ("mmd", "domain_classifier", "pca")
CONCEPT_DETECTORS = ("ddm", "eddm", "hddm_a", "hddm_w", "adwin", "page_hinkley", "kswin", "cusum")

# Minimum effect a test must show before a significant p-value counts as drift. Every effect is
# scale-free and independent of the sample size, so the same number means the same thing at 1k and 1M
# rows. Rationale per test is in docs/drift-report.md.
DEFAULT_MIN_EFFECT: dict[str, float] = {
    # numeric defaults are calibrated on one yardstick: a shift of a quarter standard deviation of a
    # normal column (KS D = 2*Phi(0.125) - 1 = 0.10); PSI keeps its industry convention instead.
    "ks": 0.1,  # KS distance D: largest gap between the two CDFs
    "cvm": 0.075,  # root mean squared gap between the CDFs (CvM statistic normalised by sample sizes)
    "anderson": 0.1,  # Anderson-Darling has no scale-free effect; KS D of the same samples is used
    "mannwhitney": 0.14,  # |rank-biserial correlation| = |2*AUC - 1|
    "emd": 0.25,  # Wasserstein distance in reference standard deviations
    "js": 0.1,  # Jensen-Shannon distance (base 2, in [0, 1]) on reference-quantile bins / categories
    "hellinger": 0.085,  # Hellinger distance (in [0, 1]) on reference-quantile bins / categories
    "psi": 0.1,  # population stability index, reference-quantile bins (0.1 = "moderate shift" convention)
    "chi2": 0.1,  # total variation distance between category frequencies (share of rows that moved)
}


#: the largest seed numpy's and scikit-learn's random states take (``random_state`` must be in [0, 2**32))
MAX_SEED = 2**32 - 1


def check_seed(value: int) -> int:
    """A spec's ``seed`` (and ``drift.seed``): one numpy's and scikit-learn's random states take, else every run
    that draws with it would fail."""
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{value} is not a seed numpy and scikit-learn take: give a whole number from 0 to "
                         f"{MAX_SEED} (2**32 - 1)")
    return value


def _check_names(values: list[str], allowed: tuple[str, ...], field: str) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {field} {unknown}; choose from {list(allowed)}")
    return values


class DriftConfig(BaseModel):
    """What to test and how to decide. Unknown keys and unknown test names are errors."""

    model_config = ConfigDict(extra="forbid")

    numeric_tests: list[str] = Field(default_factory=lambda: ["ks"])
    categorical_tests: list[str] = Field(default_factory=lambda: ["chi2"])
    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Literal["none", "bonferroni", "holm", "bh"] = "holm"
    min_effect: dict[str, float] = Field(default_factory=dict)
    min_samples: int = Field(30, ge=2)
    null_rate_change: float = Field(0.1, ge=0, le=1)
    aggregation: Literal["any", "share", "weighted"] = "any"
    share_threshold: float = Field(0.25, gt=0, le=1)
    n_bins: int = Field(10, ge=2, le=1000)  # reference-quantile bins for psi/js/hellinger
    epsilon: float = Field(1e-4, gt=0, lt=0.01)  # floor for bin proportions (psi/js/hellinger)
    max_categories: int = Field(200, ge=2)  # categories kept in the profile; the rest pooled as "__other__"
    # multivariate
    multivariate: list[str] = Field(default_factory=list)
    mmd_subsample: int = Field(1000, ge=10)
    permutations: int = Field(100, ge=10)
    seed: int = 0
    domain_auc_threshold: float = Field(0.6, gt=0.5, lt=1)
    domain_subsample: int = Field(2000, ge=50)
    domain_folds: int = Field(3, ge=2)
    pca_variance: float = Field(0.9, gt=0, le=1)  # share of variance the PCA keeps
    pca_band_quantile: float = Field(0.99, gt=0.5, lt=1)  # reference error band = this quantile
    pca_outlier_share: float = Field(0.05, gt=0, lt=1)  # extra share of batch rows above the band
    # concept drift (streaming)
    concept: list[str] = Field(default_factory=lambda: ["adwin"])  # DDM false-alarms on low error rates
    concept_params: dict[str, dict] = Field(default_factory=dict)

    _seed = field_validator("seed")(check_seed)

    @field_validator("numeric_tests")
    @classmethod
    def _numeric(cls, v: list[str]) -> list[str]:
        return _check_names(v, NUMERIC_TESTS, "numeric test")

    @field_validator("categorical_tests")
    @classmethod
    def _categorical(cls, v: list[str]) -> list[str]:
        return _check_names(v, CATEGORICAL_TESTS, "categorical test")

    @field_validator("multivariate")
    @classmethod
    def _multivariate(cls, v: list[str]) -> list[str]:
        return _check_names(v, MULTIVARIATE_METHODS, "multivariate method")

    @field_validator("concept")
    @classmethod
    def _concept(cls, v: list[str]) -> list[str]:
        return _check_names(v, CONCEPT_DETECTORS, "concept detector")

    @field_validator("min_effect")
    @classmethod
    def _min_effect(cls, v: dict[str, float]) -> dict[str, float]:
        _check_names(list(v), tuple(DEFAULT_MIN_EFFECT), "min_effect test")
        for name, value in v.items():
            if value < 0:
                raise ValueError(f"min_effect for {name!r} must be >= 0, got {value}")
        return v

    @field_validator("concept_params")
    @classmethod
    def _concept_params(cls, v: dict[str, dict]) -> dict[str, dict]:
        _check_names(list(v), CONCEPT_DETECTORS, "concept_params detector")
        return v

    @model_validator(mode="after")
    def _concept_params_valid(self) -> DriftConfig:
        # Building the frouros configs now turns a wrong parameter into a validation error, not a
        # crash on the first file.
        if not self.concept_params:
            return self  # nothing to check: frouros is not imported (seconds) to read a spec
        from .concept import build_detector

        for name, params in self.concept_params.items():
            try:
                build_detector(name, params)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"concept_params[{name!r}]: {exc}") from exc
        return self

    def effect_threshold(self, test: str) -> float:
        """The minimum effect used for ``test`` (override or default)."""
        return float(self.min_effect.get(test, DEFAULT_MIN_EFFECT[test]))
