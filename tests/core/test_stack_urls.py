"""A stack stopped any way but ``calmops down`` (``pm2 stop all``, a crash, a kill) leaves its URLs in
``run/stack.json``. Commands must then work without it, as with a stack that was brought down, not talk to
servers that are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def stale_stack(calmops_home, monkeypatch):
    """stack.json naming a Prefect server whose process runs (this test's) and an MLflow server whose process
    has exited."""
    from calmops.core.settings import get_settings

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    settings.pid_file("prefect").write_text(str(os.getpid()))
    settings.pid_file("mlflow").write_text(str(gone.pid))
    (settings.run_dir / "stack.json").write_text(json.dumps({"urls": {
        "prefect_ui": "http://127.0.0.1:4999", "prefect_api": "http://127.0.0.1:4999/api",
        "mlflow": "http://127.0.0.1:5999"}}))
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "CALMOPS_MLFLOW_UI"):
        monkeypatch.setenv(name, "")  # recorded, so what prepare() sets is undone after the test
        monkeypatch.delenv(name)
    return settings


def test_only_the_urls_of_services_whose_process_runs_are_used(stale_stack):
    from calmops.core.environment import prepare, stack_urls

    assert stack_urls() == {"prefect_ui": "http://127.0.0.1:4999", "prefect_api": "http://127.0.0.1:4999/api"}
    prepare()
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4999/api"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow in $CALMOPS_HOME/mlflow, as with no stack


def test_stopping_the_last_services_forgets_their_addresses_and_the_watchers_heartbeat(stale_stack):
    """`calmops down` after a crash: the stopped services' pid files, the watcher's stale heartbeat and a
    stack.json that would name no running server are gone; a service still running keeps its address."""
    from calmops.deployments import stack

    gone = stale_stack.pid_file("mlflow").read_text()
    beat = stack.heartbeat_file(stale_stack)
    beat.write_text(f"1 {gone}\n")  # fresh, but its writer has ended
    stale_stack.pid_file("watcher").write_text(gone)  # it crashed too
    assert stack.stop("watcher", stale_stack) is False and stack.stop("mlflow", stale_stack) is False
    assert not beat.exists() and not stale_stack.pid_file("watcher").exists()
    assert list(json.loads((stale_stack.run_dir / "stack.json").read_text())["urls"]) == ["prefect_ui",
                                                                                         "prefect_api"]
    stale_stack.pid_file("prefect").write_text(gone)  # and then the last one
    assert stack.stop("prefect", stale_stack) is False
    assert not (stale_stack.run_dir / "stack.json").exists()


def test_status_after_the_stack_was_stopped_without_calmops_down_says_it_is_down(stale_stack, stream_spec):
    stale_stack.pid_file("prefect").write_text(stale_stack.pid_file("mlflow").read_text())  # both gone now
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    done = subprocess.run([sys.executable, "-m", "calmops.deployments.cli", "status"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the stack is down" in done.stdout and "sea" in done.stdout, done.stdout


def test_a_port_variable_that_is_not_a_port_is_named(monkeypatch):
    from calmops.deployments import stack

    monkeypatch.setenv("CALMOPS_PREFECT_PORT", "abc")
    with pytest.raises(ValueError, match=r"CALMOPS_PREFECT_PORT='abc' is not a port number"):
        stack.services()
    monkeypatch.setenv("CALMOPS_PREFECT_PORT", "70000")
    with pytest.raises(ValueError, match="CALMOPS_PREFECT_PORT='70000'"):
        stack.services()


def test_a_service_that_exited_and_is_not_reaped_yet_is_not_running(calmops_home):
    """A worker the watcher restarted is the watcher's child: once it exits it stays a zombie until reaped, and
    must count as stopped (status, stack.json, the watcher's own revival), not as running."""
    import time

    from calmops.core.environment import running_pid
    from calmops.core.pids import state
    from calmops.core.settings import get_settings

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    deadline = time.monotonic() + 30
    while state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    settings.pid_file("worker").write_text(str(child.pid))
    assert running_pid(settings, "worker") is None
    child.wait()
    settings.pid_file("worker").write_text(str(os.getpid()))
    assert running_pid(settings, "worker") == os.getpid()


def test_where_proc_is_missing_a_service_runs_while_it_answers_signal_0(calmops_home, monkeypatch):
    """Without Linux's /proc (macOS) there are no start times: a running service must still count as running,
    or `status` shows every service stopped and `up` stops and restarts them all; one that exited must not."""
    from calmops.core import pids
    from calmops.core.environment import running_pid
    from calmops.core.settings import get_settings

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(pids, "has_proc", lambda: False)
    monkeypatch.setattr(pids, "_stat", lambda pid: None)  # what reading /proc/PID/stat gives there
    settings.pid_file("worker").write_text(str(os.getpid()))
    assert running_pid(settings, "worker") == os.getpid()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    settings.pid_file("worker").write_text(str(gone.pid))
    assert running_pid(settings, "worker") is None
