"""Viewer page load with 500 runs per pipeline and 5 pipelines: median time to a full render of the
overview and the pipeline page (cold caches each time, Streamlit's AppTest) against a real MLflow server
started the way ``calmops up`` starts it (SQLite + proxied artifacts, over HTTP), and how many HTTP requests
each page sends to MLflow. Every run is written with MLflow's client exactly as the flows record it: tags,
metrics and the artifacts the pages read (``drift/verdict.json`` holding the drift report, ``outcome.json``,
``spec.yaml``).

Prefect is pointed at an address where nothing answers, on purpose: the pages must load without it, and
what is timed is the MLflow side. Each page then shows the warning docs/viewer.md describes (breaker state
unknown, naming the address); that warning is expected, any other warning or error fails the run. Seeding
the runs takes about 3 minutes; the temporary CALMOPS_HOME (``/tmp/calmops-viewer-*``) is removed at the
end. A run with other than the default sizes writes its results to bench/out/, not bench/results/.

    .venv/bin/python bench/viewer_load.py [--runs 500] [--pipelines 5] [--repeats 5] [--keep]
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from common import add_keep, changed, parser, results_folder, temp_home

FEATURES = [f"x{i}" for i in range(12)]


def verdict(i: int) -> dict:
    """A drift verdict shaped like the flows' (docs/drift-report.md), with a per-feature report."""
    drifted = i % 50 == 0
    features = [{"feature": f, "kind": "numeric", "test": "ks", "statistic": 0.02 + 0.01 * j,
                 "p_value": 0.5, "p_adjusted": 0.9, "effect_size": 0.3 if drifted and j == 0 else 0.01 * j,
                 "threshold": 0.1, "drift": drifted and j == 0, "status": "ok", "detail": ""}
                for j, f in enumerate(FEATURES)]
    report = {"drift_detected": drifted, "reason": "seeded", "features": features, "drifted_features": ["x0"] if drifted else [],
              "feature_scores": {f: 0.01 * j for j, f in enumerate(FEATURES)},
              "multivariate": [{"method": "mmd", "statistic": 0.01, "p_value": 0.4, "threshold": 0.05,
                                "drift": False, "status": "ok", "detail": ""}]}
    return {"drift_detected": drifted, "reasons": ["seeded"], "data": report,
            "concept": {"detectors": {"adwin": {"alarm": drifted, "first_alarm_index": 10 if drifted else None}}},
            "performance": {"metric": "accuracy", "now": 0.9, "at_promotion": 0.91, "relative_drop": 0.01,
                            "tolerance": 0.05, "drift": False}}


UNREACHABLE_PREFECT = "http://127.0.0.1:9/api"  # nothing answers there: the pages must load without Prefect
SPEC_YAML = "name: {name}\ntarget: y\nevaluation:\n  primary_metric: accuracy\n"


