"""A flow run whose MLflow tracking server is gone (killed while the stack runs) fails within about a minute,
naming the server and what to do, and leaves its file pending for a later run: not quarantined, not decided.
MLflow's client on its own defaults retried for about four minutes first, saying nothing."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from calmops.core.breaker import read_breaker
from calmops.core.store import ledger, pipeline_paths, read_spec
from calmops.flows import run_file
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run
from tests.flows.tracking_proxy import TrackingProxy

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    """A loopback port nothing listens on (taken from the system, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_whose_mlflow_server_is_gone_fails_soon_naming_it_and_its_file_stays_pending(
        prefect_server, stream_spec, monkeypatch):
    gone = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
    for setting in ("MAX_RETRIES", "BACKOFF_FACTOR", "TIMEOUT"):  # as a flow run's environment has them: unset
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{setting}", raising=False)
    path = write_csv(sea_frame(600, 8.0, seed=1), incoming("sea"), "a.csv")

    answer: dict = {}
    began = time.monotonic()
    worker = threading.Thread(target=lambda: answer.update(run("sea", path)), daemon=True)
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), f"the run was still waiting for {gone} after 90 s"
    took = time.monotonic() - began

    assert answer["decision"] == "failed", answer
    reason = answer["reason"]
    assert f"the MLflow tracking server at {gone} does not answer" in reason, reason
    assert "calmops up" in reason and "MLFLOW_TRACKING_URI" in reason, reason
    assert took < 90
    paths = pipeline_paths(read_spec("sea"))
    assert path.is_file() and not any(paths.quarantine.iterdir())  # where it was, not refused
    assert ledger(paths).status(digest(path)) == "pending"  # not decided: the next run takes it

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # MLflow is back (here: the home's own store)
    again = run("sea", path)
    assert again["decision"] == "train", again
    assert (paths.processed / "a.csv").is_file()


class _GoesAway(TrackingProxy):
    """Forwards to the MLflow server ``upstream`` until it has created a run; then it stops listening, as a
    tracking server that goes down in the middle of a run: every later connection is refused."""

    def forwarded(self, method: str, path: str) -> None:
        if path.endswith("/runs/create"):  # the run is started: the server goes down
            self.shutdown()  # (serve_forever runs in another thread)
            self.server_close()


def test_a_run_whose_mlflow_server_goes_away_after_it_started_fails_with_the_explained_reason(
        prefect_server, stream_spec, calmops_home, monkeypatch):
    """The run is not recorded in MLflow then (asking the same server again waited for the client's retries once
    more, and its raw 'API request to … failed' line replaced the explained reason). The file stays pending."""
    from calmops.core import registry
    from calmops.core.settings import get_settings
    from calmops.deployments import stack
    from tests.e2e.stack import free_port

    monkeypatch.setenv("CALMOPS_MLFLOW_PORT", str(free_port()))
    server = stack.start("mlflow", wait=180)
    proxy = _GoesAway(server.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # CalmOps' 4 retries
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # at once: the test need not wait
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
        registry.configure(get_settings())
        path = write_csv(sea_frame(600, 8.0, seed=2), incoming("sea"), "a.csv")
        outcome, error = run_file("sea", path)

        assert outcome["decision"] == "failed", outcome
        assert error == outcome["reason"] == (
            f"MlflowUnreachable: the MLflow tracking server at {proxy.url} does not answer (connection refused, "
            "4 retries); start it (`calmops up` starts the local stack's), or set MLFLOW_TRACKING_URI to the address "
            "of the one that runs"), error
        paths = pipeline_paths(read_spec("sea"))
        assert path.is_file() and not any(paths.quarantine.iterdir())
        assert ledger(paths).status(digest(path)) == "pending"
        assert read_breaker("sea").consecutive_failures == 0  # the server was out of reach, not the pipeline failing

        # the MLflow run it had started could not be ended: the MLflow UI showed it running for good. The server
        # answers again (here: without the proxy): the file's next run ends it, with why
        from mlflow import MlflowClient

        left = ledger(paths).left_open(digest(path))[1]
        assert left and MlflowClient(server.url).get_run(left).info.status == "RUNNING"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        registry.configure(get_settings())
        # `calmops history` says why the file is pending, though MLflow holds no reason for it
        from calmops.deployments.history import file_history

        [row] = file_history(read_spec("sea"))["files"]
        assert (row["status"], row["decision"], row["reason"]) == ("pending", "failed", error), row
        again, _ = run_file("sea", path)
        ended = MlflowClient(server.url).get_run(left)
        [row] = file_history(read_spec("sea"))["files"]  # decided: the failure's reason is not shown for it
    finally:
        stack.stop("mlflow")

    assert again["decision"] == "train" and again["mlflow_run_id"] != left, again
    assert ended.info.status == "FAILED", ended.info
    assert (row["decision"], row["reason"]) == ("train", again["reason"]), row
    assert ended.data.tags["calmops.reason"] == (
        "its run could not reach the MLflow tracking server to record its end; MLflow run "
        f"{again['mlflow_run_id']} took the file over")
