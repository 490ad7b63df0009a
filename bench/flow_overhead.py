"""Flow overhead: one file through the Prefect flow vs the same steps as plain functions.

Both paths run in this process, against the same real stores (a Prefect server started by
Prefect's test harness, MLflow on SQLite), on a 10k×20 and a 100k×20 file. Each measurement
processes a new file for a pipeline that already has a champion and runs the full retrain path
(retrain_on: always) so every step runs. The plain path is the flow's own body (``stream_flow.fn``)
with every Prefect task called as its plain function (``Task.fn``): the same code, without Prefect's
flow and task engines, task-run records or artifacts. Reports median of N and the ratio flow / plain.
Everything happens in a temporary CALMOPS_HOME (``/tmp/calmops-bench-*``), removed at the end.

    .venv/bin/python bench/flow_overhead.py [--repeats 5] [--sizes 10000,100000] [--keep]

(``make bench`` runs it with the defaults: 13 minutes on the 2-core machine while it was shared, 2026-12-06.)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from common import add_keep, changed, parser, results_folder, temp_home

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no "Downloading artifacts" bars

RETRAINED = ("retrain_promoted", "retrain_rejected")
MODES = ("flow", "plain")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.normal(0, 0.5, n) > 0).astype(int)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(20)]).assign(y=y)


def spec_for(name: str) -> dict:
    return {"name": name, "target": "y",
            "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 50}},
            "retrain": {"retrain_on": "always"}, "evaluation": {"promotion_margin": 0.0}}


@contextmanager
def tasks_as_plain_functions() -> Iterator[None]:
    """In the block every Prefect task runs as its plain function (``Task.fn``): no engine, no task run."""
    from prefect import Task

    def plain(task: Task, /, *args, **kwargs):
        return task.fn(*args, **kwargs)

    with mock.patch.object(Task, "__call__", plain):
        yield


def plain_steps(pipeline: str, path: Path) -> dict:
    """The stream flow's own steps on ``path`` (in the pipeline's incoming folder), with no Prefect flow or
    task run; returns the outcome, as the flow does."""
    from calmops.flows.stream import stream_flow

    with tasks_as_plain_functions():
        return stream_flow.fn(pipeline=pipeline, path=str(path)).result()  # the final state holds the outcome


def through_flow(pipeline: str, path: Path) -> dict:
    """``path`` through the Prefect flow, as ``calmops run`` does in-process; returns the outcome."""
    from calmops.flows import run_file

    outcome, error = run_file(pipeline, path)
    assert error is None, error
    return outcome


def first_model(name: str, n: int):
    """Create the pipeline and train its first model on an ``n``-row file; returns its folders."""
    from calmops.core.store import save_spec, spec_from_dict

    paths = save_spec(spec_from_dict(spec_for(name)), create=True)
    through_flow(name, write(frame(n, 0), paths.incoming / "seed.csv"))  # also warms imports and caches
    return paths


def write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def measure(mode: str, n: int, repeats: int) -> list[float]:
    """Seconds per file of ``mode`` (``flow`` or ``plain``) on ``repeats`` new ``n``-row files of a new
    pipeline, after one warm-up file; each file must take the retrain path."""
    name = f"bench-{mode}-{n}"
    paths = first_model(name, n)
    step = through_flow if mode == "flow" else plain_steps
    timings = []
    for r in range(repeats + 1):
        path = write(frame(n, 1000 + r), paths.incoming / f"f{r}.csv")
        t0 = time.perf_counter()
        outcome = step(name, path)
        took = time.perf_counter() - t0
        assert outcome["decision"] in RETRAINED, outcome  # not the path measured: not a measurement
        if r:  # the first repeat is a warm-up
            timings.append(took)
        print(f"{n:>7} rows {mode:>5} run {r}: {took:.2f} s ({outcome['decision']})", file=sys.stderr)
    return timings


def summary(timings: dict[str, list[float]]) -> dict:
    flow_med, plain_med = statistics.median(timings["flow"]), statistics.median(timings["plain"])
    return {"flow_median_s": round(flow_med, 3), "plain_median_s": round(plain_med, 3),
            "overhead_s": round(flow_med - plain_med, 3), "ratio": round(flow_med / plain_med, 3),
            "flow_runs": [round(t, 3) for t in timings["flow"]],
            "plain_runs": [round(t, 3) for t in timings["plain"]]}


def write_results(results: dict, out: Path) -> None:
    (out / "flow_overhead.json").write_text(json.dumps(results, indent=2))
    lines = ["| file | plain steps (median) | flow (median) | overhead | ratio |", "|---|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} | {r['plain_median_s']:.2f} s | {r['flow_median_s']:.2f} s | "
                     f"{r['overhead_s']:+.2f} s | {r['ratio']:.2f}× |")
    (out / "flow_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeats", type=int, default=5, help="files timed per size and path, after a warm-up")
    cli.add_argument("--sizes", default="10000,100000", help="rows per file, comma-separated (20 columns)")
    add_keep(cli)
    args = cli.parse_args()
    with temp_home("calmops-bench-", args.keep) as home:
        os.environ["CALMOPS_HOME"] = str(home)
        from prefect.testing.utilities import prefect_test_harness

        from calmops.core import registry

        with prefect_test_harness(server_startup_timeout=120):
            registry.configure()
            sizes = [int(s) for s in args.sizes.split(",")]
            results = {f"{n}x20": summary({mode: measure(mode, n, args.repeats) for mode in MODES})
                       for n in sizes}
    write_results(results, results_folder(changed(cli, args, "repeats", "sizes")))


if __name__ == "__main__":
    main()
