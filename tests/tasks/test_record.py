"""The record step is retried when the outside world fails (real Prefect test API and MLflow store): a retry
logs the run's metrics again, and they are kept once, not once per attempt."""

import mlflow
import pytest
from mlflow import MlflowClient

from calmops.tasks import record
from calmops.tasks.record import RunOutcome, record_run

pytestmark = pytest.mark.integration


def test_a_retried_record_keeps_each_metric_once(prefect_server, calmops_home, monkeypatch):
    with mlflow.start_run() as run:
        pass
    outcome = RunOutcome("sea", "f.csv", "a" * 64, "no_drift", "no drift signal", rows=600,
                         metrics={"champion": {"accuracy": 0.9}, "realized_v1": {"accuracy": 0.8}},
                         mlflow_run_id=run.info.run_id)
    attempts = []
    publish = record.publish_artifacts

    def fails_once(*args, **kwargs):  # after the metrics were logged: the step's retry logs them again
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("the Prefect API dropped the connection")
        return publish(*args, **kwargs)

    monkeypatch.setattr(record, "publish_artifacts", fails_once)
    record_run(outcome, None, {"pipeline": "sea"})
    assert len(attempts) == 2  # retried once, then recorded
    client = MlflowClient()
    for key in ("rows", "champion_accuracy", "realized_v1_accuracy"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    assert client.get_run(run.info.run_id).data.metrics["realized_v1_accuracy"] == 0.8