def seed(n_pipelines: int, n_runs: int) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from calmops.core import registry

    client: MlflowClient = registry.configure()
    now = int(time.time() * 1000)

    def one(name: str, exp: str, i: int) -> None:
        run = client.create_run(exp, run_name=f"f{i:04d}.csv")
        decision = "train" if i == 0 else ("retrain_promoted" if i % 50 == 0 else "no_drift")
        tags = {"calmops.pipeline": name, "calmops.file": f"f{i:04d}.csv", "calmops.kind": "stream",
                "calmops.decision": decision, "calmops.reason": "seeded", "calmops.drift_detected":
                str(i % 50 == 0).lower(), "calmops.drifted_features": "x0" if i % 50 == 0 else "",
                "calmops.champion_version": str(1 + i // 50), "calmops.sha256": f"{name}-{i}",
                "calmops.spec_sha256": hashlib.sha256(SPEC_YAML.format(name=name).encode()).hexdigest()}
        metrics = [Metric(k, v, now + i, 0) for k, v in {"rows": 1000.0, "champion_accuracy": 0.9,
                                                          "drift_detected": float(i % 50 == 0)}.items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param("kind", "stream")],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_dict(run.info.run_id, {"decision": decision, "metrics": {}}, "outcome.json")
        client.log_text(run.info.run_id, SPEC_YAML.format(name=name), "spec.yaml")
        if i:
            client.log_dict(run.info.run_id, verdict(i), "drift/verdict.json")
        client.set_terminated(run.info.run_id)

    with ThreadPoolExecutor(8) as pool:
        for p in range(n_pipelines):
            name = f"load{p}"
            exp = registry.ensure_experiment(name)
            list(pool.map(lambda i, n=name, e=exp: one(n, e, i), range(n_runs)))


def start_mlflow() -> str:
    """An MLflow server under $CALMOPS_HOME, started as ``calmops up`` starts it; returns its URL."""
    from calmops.deployments import stack

    port = _free_port()
    os.environ["CALMOPS_MLFLOW_PORT"] = str(port)
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    return stack.start("mlflow").url


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_warning() -> str:
    """What the pages' warning says about the unreachable Prefect API, as they write it (docs/viewer.md)."""
    from calmops.dashboards import data, ui

    problem = data.check_prefect(data.connection())
    assert problem and UNREACHABLE_PREFECT in problem, problem
    return ui.plain(problem)


def time_page(script: str, repeats: int, mlflow_url: str, expected: str) -> tuple[float, int]:
    """Median seconds to a full render of the page ``script`` draws, and its median HTTP requests to MLflow;
    the page may warn ``expected`` and nothing else."""
    import httpx
    import requests
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from calmops.dashboards import data

    calls = [0]
    original = requests.Session.request

    def counted(self, method, url, *a, **k):
        if str(url).startswith(mlflow_url):
            calls[0] += 1
        return original(self, method, url, *a, **k)

    original_send = httpx.Client.send

    def counted_send(self, request, *a, **k):  # the viewer's artifact fetches
        if str(request.url).startswith(mlflow_url):
            calls[0] += 1
        return original_send(self, request, *a, **k)

    requests.Session.request = counted
    httpx.Client.send = counted_send
    times, counts = [], []
    try:
        for _ in range(repeats):
            st.cache_data.clear()
            data.forget_artifacts()
            calls[0] = 0
            at = AppTest.from_string(script, default_timeout=120)
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
            counts.append(calls[0])
            assert not at.exception, at.exception
            unexpected = [*at.error, *(w for w in at.warning if expected not in w.value)]
            assert not unexpected, [e.value for e in unexpected]
    finally:
        requests.Session.request = original
        httpx.Client.send = original_send
    return statistics.median(times), int(statistics.median(counts))


def floor(repeats: int) -> float:
    """The baseline in the same run: the queries no page can avoid (list the pipelines, read one pipeline's
    runs with ``search_runs``), without Streamlit."""
    from calmops.dashboards import data

    conn = data.connection()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pipelines = data.list_pipelines(conn)
        data.runs_frame(conn, pipelines[0]["experiment_id"])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--runs", type=int, default=500, help="runs seeded per pipeline")
    cli.add_argument("--pipelines", type=int, default=5, help="pipelines seeded")
    cli.add_argument("--repeats", type=int, default=5, help="renders per page (cold caches), floor queries")
    add_keep(cli)
    args = cli.parse_args()
    with temp_home("calmops-viewer-", args.keep) as home:
        os.environ["CALMOPS_HOME"] = str(home)
        for k in [k for k in os.environ if k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))]:
            del os.environ[k]
        os.environ["PREFECT_API_URL"] = UNREACHABLE_PREFECT
        from calmops.deployments import stack

        url = start_mlflow()
        try:
            results = run(args, url)
        finally:
            stack.stop("mlflow")
    out = results_folder(changed(cli, args, "runs", "pipelines", "repeats"))
    (out / "viewer_load.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def run(args, url: str) -> dict:
    """Seed the runs, then time the floor and each page; returns the results."""
    t = time.perf_counter()
    seed(args.pipelines, args.runs)
    print(f"seeded {args.pipelines}×{args.runs} runs in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    results = {"floor_s": round(floor(args.repeats), 2)}
    print(f"floor (list pipelines + one pipeline's runs): {results['floor_s']} s", file=sys.stderr)
    expected = prefect_warning()
    for page in ("overview", "pipeline"):
        script = f"from calmops.dashboards.views import {page}\n{page}.render()"
        median, n_calls = time_page(script, args.repeats, url, expected)
        results[page] = {"median_s": round(median, 2), "mlflow_http_requests": n_calls}
        print(page, results[page], file=sys.stderr)
    return {**results, "pipelines": args.pipelines, "runs_per_pipeline": args.runs, "repeats": args.repeats}


if __name__ == "__main__":
    main()
