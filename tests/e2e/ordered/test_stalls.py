"""A run that waits and never starts does not stall its pipeline: the watcher's watchdog cancels it, counts it
in ``calmops status`` and announces the pipeline's files again (real Prefect server, worker and watcher; the
package's stack calls a run stalled after ``STALL_AFTER`` s).

The stalled run is made the way a worker-side failure leaves one: a run of the pipeline's deployment, moved to
Pending (which takes the pipeline's concurrency slot) on a paused work queue, so no worker ever starts it.
"""

from __future__ import annotations

import os
from uuid import UUID

import pytest

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.ordered.conftest import STALL_AFTER
from tests.e2e.stack import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_a_run_left_pending_is_cancelled_and_the_file_behind_it_is_decided_once(live):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.states import Pending
    from typer.testing import CliRunner

    from calmops.core.store import ledger, pipeline_paths, read_spec, save_spec, spec_from_dict
    from calmops.deployments.cli import app
    from calmops.deployments.deploy import deploy_pipeline

    name = "stall-pending"
    save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)
    deployment_id = deploy_pipeline(name).deployment_id
    paths = pipeline_paths(read_spec(name)).ensure()
    with get_client(sync_client=True) as client:
        queue = client.create_work_queue("nobody-polls", is_paused=True, work_pool_name=os.environ["CALMOPS_WORK_POOL"])
        stuck = client.create_flow_run_from_deployment(
            UUID(deployment_id), parameters={"pipeline": name, "path": str(paths.incoming / "ghost.csv")},
            work_queue_name=queue.name)
        accepted = client.set_flow_run_state(stuck.id, Pending())  # orchestrated: it takes the slot
        assert accepted.status.value == "ACCEPT", accepted

    sea_frame(600, 8, seed=900).to_csv(paths.incoming / "f.csv", index=False)
    until(lambda: any(e["file"] == "f.csv" and e["status"] == "done" for e in ledger(paths).entries()), 300,
          "f.csv to be decided after the stalled run is recovered", interval=2)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(stuck.id).state
    assert state.is_cancelled() and "stalled" in (state.message or ""), state
    tried = [r for r in MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_runs(
        [MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_experiment_by_name(f"calmops/{name}").experiment_id])
        if r.data.tags.get("calmops.file") == "f.csv"]
    # decided once. The file's first run, cancelled while it waited for the slot, may already have been in a
    # worker's process that Prefect lets start and then stops (its slot lease revoked): its MLflow run is closed
    # without a decision (KILLED when stopped, FAILED when a step broke), and the run announced again decides
    # the file
    decisions = [r.data.tags.get("calmops.decision") for r in tried]
    assert [d for d in decisions if d not in (None, "failed")] == ["train"], decisions
    assert all(r.info.status in ("KILLED", "FAILED") for r in tried if "calmops.decision" not in r.data.tags), tried
    shown = " ".join(CliRunner().invoke(app, ["status", name], terminal_width=400).output.split())
    assert "stalled runs recovered" in shown and f"no run of stall-pending has run for {STALL_AFTER} s" in shown, shown


def test_a_run_whose_deployment_was_deleted_is_cancelled_and_the_worker_goes_on_with_other_pipelines(live):
    """A deployment deleted while a run of it was handed to a worker (Pending; the server deletes only the runs
    still Scheduled): the run can never start. The worker goes on with the other pipelines' runs, and the
    watchdog recovers the orphan (cancelled, or deleted where Prefect's server refuses to cancel a run whose
    deployment is gone), with the reason counted in ``calmops status``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Pending
    from typer.testing import CliRunner

    from calmops.core.store import ledger, pipeline_paths, read_spec, save_spec, spec_from_dict
    from calmops.deployments.cli import app
    from calmops.deployments.deploy import deploy_pipeline

    gone, alive = "stall-deleted", "stall-alive"
    for name in (gone, alive):
        save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)
    deployment_id = deploy_pipeline(gone).deployment_id
    deploy_pipeline(alive)
    incoming = pipeline_paths(read_spec(gone)).ensure().incoming
    with get_client(sync_client=True) as client:
        queue = client.create_work_queue("nobody-polls-either", is_paused=True,
                                         work_pool_name=os.environ["CALMOPS_WORK_POOL"])
        orphan = client.create_flow_run_from_deployment(
            UUID(deployment_id), parameters={"pipeline": gone, "path": str(incoming / "never.csv")},
            work_queue_name=queue.name)
        assert client.set_flow_run_state(orphan.id, Pending()).status.value == "ACCEPT"
        client.delete_deployment(UUID(deployment_id))

    alive_paths = pipeline_paths(read_spec(alive)).ensure()
    sea_frame(600, 8, seed=901).to_csv(alive_paths.incoming / "a.csv", index=False)
    until(lambda: any(e["file"] == "a.csv" and e["status"] == "done" for e in ledger(alive_paths).entries()), 300,
          "a file of another pipeline to be decided after the deployment was deleted", interval=2)

    def orphan_state():
        with get_client(sync_client=True) as client:
            try:
                return client.read_flow_run(orphan.id).state
            except ObjectNotFound:
                return None  # deleted: Prefect's server could not cancel it without its deployment

    def recovered():
        state = orphan_state()  # read once: the watchdog may delete the run between two reads
        return (True, state) if state is None or state.is_final() else None

    _, state = until(recovered, 300, "the orphan to be recovered", interval=2)
    assert state is None or (state.is_cancelled() and "its deployment no longer exists" in (state.message or "")), state
    shown = " ".join(CliRunner().invoke(app, ["status", gone], terminal_width=400).output.split())
    assert "stalled runs recovered" in shown and "its deployment no longer exists" in shown, shown


def _deployed(name: str):
    """A stream pipeline ``name``, created and deployed on the package's stack; its folders."""
    from calmops.core.store import pipeline_paths, read_spec, save_spec, spec_from_dict
    from calmops.deployments.deploy import deploy_pipeline

    save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)
    deploy_pipeline(name)
    return pipeline_paths(read_spec(name)).ensure()


