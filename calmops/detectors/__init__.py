"""Drift detection on frouros: reference profiles, univariate/multivariate/concept detectors, the
decision policy and the report. Imports nothing of the project (no Prefect, no MLflow)."""

import importlib

# loaded on first use: the spec needs DriftConfig only, and scipy/pandas take seconds to import
_HOMES = {
    "compare": "comparison", "ConceptDriftMonitor": "concept", "ConceptResult": "concept", "DriftConfig": "config",
    "confidence_drift": "label_free", "label_free_compare": "label_free", "prediction_drift": "label_free",
    "ReferenceProfile": "profile", "infer_feature_types": "columns", "DriftReport": "report",
    "FeatureResult": "report", "MultivariateResult": "report", "SchemaSignal": "report", "new_column_signal": "report",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_HOMES)
