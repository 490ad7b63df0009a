"""``calmops service NAME`` gives up on a server that does not answer: its error names the address it tried
and suggests setting the variable that names a server elsewhere only when it is not set."""

import pytest

from calmops.core.settings import get_settings
from calmops.deployments import stack
from calmops.deployments.service_cli import run_service
from tests.e2e.stack import free_port


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no calmops.toml of the repository's folder
    for variable in ("CALMOPS_CONFIG", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "calmops"))
    for service in ("PREFECT", "MLFLOW"):  # nothing listens on this host's own ports either
        monkeypatch.setenv(f"CALMOPS_{service}_PORT", str(free_port()))
    return tmp_path / "calmops"


def test_a_prefect_api_url_that_does_not_answer_is_named_and_not_suggested_again(home, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens
    monkeypatch.setenv("PREFECT_API_URL", url)
    with pytest.raises(RuntimeError) as caught:
        run_service("worker", wait=0)
    message = str(caught.value)
    assert message.startswith("worker needs the Prefect API, which did not answer within 0 s"), message
    assert f"at {url} (named by PREFECT_API_URL); check that the server runs at that address" in message
    assert "or set PREFECT_API_URL" not in message


def test_without_a_prefect_api_url_the_error_says_to_start_the_server_or_set_it(home):
    with pytest.raises(RuntimeError) as caught:
        run_service("worker", wait=0)
    assert str(caught.value) == ("worker needs the Prefect API, which did not answer within 0 s: none runs on this "
                                 "host; start 'calmops service prefect' or set PREFECT_API_URL")


def test_the_mlflow_wait_names_its_address_the_same_way(home, monkeypatch):
    from calmops.deployments.service_cli import _no_answer

    settings = get_settings()
    said = "viewer needs the MLflow server, which did not answer within 5 s"
    assert _no_answer("viewer", "mlflow", 5, stack, settings) == (
        f"{said}: none runs on this host; start 'calmops service mlflow' or set MLFLOW_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    message = _no_answer("viewer", "mlflow", 5, stack, settings)
    assert message.startswith(f"{said} at http://mlflow.internal:5000 (named by MLFLOW_TRACKING_URI); check")
    assert "or set MLFLOW_TRACKING_URI" not in message
