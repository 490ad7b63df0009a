"""The local stack: start, check and stop CalmOps' services on loopback with pid files and logs.

Each service is a plain subprocess with its log in ``$CALMOPS_HOME/logs/<service>.log`` and its
pid in ``$CALMOPS_HOME/run/<service>.pid``; ``stack.json`` holds the URLs every command reads.
Services: ``prefect`` (API and UI), ``mlflow`` (tracking and registry), ``worker`` (a Prefect process
worker on the ``calmops`` work pool: it runs the flow runs the file triggers create) and ``watcher``
(announces complete files as Prefect events). The worker and the watcher have no port: the worker is
healthy once it says it started, the watcher while it refreshes its heartbeat file.
Stopping sends TERM, then INT, then KILL (Prefect's worker ignores a first TERM, so it gets INT first),
to the service's process group when it leads one (else to the service's own process), and to flow-run processes
it started in sessions of their own, all of them at once; its pid file goes once it is gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from calmops.core import environment
from calmops.core.pids import running, start_time, state
from calmops.core.settings import Settings, get_settings
from calmops.deployments.processes import environ_of, escalate, port_problem

HOST = os.environ.get("CALMOPS_HOST", "127.0.0.1")


@dataclass(frozen=True)
class Service:
    name: str
    port: int | None
    health_path: str | None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}" if self.port else ""


# start order; ``calmops down`` stops in the reverse order
ORDER = ("prefect", "mlflow", "runner", "worker", "watcher", "viewer", "api")
HEARTBEAT_MAX_AGE = 30.0


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable) or str(default)
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"{variable}={value!r} is not a port number (1-65535)")
    return port


def services() -> dict[str, Service]:
    """The stack's services and their ports: the port variable's when it is set, else the port a running
    service of this host was started on (``stack.json``: ``calmops up`` with other ports, then a command typed
    without them), else the default."""
    recorded = environment.stack_urls()

    def port(name: str, variable: str, default: int) -> int:
        url = recorded.get("prefect_ui" if name == "prefect" else name)
        if not os.environ.get(variable) and url and (given := urlsplit(url).port):
            return given
        return _port(variable, default)

    return {
        "prefect": Service("prefect", port("prefect", "CALMOPS_PREFECT_PORT", 4200), "/api/health"),
        "mlflow": Service("mlflow", port("mlflow", "CALMOPS_MLFLOW_PORT", 5000), "/health"),
        "runner": Service("runner", None, None),
        "worker": Service("worker", None, None),
        "watcher": Service("watcher", None, None),
        "viewer": Service("viewer", port("viewer", "CALMOPS_VIEWER_PORT", 8501), "/_stcore/health"),
        "api": Service("api", port("api", "CALMOPS_API_PORT", 8000), "/health"),
    }


def bin_path(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _client_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """What the worker, its flow runs and the watcher need: the same API, tracking store and home."""
    all_services = services()
    if running_pid(settings, "prefect") and healthy(all_services["prefect"]):
        env["PREFECT_API_URL"] = all_services["prefect"].url + "/api"
    elif not env.get("PREFECT_API_URL"):  # a server elsewhere (another host, a container) is named explicitly
        raise RuntimeError("the Prefect server is not running; start it first ('calmops up'), "
                           "or set PREFECT_API_URL to a running one")
    if running_pid(settings, "mlflow"):
        env["MLFLOW_TRACKING_URI"] = all_services["mlflow"].url
        env.setdefault("CALMOPS_MLFLOW_UI", all_services["mlflow"].url)
    elif environment.servers_out_of_reach(("mlflow",), env):  # not an empty local store
        raise RuntimeError("the MLflow server is not running; start it first ('calmops up'), "
                           "or set MLFLOW_TRACKING_URI to a running one")
    else:
        env.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    env["CALMOPS_HOME"] = str(settings.home)  # absolute: flow runs start in a temporary directory
    env["CALMOPS_RUN_DIR"] = str(settings.run_dir)  # (where calmops.toml is not found) and the warm client
    env.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "2")  # Prefect's default: fewer writes to its database
    return env


DAY = 86_400
#: Prefect's server settings on the server CalmOps starts; each is a default a user's own variable overrides.
#: A run waiting for its pipeline's concurrency slot is retried after 2 s (Prefect: 30 s).
#: Database housekeeping: a decided file leaves about 36 events in Prefect's database, and 25 of them are the
#: three state events (Pending, Running, Completed) of each of its task runs: two thirds of the database's
#: growth. They are the event feed's copy of what the task runs' own state history keeps, so they are kept a day, not Prefect's
#: seven; every other event (the file's arrival, flow-run states, a task run that failed or was retried) keeps
#: the seven days. Finished flow runs (with their task runs, logs and artifacts) are deleted after 30 days; the
#: decisions stay in MLflow and the pipeline's ledger.
#: A run shows *Late* once it has waited 5 minutes for a worker (Prefect: 15 s). A file's run is scheduled for
#: the moment the file arrived; in a burst the runs of the files behind wait for a worker slot or their pipeline's
#: turn as designed, and at 15 s a third of a 56-file burst's runs showed Late, which reads like a fault. Five
#: minutes behind is worth a badge: the workers are behind the arrivals (more workers: docs/production.md).
PREFECT_SERVER_DEFAULTS = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "300",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_EVENT_RETENTION_OVERRIDES": json.dumps(
        {"prefect.flow-run.heartbeat": 7 * DAY}  # Prefect's own default, which setting the variable replaces
        | {f"prefect.task-run.{state}": DAY for state in ("Pending", "Running", "Completed")}),
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(30 * DAY),
}


#: In each service's environment: which service of which host it is (``worker@/srv/calmops/run``), so a second
#: ``calmops service worker`` knows the first from any other process that took its pid file's number
SERVICE_MARKER = "CALMOPS_SERVICE"


def service_marker(name: str, settings: Settings) -> str:
    """The value of :data:`SERVICE_MARKER` for service ``name`` on this host."""
    return f"{name}@{settings.run_dir.resolve()}"


def _worker_limit(env: dict[str, str]) -> str:
    """The most flow runs the worker takes at once, as given to ``prefect worker start --limit``."""
    return env.get("CALMOPS_WORKER_LIMIT") or str(max(2, os.cpu_count() or 2))


def _threads_per_run(env: dict[str, str]) -> dict[str, str]:
    """The OpenMP threads each flow run may use (``OMP_NUM_THREADS``, unless set): the cores shared by the runs
    the worker takes at once. Each model fit otherwise starts a thread per core (scikit-learn's histogram
    gradient boosting, the default model), and runs side by side then wait on each other's threads: on two
    cores a fit of a few hundred rows took seconds instead of a tenth of one (bench/threads.py)."""
    try:
        limit = int(_worker_limit(env))
    except ValueError:
        limit = max(2, os.cpu_count() or 2)  # the worker refuses it and says so
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, limit))))
    return env


def command(service: Service, settings: Settings) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env[SERVICE_MARKER] = service_marker(service.name, settings)
    env.update(PREFECT_HOME=str(settings.home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")  # logs, not terminals
    if service.name == "prefect":
        env.pop("PREFECT_API_URL", None)
        env = PREFECT_SERVER_DEFAULTS | env  # the user's own variables win
        if HOST not in ("0.0.0.0", "::") and not (env.get("PREFECT_UI_API_URL") or env.get("PREFECT_SERVER_UI_API_URL")):
            # the UI's pages call the API at this address; Prefect's default is port 4200 whatever --port says
            env["PREFECT_SERVER_UI_API_URL"] = f"http://{HOST}:{service.port}/api"
        # Prefect writes its UI's files (with this server's base URL) on start, by default into site-packages,
        # which a service user does not own (systemd's User=, a container's non-root user): no UI then
        env.setdefault("PREFECT_SERVER_UI_STATIC_DIRECTORY", str(settings.run_dir / "prefect-ui"))
        if settings.prefect_database_url:  # else Prefect's SQLite file under PREFECT_HOME
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
        # Prefect's own 'prefect server start', with its SQLite transactions taking the write lock first
        return [sys.executable, "-m", "calmops.deployments.prefect_server", "server", "start", "--host", HOST,
                "--port", str(service.port)], env
    if service.name == "worker":
        env = _client_env(env, settings)
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "0.5")  # Prefect polls every 10 s by default; each poll writes
        cmd = [bin_path("prefect"), "worker", "start", "--pool", settings.work_pool, "--type", "process",
               "--name", f"{own_worker_prefix()}{os.getpid()}"]
        # bounded: beyond the cores, more runs at once only slow each other down, and a burst of files would
        # have the worker propose hundreds of queued runs to the server every second
        cmd += ["--limit", _worker_limit(env)]
        return cmd, _threads_per_run(env)
    if service.name == "runner":  # its socket follows CALMOPS_HOME, absolute in the client environment
        return [sys.executable, "-m", "calmops.deployments.warm", "serve"], _threads_per_run(_client_env(env, settings))
    if service.name == "watcher":
        env = _client_env(env, settings)
        return [sys.executable, "-m", "calmops.deployments.watcher",
                "--heartbeat", str(heartbeat_file(settings))], env
    if service.name == "viewer":
        return ([sys.executable, "-m", "calmops.dashboards", "--address", HOST, "--port", str(service.port)],
                _client_env(env, settings))
    if service.name == "api":
        return [bin_path("calmops"), "serve", "--host", HOST, "--port", str(service.port)], _client_env(env, settings)
    if service.name == "mlflow":
        (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)  # the embedded SQLite store's folder
        destination = settings.mlflow_artifacts_destination
        if "://" in destination and not destination.startswith("file://"):
            # an object store: the server proxies it (mlflow-artifacts: URIs), clients hold no storage credentials
            artifacts = ["--artifacts-destination", destination]
        else:
            # a local folder: plain file URIs that this machine's processes read and write directly, so a model
            # registered with the stack up loads with it down (SQLite store) and the other way round
            artifacts = ["--default-artifact-root", Path(destination.removeprefix("file://")).resolve().as_uri(),
                         "--no-serve-artifacts"]
        return [bin_path("mlflow"), "server", "--host", HOST, "--port", str(service.port),
                "--backend-store-uri", settings.mlflow_backend_store_uri, *artifacts, "--workers", "1"], env
    raise KeyError(service.name)


def pid_file(settings: Settings, name: str) -> Path:
    return settings.pid_file(name)


def supervised_file(settings: Settings, name: str) -> Path:
    """Written by ``calmops service NAME`` (run by PM2, systemd…): the service has a supervisor that restarts it,
    so the watcher leaves a dead one to it (a service ``calmops up`` started has none: the watcher restarts its
    worker, see :func:`calmops.deployments.stalls.revive_dead_worker`)."""
    return settings.run_dir / f"{name}.supervised"


def heartbeat_file(settings: Settings) -> Path:
    return settings.run_dir / "watcher.heartbeat"


#: held (``flock``) by the watcher of a run folder for as long as it runs: two watchers started at the same moment
#: (``calmops up`` and ``calmops watch``) would both find no heartbeat yet; the kernel lets one of them hold it,
#: and lets it go when its process ends, however it ends
WATCH_LOCK = "watcher.lock"


class WatcherRunning(RuntimeError):
    """Another watcher runs on this run folder: two would announce every file twice."""


def only_watcher(lock: Path) -> int:
    """Hold ``lock`` (a descriptor to close when the watcher stops), or raise :class:`WatcherRunning`."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)  # read-only: a lock file another user made serves too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WatcherRunning(f"a watcher is running already on {lock.parent} (it holds {lock}): two watchers "
                             "announce every file twice") from None
    except OSError:
        os.close(fd)
        raise
    return fd

