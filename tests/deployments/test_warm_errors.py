"""The warm runner: a run that cannot start says why, to the caller (the worker's log) and in the runner's log.

The worker hands over the folder it runs the flow run in (a temporary folder under /tmp); a runner that does not
see that folder (systemd's PrivateTmp on separate units gave each its own /tmp) used to exit 1 with no output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from calmops.deployments import warm
from tests.deployments.test_warm import ROOT, start_runner

# the client as the work pool runs it, except that the folder it hands over is the one given (a folder the
# runner cannot enter, as a worker's /tmp is under PrivateTmp); 99: the runner did not take the run
CLIENT = ("import os, sys; from calmops.deployments import warm; os.getcwd = lambda: sys.argv[1]; "
          "code = warm.hand_over(sys.argv[2:]); sys.exit(99 if code is None else code)")


@pytest.fixture
def runner(tmp_path):
    sock = tmp_path / "run" / "runner.sock"
    proc = start_runner(sock)
    yield proc, sock
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def runner_log(proc: subprocess.Popen) -> str:
    """Everything the runner wrote (stdout and stderr), once it is stopped."""
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out


def hand_over(sock: Path, cwd: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALMOPS_RUNNER_SOCKET": str(sock), "GREETING": "hello"}
    return subprocess.run([sys.executable, "-c", CLIENT, cwd, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_run_whose_folder_the_runner_cannot_enter_fails_saying_so_to_the_worker_and_in_the_runners_log(
        runner, tmp_path):
    proc, sock = runner
    missing = tmp_path / "tmp69lpee3uprefect"  # the worker's flow-run folder, absent from the runner's /tmp
    done = hand_over(sock, str(missing), "0")
    assert done.returncode not in (0, 99), (done.returncode, done.stdout, done.stderr)
    assert "argv=" not in done.stdout  # the run did not start somewhere else instead
    # the worker logs what the run wrote to its stderr: the folder, and what to do about it
    assert str(missing) in done.stderr, done.stderr
    assert "the runner and the worker must share /tmp (systemd: no PrivateTmp on separate units)" in done.stderr
    assert "No such file or directory" in done.stderr  # the cause
    # the runner survives and serves the next run
    ok = hand_over(sock, str(tmp_path), "0")
    assert ok.returncode == 0 and f"cwd={tmp_path}" in ok.stdout
    log = runner_log(proc)
    assert str(missing) in log and "must share /tmp" in log, log


def test_a_run_whose_folder_is_a_file_fails_naming_it(runner, tmp_path):
    _, sock = runner
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    done = hand_over(sock, str(a_file), "0")
    assert done.returncode not in (0, 99)
    assert str(a_file) in done.stderr and "Not a directory" in done.stderr, done.stderr


def test_anything_raised_before_the_engine_runs_is_said_with_its_traceback(runner, tmp_path):
    """A request no real client sends (an environment variable with a NUL byte, which the child cannot set):
    the child fails after taking the client's streams and before the engine, and says so on both."""
    proc, sock = runner
    conn = warm.connect(sock)
    read_err, write_err = os.pipe()
    with open(os.devnull, "rb") as stdin, open(os.devnull, "wb") as stdout:
        payload = json.dumps({"argv": ["0"], "cwd": str(tmp_path), "entry": "engine",
                              "env": {"PREFECT__FLOW_RUN_ID": "run-42", "BAD": "a\0b"}}).encode()
        socket.send_fds(conn, [warm._HEADER.pack(len(payload)) + payload], [stdin.fileno(), stdout.fileno(),
                                                                           write_err])
    os.close(write_err)
    with conn.makefile() as lines:
        assert lines.readline().startswith("pid ")
        assert lines.readline() == "exit 1\n"
    conn.close()
    with os.fdopen(read_err) as err:
        said = err.read()
    assert "flow run run-42 could not start" in said and "ValueError: embedded null byte" in said, said
    assert "Traceback" in said
    log = runner_log(proc)
    assert "flow run run-42 could not start" in log and "ValueError: embedded null byte" in log, log


def test_an_error_calmops_raises_on_purpose_is_said_in_one_line_with_its_hint_and_a_bug_with_its_traceback(
        runner, tmp_path):
    """A run refused for a bad spec writes what the calmops command writes (one line, a hint, exit code 2) where the
    worker copies it into the flow run's log, not a traceback of the runner's child; anything else keeps its
    traceback, which is what helps there."""
    _, sock = runner
    refused = hand_over(sock, str(tmp_path), "bad-spec")
    assert refused.returncode == 2, (refused.returncode, refused.stderr)
    said = refused.stderr.replace("to stderr\n", "")
    assert said == ("error: sea.yaml: 'target' is missing\n"
                    "hint: fix the spec and try again; see docs/spec.md for every key\n"), said
    bug = hand_over(sock, str(tmp_path), "bug")
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "RuntimeError: an unexpected failure" in bug.stderr, bug.stderr


