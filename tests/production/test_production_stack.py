"""The production back ends, chosen by configuration only: Prefect's server and MLflow's backend store on
PostgreSQL, MLflow's artifacts on an S3-API server, the stack brought up with ``calmops up`` as the docs say.

PostgreSQL is Debian's, started by ``scripts/postgres.sh`` in a temporary folder; the S3 API is moto's
standalone server. Everything is started and stopped here, on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import free_port, until

pytestmark = [pytest.mark.production, pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
CALMOPS = str(Path(sys.executable).with_name("calmops"))
BUCKET = "calmops-artifacts"
FILES = 6


def _psql(port: int, db: str, sql: str) -> str:
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "calmops", "-d", db, "-qtAc", sql],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def postgres():
    folder = Path(tempfile.mkdtemp(prefix="calmops-pg-"))
    folder.chmod(0o755)  # the server runs as the postgres user, which must reach its data folder
    port = free_port()
    subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "start", str(folder / "data"), str(port)],
                   check=True, capture_output=True, timeout=300)
    try:
        yield port
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "stop", str(folder / "data")],
                       check=False, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def s3():
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    credentials = {"AWS_ACCESS_KEY_ID": "calmops-test", "AWS_SECRET_ACCESS_KEY": "calmops-test",
                   "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": endpoint}
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="calmops-test",
                          aws_secret_access_key="calmops-test", region_name="us-east-1")

    def bucket_made():
        try:
            client.create_bucket(Bucket=BUCKET)
            return True
        except Exception:  # noqa: BLE001 - the server is still starting
            return False

    try:
        until(bucket_made, 60, "the S3 API server")
        yield client, credentials
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory, postgres, s3):
    """``calmops db upgrade`` then ``calmops up`` with the back ends named in a calmops.toml."""
    _, credentials = s3
    workdir = tmp_path_factory.mktemp("production")
    home = workdir / "data"
    (workdir / "calmops.toml").write_text(
        "[calmops]\n"
        f'home = "{home}"\n'
        f'prefect_database_url = "postgresql+asyncpg://calmops@127.0.0.1:{postgres}/prefect"\n'
        f'mlflow_backend_store_uri = "postgresql://calmops@127.0.0.1:{postgres}/mlflow"\n'
        f'mlflow_artifacts_destination = "s3://{BUCKET}/mlflow"\n'
        'work_pool = "calmops-production"\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    env.update(credentials, CALMOPS_CONFIG=str(workdir / "calmops.toml"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true",
               CALMOPS_WATCH_SCAN_INTERVAL="3", CALMOPS_START_TIMEOUT="400",
               **{f"CALMOPS_{s}_PORT": str(free_port()) for s in ("PREFECT", "MLFLOW", "VIEWER", "API")})

    def calmops(*args, timeout=600):
        return subprocess.run([CALMOPS, *args], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    upgrade = calmops("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    up = calmops("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield workdir, home, env, calmops
    finally:
        calmops("down", timeout=300)


def test_files_are_decided_on_postgres_with_artifacts_in_the_object_store(production_stack, postgres, s3):
    workdir, home, _env, calmops = production_stack
    client, _ = s3
    spec = {**STREAM_SPEC, "name": "prod-sea"}
    (workdir / "prod-sea.yaml").write_text(yaml.safe_dump(spec))
    created = calmops("create", "prod-sea.yaml")
    assert created.returncode == 0, created.stdout + created.stderr

    incoming = home / "pipelines" / "prod-sea" / "incoming"
    for i in range(FILES):  # the concept changes half-way: at least one retrain goes through the registry
        frame = sea_frame(800, theta=8.0 if i < FILES // 2 else 4.0, seed=i)
        part = incoming / f".sea_{i:02d}.csv.part"
        frame.to_csv(part, index=False)
        part.rename(incoming / f"sea_{i:02d}.csv")
        time.sleep(0.3)

    from calmops.core.store import Ledger

    ledger_file = home / "pipelines" / "prod-sea" / "ledger.sqlite"

    def all_done():
        if not ledger_file.exists():
            return False
        entries = Ledger(ledger_file).entries()
        return len([e for e in entries if e["status"] == "done"]) == FILES and entries

    entries = until(all_done, 600, f"{FILES} decisions")
    assert sorted(e["file"].rsplit("/", 1)[-1] for e in entries) == [f"sea_{i:02d}.csv" for i in range(FILES)]

    # MLflow's runs, registry and aliases are in PostgreSQL (one run per file), Prefect's flow runs too
    assert int(_psql(postgres, "mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'")) == FILES
    aliases = _psql(postgres, "mlflow", "SELECT alias FROM registered_model_aliases WHERE name = 'calmops.prod-sea'")
    assert "champion" in aliases.split()
    # each file was decided by a Prefect flow run recorded in PostgreSQL (in arrival order one run may decide
    # the files that arrived before its own; the runs of those find them done)
    run_ids = sorted({e["run_id"] for e in entries})
    assert all(run_ids), entries
    listed = ", ".join(f"'{i}'" for i in run_ids)
    until(lambda: int(_psql(postgres, "prefect", "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED' "
                                                 f"AND id IN ({listed})")) == len(run_ids),
          120, "the deciding flow runs to be completed in PostgreSQL")

    # every artifact went to the object store, none to the local folder
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mlflow/")
            for o in page.get("Contents", [])]
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any("reference.parquet" in k for k in keys)
    assert not (home / "mlflow" / "artifacts").exists() or not any((home / "mlflow" / "artifacts").rglob("*"))

    # the champion loads through the tracking server (artifacts proxied from S3) and predicts
    status = calmops("status", "prod-sea", "--json")
    assert status.returncode == 0, status.stderr
    assert '"champion"' in status.stdout