def watcher_beats(settings: Settings, writer: int | None = None) -> bool:
    """Is the watcher's heartbeat fresh: a watcher runs on this run folder (``calmops watch`` writes it too). The
    heartbeat names its writer's pid: one a killed watcher (``kill -9``) left does not count. With ``writer``,
    only that process's heartbeat counts (the stack's own watcher, not one started by hand beside it)."""
    path = heartbeat_file(settings)
    try:
        if time.time() - path.stat().st_mtime >= HEARTBEAT_MAX_AGE:
            return False
        fields = path.read_text().split()
    except OSError:
        return False
    try:
        named = int(fields[1])
    except (IndexError, ValueError):  # a heartbeat that names no writer: its freshness alone tells
        return writer is None
    return running(named, None) and writer in (None, named)


def own_worker_prefix() -> str:
    """How the workers this host's stack starts are named (``calmops-HOST-PID``): a worker of another name on the
    work pool was started outside ``calmops up`` (``prefect worker start --pool calmops``, or another host's)."""
    return f"calmops-{socket.gethostname()}-"


#: how a stack names its worker (:func:`own_worker_prefix`), on any host
STACK_WORKER = re.compile(r"calmops-.+-\d+")
#: Prefect's own rule for a worker being online: a heartbeat within 3 of its heartbeat intervals (30 s by default)
WORKER_HEARTBEATS_MISSED, WORKER_HEARTBEAT_SECONDS = 3, 30


