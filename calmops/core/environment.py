"""Point this process at the local stack: Prefect API and MLflow tracking, from one place.

When ``calmops up`` runs, it writes the servers' URLs under ``$CALMOPS_HOME/run``; every CLI
command reads them so that runs land on the running stack. Without a stack, Prefect keeps its
state under ``$CALMOPS_HOME/prefect`` and MLflow uses SQLite under ``$CALMOPS_HOME/mlflow``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from calmops.core.pids import running
from calmops.core.settings import get_settings, setting


def stack_urls() -> dict[str, str]:
    """The URLs of this host's stack services that are running. ``stack.json`` is written when services start
    and at ``calmops down``; a service stopped any other way (``pm2 stop``, a crash, a kill) leaves its URL
    there, so a URL counts only while its service's pid file names a live process: else every command would
    talk to a server that is gone instead of working without it."""
    settings = get_settings()
    path = settings.run_dir / "stack.json"
    if not path.exists():
        return {}
    try:
        urls = json.loads(path.read_text()).get("urls", {})
    except (OSError, ValueError):
        return {}
    # keys are service names, or the Prefect server's two: prefect_api and prefect_ui
    return {key: url for key, url in urls.items() if running_pid(settings, key.partition("_")[0])}


def running_pid(settings, service: str) -> int | None:
    """The pid of this host's running ``service`` of the stack: the one its pid file names, while that process
    runs (:func:`calmops.core.pids.running`: an exited process not yet reaped does not run); None
    otherwise."""
    try:
        pid = int(settings.pid_file(service).read_text().strip() or 0)
        # not a service that exited and whose parent (a watcher that restarted it, say) has not reaped it yet;
        # where /proc is missing, one that answers signal 0
        if pid > 0 and running(pid, None):
            return pid
    except (OSError, ValueError):
        pass
    return None


def prepare() -> dict[str, str]:
    """Set the environment variables Prefect and MLflow read, before either is used."""
    if not os.environ.get("CALMOPS_CONFIG") and Path("calmops.toml").is_file():
        # name the calmops.toml found here absolutely: the services, the flow runs and the warm runner started
        # from this process run in $CALMOPS_HOME or a temporary folder, where ./calmops.toml is another file
        os.environ["CALMOPS_CONFIG"] = str(Path("calmops.toml").resolve())
    settings = get_settings()
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # without a running stack Prefect starts a temporary local API; give it time on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    urls = stack_urls()
    if urls.get("prefect_api") and "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_API_URL"] = urls["prefect_api"]
    if urls.get("mlflow") and "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ["MLFLOW_TRACKING_URI"] = urls["mlflow"]
        os.environ.setdefault("CALMOPS_MLFLOW_UI", urls["mlflow"])
    return urls


def servers_out_of_reach(needed: tuple[str, ...] = ("prefect", "mlflow"), env: Mapping[str, str] | None = None,
                         ) -> list[str]:
    """The servers whose state is configured to live in a database of their own (``prefect_database_url``,
    ``mlflow_backend_store_uri``: the production layout) that this process has no URL for: not running on this
    host (see :func:`prepare`) and not named by ``PREFECT_API_URL`` / ``MLFLOW_TRACKING_URI``. Without a server the
    local stack works on its SQLite files; here that would be an empty registry and a temporary Prefect, so the
    commands that act on the stack's state refuse instead (:func:`calmops.deployments.console.friendly`), and so
    do the services that would start on it. ``env``: the environment to look in (default ``os.environ``)."""
    env = os.environ if env is None else env
    out = []
    if "prefect" in needed and setting("prefect_database_url") and not env.get("PREFECT_API_URL"):
        out.append("the Prefect server (not running on this host, and PREFECT_API_URL is unset)")
    if "mlflow" in needed and setting("mlflow_backend_store_uri") and not env.get("MLFLOW_TRACKING_URI"):
        out.append("the MLflow server (not running on this host, and MLFLOW_TRACKING_URI is unset)")
    return out
