"""A flow run whose MLflow tracking server is gone (killed while the stack runs) fails within about a minute,
naming the server and what to do, and leaves its file pending for a later run: not quarantined, not decided.
MLflow's client on its own defaults retried for about four minutes first, saying nothing."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run

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
