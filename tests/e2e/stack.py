"""The running stack for end-to-end tests: a private home, free ports, the real services, torn down after."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """End a process the test started: TERM, then KILL if it is still there after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def delete_kind_deployments() -> None:
    """The per-kind deployments `prefect deploy --all` made, and their automations."""
    from prefect.client.orchestration import get_client

    from calmops.deployments.deploy import _delete_deployment

    with get_client(sync_client=True) as client:
        for d in client.read_deployments():
            if d.name in ("stream", "block", "ipip"):
                _delete_deployment(d.id)
        for a in client.read_automations():
            if a.name.startswith("calmops-file-arrived-kind-"):
                client.delete_automation(a.id)


@contextmanager
def running_stack(home: Path, *, reemit_after: float = 30, stall_after: float = 300,
                  before_up: Callable[[], None] | None = None, forget_deployments: bool = True,
                  env: dict[str, str] | None = None) -> Iterator[Path]:
    """Prefect server, warm runner, worker and watcher on ``home`` (MLflow in a SQLite file there), started as
    ``calmops up`` starts them, with ``env`` added to their environment; ``before_up`` runs once the Prefect API
    answers (e.g. to create pipelines)."""
    saved = dict(os.environ)
    os.environ.update(
        CALMOPS_HOME=str(home), CALMOPS_PREFECT_PORT=str(free_port()), CALMOPS_MLFLOW_PORT=str(free_port()),
        CALMOPS_WORK_POOL="calmops", MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        CALMOPS_WATCH_SCAN_INTERVAL="3", CALMOPS_WATCH_REEMIT_AFTER=str(reemit_after),
        CALMOPS_WATCH_STALL_AFTER=str(stall_after),
        CALMOPS_START_TIMEOUT="300",  # a busy 2-core machine can take longer than the default first start
        PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true", **(env or {}),
    )
    os.environ.pop("PREFECT_API_URL", None)
    (home / "mlflow").mkdir(parents=True, exist_ok=True)

    from prefect.settings import PREFECT_API_URL, temporary_settings
    from rich.console import Console

    from calmops.deployments import stack
    from calmops.deployments.operations_cli import bring_up

    try:
        stack.start("prefect")
        url = stack.services()["prefect"].url + "/api"
        os.environ["PREFECT_API_URL"] = url
        with temporary_settings(updates={PREFECT_API_URL: url}):
            if before_up:
                before_up()
            bring_up(Console(quiet=True), services=("prefect", "runner", "worker", "watcher"))
            yield home
            if forget_deployments:
                from calmops.deployments.deploy import delete_pipeline_deployments, deployed_pipelines

                for name in deployed_pipelines():
                    delete_pipeline_deployments(name)
                delete_kind_deployments()
    finally:
        for name in ("mlflow", "watcher", "worker", "runner", "prefect"):
            stack.stop(name)
        os.environ.clear()
        os.environ.update(saved)
