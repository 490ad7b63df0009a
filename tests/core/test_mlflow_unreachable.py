"""What a run or command says when MLflow's client gives up on the tracking server: its address, and the advice
that fits. A server that refuses is not running there (start it, or name the right one); a server that took the
request and did not answer in time is there but slow (give it longer)."""

from __future__ import annotations

import socket

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from calmops.core import registry


@pytest.fixture
def impatient(monkeypatch):
    """MLflow's client asking once and waiting 1 s; the tracking URI as it was afterwards."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    original = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(original)


def _said(uri: str) -> str:
    mlflow.set_tracking_uri(uri)
    with pytest.raises(MlflowException) as raised:
        MlflowClient().get_experiment_by_name("calmops/sea")
    said = registry.unreachable(raised.value)
    assert said is not None, raised.value
    return str(said)


def test_a_tracking_server_that_takes_the_request_and_does_not_answer_in_time_is_said_slow(impatient):
    with socket.socket() as busy:  # the kernel takes connections, nothing answers them
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        uri = f"http://127.0.0.1:{busy.getsockname()[1]}"
        said = _said(uri)
    assert said == (f"the MLflow tracking server at {uri} did not answer within 1 s (0 retries); if it is busy, "
                    "raise MLFLOW_HTTP_REQUEST_TIMEOUT (the seconds a request waits for its answer)")


def test_a_tracking_server_that_refuses_is_said_not_to_answer_with_how_to_start_it(impatient):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"  # let go: nothing listens there
    said = _said(uri)
    assert said.startswith(f"the MLflow tracking server at {uri} does not answer (connection refused, 0 retries)")
    assert "calmops up" in said and "MLFLOW_TRACKING_URI" in said


def test_the_api_says_the_tracking_server_is_down_only_for_errors_from_asking_it(impatient):
    """A model whose own predict fails on a refused connection (it calls a feature service, say), or an artifact
    store that times out, is not the tracking server being down: the API says the error as it is; its probe of
    the tracking server, which did ask it, says the tracking server's words."""
    from calmops.deployments.api import _first_line

    mlflow.set_tracking_uri("http://127.0.0.1:9")
    model_error = ConnectionError("HTTPConnectionPool(host='features', port=80): Connection refused")
    assert "tracking server" not in _first_line(model_error), _first_line(model_error)
    assert _first_line(model_error).startswith("HTTPConnectionPool(host='features'")
    probe = _first_line(model_error, asked_mlflow=True)
    assert probe.startswith("the MLflow tracking server at http://127.0.0.1:9 does not answer"), probe
