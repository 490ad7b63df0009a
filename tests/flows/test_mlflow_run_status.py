"""The status of a file's MLflow run tells where its decision stands: RUNNING until the decision is recorded,
then FINISHED; FAILED for a run that failed; KILLED for one stopped on the way (its file goes back to wait).

The runs go through the flows' shared body (:func:`calmops.flows.common.run_one_file`) with the stream kind's
own processing, on Prefect's test server and MLflow in SQLite; only the processing is wrapped, to look at the
run in the middle or to stop it there.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from calmops.core.names import Decision
from calmops.flows.common import RunFailed, run_one_file
from calmops.flows.stream import process_stream_file
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming

pytestmark = pytest.mark.integration


def status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def test_a_run_is_running_between_its_steps_and_finished_once_decided(prefect_server, stream_spec):
    seen = {}

    def look_then_process(ctx, champion, batch):
        # the batch is read and logged into the run (an MLflow step ended): the decision is still to come
        seen[ctx.mlflow_run_id] = status(ctx.mlflow_run_id)
        return process_stream_file(ctx, champion, batch)

    path = write_csv(sea_frame(600, 8.0, seed=41), incoming("sea"), "a.csv")
    outcome = run_one_file("sea", path, None, look_then_process)

    assert outcome["decision"] == Decision.TRAIN
    assert seen == {outcome["mlflow_run_id"]: "RUNNING"}
    assert status(outcome["mlflow_run_id"]) == "FINISHED"


def test_a_run_that_failed_ends_failed_with_its_reason(prefect_server, stream_spec):
    def broken(ctx, champion, batch):
        raise ValueError("the model cannot read column x1")

    path = write_csv(sea_frame(600, 8.0, seed=42), incoming("sea"), "b.csv")
    with pytest.raises(RunFailed) as failed:
        run_one_file("sea", path, None, broken)

    run = MlflowClient().get_run(failed.value.outcome.mlflow_run_id)
    assert run.info.status == "FAILED"  # what MLflow's own "Status: Failed" filter shows
    assert run.data.tags["calmops.decision"] == Decision.FAILED
    assert "the model cannot read column x1" in run.data.tags["calmops.reason"]


def test_a_run_stopped_on_the_way_ends_killed_and_its_file_waits_again(prefect_server, stream_spec):
    from calmops.core.store import ledger, pipeline_paths, read_spec

    runs = []

    def stopped(ctx, champion, batch):  # as a cancelled flow run or Ctrl-C in `calmops run`
        runs.append(ctx.mlflow_run_id)
        raise KeyboardInterrupt

    path = write_csv(sea_frame(600, 8.0, seed=43), incoming("sea"), "c.csv")
    with pytest.raises(KeyboardInterrupt):
        run_one_file("sea", path, None, stopped)

    assert [status(r) for r in runs] == ["KILLED"]
    entry = next(e for e in ledger(pipeline_paths(read_spec("sea"))).entries() if e["file"] == "c.csv")
    assert entry["status"] == "pending" and path.exists()
    logged = (pipeline_paths(read_spec("sea")).logs / "pipeline.log").read_text()
    assert "run for c.csv was stopped before it decided (KeyboardInterrupt)" in logged, logged[-1000:]
