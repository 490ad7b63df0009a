"""Seed a CALMOPS_HOME with real pipeline runs (and hand-made block/ipip runs) for the viewer's tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

SEA_THETAS = (8.0, 8.0, 8.0, 4.0)
SEA_DECISIONS = ["train", "no_drift", "no_drift", "retrain_promoted"]


def point_at(home: Path) -> None:
    """Make this process use ``home`` (what the ``calmops_home`` fixture does, for a whole module)."""
    os.environ["CALMOPS_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from calmops.core import registry
    from calmops.core.settings import get_settings

    registry.configure(get_settings())
    registry._load_version.cache_clear()


def seed_sea(home: Path) -> list[dict]:
    """The stream pipeline 'sea': 3 files of concept θ=8, then one of θ=4, run by the real flow."""
    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC, sea_frame, write_csv
    from tests.flows.helpers import incoming, run

    save_spec(spec_from_dict(dict(STREAM_SPEC)), create=True)
    outcomes = []
    for i, theta in enumerate(SEA_THETAS):
        outcomes.append(run("sea", write_csv(sea_frame(1000, theta, seed=100 + i), incoming("sea"), f"f{i}.csv")))
    assert [o["decision"] for o in outcomes] == SEA_DECISIONS, [o["reason"] for o in outcomes]
    return outcomes


def seed_fake_kinds() -> None:
    """A 'block' and an 'ipip' pipeline recorded the way their flows record (those kinds are built elsewhere)."""
    from mlflow import MlflowClient

    from calmops.core import registry

    client = MlflowClient()
    for name, kind in (("blk", "block"), ("imb", "ipip")):
        exp = registry.ensure_experiment(name)
        for i in range(3):
            run = client.create_run(exp, run_name=f"part{i}.csv", tags={
                "calmops.pipeline": name, "calmops.kind": kind, "calmops.file": f"part{i}.csv",
                "calmops.decision": "train" if i == 0 else "no_drift", "calmops.reason": "seeded",
                "calmops.drift_detected": "false", "calmops.drifted_features": "",
                "calmops.champion_version": "1", "calmops.challenger_version": "", "calmops.flow_run_id": ""})
            rid = run.info.run_id
            if kind == "block":
                details = {"blocks": {"2024-01": {"rows": 100, "accuracy": 0.9 - i / 100, "drift": False},
                                      "2024-02": {"rows": 120, "accuracy": 0.8, "drift": i == 2}},
                           "drift_matrix": {"labels": ["2024-01", "2024-02"], "matrix": [[0, 0.3 + i], [0.3 + i, 0]]}}
                for block, acc in (("2024-01", 0.9 - i / 100), ("2024-02", 0.8)):
                    client.log_metric(rid, f"block_{block}_accuracy", acc)
            else:
                details = {"ensemble_sizes": [5, 5, 4], "ipip_p": 3, "ipip_b": 5}
                client.log_metric(rid, "ipip_p", 3)
                client.log_metric(rid, "ipip_b", 5 - (i == 2))
                client.log_metric(rid, "ipip_replaced_share", i / 3)
            client.log_text(rid, json.dumps({"pipeline": name, "file": f"part{i}.csv", "decision": "no_drift",
                                             "kind": kind, "details": details}), "outcome.json")
            client.set_terminated(rid)


def recorded_run(client, experiment_id: str, file: str, at: int, **tags) -> str:
    """An MLflow run as a stream flow records one decided file (``tags``: ``calmops.<name>`` tags over the
    defaults), started ``at`` seconds after a fixed time so runs keep their order; returns its id."""
    run = client.create_run(experiment_id, run_name=file, start_time=1_700_000_000_000 + at * 1000, tags={
        "calmops.file": file, "calmops.folder": "incoming", "calmops.kind": "stream", "calmops.decision": "no_drift",
        "calmops.reason": "seeded", "calmops.drift_detected": "false", "calmops.flow_run_id": "",
        **{f"calmops.{k}": v for k, v in tags.items()}})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def seed_one_turn(client, pipeline: str, folder: Path) -> dict[str, str]:
    """A stream pipeline as ``order: arrival`` leaves it: an early flow run decided f0.csv alone; then the flow
    run made for b.csv's event held the pipeline's turn while a.csv (older), b.csv and c.csv waited, and decided
    all three, each recorded as its own MLflow run under that flow run's id; the runs made for a.csv and c.csv
    were cancelled as *Decided by another run*; the run made for d.csv is running and has recorded nothing.
    Each flow run that ran logged Prefect's first line. Returns the flow run ids by the file they were made for."""
    from datetime import UTC, datetime

    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import LogCreate
    from prefect.states import Cancelled, Completed, Running

    from calmops.core.kinds import KINDS
    from calmops.core.names import DECIDED_ELSEWHERE

    def stream_flow():  # the flow's name is what the viewer looks for
        return None

    flow = Flow(stream_flow, name=KINDS["stream"].flow_name)
    sha = {f: f"{i:064x}" for i, f in enumerate(("f0.csv", "a.csv", "b.csv", "c.csv", "d.csv"), start=1)}
    states = {"f0.csv": Completed(), "b.csv": Completed(), "d.csv": Running(),
              "a.csv": Cancelled(name=DECIDED_ELSEWHERE), "c.csv": Cancelled(name=DECIDED_ELSEWHERE)}
    ids = {}
    with get_client(sync_client=True) as prefect:
        for file, state in states.items():
            made = prefect.create_flow_run(flow, name=f"stream/{pipeline}/{file}", state=state, parameters={
                "pipeline": pipeline, "path": str(folder / file), "sha256": sha[file]})
            ids[file] = str(made.id)
            if file in ("f0.csv", "b.csv"):
                prefect.create_logs([LogCreate(
                    name="prefect.flow_runs", level=20, timestamp=datetime.now(UTC), flow_run_id=made.id,
                    message=f"Beginning flow run 'stream/{pipeline}/{file}' for flow '{flow.name}'")])
    experiment = client.create_experiment(f"calmops/{pipeline}", tags={"calmops.pipeline": pipeline})
    recorded_run(client, experiment, "f0.csv", 0, decision="train", flow_run_id=ids["f0.csv"], sha256=sha["f0.csv"])
    for at, file in enumerate(("a.csv", "b.csv", "c.csv"), start=1):
        recorded_run(client, experiment, file, at, flow_run_id=ids["b.csv"], sha256=sha[file])
    return ids


