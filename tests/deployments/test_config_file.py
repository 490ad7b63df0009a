"""The configuration file as the production docs use it: a ``calmops.toml`` in the folder ``calmops`` runs from.
A mistake in it is a one-line error (JSON under ``--json``); the file is the one every process started from
there reads; and with its servers down, the commands that act on the stack's state refuse rather than act on
empty local stores. Each test runs the installed ``calmops`` in a fresh process, as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CALMOPS = str(Path(sys.executable).with_name("calmops"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CALMOPS_", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"))}
    return {**env, "CALMOPS_HOME": str(home)}


def _calmops(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CALMOPS, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.parametrize("text, named", [
    ("[calmops]\nprefect_port = 4320\n", "unknown setting(s) prefect_port"),
    ("[calmops]\nhome = \n", "calmops.toml"),
])
def test_a_mistake_in_calmops_toml_is_one_line_naming_it_also_under_json(tmp_path, text, named):
    (tmp_path / "calmops.toml").write_text(text)
    env = _env(tmp_path / "home")
    for argv in (["status", "--json"], ["list", "--json"]):
        done = _calmops(tmp_path, *argv, env=env)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        document = json.loads(done.stdout)
        assert named in document["error"] and "calmops.toml" in document["hint"], document
    done = _calmops(tmp_path, "status", env=env)
    assert done.returncode == 2 and done.stderr.startswith("error:") and named in done.stderr, done.stderr


def test_the_calmops_toml_found_here_is_the_one_the_stacks_processes_read(tmp_path, monkeypatch):
    """Services and flow runs start in $CALMOPS_HOME or a temporary folder; they must read the file found where
    the user ran calmops (else CalmOps' own state silently stays in SQLite while the CLI reads PostgreSQL)."""
    from calmops.core import environment
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    (elsewhere / "calmops.toml").write_text('[calmops]\nwork_pool = "from-the-project-file"\n')
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CALMOPS_CONFIG", "")  # recorded, so that what prepare() sets is undone afterwards
    monkeypatch.delenv("CALMOPS_WORK_POOL", raising=False)
    monkeypatch.chdir(elsewhere)
    environment.prepare()
    assert os.environ["CALMOPS_CONFIG"] == str(elsewhere / "calmops.toml")
    monkeypatch.chdir(tmp_path)  # where a service or a flow run starts
    assert get_settings().work_pool == "from-the-project-file"
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a server named explicitly
    _, env = stack.command(stack.services()["worker"], get_settings())
    assert env["CALMOPS_CONFIG"] == str(elsewhere / "calmops.toml")


def test_with_production_servers_down_commands_on_their_state_refuse_and_status_still_answers(tmp_path, monkeypatch):
    """A calmops.toml naming PostgreSQL stores and no server running: 'run' must not decide the file against a
    new local registry (a "first model" the production registry never sees), nor 'breaker reset' write to a
    temporary Prefect; both say the stack is down. 'status' reads local state and answers."""
    (tmp_path / "calmops.toml").write_text(
        "[calmops]\n"
        'prefect_database_url = "postgresql+asyncpg://calmops@127.0.0.1:9/prefect"\n'
        'mlflow_backend_store_uri = "postgresql://calmops@127.0.0.1:9/mlflow"\n')
    home = tmp_path / "home"
    env = _env(home)
    (tmp_path / "f.csv").write_text("x,y\n1,0\n")
    for argv, servers in ((["run", "sea", "f.csv", "--json"], ("Prefect", "MLflow")),
                          (["breaker", "show", "sea", "--json"], ("Prefect",))):
        done = _calmops(tmp_path, *argv, env=env)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        document = json.loads(done.stdout)
        assert "stack is down" in document["error"], document
        assert all(s in document["error"] for s in servers), document
        assert "calmops up" in document["hint"], document
    done = _calmops(tmp_path, "breaker", "reset", "sea", env=env)
    assert done.returncode == 1 and "stack is down" in done.stderr, done.stderr
    assert not (home / "mlflow").exists() and not (home / "prefect").exists()  # no store made on the side
    assert (tmp_path / "f.csv").exists()
    status = _calmops(tmp_path, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stack"]["up"] is False
    # a command needs only its own server: with Prefect named, breaker show goes on (it then fails to reach it)
    only_prefect = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = _calmops(tmp_path, "report", "sea", env=only_prefect)
    assert "stack is down: the MLflow server (not running on this host" in done.stderr, done.stderr
    assert "Prefect" not in done.stderr.splitlines()[0], done.stderr
    done = _calmops(tmp_path, "breaker", "show", "nosuch", "--json", env=only_prefect)
    assert "stack is down" not in done.stdout, done.stdout
    # the stack's processes are not started against an empty local registry either
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    monkeypatch.setenv("CALMOPS_CONFIG", str(tmp_path / "calmops.toml"))
    monkeypatch.setenv("CALMOPS_HOME", str(home))
    with pytest.raises(RuntimeError, match="MLflow server is not running"):
        stack._client_env({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, get_settings())
    # with the servers named explicitly (a worker-only host), the check lets the command through
    named = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    done = _calmops(tmp_path, "run", "nosuch", "f.csv", "--json", env=named)
    assert "stack is down" not in done.stdout and "nosuch" in json.loads(done.stdout)["error"], done.stdout
