"""Burst throughput and file-to-decision latency on the production layout with 1, 2 and 4 workers, against the
embedded SQLite stack with 1 worker, in one run.

Each configuration starts from nothing: a temporary CALMOPS_HOME, ``calmops db upgrade`` and ``calmops up`` (on
the production layout: Prefect, MLflow and CalmOps' own state on a throwaway PostgreSQL from
``scripts/postgres.sh``, artifacts on moto's S3 server), then workers 2..N each as on its own host (its own run
folder and warm runner, ``calmops service runner`` and ``calmops service worker``). Eight stream pipelines each
train on a first file; then the burst: ``--files`` files (1,000 rows each) renamed into the eight incoming
folders 0.02 s apart. A file's latency is from its rename to the moment its ledger entry reads ``done``
(polled every 0.25 s); throughput is the files over the time from the first rename to the last decision.

    .venv/bin/python bench/production.py [--files 200] [--workers 1 2 4] [--also postgres-files] [--keep]

``postgres-files`` is the production layout with MLflow's artifacts in a local folder instead of the S3 API,
one worker: what the object store costs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_keep, parser, temp_home
from stack_latency import CALMOPS, _sha, frame, free_port, pct, spec

REPO = Path(__file__).resolve().parents[1]
PIPELINES = 8


def _postgres(data: Path, port: int) -> None:
    data.parent.mkdir(parents=True)
    data.parent.chmod(0o755)
    _run(["bash", str(REPO / "scripts" / "postgres.sh"), "start", str(data), str(port)], timeout=300)


def _run(command: list[str], **options) -> None:
    """Run a set-up step; a failure says the step and the end of what it printed (it was captured)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    if done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n" + "\n".join(said))


def _s3(port: int) -> subprocess.Popen:
    import boto3

    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1")
    for _ in range(120):
        try:
            client.create_bucket(Bucket="calmops-bench")
            return proc
        except Exception:  # noqa: BLE001 - still starting
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("moto's S3 server did not start")


def run_config(layout: str, workers: int, files: int, keep: bool = False) -> dict:
    """One configuration from nothing, in a temporary folder removed at the end (unless ``keep``)."""
    with temp_home(f"calmops-bench-{layout}{workers}-", keep) as work:
        return run_in(work, layout, workers, files)


