"""Drift detection on frouros: reference profiles, univariate/multivariate/concept detectors, the
decision policy and the report. Imports nothing of the project (no Prefect, no MLflow)."""

from .columns import infer_feature_types
from .comparison import compare
from .concept import ConceptDriftMonitor, ConceptResult
from .config import DriftConfig
from .label_free import confidence_drift, label_free_compare, prediction_drift
from .profile import ReferenceProfile
from .report import DriftReport, FeatureResult, MultivariateResult, SchemaSignal

__all__ = [
    "ConceptDriftMonitor",
    "ConceptResult",
    "DriftConfig",
    "DriftReport",
    "FeatureResult",
    "MultivariateResult",
    "ReferenceProfile",
    "SchemaSignal",
    "compare",
    "confidence_drift",
    "infer_feature_types",
    "label_free_compare",
    "prediction_drift",
]
