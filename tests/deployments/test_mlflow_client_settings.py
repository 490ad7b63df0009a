"""MLflow's HTTP client settings: CalmOps' own retries and timeout hold in the process that imports the registry
(flow runs, commands) and go no further. The services ``calmops up`` starts get the environment it has, and the
viewer and the API set their own (shorter) settings only where the environment has none: settings the user did
not write must not reach them."""

from __future__ import annotations

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