def run_in(work: Path, layout: str, workers: int, files: int) -> dict:
    """The stores, the stack and the burst under ``work``; everything started is stopped at the end."""
    work.chmod(0o755)  # PostgreSQL runs as its own user and must reach its data folder below
    home = work / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "CALMOPS_"))}
    env.update(CALMOPS_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true",
               CALMOPS_START_TIMEOUT="400",
               **{f"CALMOPS_{s}_PORT": str(free_port()) for s in ("PREFECT", "MLFLOW", "VIEWER", "API")})
    pg_data = s3 = None
    extra: list[subprocess.Popen] = []
    saved = dict(os.environ)
    try:  # whatever was started is stopped at the end, also when a later set-up step fails
        if layout.startswith("postgres"):  # "postgres": artifacts on the S3 API; "postgres-files": in a local folder
            pg_data, pg_port = work / "pg" / "data", free_port()
            _postgres(pg_data, pg_port)
            url = f"calmops@127.0.0.1:{pg_port}"
            env.update(CALMOPS_PREFECT_DATABASE_URL=f"postgresql+asyncpg://{url}/prefect",
                       CALMOPS_MLFLOW_BACKEND_STORE_URI=f"postgresql://{url}/mlflow",
                       CALMOPS_STATE_DATABASE_URL=f"postgresql://{url}/calmops")
            if layout == "postgres":
                s3_port = free_port()
                s3 = _s3(s3_port)
                env.update(CALMOPS_MLFLOW_ARTIFACTS_DESTINATION="s3://calmops-bench/mlflow",
                           AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                           MLFLOW_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}")
            _run([CALMOPS, "db", "upgrade"], env=env, cwd=work)
        os.environ.clear()
        os.environ.update(env)
        t_up = time.monotonic()
        _run([CALMOPS, "up"], env=env, cwd=work)
        started = time.monotonic() - t_up
        for n in range(2, workers + 1):  # each extra worker as on its own host
            host = dict(env, CALMOPS_RUN_DIR=str(work / f"host{n}"),
                        PREFECT_API_URL=f"http://127.0.0.1:{env['CALMOPS_PREFECT_PORT']}/api",
                        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{env['CALMOPS_MLFLOW_PORT']}")
            for service in ("runner", "worker"):
                extra.append(subprocess.Popen([CALMOPS, "service", service], env=host, cwd=work,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True))
        import yaml

        from calmops.core.store import ledger, pipeline_paths, read_spec

        names = [f"prod{i}" for i in range(PIPELINES)]
        for name in names:
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec(name)))
            _run([CALMOPS, "create", str(path)], env=env, cwd=work)
        books = {n: ledger(pipeline_paths(read_spec(n)).ensure()) for n in names}
        incoming = {n: pipeline_paths(read_spec(n)).incoming for n in names}
        seed = 0
        warm = {}
        for name in names:  # the first model of every pipeline, before the clock starts
            seed += 1
            df = frame(1000, seed)
            df.to_csv(incoming[name] / "warmup.csv", index=False)
            warm[name] = _sha(df)
        _wait({(n, warm[n]) for n in names}, books, timeout=1800)
        drops: dict[tuple[str, str], float] = {}
        staged = []
        for i in range(files):
            seed += 1
            name = names[i % PIPELINES]
            df = frame(1000, seed)
            tmp = incoming[name].parent / f".burst-{i}.part"
            df.to_csv(tmp, index=False)
            staged.append((name, tmp, _sha(df), f"burst-{i:03d}.csv"))
        for name, tmp, sha, fname in staged:
            drops[(name, sha)] = time.time()
            tmp.replace(incoming[name] / fname)
            time.sleep(0.02)
        done_at = _wait(set(drops), books, timeout=3600)
        latency = [done_at[k] - drops[k] for k in drops]
        took = max(done_at.values()) - min(drops.values())
        result = {"layout": layout, "workers": workers, "files": files, "seconds": round(took, 1),
                  "files_per_s": round(files / took, 3), "p50_s": round(pct(latency, 50), 2),
                  "p95_s": round(pct(latency, 95), 2), "stack_start_s": round(started, 1)}
        print(json.dumps(result), file=sys.stderr)
        return result
    finally:
        for p in extra:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for p in extra:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        subprocess.run([CALMOPS, "down"], env=env, capture_output=True, check=False, cwd=work)
        os.environ.clear()
        os.environ.update(saved)
        if s3 is not None:
            s3.terminate()
        if pg_data is not None:
            subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "stop", str(pg_data)],
                           capture_output=True, check=False)


def _wait(keys: set[tuple[str, str]], books: dict, timeout: float) -> dict[tuple[str, str], float]:
    """When each (pipeline, sha256) was first seen ``done`` in its ledger."""
    seen: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(keys):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(keys) - len(seen)} file(s) not decided")
        now = time.time()
        for name in {n for n, _ in keys}:
            states = books[name].states()
            for key in keys:
                if key[0] == name and key not in seen and states.get(key[1]) == "done":
                    seen[key] = now
        time.sleep(0.25)
    return seen


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--files", type=int, default=200, help="files in the burst, over 8 pipelines")
    cli.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                     help="worker counts tried on the production layout (PostgreSQL + S3 API)")
    cli.add_argument("--also", nargs="*", default=["postgres-files"],
                     help="more one-worker layouts: postgres-files (artifacts in a local folder, not S3)")
    add_keep(cli)
    args = cli.parse_args()
    results = [run_config("sqlite", 1, args.files, args.keep)]
    results += [run_config("postgres", n, args.files, args.keep) for n in args.workers]
    results += [run_config(layout, 1, args.files, args.keep) for layout in args.also]
    base = results[0]["files_per_s"]
    for r in results:
        r["throughput_vs_sqlite_1"] = round(r["files_per_s"] / base, 2)
    out = Path(__file__).parent / "results" / "production.json"
    out.write_text(json.dumps({"cores": os.cpu_count(), "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
