"""``calmops demo``: a stream pipeline on a drifting SEA stream, run file by file on the local stack."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

DEMO_PIPELINE = "demo-sea"


def sea_files(folder: Path, *, n_files: int = 10, rows: int = 1000, seed: int = 7) -> list[Path]:
    """SEA data as CSV files: concept 0 (θ=8) for the first half, concept 3 (θ=9.5) after it, and in
    the last three files the irrelevant feature x3 shifts too (data drift with nothing new to learn)."""
    from calmops.generators import DriftSpec, Rows, feature_drift, synthetic, write_files

    total = n_files * rows
    frame = synthetic("sea", total, seed=seed, params={"noise": 0.05},
                      drift=DriftSpec(kind="abrupt", position=(n_files // 2) * rows, concepts=[0, 3]))
    frame = frame.rename(columns={c: n for c, n in zip(frame.columns[:3], ("x1", "x2", "x3"))})
    frame = feature_drift(frame, ["x3"], kind="abrupt", shift=1.0, scale=0.5,
                          rows=Rows(start=(n_files - 3) * rows, stop=total), seed=seed)
    return write_files(frame, folder, rows_per_file=rows, fmt="csv", prefix="sea")


def demo_spec() -> dict:
    return {
        "name": DEMO_PIPELINE,
        "kind": "stream",
        "target": "y",
        "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                  "params": {"max_iter": 100, "random_state": 0}},
        "evaluation": {"primary_metric": "accuracy", "thresholds": {"accuracy": {"min": 0.75}},
                       "promotion_margin": 0.005},
        "retrain": {"mode": "full", "data": "new_only"},
        "breaker": {"max_failures": 3, "cooldown_seconds": 30},
    }


def reset_demo_pipeline() -> None:
    """A demo starts clean: its folder, registered model and experiment are removed first."""
    from mlflow.exceptions import MlflowException

    from calmops.core import registry
    from calmops.core.settings import get_settings

    shutil.rmtree(get_settings().pipeline_dir(DEMO_PIPELINE), ignore_errors=True)
    client = registry.configure()
    for call in (lambda: client.delete_registered_model(DEMO_PIPELINE),
                 lambda: client.delete_experiment(client.get_experiment_by_name(
                     registry.experiment_name(DEMO_PIPELINE)).experiment_id)):
        try:
            call()
        except (MlflowException, AttributeError):
            pass


def run_demo(console: Console, *, n_files: int = 10, rows: int = 1000) -> list[dict]:
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.core.settings import get_settings
    from calmops.flows import run_file

    reset_demo_pipeline()
    paths = save_spec(spec_from_dict(demo_spec()), create=True)
    source = get_settings().home / "demo-data" / DEMO_PIPELINE
    shutil.rmtree(source, ignore_errors=True)
    files = sea_files(source, n_files=n_files, rows=rows)
    results = []
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("running files through the pipeline", total=len(files))
        for f in files:
            target = paths.incoming / f.name
            shutil.copy2(f, target)
            outcome, error = run_file(DEMO_PIPELINE, target)
            results.append(outcome)
            progress.advance(bar)
    table = Table("file", "drift", "why", "decision", "champion", title=f"pipeline {DEMO_PIPELINE}")
    for o in results:
        why = o.get("reason", "")
        table.add_row(o["file"], "yes" if o.get("drift_detected") else "no", why[:90] + ("…" if len(why) > 90 else ""),
                      o["decision"], f"v{o.get('champion_version')}")
    console.print(table)
    return results
