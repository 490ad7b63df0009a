"""File-to-decision latency and burst throughput through the running stack, against the same files run
in-process, in the same run.

Starts the real local stack (``calmops up`` on free ports, a temporary CALMOPS_HOME), creates stream
pipelines, drops files the way a producer does (temporary name, then rename) and measures the time until the
pipeline's ledger says the file is done, and counts the "database is locked" errors in the services' logs. For each file it also reads the flow run from the Prefect API to say
where the time goes: drop → flow run created (watcher, event, automation), created → started (worker pick-up,
process start: a fork of the warm runner), started → finished (the flow itself).

    .venv/bin/python bench/stack_latency.py [--files 10] [--burst 100] [--pipelines 4] [--keep]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import add_keep, changed, parser, results_folder, temp_home

CALMOPS = str(Path(sys.executable).with_name("calmops"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(y=(X[:, 0] + X[:, 1] > 0).astype(int))


def spec(name: str) -> dict:
    return {"name": name, "target": "y", "model": {"class": "sklearn.linear_model.LogisticRegression"}}


def drop(df: pd.DataFrame, folder: Path, name: str) -> float:
    tmp = folder / f".{name}.part"
    df.to_csv(tmp, index=False)
    t = time.time()
    tmp.replace(folder / name)
    return t


def wait_done(book, sha: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if book.status(sha) == "done":
            return time.time()
        time.sleep(0.05)
    raise TimeoutError(sha)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


@contextmanager
def stack_up(prefix: str, keep: bool = False, **settings: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """``calmops up`` on free ports and a new temporary CALMOPS_HOME, with ``settings`` (CALMOPS_* variables)
    in its environment, which becomes this process's too; yields the home and that environment. When the
    block ends, on failure too: ``calmops down``, and the home removed (unless ``keep``: see
    :func:`common.temp_home`)."""
    with temp_home(prefix, keep) as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "CALMOPS_"))}
        env.update(CALMOPS_HOME=str(home), **settings, **{f"CALMOPS_{s}_PORT": str(free_port())
                                                          for s in ("PREFECT", "MLFLOW", "VIEWER", "API")})
        os.environ.clear()
        os.environ.update(env)
        try:
            subprocess.run([CALMOPS, "up"], check=True, env=env, capture_output=True)
            yield home, env
        finally:
            subprocess.run([CALMOPS, "down"], env=env, capture_output=True, check=False)


def create_pipelines(home: Path, env: dict[str, str], names: list[str]) -> tuple[dict, dict[str, Path]]:
    """``calmops create`` for each stream pipeline of :func:`spec`; returns their ledgers and incoming folders."""
    from calmops.core.store import ledger, pipeline_paths, read_spec

    for name in names:
        path = home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec(name)))
        subprocess.run([CALMOPS, "create", str(path)], check=True, env=env, capture_output=True)
    return ({n: ledger(pipeline_paths(read_spec(n)).ensure()) for n in names},
            {n: pipeline_paths(read_spec(n)).incoming for n in names})


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--files", type=int, default=10,
                     help="sequential 1k-row files; a third as many 100k-row ones (at least 3)")
    cli.add_argument("--burst", type=int, default=100, help="files in the burst, spread over the pipelines")
    cli.add_argument("--pipelines", type=int, default=4, help="stream pipelines created")
    add_keep(cli)
    args = cli.parse_args()
    with stack_up("calmops-latency-", args.keep) as (home, env):
        results = measure(args, home, env)
    out = results_folder(changed(cli, args, "files", "burst", "pipelines"))
    (out / "stack_latency.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def measure(args, home: Path, env: dict[str, str]) -> dict:
    """The sequential files, the burst and the same files in-process, on the running stack; the results."""
    from calmops.core.environment import prepare

    prepare()
    results: dict = {}
    names = [f"lat{i}" for i in range(args.pipelines)]
    books, incoming = create_pipelines(home, env, names)
    seed = 0
    for name in names:  # first model of every pipeline (and warm caches)
        seed += 1
        df = frame(1000, seed)
        drop(df, incoming[name], "warmup.csv")
        wait_done(books[name], _sha(df))
    drops: dict[str, float] = {}
    for rows in (1000, 100_000):
        lat = []
        for i in range(args.files if rows == 1000 else max(3, args.files // 3)):
            seed += 1
            df = frame(rows, seed)
            t0 = drops[f"seq-{rows}-{i}.csv"] = drop(df, incoming[names[0]], f"seq-{rows}-{i}.csv")
            lat.append(wait_done(books[names[0]], _sha(df)) - t0)
        results[f"stack_{rows}"] = {"p50_s": round(pct(lat, 50), 2), "p95_s": round(pct(lat, 95), 2),
                                    "n": len(lat)}
        print(f"stack {rows}: {results[f'stack_{rows}']}", file=sys.stderr)
    # burst across pipelines
    frames = []
    for i in range(args.burst):
        seed += 1
        frames.append((names[i % len(names)], frame(1000, seed), f"burst-{i}.csv"))
    t0 = time.time()
    for name, df, fname in frames:
        drop(df, incoming[name], fname)
    for name, df, _ in frames:
        wait_done(books[name], _sha(df), timeout=3600)
    took = time.time() - t0
    results["burst"] = {"files": args.burst, "pipelines": len(names), "seconds": round(took, 1),
                        "files_per_s": round(args.burst / took, 3)}
    results["burst"]["database_locked"] = locked(home / "logs")
    print(f"burst: {results['burst']}", file=sys.stderr)
    results["breakdown_1000"] = breakdown(drops, "seq-1000-")
    # the same 1k and 100k files through the flow called in-process (same servers)
    from calmops.flows import run_file

    for rows in (1000, 100_000):
        times = []
        for i in range(args.files if rows == 1000 else max(3, args.files // 3)):
            seed += 1
            df = frame(rows, seed)
            path = incoming[names[1]].parent / f"local-{rows}-{i}.csv"
            df.to_csv(path, index=False)
            t = time.perf_counter()
            run_file(names[1], path)
            times.append(time.perf_counter() - t)
        results[f"in_process_{rows}"] = {"p50_s": round(pct(times, 50), 2), "p95_s": round(pct(times, 95), 2)}
        results[f"overhead_ratio_{rows}"] = round(results[f"stack_{rows}"]["p50_s"] / pct(times, 50), 2)
    return results


def locked(logs: Path) -> dict[str, int]:
    """Errors of Prefect's SQLite database in the services' logs so far: 'database is locked' tracebacks (one
    per failed statement) and the server's failed state validations."""
    from calmops.deployments.prefect_server import database_refusals

    refused = database_refusals(logs)
    return {"tracebacks": sum("sqlite3.OperationalError) database is locked" in line for line in refused),
            "failed_state_validations": sum("Encountered error during state validation" in line for line in refused)}


def _sha(df: pd.DataFrame) -> str:
    import hashlib

    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def breakdown(drops: dict[str, float], prefix: str) -> dict:
    """Median seconds per phase of the sequential files: drop → flow run created (watcher, event,
    automation), created → started (worker pick-up, process start), started → finished (the flow)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    phases: dict[str, list[float]] = {"drop_to_created": [], "created_to_started": [], "started_to_finished": []}
    for r in runs:
        name = Path(str(r.parameters.get("path", ""))).name
        if not name.startswith(prefix) or name not in drops or not (r.start_time and r.end_time):
            continue
        phases["drop_to_created"].append(r.created.timestamp() - drops[name])
        phases["created_to_started"].append((r.start_time - r.created).total_seconds())
        phases["started_to_finished"].append((r.end_time - r.start_time).total_seconds())
    out = {f"{k}_p50_s": round(statistics.median(v), 2) if v else None for k, v in phases.items()}
    out["runs"] = len(phases["drop_to_created"])
    return out


if __name__ == "__main__":
    main()
