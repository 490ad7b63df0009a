"""MLflow's HTTP client settings: CalmOps' own retries and timeout hold in the process that imports the registry
(flow runs, commands) and go no further. The services ``calmops up`` starts get the environment it has, and the
viewer and the API set their own (shorter) settings only where the environment has none: settings the user did
not write must not reach them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlflow import environment_variables as mlflow_environment

SETTINGS = ("MAX_RETRIES", "BACKOFF_FACTOR", "BACKOFF_JITTER", "TIMEOUT")


def test_services_started_after_the_registry_was_imported_get_only_the_mlflow_client_settings_the_user_set(
        calmops_home, monkeypatch):
    from calmops.core import registry
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    for setting in SETTINGS:
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{setting}", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "45")  # the user's own: every process keeps it
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a server named explicitly
    registry.configure(get_settings())  # as `calmops up` and every command do before starting services

    # this process asks MLflow with CalmOps' retries, and the user's timeout
    assert mlflow_environment.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 4
    assert mlflow_environment.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 1
    assert mlflow_environment.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 45

    for name, service in stack.services().items():
        _, env = stack.command(service, get_settings())
        client = {k: v for k, v in env.items() if k.startswith("MLFLOW_HTTP_REQUEST_")}
        assert client == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "45"}, (name, client)


class _SlowTracking(ThreadingHTTPServer):
    """An MLflow tracking server that is up but busy: its first answer takes ``delay`` seconds, later ones none.
    It counts the experiments it was asked to create."""

    daemon_threads = True

    def __init__(self, delay: float):
        self.delay, self.creates = delay, 0
        super().__init__(("127.0.0.1", 0), _Busy)


class _Busy(BaseHTTPRequestHandler):
    server: _SlowTracking

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.creates += 1
        if self.server.creates == 1:
            time.sleep(self.server.delay)
        body = json.dumps({"experiment_id": str(self.server.creates)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_busy_tracking_server_answering_in_20_s_is_waited_for_and_asked_once(monkeypatch):
    """A slow answer is not a dead server: a request is not given up and sent again after 15 s (MLflow's client
    sends every method again, so a second experiment, run or model version would be created)."""
    import mlflow
    from mlflow import MlflowClient

    import calmops.core.registry  # noqa: F401 - its defaults for MLflow's client, as in every command and flow run

    for setting in SETTINGS:
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{setting}", raising=False)
    server = _SlowTracking(delay=20)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    original = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        created = MlflowClient().create_experiment("busy")
    finally:
        mlflow.set_tracking_uri(original)
        server.shutdown()
        server.server_close()
    assert (created, server.creates) == ("1", 1)
