"""``calmops down`` stops every service it has a pid file for, also one that does not lead a process group of its
own (docs/production.md: ``calmops service NAME`` started from a script with ``nohup … &`` is in the script's
group), removes a pid file only once its process is gone, and never says "stopped" for a service that still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calmops.deployments import stack
from calmops.deployments.cli import app
from calmops.deployments.quickhttp import get
from tests.e2e.stack import free_port, until

CALMOPS = str(Path(sys.executable).with_name("calmops"))
runner = CliRunner()


def _ended(pid: int) -> bool:
    """Gone, or a zombie (ended; a parent that does not reap it, e.g. this sandbox's pid 1, keeps its entry)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X")


def _marked(pid: int, value: str) -> bool:
    """Has process ``pid`` exec'd into the service (its environment carries the service's marker)?"""
    try:
        return f"{stack.SERVICE_MARKER}={value}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private home and free ports; the environment as it was afterwards (the CLI's prepare() sets variables)."""
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("CALMOPS_", "PREFECT_API_URL", "MLFLOW_TRACKING"))]:
        monkeypatch.delenv(name)
    home = tmp_path / "calmops"
    monkeypatch.setenv("CALMOPS_HOME", str(home))
    for service in ("PREFECT", "MLFLOW", "VIEWER", "API"):
        monkeypatch.setenv(f"CALMOPS_{service}_PORT", str(free_port()))
    yield home
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.timeout(120)
def test_down_stops_a_service_that_does_not_lead_its_process_group(isolated, tmp_path):
    """The user's walk: a script runs ``nohup calmops service prefect > x 2>&1 &``; ``calmops down`` said
    "prefect: stopped" and deleted prefect.pid while /api/health went on answering 200 (os.killpg on a pid that
    leads no group fails with ESRCH, which was taken for "gone")."""
    home, port = isolated, os.environ["CALMOPS_PREFECT_PORT"]
    script = subprocess.run(["sh", "-c", f"nohup {CALMOPS} service prefect > '{tmp_path / 'x'}' 2>&1 & echo $!"],
                            cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=30,
                            check=True)
    pid = int(script.stdout.strip())
    pid_file = home / "run" / "prefect.pid"
    try:
        assert os.getpgid(pid) != pid  # the script's group: this is the case that was broken
        until(lambda: pid_file.exists() and pid_file.read_text().strip() == str(pid)
              and _marked(pid, stack.service_marker("prefect", stack.get_settings())), 60, "prefect's pid file")
        until(lambda: get(f"http://127.0.0.1:{port}/api/health", timeout=1.0)[0] == 200, 90, "prefect answering")

        result = runner.invoke(app, ["down"])

        assert result.exit_code == 0, result.output
        assert "prefect: stopped" in result.output, result.output
        assert not pid_file.exists()
        assert _ended(pid)  # stop() returned once it was gone
        assert get(f"http://127.0.0.1:{port}/api/health", timeout=1.0)[0] != 200
    finally:
        for leftover in [pid, *stack._descendants(pid)]:
            if not _ended(leftover):
                os.kill(leftover, signal.SIGKILL)


def test_a_service_that_outlives_the_signals_is_not_reported_stopped_and_keeps_its_pid_file(isolated, monkeypatch):
    """A process that ignores TERM and INT, with the last signal (KILL) left out and the wait made short: nothing
    a user of the same account meets with a healthy kernel (KILL always ends a process), but what `calmops down`
    meets with a process stuck in the kernel (state D) or one another user runs. It is named with its pid, keeps
    its pid file, and the command fails."""
    home = isolated
    (home / "run").mkdir(parents=True)
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM INT; exec sleep 60"])  # in this test's process group
    real = stack.escalate
    sent = []

    def without_kill(pid, signals, grace, **kwargs):
        signals = [s for s in signals if s != signal.SIGKILL]
        sent.extend(signals)
        return real(pid, signals, 0.3, **kwargs)

    monkeypatch.setattr(stack, "escalate", without_kill)
    pid_file = home / "run" / "watcher.pid"
    try:
        until(lambda: (Path(f"/proc/{stubborn.pid}/comm").read_text().strip() == "sleep"), 10, "the exec")
        pid_file.write_text(str(stubborn.pid))

        result = runner.invoke(app, ["down"])

        assert sent, "no signal was sent"
        assert stubborn.poll() is None  # it does outlive TERM and INT
        said = " ".join(result.output.split())
        assert "watcher: stopped" not in said, said
        assert f"watcher: still running (pid {stubborn.pid}" in said, said
        assert result.exit_code == 1, said
        assert pid_file.read_text().strip() == str(stubborn.pid)  # still tracked
        assert "mlflow: not running" in said  # the others are still gone through
    finally:
        stubborn.kill()
        stubborn.wait(10)


