"""Wall time of each `calmops` command as a user types it (median of N), with the local stack down and up.

    .venv/bin/python bench/cli_latency.py [--repeat 5] [--no-stack-up] [--keep]

Everything happens in a temporary CALMOPS_HOME with one stream pipeline, removed at the end (``--keep`` keeps
it); the stack (when measured) runs on free ports and is stopped at the end. `calmops run` is measured on a
1,000-row file without drift (the champion exists already, so no model is logged), next to the import of the
flow code alone; with the stack up it is also split, from the Prefect API's records of each run: until the
flow run exists, the flow, its MLflow logging (the record task) and the exit after the run is Completed.
With the stack up, the commands the warm runner takes (`create`, `update`, `delete`, `breaker show`,
`relaunch`, `run`) are timed a second time in a process of their own (`CALMOPS_RUN_WARM=0`), the baseline of
the hand-over in the same run.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import add_keep, parser, temp_home

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).with_name("calmops")
TARGETS = {"--help": 0.5, "list": 1.5, "status": 1.5, "status sea": 1.5, "show sea": 1.5, "run (no drift)": 3.0,
           "create": 1.5, "update sea": 1.5, "delete": 1.5, "breaker show sea": 1.5, "relaunch sea": 1.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_of(n: int, fn) -> float:
    return statistics.median(fn() for _ in range(n))


def measure(env: dict[str, str], repeat: int, files: list[Path]) -> dict[str, float]:
    out = {}
    for label, args in (("--help", ["--help"]), ("list", ["list"]), ("status", ["status"]),
                        ("status sea", ["status", "sea"]), ("show sea", ["show", "sea"])):
        out[label] = median_of(repeat, lambda a=args: timed(a, env))
    out["import flows"] = median_of(repeat, lambda: _python(["-c", "import calmops.flows.stream"], env))
    runs = iter(files)
    if "PREFECT_API_URL" not in env:  # the stack is down: each run starts its own temporary Prefect server
        out["run (no drift)"] = median_of(repeat, lambda: timed(["run", "sea", str(next(runs))], env))
        return out
    parts = [run_parts(env, next(runs)) for _ in range(repeat)]
    out["run (no drift)"] = statistics.median(p["total"] for p in parts)
    for label in RUN_PARTS:
        out[label] = statistics.median(p[label] for p in parts)
    return out


def handed_over(env: dict[str, str], repeat: int, spec: Path) -> dict[str, float]:
    """The commands the warm runner takes when the stack is up (all but ``run``): a pipeline created from
    ``spec`` and deleted again, each ``repeat`` times; the other commands on pipeline ``sea``."""
    other = spec.with_name("other.yaml")
    other.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "name": "other"}))
    created, deleted = [], []
    for _ in range(repeat):
        created.append(timed(["create", str(other)], env))
        deleted.append(timed(["delete", "other", "--yes"], env))
    out = {"create": statistics.median(created), "delete": statistics.median(deleted)}
    for label, args in (("update sea", ["update", "sea", str(spec)]), ("breaker show sea", ["breaker", "show", "sea"]),
                        ("relaunch sea", ["relaunch", "sea"])):
        out[label] = median_of(repeat, lambda a=args: timed(a, env))
    return out


RUN_PARTS = ("· until the flow run exists", "· the flow (Running to Completed)",
             "· of which MLflow logging (record)", "· after Completed, to exit")


def run_parts(env: dict[str, str], file: Path) -> dict[str, float]:
    """One `calmops run --json` with the stack up, split with the flow run's state times and its record
    task (the MLflow logging) as the Prefect API recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    start = time.time()
    done = subprocess.run([str(BIN), "run", "sea", str(file), "--json"], env=env, capture_output=True, text=True,
                          check=True)
    end = time.time()
    flow_run_id = json.loads(done.stdout)["flow_run_id"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        states = {s.type.value: s.timestamp.timestamp() for s in client.read_flow_run_states(flow_run_id)}
        records = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                                         task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="record")))
    return {"total": end - start, RUN_PARTS[0]: run.created.timestamp() - start,
            RUN_PARTS[1]: states["COMPLETED"] - states["RUNNING"],
            RUN_PARTS[2]: sum(r.total_run_time.total_seconds() for r in records),
            RUN_PARTS[3]: end - states["COMPLETED"]}


def _python(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeat", type=int, default=5, help="runs of each command; the median is reported")
    cli.add_argument("--no-stack-up", action="store_true", help="Measure with the stack down only.")
    add_keep(cli)
    args = cli.parse_args()
    with temp_home("calmops-cli-bench-", args.keep) as home:
        results = measure_all(home, args.repeat, not args.no_stack_up)
    print(f"| command | target | {' | '.join(f'stack {k}' for k in results)} |")
    print(f"|---|---|{'---|' * len(results)}")
    for label in results.get("up", results["down"]):
        target = f"≤ {TARGETS[label]} s" if label in TARGETS else "-"
        shown = label if label.startswith("·") else f"`{label}`"
        print(f"| {shown} | {target} | " + " | ".join(f"{r[label]:.2f} s" if label in r else "-"
                                                       for r in results.values()) + " |")


def measure_all(home: Path, repeat: int, stack_up: bool) -> dict[str, dict[str, float]]:
    """One stream pipeline under ``home``; the commands timed with the stack down, then (``stack_up``) with
    ``calmops up --no-watcher`` on free ports, stopped at the end. Keyed "down", "up", "up, own process"."""
    from tests.conftest import STREAM_SPEC, sea_frame, write_csv

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update(CALMOPS_HOME=str(home / "home"), COLUMNS="100")
    for service in ("PREFECT", "MLFLOW", "VIEWER", "API"):
        env[f"CALMOPS_{service}_PORT"] = str(_free_port())
    spec = home / "spec.yaml"
    spec.write_text(yaml.safe_dump(STREAM_SPEC))
    subprocess.run([str(BIN), "create", str(spec)], env=env, check=True, stdout=subprocess.DEVNULL)
    data = home / "data"
    subprocess.run([str(BIN), "run", "sea", str(write_csv(sea_frame(1000, 8, seed=0), data, "first.csv"))],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = [write_csv(sea_frame(1000, 8, seed=i), data, f"f{i}.csv") for i in range(1, 3 * repeat + 1)]

    results = {"down": measure(env, repeat, files[:repeat])}
    if stack_up:
        subprocess.run([str(BIN), "up", "--no-watcher"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{env['CALMOPS_PREFECT_PORT']}/api"  # to read the runs
            up = {**env, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
            results["up"] = measure(up, repeat, files[repeat:2 * repeat]) | handed_over(up, repeat, spec)
            cold, later = {**up, "CALMOPS_RUN_WARM": "0"}, iter(files[2 * repeat:])
            results["up, own process"] = handed_over(cold, repeat, spec) | {"run (no drift)": median_of(
                repeat, lambda: timed(["run", "sea", str(next(later))], cold))}
        finally:
            subprocess.run([str(BIN), "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    return results


if __name__ == "__main__":
    main()
