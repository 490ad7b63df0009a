"""Viewer page load with 500 runs per pipeline and 5 pipelines: median time to a full render of the
overview and the pipeline page (cold cache each time, Streamlit's AppTest, MLflow on SQLite), and how many
MLflow client calls each page makes. The runs are written with MLflow's client exactly as the flows tag them.

    .venv/bin/python bench/viewer_load.py [--runs 500] [--pipelines 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def seed(n_pipelines: int, n_runs: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from calmops.core import registry

    client = registry.configure()
    now = int(time.time() * 1000)
    for p in range(n_pipelines):
        name = f"load{p}"
        exp = registry.ensure_experiment(name)
        for i in range(n_runs):
            run = client.create_run(exp, run_name=f"f{i:04d}.csv")
            decision = "train" if i == 0 else ("retrain_promoted" if i % 50 == 0 else "no_drift")
            tags = {"calmops.pipeline": name, "calmops.file": f"f{i:04d}.csv", "calmops.kind": "stream",
                    "calmops.decision": decision, "calmops.reason": "seeded", "calmops.drift_detected":
                    str(i % 50 == 0).lower(), "calmops.drifted_features": "x1" if i % 50 == 0 else "",
                    "calmops.champion_version": str(1 + i // 50), "calmops.sha256": f"{p}-{i}"}
            metrics = [Metric(k, v, now + i, 0) for k, v in {"rows": 1000.0, "champion_accuracy": 0.9,
                                                              "drift_detected": float(i % 50 == 0)}.items()]
            client.log_batch(run.info.run_id, metrics=metrics, params=[Param("kind", "stream")],
                             tags=[RunTag(k, v) for k, v in tags.items()])
            client.set_terminated(run.info.run_id)


def time_page(script: str, repeats: int) -> tuple[float, int]:
    import mlflow.tracking.client as mc
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    calls: Counter = Counter()
    originals = {}
    for name in ("search_runs", "get_experiment_by_name", "search_experiments", "get_run", "list_artifacts",
                 "get_registered_model", "search_model_versions", "get_model_version_by_alias",
                 "search_registered_models"):
        original = getattr(mc.MlflowClient, name)
        originals[name] = original

        def counted(self, *a, _o=original, _n=name, **k):
            calls[_n] += 1
            return _o(self, *a, **k)

        setattr(mc.MlflowClient, name, counted)
    times = []
    try:
        for _ in range(repeats):
            st.cache_data.clear()
            calls.clear()
            at = AppTest.from_string(script, default_timeout=120)
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            assert not at.exception, at.exception
    finally:
        for name, original in originals.items():
            setattr(mc.MlflowClient, name, original)
    return statistics.median(times), sum(calls.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--pipelines", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ["CALMOPS_HOME"] = tempfile.mkdtemp(prefix="calmops-viewer-")
    for k in [k for k in os.environ if k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))]:
        del os.environ[k]
    os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # Prefect not running: pages must still load
    t = time.perf_counter()
    seed(args.pipelines, args.runs)
    print(f"seeded {args.pipelines}×{args.runs} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    results = {}
    for page in ("overview", "pipeline"):
        script = f"from calmops.dashboards.views import {page}\n{page}.render()"
        median, n_calls = time_page(script, args.repeats)
        results[page] = {"median_s": round(median, 2), "mlflow_calls": n_calls}
        print(page, results[page], file=sys.stderr)
    results.update(pipelines=args.pipelines, runs_per_pipeline=args.runs, repeats=args.repeats)
    out = Path(__file__).parent / "results" / "viewer_load.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
