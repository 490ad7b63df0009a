"""Crashed and failed runs never strand a file: real Prefect server, warm runner, worker and watcher.

A run killed with ``kill -9`` leaves its ledger claim behind; the claim records its owner (host, pid), so the
next run of the same content takes it over at once instead of waiting for a lease, and the watcher
announces the file again. A run that fails because MLflow is unreachable gives its claim back (``pending``).
Each file ends processed exactly once: one MLflow run with a decision, one ``done`` entry.

The slow step is a preprocess module that, on its first call only, writes its pid and sleeps: the run is
then surely past the start of its MLflow run when it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the stack starts slowly on a busy machine

CALMOPS = str(Path(sys.executable).with_name("calmops"))

SLOW_ONCE = '''
import os, time
from pathlib import Path

MARKER = Path({marker!r})


def preprocess(df):
    if not MARKER.exists():
        MARKER.write_text(str(os.getpid()))
        time.sleep(600)
    return df
'''


def create(name: str, tmp: Path, *, slow: bool, deploy: bool = True) -> Path | None:
    """A stream pipeline; with ``slow`` its preprocess sleeps on its first call. Returns that call's marker.
    Without ``deploy`` it has no deployment, so files reach it only through ``calmops run``."""
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.deployments.deploy import deploy_pipeline

    extra, marker = {}, None
    if slow:
        marker = tmp / f"{name}.first-call"
        module = tmp / f"{name}_slow.py"
        module.write_text(SLOW_ONCE.format(marker=str(marker)))
        extra["preprocess"] = str(module)
    save_spec(spec_from_dict({**STREAM_SPEC, "name": name, **extra}), create=True)
    if deploy:
        deploy_pipeline(name)  # what 'calmops create' does when the stack runs: its deployment and trigger
    return marker


def book(name: str):
    from calmops.core.store import ledger, pipeline_paths, read_spec

    return ledger(pipeline_paths(read_spec(name)))


def entry(name: str, file: str) -> dict | None:
    return next((e for e in book(name).entries() if e["file"] == file), None)


def mlflow_runs(name: str, tracking_uri: str | None = None) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri or os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    if exp is None:
        return []
    return [{"file": r.data.tags.get("calmops.file"), "decision": r.data.tags.get("calmops.decision"),
             "status": r.info.status} for r in client.search_runs([exp.experiment_id], max_results=1000)]


def status_of(name: str) -> str:
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    result = CliRunner().invoke(app, ["status", name], terminal_width=400)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the table's rows, label and value, as one line of words


def calmops(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([CALMOPS, *args], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_kill_9_of_calmops_run_then_the_same_file_again_is_processed_once_within_a_minute(live, tmp_path):
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    name = "crash-run"
    marker = create(name, tmp_path, slow=True, deploy=False)  # run by hand only: no watcher-triggered run races
    data = tmp_path / "a.csv"
    sea_frame(600, 8, seed=1).to_csv(data, index=False)

    first = calmops("run", name, str(data))
    until(lambda: marker.exists() and marker.read_text(), 240, "the first run to reach its slow step")
    working = int(marker.read_text())  # the process that runs the flow
    # with the stack up, 'calmops run' is handed to the warm runner: the work happens in one of its children
    assert working != first.pid
    assert f"calmops run {name} {data} in process {working}" in stack.log_file(get_settings(), "runner").read_text()
    claim = until(lambda: (e := entry(name, "a.csv")) and e["mlflow_run_id"] and e, 60, "the claim")
    assert claim["status"] == "in_progress" and claim["owner_pid"] == working
    assert [r["status"] for r in mlflow_runs(name)] == ["RUNNING"]  # its MLflow run had started
    os.kill(working, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
    assert first.wait(30) != 0  # the command reports the failure
    killed_at = time.time()

    assert book(name).counts()["orphaned"] == 1  # at once: the owner's process is gone
    assert "running 0 orphaned claims 1" in status_of(name)
    again = calmops("run", name, str(data))
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:]
    assert "a.csv → train" in out
    taken = entry(name, "a.csv")["claimed_at"] - killed_at
    took = time.time() - killed_at
    # the second run took the claim over as soon as it asked (its own start-up aside), not after a lease
    assert taken < min(60.0, book(name).lease), f"the claim was taken over {taken:.0f} s after the kill"
    print(f"claim taken over {taken:.1f} s after the kill; file processed {took:.1f} s after it")
    assert entry(name, "a.csv")["status"] == "done"
    runs = mlflow_runs(name)
    assert sorted((r["decision"] or "", r["status"]) for r in runs) == [("", "KILLED"), ("train", "FINISHED")]
    assert book(name).counts() == {"done": 1, "gone": 0, "waiting": 0, "pending": 0, "in_progress": 0, "orphaned": 0}
    assert "running 0 orphaned claims 0" in status_of(name)
    # the killed run's flow run no longer shows Running in the Prefect UI: the run that took over closed it
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        killed = client.read_flow_run(claim["run_id"]).state
    assert killed.is_crashed() and "ended while deciding a.csv" in killed.message, killed


def test_a_killed_watcher_triggered_run_is_announced_again_and_processed_once(live, tmp_path):
    from calmops.core.store import pipeline_paths, read_spec
    from tests.e2e.test_file_arrival import flow_runs, write_sea

    name = "crash-watched"
    marker = create(name, tmp_path, slow=True)
    paths = pipeline_paths(read_spec(name)).ensure()
    write_sea(paths.incoming, "w.csv", seed=3)
    until(marker.exists, 300, "the triggered run to reach its slow step")
    claim = until(lambda: (e := entry(name, "w.csv")) and e["mlflow_run_id"] and e, 60, "the claim")
    os.kill(claim["owner_pid"], signal.SIGKILL)  # the flow run's own process (forked by the warm runner)

    until(lambda: (e := entry(name, "w.csv")) and e["status"] == "done", 300, "w.csv to be processed again")
    until(lambda: all(r.state.is_final() for r in flow_runs(name)), 60, "the runs to end")
    runs = flow_runs(name)
    assert len(runs) == 2 and (runs[0].state.is_crashed() or runs[0].state.is_failed()), runs
    assert runs[-1].state.is_completed()
    assert (paths.processed / "w.csv").exists() and not (paths.incoming / "w.csv").exists()
    decided = [r for r in mlflow_runs(name) if r["decision"]]
    assert decided == [{"file": "w.csv", "decision": "train", "status": "FINISHED"}]
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    assert "announced w.csv for pipeline crash-watched (scan" in stack.log_file(get_settings(), "watcher").read_text()


def test_a_run_with_mlflow_unreachable_leaves_the_file_pending_and_relaunch_processes_it_once(live, tmp_path):
    from calmops.core.store import pipeline_paths, read_spec
    from calmops.deployments import stack

    stack.stop("watcher")  # the file waits in incoming for the relaunch below, not for the stack's worker
    try:
        name = "crash-mlflow"
        create(name, tmp_path, slow=False)
        port = stack.services()["mlflow"].port
        tracking = f"http://127.0.0.1:{port}"  # nothing listens there yet
        env = {"MLFLOW_TRACKING_URI": tracking, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
        data = pipeline_paths(read_spec(name)).ensure().incoming / "m.csv"
        sea_frame(600, 8, seed=4).to_csv(data, index=False)

        failed = calmops("run", name, str(data), env=env)
        out, _ = failed.communicate(timeout=900)
        assert failed.returncode != 0, out[-3000:]
        assert entry(name, "m.csv")["status"] == "pending"
        assert data.exists()

        stack.start("mlflow")  # MLflow is back
        relaunch = calmops("relaunch", name, "--local", env=env)
        out, _ = relaunch.communicate(timeout=900)
        assert relaunch.returncode == 0, out[-3000:]
        assert "m.csv → train" in out and "1 file(s) processed" in out
        assert entry(name, "m.csv")["status"] == "done" and not data.exists()
        decided = [r for r in mlflow_runs(name, tracking) if r["decision"]]
        assert decided == [{"file": "m.csv", "decision": "train", "status": "FINISHED"}]
    finally:
        stack.start("watcher")  # the package's other tests need it