def seed_null_rates(client, pipeline: str, rows: int = 500, outcome: dict | None = None) -> str:
    """A stream pipeline whose second file (``rows`` rows) left x1 empty in 40 % of its rows: its recorded drift
    verdict holds a null-rate schema signal whose p-value is far below 1e-20, beside the per-feature tests;
    ``outcome``: that run's ``outcome.json`` too. Returns the MLflow run id of that file."""
    import numpy as np
    import pandas as pd

    from calmops.core.verdict import DriftVerdict
    from calmops.detectors import DriftConfig, ReferenceProfile, compare, infer_feature_types

    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x1": rng.normal(0, 1, 2000), "x2": rng.normal(0, 1, 2000)})
    batch = pd.DataFrame({"x1": rng.normal(0, 1, rows), "x2": rng.normal(0, 1, rows)})
    batch.loc[: int(rows * 0.4) - 1, "x1"] = np.nan
    config = DriftConfig()
    report = compare(ReferenceProfile.build(reference, infer_feature_types(reference), config), batch, config)
    verdict = DriftVerdict(data=report, drift_detected=report.drift_detected, reasons=[report.reason])
    experiment = client.create_experiment(f"calmops/{pipeline}", tags={"calmops.pipeline": pipeline})
    recorded_run(client, experiment, "f0.csv", 0, decision="train")
    run_id = recorded_run(client, experiment, "f1.csv", 1, decision="retrain_rejected", sha256="ab" * 32,
                          drift_detected=str(report.drift_detected).lower(), champion_version="1")
    client.log_metric(run_id, "rows", float(rows))  # as the flows record a run's rows
    client.log_text(run_id, json.dumps(verdict.to_dict()), "drift/verdict.json")
    if outcome is not None:
        client.log_text(run_id, json.dumps(outcome), "outcome.json")
    return run_id
