"""The container files, built and run: the image from deploy/container/Dockerfile, the stack from
deploy/container/compose.yaml under podman-compose (PostgreSQL, Prefect, MLflow, two workers with their own warm
runners, the watcher, the viewer, the API), a pipeline created inside it and files decided through it.

No image registry is reachable here, so ``scripts/container-images.sh`` builds the base (Debian bookworm's
Python 3.11, by mmdebstrap) and a stand-in for the official postgres image from Debian's postgresql-15; the
CalmOps image itself is built from the Dockerfile as a user would. Artifacts go to a folder of the data volume
(the S3 path is tested in test_production_stack.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import free_port, until

pytestmark = [pytest.mark.production, pytest.mark.e2e, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "container" / "compose.yaml"


@pytest.fixture(scope="module")
def images():
    """The images, and the environment podman needs here (its CONTAINERS_CONF)."""
    built = subprocess.run(["bash", str(REPO / "scripts" / "container-images.sh")], capture_output=True, text=True,
                           timeout=1500, check=False)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    return {**os.environ, "CONTAINERS_CONF": built.stdout.strip().splitlines()[-1]}


@pytest.fixture
def compose_stack(images, tmp_path):
    """``podman-compose up -d`` on free loopback ports, ``down -v`` afterwards (the project's volumes go too)."""
    project = f"calmops{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("prefect", "mlflow", "viewer", "api")}
    published = yaml.safe_load(COMPOSE.read_text())
    for name, port in ports.items():  # the same file, published on free ports (a test must not take 4200 & co)
        inner = published["services"][name]["ports"][0].rsplit(":", 1)[1]
        published["services"][name]["ports"] = [f"127.0.0.1:{port}:{inner}"]
    compose = COMPOSE.parent / f".compose-{project}.yaml"  # beside the original: build context and ./initdb
    compose.write_text(yaml.safe_dump(published))
    env = {**images, "POSTGRES_PASSWORD": uuid.uuid4().hex, "CALMOPS_API_TOKEN": uuid.uuid4().hex,
           "CALMOPS_MLFLOW_ARTIFACTS_DESTINATION": "/data/mlflow/artifacts"}

    def run(*args, timeout=600):
        return subprocess.run(["podman-compose", "-p", project, "-f", str(compose), *args], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def podman(*args, timeout=300):
        return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    try:
        up = run("up", "-d")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        yield project, ports, env, podman
    finally:
        run("down", "-v", timeout=300)
        compose.unlink(missing_ok=True)


def _http(url: str, headers: dict | None = None) -> int:
    import httpx

    try:
        return httpx.get(url, headers=headers or {}, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_the_compose_stack_runs_from_the_image_and_decides_dropped_files(compose_stack):
    project, ports, _env, podman = compose_stack
    until(lambda: _http(f"http://127.0.0.1:{ports['prefect']}/api/health") == 200, 300, "Prefect in its container")
    until(lambda: _http(f"http://127.0.0.1:{ports['mlflow']}/health") == 200, 300, "MLflow in its container")
    assert _http(f"http://127.0.0.1:{ports['prefect']}/") == 200  # the Prefect UI is served, not only its API
    until(lambda: _http(f"http://127.0.0.1:{ports['api']}/health") == 200, 300, "the API in its container")

    running = podman("ps", "--filter", f"label=io.podman.compose.project={project}", "--format",
                     "{{.Labels}}").stdout
    for service in ("postgres", "prefect", "mlflow", "worker-1", "worker-2", "watcher", "viewer", "api"):
        assert f"com.docker.compose.service:{service}" in running, service
    for service in ("worker-1", "api"):  # the services run as the image's unprivileged user
        uid = podman("exec", f"{project}_{service}_1", "id", "-u").stdout.strip()
        assert uid not in ("", "0"), (service, uid)

    volume = Path(podman("volume", "inspect", f"{project}_data", "--format", "{{.Mountpoint}}").stdout.strip())
    (volume / "trial.yaml").write_text(yaml.safe_dump({**STREAM_SPEC, "name": "boxed"}))

    def created():
        made = podman("exec", f"{project}_api_1", "calmops", "create", "/data/trial.yaml")
        return made.returncode == 0 or "exists already" in made.stderr + made.stdout

    until(created, 300, "calmops create inside the stack (the worker deploys once Prefect answers)", interval=5)
    pipeline = volume / "pipelines" / "boxed"
    files = [f"sea_{i}.csv" for i in range(4)]
    for i, name in enumerate(files):  # the concept changes half-way: the retrain goes through the registry
        staged = pipeline / f".{name}.part"
        sea_frame(600, 8.0 if i < 2 else 4.0, seed=i).to_csv(staged, index=False)
        os.chmod(staged, 0o644)
        staged.rename(pipeline / "incoming" / name)
        time.sleep(0.3)

    until(lambda: sorted(p.name for p in (pipeline / "processed").glob("*.csv")) == files, 600,
          "the four files to be decided inside the stack", interval=2)
    status = json.loads(podman("exec", f"{project}_api_1", "calmops", "status", "boxed", "--json").stdout)
    assert status["files_done"] == 4 and status["files_pending"] == status["files_orphaned"] == 0, status
    assert status["aliases"]["champion"] == status["champion_version"] >= 2, status  # the drift's retrain won
    # CalmOps' own state is in the PostgreSQL container, not in files of the shared volume
    assert not [p.name for p in pipeline.iterdir() if p.suffix in (".sqlite", ".lock")]
    tables = podman("exec", f"{project}_postgres_1", "psql", "-U", "calmops", "-d", "calmops", "-tAc",
                    "SELECT count(*) FROM calmops_ledger.\"boxed\" WHERE status = 'done'").stdout.strip()
    assert tables == "4"