def test_a_run_that_cannot_start_for_a_calmops_error_says_it_without_a_traceback():
    from calmops.core.settings import ConfigError

    read, write = os.pipe()
    request = {"entry": "engine", "env": {"PREFECT__FLOW_RUN_ID": "run-7"}}
    warm._cannot_start(request, ConfigError("calmops.toml: unknown setting(s) hom in [calmops]"), (write,))
    os.close(write)
    with os.fdopen(read) as said:
        text = said.read()
    assert "flow run run-7 could not start" in text and "calmops.toml: unknown setting(s) hom" in text, text
    assert "hint: fix the configuration file" in text and "Traceback" not in text, text


def test_an_unknown_pipeline_is_said_in_one_line_and_the_pipelines_own_code_failing_with_its_traceback():
    """Every refusal the command says in one line is said so by the runner's child too (an unknown pipeline is
    not a CalmOpsError); the pipeline's own preprocess or hook failing is not a refusal: its traceback is what its
    author needs."""
    from calmops.core.errors import UserCodeFailed
    from calmops.core.store import PipelineNotFound

    said = {}
    for name, exc in (("unknown", PipelineNotFound("no pipeline named 'sae'")),
                      ("user", UserCodeFailed("preprocess failed: KeyError: 'x9'"))):
        read, write = os.pipe()
        try:
            raise exc
        except Exception as raised:  # noqa: BLE001 - raised, so that it has a traceback to print
            warm._cannot_start({"entry": "engine", "env": {"PREFECT__FLOW_RUN_ID": "run-8"}}, raised, (write,))
        os.close(write)
        with os.fdopen(read) as out:
            said[name] = out.read()
    assert "no pipeline named 'sae'" in said["unknown"] and "hint: see 'calmops list'" in said["unknown"], said
    assert "Traceback" not in said["unknown"], said
    assert "preprocess failed: KeyError: 'x9'" in said["user"] and "Traceback" in said["user"], said


def test_a_command_with_an_unreadable_configuration_says_so_in_one_line_where_a_runner_would_be_looked_for(
        tmp_path):
    """The runner's socket lives in the run folder the configuration names: a calmops.toml that cannot be read
    stopped `calmops history` with a traceback while it looked for the runner. The command runs here instead and
    says what is wrong with the file, as every command does."""
    broken = tmp_path / "calmops.toml"
    broken.write_text("[calmops\n")
    env = {k: v for k, v in os.environ.items() if k != "CALMOPS_RUNNER_SOCKET"}
    env.update(CALMOPS_CONFIG=str(broken), CALMOPS_HOME=str(tmp_path / "home"), CALMOPS_RUN_WARM="1",
               COLUMNS="300")
    done = subprocess.run([sys.executable, "-c", "from calmops.deployments.entry import main; main()",
                           "history", "sea"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith(f"error: {broken}: "), done.stderr
    assert "hint: fix the configuration file" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_request_without_an_environment_is_refused_and_the_runner_keeps_serving(runner, tmp_path):
    proc, sock = runner
    conn = warm.connect(sock)
    payload = json.dumps({"argv": ["0"], "cwd": str(tmp_path), "entry": "engine"}).encode()
    socket.send_fds(conn, [warm._HEADER.pack(len(payload)) + payload], [0, 1, 2])
    assert conn.recv(100) == b""  # no child: closed without a pid (the client would start the run cold)
    conn.close()
    ok = hand_over(sock, str(tmp_path), "0")
    assert ok.returncode == 0, ok.stderr
    log = runner_log(proc)
    assert "bad request" in log and "env" in log, log


def test_a_command_the_configuration_refuses_says_so_as_when_run_without_the_runner(tmp_path):
    """`calmops history` handed to the runner with CALMOPS_CONFIG naming no file: the command's own one-line error
    and hint (exit 2), as without the runner, not a traceback of the runner's child."""
    sock = tmp_path / "run" / "runner.sock"
    proc = start_runner(sock, "import sys; from pathlib import Path; from calmops.deployments.warm import Runner; "
                              "Runner(Path(sys.argv[1]), preload=('json',)).serve()")  # the calmops command's runner
    try:
        missing = tmp_path / "nowhere.toml"
        env = {**os.environ, "CALMOPS_RUNNER_SOCKET": str(sock), "CALMOPS_CONFIG": str(missing),
               "CALMOPS_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
        command = [sys.executable, "-c", "from calmops.deployments.entry import main; main()", "history", "sea"]
        outcomes = [subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                   timeout=120, check=False, env={**env, "CALMOPS_RUN_WARM": warmth})
                    for warmth in ("1", "0")]
    finally:
        log = runner_log(proc)
    handed, cold = outcomes
    assert "calmops runner: calmops history sea in process" in log, log  # the runner ran it
    assert handed.returncode == cold.returncode == 2, (handed.stderr, cold.stderr)
    assert f"error: CALMOPS_CONFIG names {missing}, which is not a file" in handed.stderr, handed.stderr
    assert "Traceback" not in handed.stderr and "could not start" not in handed.stderr
    assert handed.stderr == cold.stderr