def test_escalate_signals_the_group_of_a_leader_and_only_the_process_itself_otherwise():
    from calmops.deployments.processes import escalate

    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)  # as `calmops up` starts one
    member = until(lambda: stack._descendants(leader.pid), 10, "the leader's child")[0]
    try:
        assert escalate(leader.pid, (signal.SIGTERM,), 5.0, group=True)
        until(lambda: _ended(member), 5, "the group's other process to end")  # it got the group's TERM
        loner = subprocess.Popen(["sleep", "60"])  # in this test's group: signalling that group would end pytest
        assert os.getpgid(loner.pid) != loner.pid
        assert escalate(loner.pid, (signal.SIGTERM,), 5.0, group=True) and loner.poll() is not None
    finally:
        for pid in (leader.pid, member):
            if not _ended(pid):
                os.kill(pid, signal.SIGKILL)
        leader.wait(10)


def test_escalate_leaves_alone_a_process_that_took_the_number_since():
    """A pid file read before its process ended may name another process by the time the signal goes: only the
    process that started at the time :func:`start_time` read is signalled."""
    from calmops.core.pids import running, start_time
    from calmops.deployments.processes import escalate

    other = subprocess.Popen(["sleep", "60"])
    try:
        now = start_time(other.pid)
        assert now is not None and running(other.pid, now)
        earlier = str(int(now) - 1)  # the process that had this number before
        assert not running(other.pid, earlier)
        assert escalate(other.pid, (signal.SIGKILL,), 1.0, start=earlier)  # "gone": the one meant has ended
        assert other.poll() is None  # and this one was not signalled
    finally:
        other.kill()
        other.wait(10)


def test_a_stopped_service_whose_child_outlives_the_signals_is_stopped_and_the_child_is_named(isolated, monkeypatch,
                                                                                            caplog):
    """The service itself ended: it is stopped (its pid file goes, so the stall watchdog and `calmops up` can start
    it again); a flow-run process it started that outlives the signals (stuck in the kernel) is named in the log
    rather than failing the stop."""
    home = isolated
    (home / "run").mkdir(parents=True)
    parent = subprocess.Popen(["sh", "-c", "sh -c \"trap '' TERM INT; exec sleep 60\" & wait"])
    until(lambda: stack._descendants(parent.pid), 10, "the child")
    [child] = stack._descendants(parent.pid)
    until(lambda: Path(f"/proc/{child}/comm").read_text().strip() == "sleep", 10, "the exec")
    real = stack.escalate

    def kill_spared_for_the_child(pid, signals, grace, **kwargs):  # KILL would end it: a stuck process outlives it
        signals = [s for s in signals if pid != child or s != signal.SIGKILL]
        return real(pid, signals, 0.3 if pid == child else grace, **kwargs)

    monkeypatch.setattr(stack, "escalate", kill_spared_for_the_child)
    pid_file = home / "run" / "worker.pid"
    pid_file.write_text(str(parent.pid))
    try:
        with caplog.at_level("WARNING", logger="calmops.stack"):
            assert stack.stop("worker") is True
        assert parent.wait(10) is not None and not pid_file.exists()
        assert f"pid {child}" in caplog.text and "outlived the signals" in caplog.text
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.timeout(240)
def test_a_server_killed_on_its_own_leaves_nothing_holding_its_port_after_down_and_up_starts_it(isolated):
    """``kill -9`` of MLflow's pid leaves its uvicorn child serving on the port (in the stack's session). `down`
    said "mlflow: not running" and left it; `up` then refused: "port … is taken by another program". What the
    server left behind carries its marker: it is stopped, by `down` and by a start."""
    port = int(os.environ["CALMOPS_MLFLOW_PORT"])
    settings = stack.get_settings()
    marker = stack.service_marker("mlflow", settings)
    health = f"http://127.0.0.1:{port}/health"
    try:
        for stop_with in ("down", "start"):
            stack.start("mlflow", settings, wait=120)
            pid = int((settings.run_dir / "mlflow.pid").read_text())
            children = stack._descendants(pid)
            assert children, "MLflow's server runs its app in a child process"
            os.kill(pid, signal.SIGKILL)
            # all of it: a killed process whose other threads still exit counts as running (it may still hold
            # its port), and a start in that moment found the server running
            until(lambda pid=pid: _ended(pid) and not stack.running_pid(settings, "mlflow"), 10,
                  "the server's own process ended")
            assert get(health, timeout=2.0)[0] == 200  # its child still serves
            if stop_with == "down":
                result = runner.invoke(app, ["down"])
                assert result.exit_code == 0, result.output
                assert "mlflow: stopped" in result.output, result.output
            else:
                stack.start("mlflow", settings, wait=120)  # as `calmops up` does: no "port taken"
                assert stack.running_pid(settings, "mlflow") not in (None, pid)
            assert all(_ended(child) for child in children)
    finally:
        for entry in Path("/proc").glob("[0-9]*"):
            if _marked(int(entry.name), marker):
                os.kill(int(entry.name), signal.SIGKILL)