def outside_workers(api: str, settings: Settings) -> list[str]:
    """The names of the workers polling this host's work pool (``settings.work_pool``) that no stack started (a
    stack's are named ``calmops-HOST-PID``, :func:`own_worker_prefix`, this host's or another's), as the Prefect API
    at ``api`` lists them: those online by their last heartbeat (within three of its intervals; the status Prefect
    stores can stay ONLINE a while after a worker has gone). Empty when the API does not answer or has no such
    pool."""
    from datetime import UTC, datetime
    from urllib.parse import quote

    from calmops.deployments.quickhttp import post

    code, workers = post(f"{api.rstrip('/')}/work_pools/{quote(settings.work_pool, safe='')}/workers/filter", {},
                         timeout=1.0)
    if code != 200 or not isinstance(workers, list):
        return []
    names, now = [], datetime.now(UTC)
    for worker in workers:
        if not isinstance(worker, dict) or STACK_WORKER.fullmatch(str(worker.get("name", ""))):
            continue
        try:
            beat = datetime.fromisoformat(worker["last_heartbeat_time"])
            interval = float(worker.get("heartbeat_interval_seconds") or WORKER_HEARTBEAT_SECONDS)
            recent = (now - beat).total_seconds() < WORKER_HEARTBEATS_MISSED * interval
        except (KeyError, TypeError, ValueError):
            recent = False
        if recent:
            names.append(str(worker.get("name")))
    return names