def test_a_worker_that_takes_no_runs_is_restarted_and_the_file_is_decided_once(live):
    """The worker hangs (frozen here with SIGSTOP; a worker that polls and never submits looks the same from
    Prefect's side): the file's run waits Late while nothing runs. The watchdog cancels the run, restarts this
    machine's worker and announces the file again; the new worker decides it once, and ``calmops status``
    counts the restart with its reason."""
    import signal

    from typer.testing import CliRunner

    from calmops.core.settings import get_settings
    from calmops.core.store import ledger
    from calmops.deployments import stack
    from calmops.deployments.cli import app

    paths = _deployed("stall-worker")
    settings = get_settings()
    hung = stack.running_pid(settings, "worker")
    os.kill(hung, signal.SIGSTOP)
    try:
        sea_frame(600, 8, seed=902).to_csv(paths.incoming / "h.csv", index=False)
        try:
            until(lambda: any(e["file"] == "h.csv" and e["status"] == "done" for e in ledger(paths).entries()),
                  420, "h.csv to be decided by a restarted worker", interval=2)
        except AssertionError as exc:  # say what the watchdog and the worker did
            tails = {n: stack.log_file(settings, n).read_text()[-4000:] for n in ("watcher", "worker")}
            raise AssertionError(f"{exc}\n" + "\n".join(f"--- {n} log ---\n{t}" for n, t in tails.items())) from None
    finally:
        if stack.running_pid(settings, "worker") == hung:
            os.kill(hung, signal.SIGCONT)  # the package's other tests need a worker
    assert stack.running_pid(settings, "worker") not in (None, hung)
    assert [e["status"] for e in ledger(paths).entries() if e["file"] == "h.csv"] == ["done"]
    assert "restarting it" in stack.log_file(settings, "watcher").read_text()
    shown = " ".join(CliRunner().invoke(app, ["status"], terminal_width=400).output.split())
    assert "worker restarts by the watcher: 1" in shown and f"no run of any pipeline has run for {STALL_AFTER} s" in shown, shown


def test_a_worker_that_exited_is_started_again_and_the_file_waiting_for_it_is_decided_once(live):
    """A Prefect worker exits when its server's database stays out of reach for half a minute (killed here):
    under `calmops up` nothing else starts it again. The watcher sees it gone at two checks in a row, starts a
    new one, and the file dropped meanwhile is decided once. A run the dead worker had taken (Pending, made
    here by hand: no worker starts a Pending run) held the pipeline's slot; it is cancelled at the check after the
    one that found the worker gone, not after the stall bound."""
    import signal
    import time

    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    from calmops.core.settings import get_settings
    from calmops.core.store import ledger, pipeline_paths, read_spec, save_spec, spec_from_dict
    from calmops.deployments import stack
    from calmops.deployments.deploy import deploy_pipeline

    save_spec(spec_from_dict({**STREAM_SPEC, "name": "dead-worker"}), create=True)
    deployment_id = deploy_pipeline("dead-worker").deployment_id
    paths = pipeline_paths(read_spec("dead-worker")).ensure()
    settings = get_settings()
    gone = stack.running_pid(settings, "worker")
    time.sleep(STALL_AFTER / 2 + 5)  # the watcher checks every STALL_AFTER / 2 s: one check sees this worker run
    with get_client(sync_client=True) as client:
        taken = client.create_flow_run_from_deployment(
            UUID(deployment_id), parameters={"pipeline": "dead-worker", "path": str(paths.incoming / "taken.csv")})
        assert client.set_flow_run_state(taken.id, Pending()).status.value == "ACCEPT"  # it holds the slot
    os.kill(gone, signal.SIGKILL)
    killed = time.monotonic()
    sea_frame(600, 8, seed=903).to_csv(paths.incoming / "d.csv", index=False)
    try:
        until(lambda: any(e["file"] == "d.csv" and e["status"] == "done" for e in ledger(paths).entries()),
              420, "d.csv to be decided by a worker started again", interval=2)
    except AssertionError as exc:  # say what the watcher did
        tail = stack.log_file(settings, "watcher").read_text()[-4000:]
        raise AssertionError(f"{exc}\n--- watcher log ---\n{tail}") from None
    assert stack.running_pid(settings, "worker") not in (None, gone)
    assert [e["status"] for e in ledger(paths).entries() if e["file"] == "d.csv"] == ["done"]
    assert f"the worker (pid {gone}) has exited" in stack.log_file(settings, "watcher").read_text()
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(taken.id).state
    # cancelled two checks after the kill at most (within the stall bound)
    assert state.is_cancelled() and f"taken by the worker (pid {gone}), which exited" in state.message, state
    assert (state.timestamp.timestamp() - time.time()) + (time.monotonic() - killed) < 2 * STALL_AFTER, state
