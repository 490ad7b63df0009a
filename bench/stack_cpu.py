"""Where the CPU and the disk go per file: CPU seconds of each service of the running stack, requests to the
MLflow tracking server, bytes added to each store and events added to Prefect's database, per decided file
during a burst.

Starts the real local stack (``calmops up`` on free ports, a temporary CALMOPS_HOME), creates 4 stream pipelines,
decides 4 files in each first (the first model and warm caches), then drops a burst of 1k-row files spread over
the pipelines and waits until every one is decided. The CPU time of every process (its own and its reaped
children's, from /proc) is read before and after the burst; the MLflow server's access log gives its requests;
the stores' sizes on disk and Prefect's events by type are read before and after too. Before the burst, the
stack waits ``--idle`` seconds with nothing arriving: what each service costs while it waits.
Run it twice with different code to compare; on this noisy 2-core machine compare per-file ratios.

    .venv/bin/python bench/stack_cpu.py [--files 40] [--idle 60] [--out bench/results/stack_cpu.json] [--keep]
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_keep, parser
from stack_latency import _sha, create_pipelines, drop, frame, stack_up, wait_done

TICK = os.sysconf("SC_CLK_TCK")
SERVICES = {"prefect_server": "prefect server", "calmops.deployments.warm": "warm runner (the flow runs)",
            "prefect worker": "worker", "calmops.deployments.watcher": "watcher", "streamlit": "viewer",
            "calmops.deployments.api": "prediction api",
            "mlflow": "mlflow server"}  # last: its app process runs under uvicorn, named by its module


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid → (service, CPU seconds: user and system, its own and its reaped children's)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        service = next((name for key, name in SERVICES.items() if key in cmd), None)
        if service:
            out[int(stat.parent.name)] = (service, sum(int(x) for x in fields[11:15]) / TICK)
    return out


def spent_by_service(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> Counter:
    """CPU seconds each service used between two readings of :func:`cpu_by_process`."""
    spent: Counter = Counter()
    for pid, (service, cpu) in after.items():
        spent[service] += cpu - before.get(pid, (service, 0.0))[1]
    return spent


def disk(home: Path) -> dict[str, int]:
    """Bytes on disk of each store of the embedded stack (SQLite files with their write-ahead logs)."""
    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0

    return {"prefect database": size(home / "prefect"),
            "mlflow database": sum(f.stat().st_size for f in (home / "mlflow").glob("mlflow.db*")),
            "mlflow artifacts": size(home / "mlflow" / "artifacts"),
            "pipelines (ledgers, history, processed files)": size(home / "pipelines")}


def prefect_events(home: Path) -> Counter:
    """Events in Prefect's database by type, read from its SQLite file while the server runs."""
    with sqlite3.connect(f"file:{home / 'prefect' / 'prefect.db'}?mode=ro", uri=True) as db:
        return Counter(dict(db.execute("SELECT event, count(*) FROM events GROUP BY event")))


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--files", type=int, default=40, help="files in the burst, spread over 4 pipelines")
    cli.add_argument("--idle", type=float, default=60, help="seconds of an idle stack measured before the burst")
    cli.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stack_cpu.json",
                     help="the results file")
    add_keep(cli)
    args = cli.parse_args()
    with stack_up("calmops-cpu-", args.keep) as (home, env):
        from calmops.core.environment import prepare

        prepare()
        names = [f"cpu{i}" for i in range(4)]
        books, incoming = create_pipelines(home, env, names)
        seed = 0
        for k in range(4):  # the first model, then the kept history's early doublings (refresh retrains)
            for name in names:
                seed += 1
                df = frame(1000, seed)
                drop(df, incoming[name], f"warm-{k}.csv")
                wait_done(books[name], _sha(df))
        time.sleep(5)
        idle_start, t_idle = cpu_by_process(), time.time()
        time.sleep(args.idle)  # nothing arrives: what the services cost while they wait
        idle_end, idle_took = cpu_by_process(), time.time() - t_idle
        mlflow_log = home / "logs" / "mlflow.log"
        log_start = mlflow_log.stat().st_size
        disk_before, events_before = disk(home), prefect_events(home)
        before, t0 = cpu_by_process(), time.time()
        burst = []
        for i in range(args.files):
            seed += 1
            burst.append((names[i % len(names)], frame(1000, seed), f"burst-{i}.csv"))
        for name, df, fname in burst:
            drop(df, incoming[name], fname)
        for name, df, _ in burst:
            wait_done(books[name], _sha(df), timeout=3600)
        after, took = cpu_by_process(), time.time() - t0
        time.sleep(5)  # the last runs' events and logs reach Prefect's database
        disk_after, events = disk(home), prefect_events(home) - events_before
        requests = re.findall(r'"(?:GET|POST|PATCH|PUT|DELETE) (/api/[^ ?]+)',
                              mlflow_log.read_bytes()[log_start:].decode(errors="replace"))
    spent, idle = spent_by_service(before, after), spent_by_service(idle_start, idle_end)
    n = args.files
    results = {"files": n, "pipelines": len(names), "seconds": round(took, 1), "files_per_s": round(n / took, 3),
               "cpu_s_per_file": {k: round(v / n, 3) for k, v in spent.most_common()},
               "cpu_s_per_file_total": round(sum(spent.values()) / n, 3),
               "idle_seconds": round(idle_took, 1),
               "idle_cpu_percent_of_a_core": {k: round(100 * v / idle_took, 2) for k, v in idle.most_common()},
               "mlflow_requests_per_file": round(len(requests) / n, 1),
               "disk_kb_per_file": {k: round((disk_after[k] - disk_before[k]) / n / 1024, 1) for k in disk_after},
               "prefect_events_per_file": round(sum(events.values()) / n, 1),
               "prefect_task_run_state_events_per_file": round(sum(
                   c for e, c in events.items() if e.startswith("prefect.task-run.")) / n, 1),
               "prefect_events": dict(events.most_common()),
               "mlflow_requests": dict(Counter(r.removeprefix("/api/2.0/mlflow/") for r in requests).most_common())}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
