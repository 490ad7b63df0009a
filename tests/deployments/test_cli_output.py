"""What a user sees from the command line: one JSON document with --json, one-line errors, quick commands
that do not start Prefect, and the viewer command's port and signal handling."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv
from tests.e2e.stack import free_port

runner = CliRunner()
CALMOPS = str(Path(sys.executable).with_name("calmops"))


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, CALMOPS_HOME=str(home))
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    return env


def _json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # the whole of stdout is one document


def _forget_closed_log_handlers() -> None:
    """CliRunner gives every invocation its own stderr and closes it afterwards; a log handler set up during
    an earlier invocation (Prefect's console handler) still holds that closed stream. A real process has one
    stderr, so such a handler never exists there: drop it."""
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict))]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                logger.removeHandler(handler)


def _clean_stderr(text: str) -> None:
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    repeated = {line for line in lines if lines.count(line) > 1 and "Finished in state" not in line}
    assert not repeated, repeated


def test_help_lists_generate_by_name_without_loading_it():
    code = ("import sys\nfrom calmops.deployments.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED' if 'calmops.generators.cli' in sys.modules or 'mlflow' in sys.modules "
            "or 'prefect' in sys.modules else 'LIGHT')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, COLUMNS="100"), check=True).stdout
    assert out.strip().endswith("LIGHT")
    assert any(line.strip("│ ").startswith("generate ") for line in out.splitlines()), out


def test_every_commands_help_is_plain_text_and_offers_no_shell_completion():
    """One look for every command's --help, the generators' and the breaker's included: no boxes drawn around
    some commands' options and not others', and no --install-completion on one sub-command only."""
    commands = [["generate", name] for name in ("synthetic", "real", "clinic", "inject", "scenario")]
    for args in ([], ["history"], ["breaker"], ["breaker", "show"], ["db"], ["generate"], *commands):
        done = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
        assert done.exit_code == 0, (args, done.output)
        assert done.output.startswith("Usage: "), (args, done.output[:200])
        assert not set("╭╮╰╯│─") & set(done.output) and "completion" not in done.output, (args, done.output)


def test_status_with_the_stack_down_reads_local_state(calmops_home, tmp_path):
    assert runner.invoke(app, ["create", str(_spec(tmp_path))]).exit_code == 0
    done = subprocess.run([CALMOPS, "status", "--json"], capture_output=True, text=True, timeout=300,
                          env=_env(calmops_home), check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["stack"]["up"] is False
    assert [p["name"] for p in data["pipelines"]] == ["sea"] and data["pipelines"][0]["breaker"] == "unknown"
    assert "temporary server" not in done.stderr
    text = subprocess.run([CALMOPS, "status"], capture_output=True, text=True, timeout=300,
                          env=dict(_env(calmops_home), COLUMNS="80"), check=True).stdout
    assert "the stack is down" in text and "None" not in text and "{" not in text
    assert max(map(len, text.splitlines())) <= 80
    # a host that runs only workers names Prefect's API elsewhere: not "down", and not "start it here"
    remote = subprocess.run([CALMOPS, "status"], capture_output=True, text=True, timeout=300, check=True,
                            env=dict(_env(calmops_home), PREFECT_API_URL="http://127.0.0.1:9/api")).stdout
    assert "no service of the stack runs on this host" in remote, remote
    assert "Prefect's API is http://127.0.0.1:9/api" in remote and "the stack is down" not in remote, remote


def test_status_on_a_host_of_workers_only_shows_the_servers_it_reaches(calmops_home, tmp_path):
    """No service runs here; Prefect's and MLflow's servers run on another host (here: addresses that are not the
    stack's own ports) and answer: each is shown at its address, healthy (it said only that none runs here)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answers(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Answers) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    prefect, mlflow = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    try:
        text = subprocess.run([CALMOPS, "status"], capture_output=True, text=True, timeout=300, check=True,
                              env=dict(_env(calmops_home), PREFECT_API_URL=f"{prefect}/api", MLFLOW_TRACKING_URI=mlflow,
                                       COLUMNS="200")).stdout
    finally:
        for server in servers:
            server.shutdown()
    assert "no service of the stack runs on this host" in text, text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert prefect in rows["prefect"] and "healthy (another host)" in rows["prefect"], text
    assert mlflow in rows["mlflow"] and "healthy (another host)" in rows["mlflow"], text


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(STREAM_SPEC))
    return path


@pytest.mark.integration
def test_every_json_command_prints_one_document(prefect_server, calmops_home, tmp_path, monkeypatch):
    _forget_closed_log_handlers()  # left by earlier tests' invocations
    assert runner.invoke(app, ["create", str(_spec(tmp_path))]).exit_code == 0
    data = tmp_path / "data"
    first = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=1), data, "a.csv")), "--json"])
    assert _json(first)["decision"] == "train"
    _clean_stderr(first.stderr)
    assert first.stderr.count("processing a.csv") == 1  # the run's log lines once, on stderr
    copy = write_csv(sea_frame(1000, 8, seed=1), data, "copy.csv")
    duplicate = _json(runner.invoke(app, ["run", "sea", str(copy), "--json"]))
    assert duplicate["decision"] == "duplicate" and duplicate["details"]["processed_by"]["file"] == "a.csv"

    assert [p["name"] for p in _json(runner.invoke(app, ["list", "--json"]))] == ["sea"]
    assert _json(runner.invoke(app, ["status", "sea", "--json"]))["champion_version"] == 1
    everything = _json(runner.invoke(app, ["status", "--json"]))
    assert set(everything) == {"stack", "pipelines"} and everything["pipelines"][0]["files_done"] == 1
    breaker = _json(runner.invoke(app, ["breaker", "show", "sea", "--json"]))
    assert breaker["state"] == "closed" and breaker["pipeline"] == "sea"  # named, as status and rollback name it
    write_csv(sea_frame(1000, 8, seed=3), calmops_home / "pipelines" / "sea" / "incoming", "b.csv")
    _forget_closed_log_handlers()
    relaunched = runner.invoke(app, ["relaunch", "sea", "--local", "--json"])
    assert isinstance(_json(relaunched)["sea"], list)
    _clean_stderr(relaunched.stderr)

    human = runner.invoke(app, ["status", "sea"])
    assert "None" not in human.stdout and "{" not in human.stdout and "champion v1" in human.stdout

    # a pipeline that cannot be deployed (its spec was edited by hand into one that no longer reads): the
    # document names it, and the exit code says it failed, as it does without --json
    broken = calmops_home / "pipelines" / "broken"
    broken.mkdir(parents=True)
    (broken / "spec.yaml").write_text(yaml.safe_dump({**STREAM_SPEC, "name": "broken", "schedule": "whenever"}))
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the test harness's server, as `calmops up`'s
    deployed = runner.invoke(app, ["deploy", "--json"])
    assert deployed.exit_code == 1, deployed.output
    document = json.loads(deployed.stdout)
    assert "whenever" in document["errors"]["broken"] and [d["pipeline"] for d in document["deployed"]] == ["sea"]


