"""Which queued runs the watcher's watchdog calls stalled (calmops.deployments.stalls.stalled_among).

The runs are plain objects with the fields of Prefect's FlowRun that the rule reads; the end-to-end test
(tests/e2e/ordered/test_stalls.py) recovers a real stalled run on the running stack.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

from calmops.deployments.stalls import stalled_among

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEPLOYMENT = uuid4()


def run(pipeline: str, state: str = "Late", kind: str = "SCHEDULED", waited: float = 400, *,
        deployment=DEPLOYMENT, pending_for: float | None = None):
    since = NOW - timedelta(seconds=waited)
    return SimpleNamespace(
        id=uuid4(), name=f"stream/{pipeline}/f.csv", parameters={"pipeline": pipeline, "path": "/x/f.csv"},
        deployment_id=deployment, work_queue_name="default", created=since, expected_start_time=since,
        state=SimpleNamespace(name=state, type=SimpleNamespace(value=kind),
                              timestamp=NOW - timedelta(seconds=pending_for if pending_for is not None else waited)))


def test_a_late_run_while_the_worker_takes_nothing_at_all_is_stalled():
    [found] = stalled_among([run("a")], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300)
    assert (found.pipeline, found.state) == ("a", "Late")
    assert found.reason == "Late for 400 s and no run of any pipeline has run for 300 s"


def test_a_late_run_waiting_for_a_free_worker_slot_while_other_pipelines_run_is_not_stalled():
    assert stalled_among([run("a")], busy={"b"}, deployments={DEPLOYMENT}, now=NOW, after=300,
                         worker_idle=False) == []


def test_a_run_waiting_for_its_pipelines_slot_while_its_pipeline_does_nothing_is_stalled():
    waiting = run("a", state="AwaitingConcurrencySlot")
    [found] = stalled_among([waiting], busy={"b"}, deployments={DEPLOYMENT}, now=NOW, after=300, worker_idle=False)
    assert found.reason == "AwaitingConcurrencySlot for 400 s and no run of a has run for 300 s"


def test_a_run_waiting_its_turn_behind_a_run_making_progress_is_not_stalled():
    for state in ("Late", "AwaitingConcurrencySlot"):
        assert stalled_among([run("a", state=state)], busy={"a"}, deployments={DEPLOYMENT}, now=NOW, after=300,
                             worker_idle=False) == []


def test_a_run_within_the_bound_is_not_stalled():
    assert stalled_among([run("a", waited=299)], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300) == []


def test_a_pending_run_counts_from_when_it_became_pending():
    created_long_ago = run("a", state="Pending", kind="PENDING", waited=3600, pending_for=60)
    assert stalled_among([created_long_ago], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300) == []
    stuck = run("a", state="Pending", kind="PENDING", waited=3600, pending_for=301)
    [found] = stalled_among([stuck], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300)
    assert found.reason.startswith("Pending for 301 s")


def test_a_run_whose_deployment_is_gone_is_stalled_even_behind_progress():
    gone = run("a", deployment=uuid4())
    [found] = stalled_among([gone], busy={"a"}, deployments={DEPLOYMENT}, now=NOW, after=300)
    assert found.reason.endswith("its deployment no longer exists")
    assert found.deployment_gone  # recovery may delete it where Prefect's server refuses to cancel it
    [found] = stalled_among([run("a", deployment=None)], busy={"a"}, deployments=set(), now=NOW, after=300)
    assert found.reason.endswith("its deployment no longer exists") and found.deployment_gone
    [found] = stalled_among([run("a")], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300)
    assert not found.deployment_gone  # a run of a live deployment is only ever cancelled


def test_a_run_scheduled_for_later_is_not_waiting_yet():
    later = run("a", waited=3600)
    later.expected_start_time = NOW + timedelta(minutes=30)  # a scheduled scan, created an hour ago
    assert stalled_among([later], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300) == []


def test_runs_that_are_not_a_files_are_left_alone():
    other = run("a")
    other.parameters = {}
    scan = run("a")
    scan.parameters = {"pipeline": "a"}  # a scheduled scan of the pipeline's folder
    assert stalled_among([other, scan], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300) == []


def test_runs_waiting_behind_a_run_handed_to_the_worker_moments_ago_are_not_stalled():
    behind = run("a", state="AwaitingConcurrencySlot", waited=400)
    handed = run("a", state="Pending", kind="PENDING", waited=400, pending_for=20)
    assert stalled_among([behind, handed], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300,
                         worker_idle=False) == []


def test_a_late_run_on_a_live_queue_while_nothing_runs_says_the_worker_is_stuck():
    [found] = stalled_among([run("a")], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300, paused=set())
    assert found.worker_stuck  # the watchdog restarts this machine's worker


def test_the_worker_is_not_called_stuck_for_runs_it_must_not_take_or_that_wait_behind_their_pipeline():
    on_paused_queue = run("a")
    [found] = stalled_among([on_paused_queue], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300,
                            paused={"default"})
    assert not found.worker_stuck  # the user paused the queue: cancelled and announced again, worker left alone
    [found] = stalled_among([run("a")], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300, paused=None)
    assert not found.worker_stuck  # the whole pool is paused
    for behind in (run("a", state="AwaitingConcurrencySlot"), run("a", state="Pending", kind="PENDING")):
        [found] = stalled_among([behind], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300, paused=set())
        assert not found.worker_stuck  # the worker took it; a run ahead holds the pipeline's slot
    [found] = stalled_among([run("a", deployment=uuid4())], busy=set(), deployments={DEPLOYMENT}, now=NOW,
                            after=300, paused=set())
    assert not found.worker_stuck  # no worker can start a run whose deployment is gone


def test_a_worker_the_stack_does_not_run_here_is_not_restarted(calmops_home):
    from calmops.deployments.stalls import restart_worker, worker_restarts

    assert restart_worker("Late for 400 s and no run of any pipeline has run for 300 s") is None
    assert worker_restarts() == {"count": 0, "last": None}
