"""``calmops demo``: three demo pipelines fed with drifting files on the running local stack.

- ``demo-sea`` (stream): river's SEA stream; the concept changes half-way, later an irrelevant feature shifts.
- ``demo-agrawal`` (block): Agrawal rows from four sites per file; from the middle on, one site's concept changes.
- ``demo-ipip`` (ipip): an imbalanced SEA stream (about 7 % positives) in monthly blocks; the concept changes half-way.

With the stack (default) the files are dropped into the incoming folders at a steady pace and the file
watcher, Prefect automations and the worker do the rest; without it (``--no-stack``) they run in-process.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from calmops.deployments.console import progress_bars

DEMO_PIPELINE = "demo-sea"


@dataclass(frozen=True)
class DemoPipeline:
    spec: dict
    make_files: callable  # (folder, n_files, rows, seed) -> list[Path]


def sea_files(folder: Path, *, n_files: int = 10, rows: int = 1000, seed: int = 7) -> list[Path]:
    """SEA data as CSV files: concept 0 (θ=8) for the first half, concept 3 (θ=9.5) after it, and in
    the last three files the irrelevant feature x3 shifts too (data drift with nothing new to learn)."""
    from calmops.generators import DriftSpec, Rows, feature_drift, synthetic, write_files

    total = n_files * rows
    frame = synthetic("sea", total, seed=seed, params={"noise": 0.05},
                      drift=DriftSpec(kind="abrupt", position=(n_files // 2) * rows, concepts=[0, 3]))
    frame = frame.rename(columns={c: n for c, n in zip(frame.columns[:3], ("x1", "x2", "x3"))})
    last = min(3, max(1, n_files // 3))
    frame = feature_drift(frame, ["x3"], kind="abrupt", shift=1.0, scale=0.5,
                          rows=Rows(start=(n_files - last) * rows, stop=total), seed=seed)
    return write_files(frame, folder, rows_per_file=rows, fmt="csv", prefix="sea")


SITES = ("north", "south", "east", "west")


def agrawal_files(folder: Path, *, n_files: int = 8, rows: int = 1000, seed: int = 7) -> list[Path]:
    """Agrawal rows from four sites per file (the block column ``site``); from the middle file on, the
    ``east`` site follows Agrawal's function 2 instead of 0."""
    from calmops.generators import DriftSpec, synthetic, write_files

    total = n_files * rows
    base = synthetic("agrawal", total, seed=seed)
    other = synthetic("agrawal", total, seed=seed + 1,
                      drift=DriftSpec(kind="abrupt", position=(n_files // 2) * rows, concepts=[0, 2]))
    site = np.array(SITES)[np.arange(total) % len(SITES)]
    changed = (site == "east") & (np.arange(total) >= (n_files // 2) * rows)
    frame = base.copy()
    frame.loc[changed] = other.loc[changed].to_numpy()
    frame.insert(0, "site", site)
    return write_files(frame, folder, rows_per_file=rows, fmt="parquet", prefix="agrawal")


def ipip_files(folder: Path, *, n_files: int = 6, rows: int = 2000, seed: int = 7) -> list[Path]:
    """Imbalanced SEA (about 7 % positives) with a ``month`` block column; the concept changes half-way."""
    from calmops.generators import DriftSpec, synthetic, write_files

    total = n_files * rows
    frame = synthetic("sea", total, seed=seed, class_balance=0.07, block_column="month",
                      rows_per_block=rows // 2,
                      drift=DriftSpec(kind="abrupt", position=(n_files // 2) * rows, concepts=[0, 2]))
    frame["y"] = np.where(frame["y"] == 1, "rare", "common")
    return write_files(frame, folder, rows_per_file=rows, fmt="csv", prefix="ipip")


PIPELINES = {
    "demo-sea": DemoPipeline({
        "name": "demo-sea", "kind": "stream", "target": "y",
        "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                  "params": {"max_iter": 100, "random_state": 0}},
        "evaluation": {"primary_metric": "accuracy", "thresholds": {"accuracy": {"min": 0.75}},
                       "promotion_margin": 0.005},
        "retrain": {"mode": "full", "data": "new_only"},
        "breaker": {"max_failures": 3, "cooldown_seconds": 30},
    }, sea_files),
    "demo-agrawal": DemoPipeline({
        "name": "demo-agrawal", "kind": "block", "target": "y", "block_column": "site",
        "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 6, "random_state": 0}},
        "evaluation": {"primary_metric": "balanced_accuracy"},
        "blocks": {"evaluation": "rows"},
    }, agrawal_files),
    "demo-ipip": DemoPipeline({
        "name": "demo-ipip", "kind": "ipip", "target": "y", "block_column": "month",
        "model": {"class": "calmops.core.ipip.IPIPClassifier", "params": {"random_state": 0}},
    }, ipip_files),
}


def demo_spec() -> dict:
    return dict(PIPELINES[DEMO_PIPELINE].spec)


def reset_pipeline(name: str) -> None:
    """A demo starts clean: its folder and registered model are removed, its experiment set aside with its runs."""
    from mlflow.exceptions import MlflowException

    from calmops.core import registry
    from calmops.core.names import model_name, retired_stamp
    from calmops.core.settings import get_settings

    shutil.rmtree(get_settings().pipeline_dir(name), ignore_errors=True)
    client = registry.configure()
    for model in (model_name(name), name):  # and its name before the prefix, which would be adopted otherwise
        try:
            client.delete_registered_model(model)
        except MlflowException:
            pass
    registry.retire_experiment(name, retired_stamp())  # its runs with it


def prepare_pipelines(console: Console, names: list[str], *, n_files: int, rows: int, deploy: bool) -> dict[str, list[Path]]:
    """Create each demo pipeline afresh and generate its files (not yet in the incoming folder)."""
    from calmops.core.settings import get_settings
    from calmops.core.store import save_spec, spec_from_dict

    files = {}
    for name in names:
        demo = PIPELINES[name]
        reset_pipeline(name)
        save_spec(spec_from_dict(demo.spec), create=True)
        if deploy:
            from calmops.deployments.operations_cli import sync_pipeline

            sync_pipeline(name, console)
        source = get_settings().home / "demo-data" / name
        shutil.rmtree(source, ignore_errors=True)
        made = demo.make_files(source, n_files=n_files, rows=rows if name != "demo-ipip" else 2 * rows)
        files[name] = made
    return files


def _drop(path: Path, incoming: Path) -> Path:
    """Copy into the incoming folder the way a careful producer does: a temporary name, then a rename."""
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / f".{path.name}.part"
    shutil.copy2(path, tmp)
    target = incoming / path.name
    tmp.replace(target)
    return target


def run_in_process(console: Console, files: dict[str, list[Path]]) -> None:
    from calmops.core.store import pipeline_paths, read_spec
    from calmops.flows import run_file

    total = sum(len(f) for f in files.values())
    with progress_bars(console) as progress:
        bar = progress.add_task("running files through the pipelines", total=total)
        for name, paths in files.items():
            incoming = pipeline_paths(read_spec(name)).incoming
            for f in paths:
                run_file(name, _drop(f, incoming))
                progress.advance(bar)


def run_on_stack(console: Console, files: dict[str, list[Path]], *, pace: float, timeout: float) -> None:
    """Drop files at a steady pace and wait until every pipeline has processed all of them."""
    from calmops.core.store import ledger, pipeline_paths, read_spec

    total = sum(len(f) for f in files.values())
    queues = {name: list(paths) for name, paths in files.items()}
    books = {name: ledger(pipeline_paths(read_spec(name))) for name in files}
    deadline = time.monotonic() + timeout
    with progress_bars(console) as progress:
        dropped_bar = progress.add_task("files dropped into incoming folders", total=total)
        done_bar = progress.add_task("files processed by the stack", total=total)
        next_drop = time.monotonic()
        while time.monotonic() < deadline:
            if any(queues.values()) and time.monotonic() >= next_drop:
                for name, queue in queues.items():
                    if queue:
                        _drop(queue.pop(0), pipeline_paths(read_spec(name)).incoming)
                        progress.advance(dropped_bar)
                next_drop = time.monotonic() + pace
            done = sum(sum(e["status"] == "done" for e in book.entries()) for book in books.values())
            progress.update(done_bar, completed=done)
            if done >= total:
                return
            time.sleep(0.5)
    raise TimeoutError(f"the stack did not process all {total} demo files within {timeout:.0f} s; "
                       "see 'calmops status' and the worker's log under $CALMOPS_HOME/logs")


def summary(names: list[str]) -> list[dict]:
    """Per pipeline, from MLflow: files, drift detections, promotions, champion version, and each run's
    decision with the champion's realized and estimated scores."""
    from mlflow import MlflowClient

    from calmops.core import registry
    from calmops.core.names import shown_decision

    client = registry.configure()
    rows = []
    for name in names:
        exp = client.get_experiment_by_name(registry.experiment_name(name))
        runs = MlflowClient().search_runs([exp.experiment_id]) if exp else []
        decisions = [r.data.tags.get("calmops.decision") for r in runs]
        rows.append({
            "pipeline": name, "kind": PIPELINES[name].spec["kind"], "files": len(runs),
            "drift": sum(r.data.tags.get("calmops.drift_detected") == "true" for r in runs),
            "promotions": sum(d in ("train", "retrain_promoted") for d in decisions),  # models that served: the first too
            "rejected": sum(d == "retrain_rejected" for d in decisions),
            "failed": sum(d == "failed" for d in decisions),
            "champion": registry.alias_version(name, "champion"),
            "runs": sorted(({"file": r.data.tags.get("calmops.file"),
                             "decision": shown_decision(r.data.tags.get("calmops.decision")),
                             "drift": r.data.tags.get("calmops.drift_detected") == "true",
                             "reason": r.data.tags.get("calmops.reason", ""),
                             "champion": r.data.tags.get("calmops.champion_version"),
                             "scores": {k: v for k, v in r.data.metrics.items()  # realized and estimated
                                        if k.startswith(("champion_", "estimated_"))
                                        and not k.endswith(("_low", "_high"))}} for r in runs),
                           key=lambda r: r["file"] or ""),
        })
    return rows


def print_summary(console: Console, rows: list[dict]) -> None:
    """Two tables that fit an 80-column terminal (long reasons wrap inside their column)."""
    from rich.box import SIMPLE

    table = Table("pipeline", "kind", "files", "drift", "champions", "rejected", "failed", "champion",
                  title="demo summary", box=SIMPLE, pad_edge=False, collapse_padding=True)
    table.columns[0].no_wrap = True
    for r in rows:
        table.add_row(r["pipeline"], r["kind"], str(r["files"]), str(r["drift"]), str(r["promotions"]),
                      str(r["rejected"]), str(r["failed"]), _version(r["champion"]))
    console.print(table)
    for r in rows:
        if r["pipeline"] != DEMO_PIPELINE:
            continue
        detail = Table("file", "drift", "decision", "champion", "why", title=f"decisions of {r['pipeline']}",
                       box=SIMPLE, pad_edge=False, collapse_padding=True)
        detail.columns[0].no_wrap = True
        detail.columns[-1].overflow = "fold"
        for run in r["runs"]:
            detail.add_row(run["file"] or "-", "yes" if run["drift"] else "no", run["decision"] or "-",
                           _version(run["champion"]), run["reason"])
        console.print(detail, highlight=False)


def _version(value) -> str:
    return f"v{value}" if value not in (None, "", "None") else "-"