def _prefect_api(settings: Settings) -> str | None:
    """The Prefect API this host's services use: the stack's server while it runs, else ``PREFECT_API_URL``."""
    if running_pid(settings, "prefect"):
        return services()["prefect"].url + "/api"
    return os.environ.get("PREFECT_API_URL") or None


def outside(name: str, settings: Settings) -> str | None:
    """What runs as service ``name`` (the watcher, the worker, the warm runner) on this host although ``calmops
    up`` did not start it, said for people; None when nothing does (or the stack's own runs)."""
    if running_pid(settings, name):
        return None
    if name == "watcher" and watcher_beats(settings):
        return f"a watcher started outside calmops up ('calmops watch') refreshes {heartbeat_file(settings)}"
    if name == "runner":
        from calmops.deployments.warm import answers, socket_path

        if answers():  # one started by hand (docs/operations.md, prefect.yaml)
            return f"a runner started outside calmops up listens on {socket_path()}"
    if name == "worker" and (api := _prefect_api(settings)) and (names := outside_workers(api, settings)):
        return (f"worker(s) started outside calmops up poll the work pool {settings.work_pool!r}: "
                f"{', '.join(names)}")
    return None


def log_file(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def running_pid(settings: Settings, name: str) -> int | None:
    return environment.running_pid(settings, name)


def healthy(service: Service, timeout: float = 2.0, settings: Settings | None = None) -> bool:
    if service.port is None:
        return _process_healthy(service.name, settings or get_settings())
    from calmops.deployments.quickhttp import get

    return get(service.url + service.health_path, timeout=timeout)[0] == 200


def _process_healthy(name: str, settings: Settings, since: int = 0) -> bool:
    if not running_pid(settings, name):
        return False
    if name == "watcher":
        return watcher_beats(settings, writer=running_pid(settings, name))
    if name == "runner":
        from calmops.deployments.warm import answers

        return answers()
    if name == "worker":
        try:
            with open(log_file(settings, name), "rb") as fh:
                fh.seek(since)
                return b"started!" in fh.read()
        except OSError:
            return False
    return True


def start(name: str, settings: Settings | None = None, wait: float | None = None) -> Service:
    """Start one service and wait until it is healthy: ``wait`` seconds, by default ``CALMOPS_START_TIMEOUT`` or
    90 (a first start on PostgreSQL runs Prefect's migrations and can take longer on a busy machine)."""
    settings = settings or get_settings()
    wait = wait if wait is not None else float(os.environ.get("CALMOPS_START_TIMEOUT") or 90)
    service = services()[name]
    if running_pid(settings, name) and healthy(service, settings=settings):
        return service
    if running_pid(settings, name) and service.port is None:
        stop(name, settings)  # a worker or watcher that stopped answering: start a fresh one
    if not running_pid(settings, name):
        stop(name, settings)  # what a killed server left running (holding its port), if anything
    if name == "runner" and not running_pid(settings, name):
        from calmops.deployments.warm import answers, socket_path

        if answers():  # one started by hand (docs/operations.md, prefect.yaml): a second would exit at once
            raise RuntimeError(f"a runner the stack did not start already listens on {socket_path()}: flow runs "
                               "use it as it is; to run the stack's own, stop that one first")
    if service.port is not None and port_problem(HOST, service.port):
        raise RuntimeError(f"port {service.port} for {name} is taken by another program; "
                           f"set CALMOPS_{name.upper()}_PORT to another port")
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.home.mkdir(parents=True, exist_ok=True)
    cmd, env = command(service, settings)
    supervised_file(settings, name).unlink(missing_ok=True)  # this one's supervisor is the stack
    path = log_file(settings, name)
    offset = path.stat().st_size if path.exists() else 0
    with open(path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=settings.home)
    pid_file(settings, name).write_text(str(proc.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file(settings, name).unlink(missing_ok=True)
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see {path}")
        ok = healthy(service) if service.port is not None else _process_healthy(name, settings, since=offset)
        if ok:
            write_urls(settings)
            return service
        time.sleep(0.3)
    raise TimeoutError(f"{name} did not {'answer on ' + service.url if service.port else 'start'} "
                       f"within {wait:.0f} s; see {path}")


def restart(name: str, settings: Settings | None = None) -> Service:
    settings = settings or get_settings()
    stop(name, settings)
    return start(name, settings)


class StillRunning(RuntimeError):
    """A service :func:`stop` could not stop: ``pids`` (its own process, then any it started that outlived the
    signals too) still run; ``pid_file`` is kept, naming it. (Processes a service that did stop left behind are
    logged, not raised: the service can be started again.)"""

    def __init__(self, name: str, pids: list[int], why: str, pid_file: Path):
        self.name, self.pids, self.pid_file = name, pids, pid_file
        super().__init__(f"pid {', '.join(map(str, pids))}: {why}; {pid_file} still names it")


CHILD_SIGNALS, CHILD_GRACE = (signal.SIGTERM, signal.SIGKILL), 5.0  # for the processes a service started


def _stop_signals(name: str) -> tuple[signal.Signals, ...]:
    if name == "worker":  # Prefect's worker ignores a first TERM
        return signal.SIGINT, signal.SIGTERM, signal.SIGKILL
    return signal.SIGTERM, signal.SIGINT, signal.SIGKILL


def _why_alive(pid: int, signals: tuple[signal.Signals, ...], grace: float) -> str:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return "it is another user's process, which this user may not signal"
    except OSError:
        pass
    sent = ", ".join(s.name for s in signals)
    stuck = " (state D: stuck in the kernel, e.g. on an unreachable network file system)" if state(pid) == "D" else ""
    return f"it outlived {sent}, {grace:g} s after each{stuck}"


def _forget(path: Path, recorded: str | None) -> None:
    """Remove the pid file if it still says ``recorded``: a service started meanwhile wrote its own."""
    try:
        if recorded is not None and path.read_text() == recorded:
            path.unlink()
    except OSError:
        pass


def _forget_state(name: str, settings: Settings) -> None:
    """What a stopped service wrote about itself besides its pid: the watcher's heartbeat (stale once it is gone),
    the mark of a supervised service."""
    supervised_file(settings, name).unlink(missing_ok=True)
    if name == "watcher" and not watcher_beats(settings):  # one run by hand ('calmops watch') keeps its own
        heartbeat_file(settings).unlink(missing_ok=True)


def stop(name: str, settings: Settings | None = None, grace: float = 10.0) -> bool:
    """Stop this host's service ``name``: the process its pid file names, whether or not it leads a process group
    of its own (``calmops up`` starts each in a session of its own; ``calmops service`` run from a script's
    ``nohup … &`` is in the script's group, which only it is signalled in), then the processes it started, together.
    Returns True once it is gone, False when none ran; the pid file goes then. A process that outlives every
    signal (``grace`` seconds after each) or may not be signalled keeps its pid file: :class:`StillRunning`."""
    settings = settings or get_settings()
    path = pid_file(settings, name)
    try:
        recorded = path.read_text()
    except OSError:
        recorded = None
    try:
        pid = int((recorded or "").strip() or 0)
    except ValueError:
        pid = 0
    start = start_time(pid) if pid > 0 else None
    if pid <= 0 or not running(pid, start):  # no pid file, or one left by a process that ended
        left = _stop_left_behind(name, settings)
        _forget(path, recorded)
        _forget_state(name, settings)
        write_urls(settings)
        return bool(left)
    # flow runs started by the worker live in sessions of their own: find them before their parent goes
    children = {child: start_time(child) for child in _descendants(pid)}  # known by their start, as pids recycle
    signals = _stop_signals(name)
    stopped = escalate(pid, signals, grace, group=True, start=start)
    left = _escalate_together(children)
    if stopped:
        _forget(path, recorded)
        _forget_state(name, settings)
    write_urls(settings)
    if not stopped:
        raise StillRunning(name, [pid, *left], _why_alive(pid, signals, grace), path)
    if left:  # the service is gone (it can be started again); say what it left behind
        logging.getLogger("calmops.stack").warning(
            "%s stopped, but process(es) it started outlived the signals: pid %s (%s)", name,
            ", ".join(map(str, left)), _why_alive(left[0], CHILD_SIGNALS, CHILD_GRACE))
    return True


FLOW_RUN_VARIABLE = "PREFECT__FLOW_RUN_ID"  # Prefect's worker gives each flow-run process its run's id


def flow_runs_in_flight(name: str, settings: Settings | None = None) -> dict[str, dict[int, str | None]]:
    """The flow runs this host's service ``name`` (the worker) runs now: each run's id, from the environment of
    the processes it started, with those processes (pid: start time). Read before the service is stopped."""
    pid = running_pid(settings or get_settings(), name)
    found: dict[str, dict[int, str | None]] = {}
    for child in _descendants(pid) if pid else []:
        if run_id := (environ_of(child) or {}).get(FLOW_RUN_VARIABLE):
            found.setdefault(run_id.decode(errors="replace"), {})[child] = start_time(child)
    return found


def stopped_runs_line(in_flight: dict[str, dict[int, str | None]]) -> str | None:
    """Said by ``calmops down`` once the worker and the runner are stopped (Prefect's server, stopped last, still
    answers): how many flow runs in flight were stopped, each marked Crashed in Prefect, which would show it
    Running until the watcher's check found it after the next ``calmops up``. A run with a process still alive
    (one that outlived the signals) is left as it is."""
    gone = [run_id for run_id, procs in in_flight.items() if not any(running(p, t) for p, t in procs.items())]
    if not gone:
        return None
    line = f"{len(gone)} flow run(s) in flight stopped: their files are taken again after 'calmops up'"
    if not os.environ.get("PREFECT_API_URL"):  # no server to tell (a client would start a temporary one)
        return f"{line}; Prefect shows them Running until the watcher finds them after 'calmops up'"
    from calmops.core.flow_runs import mark_crashed

    try:
        marked = mark_crashed(gone, "stopped by 'calmops down' while it ran; its file is taken again after "
                                    "'calmops up'")
    except Exception as exc:  # noqa: BLE001 - the server is out of reach: the watcher's check finds them later
        return (f"{line}; Prefect could not be told ({type(exc).__name__}): it shows them Running until the "
                "watcher finds them after 'calmops up'")
    return f"{line}; {len(marked)} marked Crashed in Prefect" if marked else line


def _stop_left_behind(name: str, settings: Settings) -> list[int]:
    """Stop the processes a server left running when it was killed on its own (``kill -9`` of its pid: MLflow's
    server keeps serving from its uvicorn child, holding the port): those that carry the service's marker in
    their environment (:func:`service_marker`, this host's run folder). Services without a port are left
    alone: the flow runs a killed worker started finish their files. Returns the pids stopped."""
    if services()[name].port is None:
        return []
    marker = service_marker(name, settings).encode()
    left = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid != os.getpid() and (environ_of(pid) or {}).get(SERVICE_MARKER) == marker:
            left.append(pid)
    outlived = _escalate_together({pid: start_time(pid) for pid in left})
    stopped = [pid for pid in left if pid not in outlived]
    if stopped:
        logging.getLogger("calmops.stack").warning(
            "%s's process had ended, but process(es) it started still ran: stopped pid %s", name,
            ", ".join(map(str, stopped)))
    return stopped


def _escalate_together(starts: dict[int, str | None]) -> list[int]:
    """Stop the processes ``starts`` names (pid: its start time) with :data:`CHILD_SIGNALS`, all at once, each
    waited for at the same time as the others: stopping a worker's many flow runs takes one grace period, not one
    each. Returns those that outlived the signals."""
    if not starts:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(starts)) as pool:
        gone = list(pool.map(lambda item: escalate(item[0], CHILD_SIGNALS, CHILD_GRACE, start=item[1]),
                             starts.items()))
    return [pid for pid, ended in zip(starts, gone) if not ended]


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (from /proc; empty where /proc is missing)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def write_urls(settings: Settings) -> None:
    urls = {}
    for name, service in services().items():
        if service.port is not None and running_pid(settings, name):
            if name == "prefect":
                urls["prefect_ui"], urls["prefect_api"] = service.url, service.url + "/api"
            else:
                urls[name] = service.url
    path = settings.run_dir / "stack.json"
    if not urls:  # nothing runs: no file, as before the first `calmops up`
        path.unlink(missing_ok=True)
        return
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"urls": urls}, indent=2))


