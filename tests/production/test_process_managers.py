"""Process managers and containers run the same services as ``calmops up``.

PM2 (the real one, from npm, installed by scripts/ensure-pm2.sh) starts every service from
deploy/pm2/ecosystem.config.js, restarts a killed watcher, and a file dropped afterwards is decided. The systemd
units and the container files are checked against the stack's own list of services (no systemd or container
engine runs on this machine; docs/production.md says so).
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from calmops.deployments import stack
from calmops.deployments.quickhttp import get
from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import free_port, until

REPO = Path(__file__).resolve().parents[2]
PM2 = REPO / ".tools" / "pm2" / "node_modules" / ".bin" / "pm2"
CALMOPS = str(Path(sys.executable).with_name("calmops"))


def _pid(home: Path, name: str, run_dir: Path | None = None) -> int | None:
    path = (run_dir or home / "run") / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@pytest.mark.production
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_pm2_runs_the_stack_restarts_a_killed_watcher_and_a_file_is_decided(tmp_path):
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-pm2.sh")], check=True, timeout=600)
    home = tmp_path / "calmops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING"))}
    env.update(CALMOPS_HOME=str(home), PM2_HOME=str(tmp_path / "pm2"), CALMOPS_WATCH_SCAN_INTERVAL="3",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true",
               **{f"CALMOPS_{s}_PORT": str(free_port()) for s in ("PREFECT", "MLFLOW", "VIEWER", "API")})

    def run(*args, timeout=300):
        return subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    started = run(str(PM2), "start", "deploy/pm2/ecosystem.config.js")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        for name in stack.ORDER:  # every service of `calmops up` is up under PM2, with its pid file
            until(lambda n=name: _pid(home, n), 300, f"{name} under PM2")
        until(lambda: (home / "run" / "watcher.heartbeat").exists(), 300, "the watcher's heartbeat")
        worker_log = home / "logs" / "worker.log"
        until(lambda: worker_log.exists() and b"started!" in worker_log.read_bytes(), 300, "the worker")

        spec_file = tmp_path / "pm2-sea.yaml"
        spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, "name": "pm2-sea"}))
        created = run(CALMOPS, "create", str(spec_file))
        assert created.returncode == 0, created.stdout + created.stderr

        watcher = _pid(home, "watcher")
        os.kill(watcher, signal.SIGKILL)
        restarted = until(lambda: (p := _pid(home, "watcher")) and p != watcher and p, 120, "PM2 restarting the watcher")
        assert restarted != watcher
        listing = run(str(PM2), "jlist")
        restarts = {p["name"]: p["pm2_env"]["restart_time"] for p in yaml.safe_load(listing.stdout)}
        assert restarts["calmops-watcher"] >= 1

        incoming = home / "pipelines" / "pm2-sea" / "incoming"
        part = incoming / ".sea_00.csv.part"
        sea_frame(600, theta=8.0, seed=1).to_csv(part, index=False)
        part.rename(incoming / "sea_00.csv")
        processed = home / "pipelines" / "pm2-sea" / "processed"
        until(lambda: processed.exists() and any(processed.glob("sea_00*")), 300, "the file's decision")

        # `calmops down` does not stop what PM2 would start again at once (it said "stopped" for each, and PM2
        # had them all back within seconds): it leaves them running and says how PM2 stops them
        pids = {name: _pid(home, name) for name in stack.ORDER}
        elsewhere = {k: v for k, v in env.items() if k != "PM2_HOME"}  # a shell that does not name PM2's home
        down = subprocess.run([CALMOPS, "down"], cwd=REPO, env=elsewhere, capture_output=True, text=True, timeout=300,
                              check=False)
        assert down.returncode == 1, down.stdout + down.stderr
        assert "stopped" not in down.stdout and "watcher: left running (PM2 runs it" in down.stdout, down.stdout
        said = " ".join(down.stderr.split())  # as one line, however the terminal wraps it
        stop = f"PM2_HOME={tmp_path / 'pm2'} pm2 stop " + " ".join(f"calmops-{n}" for n in reversed(stack.ORDER))
        assert stop in said, said
        time.sleep(3)
        assert {name: _pid(home, name) for name in stack.ORDER} == pids  # the same processes, untouched
        # the command it gives stops them, as written
        stopped = subprocess.run(stop, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                                 env={**elsewhere, "PATH": f"{PM2.parent}:{env['PATH']}"})
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        until(lambda: not any(_pid(home, name) for name in stack.ORDER), 120, "PM2 stopping every service")
        again = run(CALMOPS, "down")
        assert again.returncode == 0 and "left running" not in again.stdout, again.stdout + again.stderr
    finally:
        run(str(PM2), "kill", timeout=120)
        for name in reversed(stack.ORDER):  # anything PM2 left behind (flow runs in their own sessions)
            pid = _pid(home, name)
            if pid:
                os.kill(pid, signal.SIGKILL)
        time.sleep(1)


def test_systemd_units_run_every_service_through_calmops_service():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(REPO / "deploy" / "systemd" / "calmops@.service")
    assert unit["Service"]["ExecStart"].endswith("calmops service %i")
    assert unit["Service"]["Restart"] == "always"
    assert unit["Service"]["User"] != "root"
    # an instance enabled on its own (a host that runs only workers) must start at boot, not only with the target
    assert "multi-user.target" in unit["Install"]["WantedBy"].split()
    target = (REPO / "deploy" / "systemd" / "calmops.target").read_text()
    wanted = {w.removeprefix("calmops@").removesuffix(".service")
              for line in target.splitlines() if line.startswith("Wants=") for w in line[6:].split()}
    assert wanted == set(stack.ORDER)


def test_the_pm2_file_lists_every_service_of_the_stack():
    listing = subprocess.run(["node", "-e", ("const c = require(process.argv[1]); "
                              "console.log(JSON.stringify(c.apps.map(a => [a.name, a.args])))"),
                              str(REPO / "deploy" / "pm2" / "ecosystem.config.js")],
                             capture_output=True, text=True, check=True, timeout=60)
    apps = yaml.safe_load(listing.stdout)
    assert [args for _, args in apps] == [["service", name] for name in stack.ORDER]


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("per_host", [False, True])
def test_a_second_service_of_the_same_name_on_one_host_is_refused_and_the_first_keeps_its_pid_file(tmp_path, per_host):
    home = tmp_path / "calmops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING"))}
    env.update(CALMOPS_HOME=str(home), CALMOPS_MLFLOW_PORT=str(free_port()), MLFLOW_DISABLE_TELEMETRY="true")
    if per_host:  # a host with a run folder of its own: pid file and log there, not in the shared data root
        env["CALMOPS_RUN_DIR"] = str(tmp_path / "host-a")
    run_dir = tmp_path / "host-a" if per_host else home / "run"
    first = subprocess.Popen([CALMOPS, "service", "mlflow"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        port = env["CALMOPS_MLFLOW_PORT"]
        until(lambda: _pid(home, "mlflow", run_dir) == first.pid and get(f"http://127.0.0.1:{port}/health")[0] == 200,
              120, "the first mlflow service")
        second = subprocess.run([CALMOPS, "service", "mlflow"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        said = " ".join(second.stderr.split())
        assert second.returncode != 0 and f"mlflow already runs on this host (pid {first.pid}" in said, said
        assert "CALMOPS_RUN_DIR" in said
        assert _pid(home, "mlflow", run_dir) == first.pid and first.poll() is None  # `calmops status` still finds it
        assert (run_dir / "logs" if per_host else home / "logs").joinpath("mlflow.log").stat().st_size > 0
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_db_upgrade_migrates_only_the_databases_named_and_refuses_an_unknown_one(tmp_path):
    """What the container's mlflow service runs before its server: MLflow's store at the installed schema, and
    nothing made for Prefect (its server migrates its own database as it starts)."""
    home = tmp_path / "calmops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING"))}
    env.update(CALMOPS_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")
    done = subprocess.run([CALMOPS, "db", "upgrade", "mlflow"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["mlflow: schema at the installed version (tables created or migrated as needed)"]
    from mlflow.store.db.utils import (
        _get_latest_schema_revision,
        _get_schema_version,
        create_sqlalchemy_engine,
    )

    store = next(home.rglob("*.db"))
    assert [p.name for p in home.rglob("*.db")] == [store.name]  # no Prefect database
    assert _get_schema_version(create_sqlalchemy_engine(f"sqlite:///{store}")) == _get_latest_schema_revision()
    alone = subprocess.run([CALMOPS, "db", "upgrade", "calmops"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120, check=False)  # no state database set: says where its state is
    assert alone.returncode == 0 and alone.stdout.startswith("calmops (SQLite files beside each pipeline"), alone
    wrong = subprocess.run([CALMOPS, "db", "upgrade", "mlflow", "prefekt"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 2 and "'prefekt' is not one of prefect, mlflow, calmops" in " ".join(wrong.stderr.split())


@pytest.mark.parametrize("same_service", [True, False])
def test_a_worker_is_refused_while_this_hosts_worker_runs_and_a_pid_taken_by_another_program_does_not_stop_it(
        tmp_path, same_service):
    """The pid file names a live process: a worker of this host (it carries the service's marker through its
    exec, whatever its command line) refuses the second one at once; any other program that took the number
    (a pid file left from before a reboot) does not, and the worker goes on to wait for the Prefect API."""
    home = tmp_path / "calmops"
    (home / "run").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING"))}
    env.update(CALMOPS_HOME=str(home), CALMOPS_PREFECT_PORT=str(free_port()))
    other = dict(env)
    if same_service:  # what `calmops up` or `calmops service worker` gave the worker it started
        other[stack.SERVICE_MARKER] = f"worker@{(home / 'run').resolve()}"
    holder = subprocess.Popen(["sleep", "120"], env=other)
    try:
        (home / "run" / "worker.pid").write_text(str(holder.pid))
        second = subprocess.run([CALMOPS, "service", "worker", "--wait", "1"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        said = " ".join(second.stderr.split())
        assert second.returncode != 0
        if same_service:
            assert f"worker already runs on this host (pid {holder.pid}" in said, said
        else:
            assert "already runs" not in said and "needs the Prefect API" in said, said
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("exported", [False, True])
def test_the_pm2_services_use_the_data_root_the_shell_uses(tmp_path, exported):
    """The services PM2 starts read the same home as the commands typed in the project folder: calmops.toml's
    ``home`` unless CALMOPS_HOME is exported (the ecosystem file once set a home of its own and hid the toml's)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "calmops.toml").write_text(f'[calmops]\nhome = "{tmp_path / "from-toml"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALMOPS_")}
    env["CALMOPS_ROOT"] = str(project)
    if exported:
        env["CALMOPS_HOME"] = str(tmp_path / "exported")
    listing = subprocess.run(["node", "-e", ("const c = require(process.argv[1]); "
                              "console.log(JSON.stringify(c.apps.map(a => [a.cwd, a.env])))"),
                              str(REPO / "deploy" / "pm2" / "ecosystem.config.js")],
                             capture_output=True, text=True, check=True, timeout=60, env=env)
    ask = "from calmops.core.settings import get_settings; print(get_settings().home)"
    shell = subprocess.run([sys.executable, "-c", ask], cwd=project, env=env, capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    assert shell == str(tmp_path / ("exported" if exported else "from-toml"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALMOPS_")}
    for cwd, service_env in yaml.safe_load(listing.stdout):
        seen = subprocess.run([sys.executable, "-c", ask], cwd=cwd, env={**clean, **service_env},
                              capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        assert seen == shell


def test_container_files_run_each_service_from_one_non_root_image():
    compose = yaml.safe_load((REPO / "deploy" / "container" / "compose.yaml").read_text())
    services = compose["services"]
    commands = set()
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["image"] == "localhost/calmops:latest"
        argv = service.get("entrypoint") or ["calmops", *service["command"]]
        commands.update(part.split()[0] for part in " ".join(argv).split("calmops service")[1:])
    assert commands == set(stack.ORDER)
    assert {"worker-1", "worker-2"} <= set(services)
    # a new image migrates MLflow's store before its server starts (the server refuses an older schema)
    mlflow = " ".join(services["mlflow"]["entrypoint"])
    assert mlflow.index("calmops db upgrade mlflow &&") < mlflow.index("exec calmops service mlflow")
    for name in ("prefect", "mlflow", "viewer", "api"):  # published on loopback only
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"])
    dockerfile = (REPO / "deploy" / "container" / "Dockerfile").read_text()
    assert "USER calmops" in dockerfile and "--no-dev" in dockerfile and "uv.lock" in dockerfile


@pytest.mark.production
@pytest.mark.timeout(300)
def test_a_service_started_with_the_servers_waits_for_mlflow_as_for_prefect(tmp_path):
    """Under PM2 or systemd every service starts at once: one that needs MLflow's server waits for it (as for
    Prefect's) rather than failing at once and being restarted over and over; and says which server did not
    answer when it gives up."""
    home = tmp_path / "calmops"
    (tmp_path / "calmops.toml").write_text('[calmops]\nmlflow_backend_store_uri = "postgresql://calmops@127.0.0.1:9/m"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALMOPS_", "PREFECT_", "MLFLOW_TRACKING"))}
    env.update(CALMOPS_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               **{f"CALMOPS_{s}_PORT": str(free_port()) for s in ("PREFECT", "MLFLOW", "VIEWER", "API")})
    prefect = subprocess.Popen([CALMOPS, "service", "prefect"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        until(lambda: get(f"http://127.0.0.1:{env['CALMOPS_PREFECT_PORT']}/api/health")[0] == 200, 240,
              "Prefect's server")
        began = time.monotonic()
        viewer = subprocess.run([CALMOPS, "service", "viewer", "--wait", "6"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        waited = time.monotonic() - began
        assert viewer.returncode != 0
        assert "viewer needs the MLflow server, which did not answer within 6 s" in viewer.stderr, viewer.stderr
        assert "calmops service mlflow" in viewer.stderr and waited >= 3, (waited, viewer.stderr)
    finally:
        os.killpg(prefect.pid, signal.SIGINT)
        prefect.wait(60)
