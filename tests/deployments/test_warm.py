"""The warm runner: a flow-run command handed to a pre-imported process, streams, exit codes and signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from calmops.deployments import warm

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ("import sys; from pathlib import Path; from calmops.deployments.warm import Runner; "
          "Runner(Path(sys.argv[1]), preload=('json',), module='tests.deployments.warm_target', "
          "cli='tests.deployments.warm_target').serve()")


def start_runner(sock: Path, code: str = RUNNER) -> subprocess.Popen:
    """The warm runner of the tests' target module (or the one ``code`` starts), once it answers at ``sock``."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(sock)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not warm.answers(sock):
        assert proc.poll() is None and time.monotonic() < deadline, "the runner did not start"
        time.sleep(0.05)
    return proc


@pytest.fixture
def runner(tmp_path):
    sock = tmp_path / ("deep" * 30) / "run" / "runner.sock"  # longer than an AF_UNIX address may be
    proc = start_runner(sock)
    yield proc, sock
    proc.terminate()
    proc.wait(10)
    assert not sock.exists(), "the runner leaves no socket behind"


def client(sock: Path, *args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "CALMOPS_RUNNER_SOCKET": str(sock), "GREETING": "hello"}
    return subprocess.Popen([sys.executable, "-m", "calmops.deployments.warm", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def child_pid(out: str) -> int:
    return int(re.search(r"pid=(\d+)", out).group(1))


def test_the_run_happens_in_a_child_of_the_runner_with_the_clients_streams_env_cwd_and_exit_code(runner, tmp_path):
    proc, sock = runner
    c = client(sock, "3", cwd=tmp_path)
    out, err = c.communicate(timeout=30)
    assert c.returncode == 3
    assert f"argv=['3'] greeting=hello cwd={tmp_path}" in out
    assert f"ppid={proc.pid}" in out and child_pid(out) != c.pid  # forked by the runner, not started by the client
    assert "to stderr" in err
    assert "exit handlers ran" in out  # where Prefect sends a run's last logs and events
    # the runner survived and serves the next run (and a health probe does not disturb it)
    assert warm.answers(sock)
    again = client(sock, "0", cwd=tmp_path)
    assert again.wait(30) == 0


def test_a_signal_to_the_client_reaches_the_run(runner, tmp_path):
    _, sock = runner
    c = client(sock, "sleep", cwd=tmp_path)
    first = c.stdout.readline()
    pid = child_pid(first)
    c.send_signal(signal.SIGTERM)  # what the worker does to cancel a run
    assert c.wait(30) == 128 + signal.SIGTERM
    assert not _alive(pid)


def test_cancelling_a_run_stops_the_subprocesses_it_started(runner, tmp_path):
    _, sock = runner
    c = client(sock, "spawn", cwd=tmp_path)
    pid = child_pid(c.stdout.readline())
    helper = int(c.stdout.readline().split("=")[1])
    assert _alive(helper)
    c.send_signal(signal.SIGTERM)
    c.wait(30)
    deadline = time.monotonic() + 10
    while (_alive(pid) or _alive(helper)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid) and not _alive(helper)


def test_a_second_runner_on_the_same_socket_refuses_to_start(runner):
    _, sock = runner
    second = subprocess.run([sys.executable, "-c", RUNNER, str(sock)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert second.returncode != 0 and "already listens" in second.stderr
    assert warm.answers(sock)  # the first one still serves


def test_a_run_whose_client_is_killed_does_not_outlive_it(runner, tmp_path):
    _, sock = runner
    c = client(sock, "sleep", cwd=tmp_path)
    pid = child_pid(c.stdout.readline())
    c.kill()
    c.wait(10)
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_without_a_runner_the_client_becomes_the_cold_prefect_engine(tmp_path):
    c = client(tmp_path / "nobody.sock", "not-a-flow-run-id", cwd=tmp_path)
    _, err = c.communicate(timeout=120)
    assert c.returncode == 1
    assert "Invalid flow run id" in err  # prefect.engine itself answered


def test_socket_path_follows_the_home_whatever_its_length(tmp_path, monkeypatch):
    monkeypatch.delenv("CALMOPS_RUNNER_SOCKET", raising=False)
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    assert warm.socket_path() == tmp_path / "home" / "run" / "runner" / "runner.sock"
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / ("deep" * 40)))
    assert warm.socket_path() == tmp_path / ("deep" * 40) / "run" / "runner" / "runner.sock"  # no /tmp fallback


def test_the_runner_makes_its_folder_private(runner):
    _, sock = runner
    st = sock.parent.stat()
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert (sock.parent / warm.PID_FILE).read_text().strip() == str(runner[0].pid)


class Impostor:
    """A listener that is not the runner: records every byte a client sends it."""

    def __init__(self, sock: Path):
        sock.parent.mkdir(parents=True, exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(sock))
        self.listener.listen(4)
        self.connections = 0
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(60)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.connections += 1
        with conn:
            conn.settimeout(30)
            while chunk := conn.recv(65536):
                self.received += chunk

    def close(self):
        self.listener.close()


def _client_goes_cold(sock: Path, tmp_path: Path) -> str:
    c = client(sock, "not-a-flow-run-id", cwd=tmp_path)
    _, err = c.communicate(timeout=120)
    assert c.returncode == 1 and "Invalid flow run id" in err  # the cold engine ran the run instead
    return err


@pytest.mark.parametrize("problem", ["mode", "owner", "symlink"])
def test_a_socket_folder_calmops_did_not_make_private_is_refused_and_nothing_is_sent(tmp_path, problem):
    real = tmp_path / "elsewhere" if problem == "symlink" else tmp_path / "run"
    sock = tmp_path / "run" / "runner.sock"
    impostor = Impostor(real / "runner.sock")
    (real / warm.PID_FILE).write_text(f"{os.getpid()}\n")  # even with the listener's pid recorded
    if problem == "mode":
        real.chmod(0o755)
    elif problem == "owner":
        if os.geteuid() != 0:
            pytest.fail("changing the folder's owner needs root here")
        real.chmod(0o700)
        os.chown(real, 65534, 65534)
    else:
        real.chmod(0o700)
        sock.parent.symlink_to(real)
    try:
        err = _client_goes_cold(sock, tmp_path)
    finally:
        impostor.close()
    expected = {"mode": "has mode 0755, not 0700", "owner": "belongs to uid 65534",
                "symlink": "is a symbolic link"}[problem]
    assert "not handing the run over" in err and expected in err
    assert impostor.connections == 0 and impostor.received == b""
    assert not warm.answers(sock)
    with pytest.raises(RuntimeError, match="not serving"):
        warm.Runner(sock).serve()


def test_a_foreign_listener_in_the_private_folder_gets_nothing(tmp_path):
    sock = tmp_path / "run" / "runner.sock"
    sock.parent.mkdir(mode=0o700)
    impostor = Impostor(sock)  # same user, but not the process the runner recorded
    (sock.parent / warm.PID_FILE).write_text("1\n")
    try:
        err = _client_goes_cold(sock, tmp_path)
        impostor.thread.join(10)
    finally:
        impostor.close()
    assert f"is process {os.getpid()}, not the runner (1)" in err
    assert impostor.connections == 1 and impostor.received == b""  # connected, checked, hung up: nothing sent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_the_default_preload_imports_without_starting_threads(tmp_path):
    """Forking is only safe from a single-threaded process: the runner refuses to serve otherwise. The caches it
    primes for its children are filled: MLflow's map of installed packages, which a run that logs a model would
    otherwise build for itself (it reads every distribution's file list)."""
    code = ("from pathlib import Path; from calmops.deployments.warm import Runner; "
            "import sys; Runner(Path(sys.argv[1])).warm(); "
            "from mlflow.utils import requirements_utils as r; "
            "print('warm', r._MODULES_TO_PACKAGES is not None and 'sklearn' in r._MODULES_TO_PACKAGES)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.sock")], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0 and "warm True" in done.stdout, done.stdout[-500:] + done.stderr[-2000:]
    assert "not preloaded" not in done.stderr and "not primed" not in done.stderr


def test_a_cache_that_cannot_be_primed_is_reported_and_the_runner_still_warms(tmp_path):
    code = ("from pathlib import Path; from calmops.deployments.warm import Runner; import sys; "
            "Runner(Path(sys.argv[1]), preload=('json',), prime=('json:no_such_cache',)).warm(); print('warm')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.sock")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0 and "warm" in done.stdout, done.stderr[-2000:]
    assert "not primed json:no_such_cache" in done.stderr


def test_the_calmops_command_is_handed_over_under_its_own_name_and_unknown_entries_are_refused(runner, tmp_path):
    _, sock = runner
    code = ("import sys; from calmops.deployments.warm import hand_over; "
            "print('returned', hand_over(sys.argv[1:2], entry=sys.argv[2]), flush=True)")
    env = {**os.environ, "CALMOPS_RUNNER_SOCKET": str(sock), "GREETING": "hello"}
    done = subprocess.run([sys.executable, "-c", code, "3", "cli"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert "argv0=calmops argv=['3']" in done.stdout  # the child is the calmops command, as typed
    assert done.stdout.strip().endswith("returned 3")
    refused = subprocess.run([sys.executable, "-c", code, "3", "shell"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=30, check=False)
    assert refused.stdout.strip() == "returned None" and "argv=" not in refused.stdout  # nothing ran


def test_the_commands_handed_to_the_runner_exist_and_none_starts_or_stops_a_service():
    """A command the runner runs is its child: ``down`` would stop the runner under itself, ``up`` or ``watch``
    would leave a service in the runner's process group."""
    import typer.main

    from calmops.deployments.cli import app
    from calmops.deployments.entry import WARM

    assert WARM <= set(typer.main.get_command(app).commands)
    assert not WARM & {"up", "down", "service", "watch", "viewer", "serve", "demo"}


PREFECT_RUNNER = ("import os, sys; from pathlib import Path; import prefect.context as context; "
                  "real = context.refresh_global_settings_context; "
                  "context.refresh_global_settings_context = lambda: (setattr(context, 'refreshed_by', os.getpid()), "
                  "real())[1]; "
                  "from calmops.deployments.warm import Runner; "
                  "Runner(Path(sys.argv[1]), preload=('prefect',), module='tests.deployments.warm_target').serve()")


def test_a_run_keeps_the_prefect_setup_the_runner_made_for_its_environment_and_redoes_it_otherwise(tmp_path):
    """After a run the runner sets Prefect's settings and logging up as that run's environment needs them: the
    next runs with the same PREFECT_ variables (the worker hands every run the same) fork with that done; a run
    with other variables, or started in a folder with settings files, sets itself up as before."""
    sock = tmp_path / "run" / "runner.sock"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "INFO"}
    # started outside the repository, whose pyproject.toml Prefect would read settings from
    proc = subprocess.Popen([sys.executable, "-c", PREFECT_RUNNER, str(sock)], cwd=tmp_path, text=True,
                            env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not warm.answers(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "the runner did not start"
            time.sleep(0.05)

        def run(level: str, cwd: Path = tmp_path) -> str:
            c = subprocess.run([sys.executable, "-m", "calmops.deployments.warm", "settings"], cwd=cwd,
                               env={**env, "CALMOPS_RUNNER_SOCKET": str(sock), "PREFECT_LOGGING_LEVEL": level,
                                    "PREFECT__FLOW_RUN_ID": str(uuid.uuid4())},  # differs in every run
                               capture_output=True, text=True, timeout=60, check=True)
            return re.search(r"refreshed=\w+ level=\w+", c.stdout).group(0)

        assert run("INFO") == "refreshed=True level=INFO"  # the first run: nothing prepared yet
        assert run("INFO") == "refreshed=False level=INFO"
        assert run("INFO") == "refreshed=False level=INFO"
        assert run("WARNING") == "refreshed=True level=WARNING"  # another environment: the run sets it up
        assert run("WARNING") == "refreshed=False level=WARNING"  # and the runner now prepares for that one
        local = tmp_path / "with-settings"
        local.mkdir()
        (local / "prefect.toml").write_text('[logging]\nlevel = "ERROR"\n')
        assert run("WARNING", cwd=local) == "refreshed=True level=WARNING"  # the variable wins over the file
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_stack_does_not_start_a_runner_beside_one_started_by_hand(runner, monkeypatch, tmp_path):
    """A runner started by hand (`python -m calmops.deployments.warm serve`, as the prefect.yaml route says),
    then `calmops up`: the stack's runner exited at once ("another runner already listens"), yet `up` said
    "runner: running" (the socket answered: the other one). `up` now says the runner it found instead."""
    from calmops.deployments import stack

    _, sock = runner
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CALMOPS_RUNNER_SOCKET", str(sock))
    with pytest.raises(RuntimeError, match=f"a runner the stack did not start already listens on {re.escape(str(sock))}"):
        stack.start("runner", wait=30)
    assert not (stack.get_settings().run_dir / "runner.pid").exists()  # nothing started, nothing recorded
    assert warm.answers(sock)


def test_up_beside_a_runner_started_by_hand_uses_it_and_succeeds(runner, monkeypatch, tmp_path):
    """`calmops up` with a runner started by hand said "runner did not start" and exited 1, though flow runs
    use that runner as it is (as `up` does with a watcher started by hand): it says so and goes on."""
    from rich.console import Console

    from calmops.deployments.operations_cli import bring_up

    _, sock = runner
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CALMOPS_RUNNER_SOCKET", str(sock))
    console = Console(record=True, width=1000)
    started = bring_up(console, ("runner",))  # raises (exit 1) when a service did not start
    assert started == {"runner": "outside"}
    text = console.export_text()
    assert f"runner: not started: a runner started outside calmops up listens on {sock}; flow runs use it" in text
    assert "did not start" not in text, text
    assert warm.answers(sock)
    from calmops.deployments import stack

    shown = stack.status()["runner"]
    assert shown["healthy"] and shown.get("outside"), shown  # status shows it running, started by hand


def test_help_says_how_the_module_is_used(tmp_path):
    """`python -m calmops.deployments.warm --help` was handed to Prefect's engine as a flow run's command and
    ended in a traceback about a badly formed UUID."""
    done = subprocess.run([sys.executable, "-m", "calmops.deployments.warm", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m calmops.deployments.warm serve")
    assert "Traceback" not in done.stderr
