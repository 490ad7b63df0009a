"""The record step is retried when the outside world fails (real Prefect test API and MLflow store): a retry
logs the run's metrics again, and they are kept once, not once per attempt."""

import mlflow
import pytest
from mlflow import MlflowClient

from calmops.core import registry
from calmops.tasks import record
from calmops.tasks.record import RunOutcome, record_run

pytestmark = pytest.mark.integration


@pytest.fixture
def run(calmops_home):
    """An MLflow run in the test's own store."""
    with mlflow.start_run(experiment_id=registry.ensure_experiment("sea")) as started:
        pass
    return started


def test_a_retried_record_keeps_each_metric_once(prefect_server, run, monkeypatch):
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


def test_a_second_outcome_recorded_into_the_same_run_is_the_one_it_shows(prefect_server, run):
    """A run recorded, then failing after that (e.g. moving the file) is recorded again as failed: the failed
    outcome's metrics are the run's, not whichever value is larger."""
    decided = RunOutcome("sea", "f.csv", "a" * 64, "retrain_promoted", "drift", drift_detected=True, rows=1000,
                         metrics={"champion": {"accuracy": 0.7}}, mlflow_run_id=run.info.run_id)
    from calmops.core.verdict import DriftVerdict

    record_run(decided, DriftVerdict(data=None, drift_detected=True), {"pipeline": "sea"})
    failed = RunOutcome("sea", "f.csv", "a" * 64, "failed", "OSError: disk full", mlflow_run_id=run.info.run_id)
    record_run(failed, None, {"pipeline": "sea"})
    shown = MlflowClient().get_run(run.info.run_id).data
    assert shown.tags["calmops.decision"] == "failed" and shown.metrics["rows"] == 0
    assert shown.metrics["drift_detected"] == 1  # the check made before the failure stays on record


def test_a_run_that_made_no_drift_check_records_no_drift_answer(prefect_server, run):
    """A refused file (or a first model) was never checked: its drift is unknown, not "no"."""
    refused = RunOutcome("sea", "f.csv", "a" * 64, "rejected_input", "f.csv: empty", mlflow_run_id=run.info.run_id)
    record_run(refused, None, {"pipeline": "sea"})
    shown = MlflowClient().get_run(run.info.run_id).data
    assert "calmops.drift_detected" not in shown.tags and "drift_detected" not in shown.metrics
    assert "calmops.drifted_features" not in shown.tags
    assert "**Drift:** not checked" in record.decision_markdown(refused)
    assert "**Decision:** `quarantined`" in record.decision_markdown(refused)  # the word of its folder
