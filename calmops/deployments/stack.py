"""The local stack: start, check and stop CalmOps' services on loopback with pid files and logs.

Each service is a plain subprocess with its log in ``$CALMOPS_HOME/logs/<service>.log`` and its
pid in ``$CALMOPS_HOME/run/<service>.pid``; ``stack.json`` holds the URLs every command reads.
Stopping sends TERM, then INT, then KILL (Prefect's worker ignores a first TERM).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from calmops.core.settings import Settings, get_settings

HOST = os.environ.get("CALMOPS_HOST", "127.0.0.1")


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    health_path: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def services() -> dict[str, Service]:
    env = os.environ.get
    return {
        "prefect": Service("prefect", int(env("CALMOPS_PREFECT_PORT", "4200")), "/api/health"),
        "mlflow": Service("mlflow", int(env("CALMOPS_MLFLOW_PORT", "5000")), "/health"),
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def command(service: Service, settings: Settings) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(settings.home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    if service.name == "prefect":
        env.pop("PREFECT_API_URL", None)
        return [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(service.port)], env
    if service.name == "mlflow":
        store = settings.home / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        return [_bin("mlflow"), "server", "--host", HOST, "--port", str(service.port),
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"), "--workers", "1"], env
    raise KeyError(service.name)


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def running_pid(settings: Settings, name: str) -> int | None:
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def healthy(service: Service, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(service.url + service.health_path, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) != 0


def start(name: str, settings: Settings | None = None, wait: float = 90.0) -> Service:
    settings = settings or get_settings()
    service = services()[name]
    if running_pid(settings, name) and healthy(service):
        return service
    if not port_free(service.port):
        raise RuntimeError(f"port {service.port} for {name} is taken by another program; "
                           f"set CALMOPS_{name.upper()}_PORT to another port")
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    cmd, env = command(service, settings)
    log = open(settings.logs_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=settings.home)
    _pid_file(settings, name).write_text(str(proc.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see {settings.logs_dir / (name + '.log')}")
        if healthy(service):
            _write_urls(settings)
            return service
        time.sleep(0.3)
    raise TimeoutError(f"{name} did not answer on {service.url} within {wait:.0f} s; "
                       f"see {settings.logs_dir / (name + '.log')}")


def stop(name: str, settings: Settings | None = None, grace: float = 10.0) -> bool:
    settings = settings or get_settings()
    pid = running_pid(settings, name)
    _pid_file(settings, name).unlink(missing_ok=True)
    _write_urls(settings)
    if pid is None:
        return False
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            return True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
    return True


def _write_urls(settings: Settings) -> None:
    urls = {}
    for name, service in services().items():
        if running_pid(settings, name):
            if name == "prefect":
                urls["prefect_ui"], urls["prefect_api"] = service.url, service.url + "/api"
            else:
                urls[name] = service.url
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "stack.json").write_text(json.dumps({"urls": urls}, indent=2))


def status(settings: Settings | None = None) -> dict[str, dict]:
    settings = settings or get_settings()
    return {name: {"pid": running_pid(settings, name), "url": s.url, "healthy": healthy(s, timeout=1.0)}
            for name, s in services().items()}