def test_an_unexpected_error_is_one_line_with_a_hint(calmops_home, tmp_path):
    assert runner.invoke(app, ["create", str(_spec(tmp_path))]).exit_code == 0
    (calmops_home / "pipelines" / "sea" / "ledger.sqlite").write_bytes(b"not a database " * 100)  # damaged
    result = runner.invoke(app, ["history", "sea"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "hint:" in result.stderr
    said = " ".join(result.stderr.split())  # the damaged file is named, with the way out
    assert f"{calmops_home / 'pipelines' / 'sea' / 'ledger.sqlite'}: file is not a database" in said, said
    assert "move it aside" in said


# -- calmops viewer ------------------------------------------------------------------------------


def test_viewer_on_a_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([CALMOPS, "viewer", "--port", str(port)], capture_output=True, text=True,
                              timeout=120, env=_env(tmp_path / "home"), check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), done.stderr
    assert "hint:" in done.stderr and "not available" not in done.stdout + done.stderr
    assert "viewer on" not in done.stdout  # no URL printed for a viewer that never started


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _gone(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.integration
def test_sigterm_to_the_viewer_command_stops_streamlit(tmp_path):
    port = free_port()
    proc = subprocess.Popen([CALMOPS, "viewer", "--port", str(port)], env=_env(tmp_path / "home"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, "the viewer did not start"
            time.sleep(0.5)
        streamlit = _children(proc.pid)
        assert streamlit, "streamlit runs as a child of the command"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.time() + 15
        while not all(map(_gone, streamlit)) and time.time() < deadline:
            time.sleep(0.2)
        assert all(map(_gone, streamlit)), "streamlit outlived the viewer command"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_summary_fits_an_80_column_terminal():
    from rich.console import Console

    from calmops.deployments.demo import print_summary

    reason = ("data drift: 1 of 3 features drifted (worst: x3); performance drift: accuracy fell 12.0% since "
              "promotion (0.9500 → 0.8360)")
    rows = [{"pipeline": "demo-agrawal", "kind": "block", "files": 8, "drift": 3, "promotions": 2, "rejected": 1,
             "failed": 0, "champion": None, "runs": []},
            {"pipeline": "demo-sea", "kind": "stream", "files": 10, "drift": 4, "promotions": 3, "rejected": 1,
             "failed": 0, "champion": 3, "runs": [{"file": "sea-0007.csv", "drift": True,
                                                  "decision": "retrain_promoted", "champion": "2", "reason": reason}]}]
    console = Console(width=80, record=True)
    print_summary(console, rows)
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text and "None" not in text
    assert "demo-agrawal" in text and "0.8360" in text  # nothing cut, the reason wraps


@pytest.mark.parametrize(("command", "variable"), [("viewer", "CALMOPS_VIEWER_PORT"), ("serve", "CALMOPS_API_PORT")])
def test_serve_and_viewer_listen_on_the_port_the_stacks_variable_names(tmp_path, command, variable):
    """CALMOPS_API_PORT and CALMOPS_VIEWER_PORT move the stack's API and viewer; the commands that start one of
    them alone follow the same variables (a busy port there shows which port they tried)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([CALMOPS, command], capture_output=True, text=True, timeout=120,
                              env={**_env(tmp_path / "home"), variable: str(port)}, check=False)
    assert done.returncode == 1 and done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), done.stderr


@pytest.mark.parametrize(("command", "service"), [("viewer", "viewer"), ("serve", "api")])
def test_a_port_the_stacks_own_copy_holds_is_said_to_be_the_stacks(tmp_path, command, service):
    """`calmops viewer` (or `serve`) while `calmops up`'s viewer (API) runs on that port: the hint says the stack
    serves there already, not only to choose another port."""
    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (home / "run").mkdir(parents=True)
        (home / "run" / f"{service}.pid").write_text(str(os.getpid()))  # a process that runs: this one
        (home / "run" / "stack.json").write_text(json.dumps({"urls": {service: f"http://127.0.0.1:{port}"}}))
        done = subprocess.run([CALMOPS, command, "--port", str(port)], capture_output=True, text=True, timeout=120,
                              env=_env(home), check=False)
    assert done.returncode == 1 and done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), done.stderr
    assert f"hint: the stack's {service} serves there already (http://127.0.0.1:{port}" in done.stderr, done.stderr


def test_an_error_under_json_still_prints_one_json_document_on_stdout(tmp_path):
    """A script that pipes `--json` into a parser gets a document on failure too: the error and its hint."""
    (tmp_path / "f.csv").write_text("x,y\n1,0\n")
    for argv in (["status", "nosuch", "--json"], ["run", "nosuch", str(tmp_path / "f.csv"), "--json"]):
        done = subprocess.run([CALMOPS, *argv], capture_output=True, text=True, timeout=300,
                              env=_env(tmp_path / "home"), check=False)
        assert done.returncode == 1, (argv, done.stderr)
        document = json.loads(done.stdout)
        assert "nosuch" in document["error"] and document["hint"] and document["exit_code"] == 1, document
        assert any(line.startswith("error:") for line in done.stderr.splitlines()), done.stderr


def test_up_starts_the_other_services_when_one_cannot_start_and_names_it(tmp_path):
    """`calmops up` with the viewer's port taken ended at the viewer with a clear error, but the API (started
    after it) never started: a partial stack. Now the API starts and the command fails naming the viewer.
    Runs the installed `calmops up`, for the two front-end services only (the servers are named elsewhere)."""
    env = _env(tmp_path / "home")
    api_port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env.update(CALMOPS_VIEWER_PORT=str(busy.getsockname()[1]), CALMOPS_API_PORT=str(api_port),
                   PREFECT_API_URL="http://127.0.0.1:9/api",  # MLflow: the local store
                   CALMOPS_START_TIMEOUT="60")
        code = ("from rich.console import Console\n"
                "from calmops.core.environment import prepare\n"
                "from calmops.deployments.console import CliError\n"
                "from calmops.deployments.operations_cli import bring_up\n"
                "prepare()\n"
                "try:\n    bring_up(Console(), ('viewer', 'api'))\n"
                "except CliError as exc:\n    print('ERROR', exc, '|', exc.hint)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                              check=False)
    try:
        assert "viewer did not start" in done.stdout, done.stdout + done.stderr
        assert f"api: http://127.0.0.1:{api_port}" in done.stdout, done.stdout
        assert "ERROR viewer did not start" in done.stdout and "calmops logs viewer" in done.stdout, done.stdout
        assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10).status_code in (200, 503)
    finally:
        subprocess.run([CALMOPS, "down"], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_run_says_drift_was_not_checked_for_a_refused_file_not_no(capsys):
    from calmops.deployments.cli import _print_outcome

    base = {"pipeline": "sea", "file": "f.csv", "reason": "why", "champion_version": 1, "drift_detected": False}
    _print_outcome({**base, "decision": "rejected_input"})
    _print_outcome({**base, "decision": "no_drift"})
    _print_outcome({**base, "decision": "retrain_rejected", "drift_detected": None})  # a first model not promoted
    said = [line for line in capsys.readouterr().out.splitlines() if "→" in line]
    assert said == ["sea · f.csv → quarantined (drift: not checked)", "sea · f.csv → no_drift (drift: no)",
                    "sea · f.csv → retrain_rejected (drift: not checked)"]


def test_run_names_a_challenger_apart_only_when_it_is_not_the_champion(capsys):
    """A first model or a promoted challenger is the champion now: "champion v2 · challenger v2" read as two."""
    from calmops.deployments.cli import _print_outcome

    base = {"pipeline": "sea", "file": "f.csv", "reason": "why", "drift_detected": True}
    _print_outcome({**base, "decision": "train", "champion_version": 1, "challenger_version": 1})
    _print_outcome({**base, "decision": "retrain_promoted", "champion_version": 2, "challenger_version": 2})
    _print_outcome({**base, "decision": "retrain_rejected", "champion_version": 2, "challenger_version": 3})
    said = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("champion")]
    assert said == ["champion v1", "champion v2", "champion v2 · challenger v3"]


@pytest.mark.parametrize("running, now, changed", [
    ("old-token", "old-token", False), ("old-token", "new-token", True), (None, "new-token", True),
    (None, None, False), ("old-token", None, True),
])
def test_up_notices_an_api_that_runs_with_another_token_than_the_shell(monkeypatch, running, now, changed):
    """`calmops up` again with a new CALMOPS_API_TOKEN: the API that runs already keeps the token it started with."""
    import subprocess

    from calmops.deployments.operations_cli import _token_changed

    env = {k: v for k, v in os.environ.items() if k != "CALMOPS_API_TOKEN"}
    if running is not None:
        env["CALMOPS_API_TOKEN"] = running
    api = subprocess.Popen(["sleep", "30"], env=env)
    try:
        from calmops.deployments.processes import environ_of
        from tests.e2e.stack import until

        until(lambda: environ_of(api.pid), 10, "the process's environment")  # read as soon as it is there
        if now is None:
            monkeypatch.delenv("CALMOPS_API_TOKEN", raising=False)
        else:
            monkeypatch.setenv("CALMOPS_API_TOKEN", now)
        assert _token_changed(api.pid) is changed
    finally:
        api.kill()
        api.wait()


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    """`calmops list | head -3` on a stack with many pipelines: the reader closes the pipe before the table is
    written (here a reader that reads nothing), which said "error: BrokenPipeError" with a hint to debug;
    nothing is wrong."""
    home = tmp_path / "calmops"
    env = _env(home)
    code = ("from calmops.core.store import save_spec, spec_from_dict\n"
            f"spec = {dict(STREAM_SPEC)!r}\n"
            "for i in range(150):\n"
            "    save_spec(spec_from_dict({**spec, 'name': f'pipeline-with-a-long-name-{i:03d}'}), create=True)\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()  # gone before anything is written
    done = subprocess.run([CALMOPS, "list"], stdout=reader.stdin, stderr=subprocess.PIPE, text=True, env=env, check=False,
                          timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
