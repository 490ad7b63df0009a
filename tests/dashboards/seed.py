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