# a server of another host, as the variables name it: (variable, the part of its URL to drop, health path)
ELSEWHERE = {"prefect": ("PREFECT_API_URL", "/api", "/api/health"), "mlflow": ("MLFLOW_TRACKING_URI", "", "/health")}


def _elsewhere(name: str) -> str | None:
    """The URL of server ``name`` on another host, when its variable names one (a host of workers, say)."""
    variable, suffix, _ = ELSEWHERE.get(name, ("", "", ""))
    url = os.environ.get(variable, "") if variable else ""
    return url.rstrip("/").removesuffix(suffix) if url.startswith(("http://", "https://")) else None


def _this_hosts(url: str, service: Service) -> bool:
    """Does ``url`` name this host's own ``service`` (its port, on a name of this host)?"""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", HOST, socket.gethostname(), socket.getfqdn()}
    return parts.port == service.port and parts.hostname in local


def status(settings: Settings | None = None) -> dict[str, dict]:
    """Each service of the stack on this host: pid, URL, health; a server this host does not run but reaches
    through its variable is reported at that URL, ``elsewhere``; a watcher started by hand (``calmops watch``: no
    pid file) by its fresh heartbeat, ``outside``; so is a warm runner started by hand that answers on its socket,
    and a worker of the stack's work pool started by hand
    (``prefect worker start --pool …``), online in the Prefect server that answers, with its ``names``."""
    from calmops.deployments.quickhttp import get

    settings = settings or get_settings()
    out = {}
    for name, service in services().items():
        pid = running_pid(settings, name)  # a service without a live process is not asked (fast when down)
        code = get(service.url + service.health_path, timeout=1.0)[0] if pid and service.port is not None else None
        out[name] = {"pid": pid, "url": service.url or None,
                     "healthy": code == 200 if code is not None else bool(pid) and healthy(service, settings=settings),
                     "answer": code or None,  # its health check's HTTP status (503: up, but a server it needs is not)
                     "log": str(log_file(settings, name)), "elsewhere": None}
        if not pid and name == "watcher" and watcher_beats(settings):  # 'calmops watch', run by hand
            out[name].update(healthy=True, outside=True, log=None)
        if not pid and name == "runner":
            from calmops.deployments.warm import answers

            if answers():  # 'python -m calmops.deployments.warm serve', run by hand
                out[name].update(healthy=True, outside=True, log=None)
        if not pid and name == "worker" and out["prefect"]["healthy"] and (  # asked only while Prefect answers
                names := outside_workers(out["prefect"]["url"] + "/api", settings)):
            out[name].update(healthy=True, outside=True, log=None, names=names)  # 'prefect worker start', by hand
        if not pid and (url := _elsewhere(name)):
            code = get(url + ELSEWHERE[name][2], timeout=1.0)[0]
            own = _this_hosts(url, service)  # this host's own address: stopped, unless another run folder's runs
            if code or not own:
                out[name].update(url=url, elsewhere="another run folder" if own else "another host", log=None,
                                 healthy=code == 200, answer=code or None)
    return out