SHUTTING_DOWN = """
import ctypes, os, signal, sys, threading, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
def finish():  # the service's last thread: still writing out its state when its main thread has ended
    time.sleep(float(sys.argv[1]))
    open(sys.argv[2], "w").write("done")
    os._exit(0)
threading.Thread(target=finish).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_service_is_said_stopped_only_once_its_last_thread_has_ended(isolated, tmp_path):
    """A process whose main thread has ended while another still finishes (it shows as a zombie, <defunct> in ps,
    yet keeps its ports and files until its last thread is done) has not stopped: `calmops down` says "stopped" only
    once it has ended, with a "stopping" line while it waits."""
    home = isolated
    (home / "run").mkdir(parents=True)
    finished = tmp_path / "finished"
    service = subprocess.Popen([sys.executable, "-c", SHUTTING_DOWN, "2", str(finished)], start_new_session=True)
    pid_file = home / "run" / "watcher.pid"
    try:
        until(lambda: Path(f"/proc/{service.pid}/stat").read_text().split(") ")[1].startswith("Z"), 10,
              "its main thread to end")
        pid_file.write_text(str(service.pid))

        result = runner.invoke(app, ["down"])

        assert result.exit_code == 0, result.output
        assert finished.exists(), "down returned before the service's last thread had ended"
        said = result.output
        assert said.index("stopping watcher") < said.index("watcher: stopped"), said
        assert "stopping mlflow" not in said and "mlflow: not running" in said, said
        assert not pid_file.exists()
    finally:
        if service.poll() is None:
            service.kill()
        service.wait(10)


SLOW_CHILDREN = """
import subprocess, sys, time
for _ in range(int(sys.argv[1])):  # flow runs, each in a session of its own, slow to take their TERM
    subprocess.Popen(["sh", "-c", "trap '' TERM INT; exec sleep 60"], start_new_session=True)
time.sleep(60)
"""


def test_the_processes_a_service_started_are_stopped_together_within_one_grace_period(isolated):
    """A worker with several flow runs that do not end on TERM: `calmops down` gave each its 5 s in turn, one after
    another (15 s for three, a minute for a busy worker). They are signalled together and waited for together: one
    grace period for all, then KILL."""
    home = isolated
    (home / "run").mkdir(parents=True)
    service = subprocess.Popen([sys.executable, "-c", SLOW_CHILDREN, "3"], start_new_session=True)
    until(lambda: len([c for c in stack._descendants(service.pid)
                       if Path(f"/proc/{c}/comm").read_text().strip() == "sleep"]) == 3, 10, "every flow run's exec")
    children = stack._descendants(service.pid)
    (home / "run" / "runner.pid").write_text(str(service.pid))
    try:
        began = time.monotonic()
        assert stack.stop("runner") is True
        took = time.monotonic() - began

        assert all(_ended(child) for child in children)
        assert took < 2 * stack.CHILD_GRACE, f"{took:.1f} s for {len(children)} slow flow runs"
    finally:
        for pid in [service.pid, *children]:
            if not _ended(pid):
                os.kill(pid, signal.SIGKILL)
        service.wait(10)


def test_a_process_is_not_taken_for_a_managed_one_by_what_a_terminals_shell_passes_on(tmp_path):
    """A shell of a terminal that systemd started carries the terminal's INVOCATION_ID and SYSTEMD_EXEC_PID (its
    pid, not the service's): `calmops up` started from it is stopped by `calmops down` like any other."""
    from calmops.deployments.processes import supervisor

    env = {**os.environ, "INVOCATION_ID": "0" * 32, "SYSTEMD_EXEC_PID": "1"}
    env = {k: v for k, v in env.items() if k not in ("pm_id", "name")}
    proc = subprocess.Popen(["sleep", "60"], env=env)
    try:
        until(lambda: b"INVOCATION_ID" in Path(f"/proc/{proc.pid}/environ").read_bytes(), 10, "the process's start")
        assert supervisor(proc.pid) is None
    finally:
        proc.kill()
        proc.wait()
