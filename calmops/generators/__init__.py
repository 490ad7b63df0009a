"""Data generators: synthetic (river), real (copula), clinic, drift injection, dynamics, reports.

Imports nothing of the project (no Prefect, no MLflow). See docs/generators.md.
"""

from .clinic import cohort, longitudinal
from .dynamics import (
    Cycle,
    FormulaError,
    Sigmoid,
    Trend,
    apply_dynamics,
    evaluate,
    project,
    target_from_formula,
)
from .files import FORMATS, read_table, write_files, write_table
from .inject import (
    INJECTORS,
    Rows,
    concept_drift,
    correlation_change,
    feature_drift,
    label_drift,
    label_shift,
    missing_values,
    new_categories,
    outliers,
)
from .real import GaussianCopula, quality_report, synthesize_like
from .report import html_report, write_report
from .scenarios import SCENARIOS, run_scenario, scenario_data
from .synthetic import DRIFT_KINDS, GENERATORS, DriftSpec, Timestamps, generator_names, synthetic

__all__ = [
    "DRIFT_KINDS", "FORMATS", "GENERATORS", "INJECTORS", "SCENARIOS",
    "Cycle", "DriftSpec", "FormulaError", "GaussianCopula", "Rows", "Sigmoid", "Timestamps", "Trend",
    "apply_dynamics", "cohort", "concept_drift", "correlation_change", "evaluate", "feature_drift",
    "generator_names", "html_report", "label_drift", "label_shift", "longitudinal", "missing_values",
    "new_categories", "outliers", "project", "quality_report", "read_table", "run_scenario", "scenario_data",
    "synthesize_like", "synthetic", "target_from_formula", "write_files", "write_report", "write_table",
]
