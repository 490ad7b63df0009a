"""``calmops down`` during a burst: the flow runs the worker was running are stopped with it, and it says so; Prefect
(stopped last, so still answering) marks them Crashed at once instead of showing them Running until the watcher's
check finds them after the next ``calmops up``."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calmops.deployments import stack
from calmops.deployments.cli import app
from tests.e2e.stack import until

runner = CliRunner()
pytestmark = pytest.mark.integration


@pytest.fixture
def isolated(tmp_path, monkeypatch, prefect_server):
    from prefect.settings import PREFECT_API_URL

    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("CALMOPS_", "MLFLOW_TRACKING"))]:
        monkeypatch.delenv(name)
    home = tmp_path / "calmops"
    monkeypatch.setenv("CALMOPS_HOME", str(home))
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the test harness's server, as stack.json's
    (home / "run").mkdir(parents=True)
    yield home
    os.environ.clear()
    os.environ.update(saved)


def _running_flow_run(name: str) -> str:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    @flow(name="calmops-down-test")
    def noop() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(noop, name=name)
        client.set_flow_run_state(run.id, Running())
    return str(run.id)


def _state(run_id: str) -> tuple[str, str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state.type.value, state.message or ""


def test_down_says_how_many_runs_it_stopped_and_prefect_marks_them_crashed(isolated):
    running_ids = [_running_flow_run("sea/a.csv"), _running_flow_run("sea/b.csv")]
    finished = _running_flow_run("sea/c.csv")  # ended on its own before the worker stopped: left as it is
    # a worker with the flow-run processes Prefect's worker starts: each carries its run's id in its environment
    children = " ".join(f"PREFECT__FLOW_RUN_ID={i} sleep 60 &" for i in [*running_ids, finished])
    worker = subprocess.Popen(["sh", "-c", f"{children} wait"])
    try:
        until(lambda: len(stack._descendants(worker.pid)) == 3
              and all(Path(f"/proc/{p}/comm").read_text().strip() == "sleep" for p in stack._descendants(worker.pid)),
              10, "the flow-run processes")
        from prefect.client.orchestration import get_client
        from prefect.states import Completed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(finished, Completed())
        (isolated / "run" / "worker.pid").write_text(str(worker.pid))

        result = runner.invoke(app, ["down"])

        said = " ".join(result.output.split())
        assert result.exit_code == 0, said
        assert "worker: stopped" in said, said
        assert "3 flow run(s) in flight stopped: their files are taken again after 'calmops up'; 2 marked " \
               "Crashed in Prefect" in said, said
        for run_id in running_ids:
            kind, message = _state(run_id)
            assert kind == "CRASHED" and "calmops down" in message, (kind, message)
        assert _state(finished)[0] == "COMPLETED"
    finally:
        for pid in [worker.pid, *stack._descendants(worker.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(10)
