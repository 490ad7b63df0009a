"""Flow overhead: one file through the Prefect flow vs the same steps as plain functions.

Both paths run in this process, against the same real stores (a Prefect server started by
Prefect's test harness, MLflow on SQLite), on a 10k×20 and a 100k×20 file. Each measurement
processes a new file for a pipeline that already has a champion and runs the full retrain path
(retrain_on: always) so every step runs. Reports median of N and the ratio flow / plain.

    .venv/bin/python bench/flow_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.normal(0, 0.5, n) > 0).astype(int)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]).assign(y=y)


def spec_for(name: str) -> dict:
    return {"name": name, "target": "y",
            "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 50}},
            "retrain": {"retrain_on": "always"}, "evaluation": {"promotion_margin": 0.0}}


def plain_steps(pipeline: str, path: Path) -> str:
    """The same work as the flow, calling the tasks' plain functions (Task.fn) with no Prefect run."""
    from calmops.core import registry
    from calmops.core.logs import RunLog
    from calmops.core.store import (
        append_history,
        ledger,
        move_to_processed,
        pipeline_paths,
        read_spec,
        sha256_of,
    )
    from calmops.flows.common import RunContext, reference_frame, register
    from calmops.tasks.drift import DriftInput, check_drift
    from calmops.tasks.evaluate import evaluate_models, holdout_split, primary_metric, seed_from
    from calmops.tasks.ingest import ingest
    from calmops.tasks.predict import predict
    from calmops.tasks.promote import decide, promote_challenger
    from calmops.tasks.record import RunOutcome, record_run
    from calmops.tasks.retrain import retrain

    spec = read_spec(pipeline)
    paths = pipeline_paths(spec).ensure()
    sha = sha256_of(path)
    book = ledger(paths)
    book.claim(sha, path.name, "plain")
    run_id = registry.start_run(pipeline, path.name, {"calmops.pipeline": pipeline})
    ctx = RunContext(spec, paths, book, path, sha, RunLog(pipeline, paths.logs), None, True, "closed", run_id)
    champion = registry.champion(pipeline)
    batch = ingest.fn(path, sha, spec, champion.schema)
    task = champion.schema.task
    metric = primary_metric(spec, task)
    now = evaluate_models.fn({"champion": champion.model}, batch.X, batch.y, task)["champion"]
    verdict = check_drift.fn(DriftInput(champion, batch.X, batch.y, spec, task, metric, now, paths.state, sha))
    append_history(paths, reference_frame(batch.X, batch.y, spec.target), sha, 50)
    split = holdout_split(batch.y, spec, task, seed_from(sha))
    reference = registry.load_reference(pipeline, champion.version)
    trained = retrain.fn("full", spec, batch.feature_types, reference, batch.X.iloc[split.train], batch.y.iloc[split.train])
    scores = evaluate_models.fn({"champion": champion.model, "challenger": trained.model},
                                batch.X.iloc[split.holdout], batch.y.iloc[split.holdout], task)
    decision = decide(scores["challenger"], scores["champion"], spec, metric)
    version = register(ctx, trained, batch, task, scores["challenger"], decision.reason)
    if decision.promote:
        promote_challenger.fn(pipeline, version)
    predict.fn(registry.champion(pipeline).model, batch.X, version, paths.predictions, path.name)
    outcome = RunOutcome(pipeline, path.name, sha, "retrain_promoted" if decision.promote else "retrain_rejected",
                         decision.reason, mlflow_run_id=run_id)
    record_run.fn(outcome, verdict, {"file": path.name})
    book.finish(sha, outcome.decision)
    move_to_processed(paths, path, sha)
    return outcome.decision


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="calmops-bench-"))
    os.environ["CALMOPS_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    from calmops.core import registry
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.flows import run_file

    results = {}
    with prefect_test_harness(server_startup_timeout=120):
        registry.configure()
        for n in [int(s) for s in args.sizes.split(",")]:
            timings = {"flow": [], "plain": []}
            for mode in ("flow", "plain"):
                name = f"bench-{mode}-{n // 1000}k"
                spec = spec_from_dict(spec_for(name))
                paths = save_spec(spec, create=True)
                seed_file = paths.incoming / "seed.csv"
                frame(n, 0).to_csv(seed_file, index=False)
                run_file(name, seed_file)  # first model; also warms imports and caches
                for r in range(args.repeats + 1):
                    path = paths.incoming / f"f{r}.csv"
                    frame(n, 1000 + r).to_csv(path, index=False)
                    t0 = time.perf_counter()
                    if mode == "flow":
                        _, error = run_file(name, path)
                        assert error is None, error
                    else:
                        plain_steps(name, path)
                    if r:  # the first repeat is a warm-up
                        timings[mode].append(time.perf_counter() - t0)
                    print(f"{n:>7} rows {mode:>5} run {r}: {time.perf_counter() - t0:.2f} s", file=sys.stderr)
            flow_med, plain_med = statistics.median(timings["flow"]), statistics.median(timings["plain"])
            results[f"{n}x20"] = {"flow_median_s": round(flow_med, 3), "plain_median_s": round(plain_med, 3),
                                  "overhead_s": round(flow_med - plain_med, 3), "ratio": round(flow_med / plain_med, 3),
                                  "flow_runs": [round(t, 3) for t in timings["flow"]],
                                  "plain_runs": [round(t, 3) for t in timings["plain"]]}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "flow_overhead.json").write_text(json.dumps(results, indent=2))
    lines = ["| file | plain steps (median) | flow (median) | overhead | ratio |", "|---|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} | {r['plain_median_s']:.2f} s | {r['flow_median_s']:.2f} s | "
                     f"{r['overhead_s']:+.2f} s | {r['ratio']:.2f}× |")
    (out / "flow_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
