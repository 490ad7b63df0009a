"""Concept drift: streaming detectors fed with the champion's per-row errors, whose state survives between
files (``state/concept.json``, kept for one champion)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calmops.core.spec import PipelineSpec
from calmops.core.store import read_champion_state, write_champion_state
from calmops.core.verdict import ConceptSignal
from calmops.detectors.concept import ConceptDriftMonitor

STATE_FILE = "concept.json"  # under the pipeline's state folder


def per_row_errors(model: Any, X: pd.DataFrame, y: pd.Series, task: str, scale: float | None) -> np.ndarray:
    """0/1 per row: a wrong class, or (regression) a residual above twice the champion's RMSE."""
    pred = model.predict(X)
    if task == "classification":
        return (np.asarray(pred) != np.asarray(y)).astype(float)
    resid = np.abs(np.asarray(pred, dtype=float) - np.asarray(y, dtype=float))
    return (resid > 2 * (scale or np.std(np.asarray(y, dtype=float)) or 1.0)).astype(float)


def concept_drift(errors: np.ndarray, spec: PipelineSpec, state_dir: Path, champion_version: int) -> ConceptSignal:
    if not spec.drift.concept:
        return ConceptSignal()
    saved = read_champion_state(state_dir / STATE_FILE, champion_version)
    monitor = ConceptDriftMonitor.from_state(saved["state"], spec.drift) if saved else ConceptDriftMonitor(spec.drift)
    result = monitor.update(errors.tolist())
    save_concept_state(state_dir, champion_version, monitor.to_state())
    return ConceptSignal(alarm=bool(result.alarm), detectors=result.detectors)


def warm_start_concept(state_dir: Path, champion_version: int, model: Any, X: pd.DataFrame, y: pd.Series,
                       task: str, spec: PipelineSpec, scale: float | None = None) -> int:
    """Start the concept detectors of ``champion_version`` from ``model``'s errors on rows it was not fit on
    (the holdout that chose it, or the file a rejected challenger was tried on): the detectors keep a
    baseline across promotions and alarms instead of starting cold. Returns the rows fed."""
    if not spec.drift.concept:
        save_concept_state(state_dir, champion_version, None)
        return 0
    errors = per_row_errors(model, X, y, task, scale)
    monitor = ConceptDriftMonitor.warm_started(spec.drift, errors.tolist())
    save_concept_state(state_dir, champion_version, monitor.to_state())
    return len(errors)


def save_concept_state(state_dir: Path, champion_version: int, state: dict | None) -> None:
    """Write detector state atomically; ``None`` resets it (a new champion starts fresh)."""
    if state is None:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        return
    write_champion_state(state_dir / STATE_FILE, champion_version, state=state)
