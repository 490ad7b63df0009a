"""Which queued runs the watcher's watchdog calls stalled (calmops.deployments.stalls.stalled_among).

The runs are plain objects with the fields of Prefect's FlowRun that the rule reads; the end-to-end test
(tests/e2e/ordered/test_stalls.py) recovers a real stalled run on the running stack.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

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


def test_a_run_waiting_for_its_kinds_deployment_while_another_pipeline_of_the_kind_runs_is_not_stalled():
    """prefect.yaml's deployments run every pipeline of a kind, one at a time: a run of pipeline a waiting for
    the deployment's slot while b's runs of that deployment make progress waits its turn (it was cancelled as
    stalled, its file announced again, and a third run made). Behind a deployment that does nothing, stalled."""
    kind_deployment = uuid4()
    waiting = run("a", state="AwaitingConcurrencySlot", deployment=kind_deployment)
    assert stalled_among([waiting], busy={"b"}, deployments={kind_deployment}, now=NOW, after=300,
                         worker_idle=False, busy_deployments={kind_deployment}) == []
    [found] = stalled_among([waiting], busy={"b"}, deployments={kind_deployment}, now=NOW, after=300,
                            worker_idle=False, busy_deployments={DEPLOYMENT})
    assert found.pipeline == "a"


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


def test_a_worker_the_stack_started_that_exited_is_started_again_and_a_supervised_one_is_left_alone(
        calmops_home, monkeypatch):
    """A Prefect worker exits when its server's database stays out of reach for half a minute; under `calmops
    up` nothing else would start it again, and files would wait for ever. Seen running, then gone at two checks
    in a row (a supervisor would have written a new pid by then), it is started again, and again at a later
    check if that start failed. A pid file this watcher never saw run (left from before a reboot, while the user
    runs a worker of their own) is not followed, and a worker `calmops service` runs under PM2 or systemd is its
    supervisor's."""
    import subprocess
    import sys

    from calmops.core.settings import get_settings
    from calmops.deployments import stack, stalls

    settings = get_settings()
    settings.run_dir.mkdir(parents=True)
    calls: list[str] = []
    failing = {"start": True}

    def start(name, settings):
        calls.append(f"start {name}")
        if failing["start"]:
            settings.pid_file(name).unlink(missing_ok=True)  # as stack.start does when the new one exits at once
            raise RuntimeError("worker exited with code 1")

    monkeypatch.setattr(stack, "stop", lambda name, settings, grace=10.0: calls.append(f"stop {name}"))
    monkeypatch.setattr(stack, "start", start)
    for name, value in (("_restarted_at", -float("inf")), ("_restarting", None), ("_dead_worker", None),
                        ("_alive_worker", None), ("_revive_failed", False)):
        monkeypatch.setattr(stalls, name, value)
    noted: list[str] = []  # the runs the worker had taken are noted when it is found gone
    monkeypatch.setattr(stalls, "_note_taken", noted.append)

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    settings.pid_file("worker").write_text(str(gone.pid))  # never seen running by this watcher
    assert stalls.revive_dead_worker(after=0.0) is None and stalls.revive_dead_worker(after=0.0) is None
    assert calls == []

    worker = subprocess.Popen(["sleep", "60"])
    settings.pid_file("worker").write_text(str(worker.pid))
    assert stalls.revive_dead_worker(after=0.0) is None  # seen running
    worker.kill()
    worker.wait()
    assert stalls.revive_dead_worker(after=0.0) is None and calls == []  # first seen gone: its supervisor's turn
    assert noted == [f"the worker (pid {worker.pid}), which exited"]
    stalls.revive_dead_worker(after=0.0).join(5)
    assert calls == ["stop worker", "start worker"] and stalls.worker_restarts()["count"] == 1
    assert not settings.pid_file("worker").exists()  # the failed start took the pid file with it
    failing["start"] = False
    stalls.revive_dead_worker(after=0.0).join(5)  # tried again all the same
    assert calls[-1] == "start worker" and len(calls) == 4 and stalls.worker_restarts()["count"] == 2
    assert stalls.revive_dead_worker(after=0.0) is None  # it went well: no pid file, nothing to start

    settings.pid_file("worker").write_text(str(gone.pid))
    stack.supervised_file(settings, "worker").write_text("")  # `calmops service worker` wrote it
    assert stalls.revive_dead_worker(after=0.0) is None and stalls.revive_dead_worker(after=0.0) is None
    assert stalls.restart_worker("Late for 400 s", after=0.0, dead=gone.pid) is None  # nor restarted when stuck
    assert len(calls) == 4


def test_a_stuck_worker_whose_restart_fails_is_started_at_a_later_check(calmops_home, monkeypatch):
    """The stuck worker is stopped and the new one exits at once (its server's database is still out): the pid
    file is gone with it, and a later check starts one all the same."""
    from calmops.core.settings import get_settings
    from calmops.deployments import stack, stalls

    settings = get_settings()
    settings.run_dir.mkdir(parents=True)
    starts = []

    def start(name, settings):
        starts.append(name)
        if len(starts) == 1:
            raise RuntimeError("worker exited with code 1")

    monkeypatch.setattr(stack, "running_pid", lambda settings, name: 4242)
    monkeypatch.setattr(stack, "stop", lambda name, settings, grace=10.0: None)
    monkeypatch.setattr(stack, "start", start)
    for name, value in (("_restarted_at", -float("inf")), ("_restarting", None), ("_dead_worker", None),
                        ("_alive_worker", None), ("_revive_failed", False)):
        monkeypatch.setattr(stalls, name, value)
    noted: list[str] = []
    monkeypatch.setattr(stalls, "_note_taken", noted.append)
    stalls.restart_worker("Late for 400 s and no run of any pipeline has run", after=0.0).join(5)
    assert starts == ["worker"] and not settings.pid_file("worker").exists()
    assert noted == ["the stuck worker (pid 4242), stopped"]  # the runs it had taken, before it was stopped
    stalls.revive_dead_worker(after=0.0).join(5)
    assert starts == ["worker", "worker"]


class SlowStart:
    """Stands in for the stack's worker (its pid, stop and start): ``start`` blocks until released, as a worker
    on a busy machine can take a minute before it polls."""

    def __init__(self):
        import threading

        self.released = threading.Event()
        self.stops = self.starts = 0

    def running_pid(self, settings, name):
        return 4242

    def stop(self, name, settings, grace=10.0):
        self.stops += 1

    def start(self, name, settings):
        self.starts += 1
        self.released.wait(30)


def test_a_worker_being_restarted_is_given_its_time_before_it_can_be_called_stuck_again(calmops_home, monkeypatch):
    """While the restarted worker starts, and for ``after`` seconds once it is up, the watchdog neither restarts
    it again (that would start its wait over) nor cancels the runs it is to take; after that it may."""
    import time

    from calmops.deployments import stack, stalls
    from calmops.deployments.stalls import Stalled, recover_stalled, worker_restarts

    after = 0.5
    stuck = Stalled("a", "id-1", "stream/a/f.csv", "Late", 400, "Late for 400 s and no run of any pipeline has run",
                    worker_stuck=True)
    cancelled: list[str] = []
    worker = SlowStart()
    for name in ("running_pid", "stop", "start"):
        monkeypatch.setattr(stack, name, getattr(worker, name))
    monkeypatch.setattr(stalls, "find_stalled", lambda after, taken=None: [stuck])
    monkeypatch.setattr(stalls, "_note_taken", lambda worker: None)
    monkeypatch.setattr(stalls, "find_dead", list)
    monkeypatch.setattr(stalls, "cancel", lambda s: cancelled.append(s.run_id))
    monkeypatch.setattr(stalls, "_restarted_at", -float("inf"))
    monkeypatch.setattr(stalls, "_restarting", None)

    assert recover_stalled(after) == [stuck]  # cancelled, and the worker restarted
    assert cancelled == ["id-1"] and worker_restarts()["count"] == 1
    time.sleep(2 * after)  # longer than ``after`` while the new worker is still starting
    assert recover_stalled(after) == []
    assert cancelled == ["id-1"] and worker_restarts()["count"] == 1 and worker.stops == 1

    worker.released.set()  # the new worker is up
    stalls._restarting.join(5)
    assert recover_stalled(after) == [] and worker_restarts()["count"] == 1  # its ``after`` seconds start now
    time.sleep(2 * after)
    assert recover_stalled(after) == [stuck]  # it had its time and took nothing: restarted again
    assert worker_restarts()["count"] == 2 and cancelled == ["id-1", "id-1"]


@pytest.mark.integration
def test_runs_cancelled_before_they_started_are_no_sign_of_a_working_worker(prefect_server, calmops_home):
    """A Late run on a live queue while the only runs that ended lately were cancelled before they started (by
    the watchdog itself, or by a turn that decided their files): the worker takes nothing. A run that ran and
    ended in that time is a sign it works."""
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Cancelled, Completed, Running, Scheduled

    from calmops.core.names import TAG
    from calmops.core.settings import get_settings
    from calmops.deployments.stalls import find_stalled

    @flow(name="stall-probe")
    def probe(pipeline: str, path: str) -> None:
        pass

    after = 2.0
    with get_client(sync_client=True) as client:
        pool = get_settings().work_pool
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
        flow_id = client.create_flow(probe)
        deployment = client.create_deployment(flow_id, "probe", work_pool_name=pool)

        def make(pipeline: str, state):
            return client.create_flow_run_from_deployment(
                deployment, parameters={"pipeline": pipeline, "path": f"/in/{pipeline}.csv"}, tags=[TAG],
                state=state)

        late = make("late", Scheduled())
        time.sleep(after + 0.5)
        unstarted = make("cancelled", Scheduled())
        client.set_flow_run_state(unstarted.id, Cancelled(), force=True)
        assert client.read_flow_run(unstarted.id).end_time is not None  # Prefect stamps an end all the same

        found = [s for s in find_stalled(after) if s.run_id in (str(late.id), str(unstarted.id))]
        assert [(s.run_id, s.worker_stuck) for s in found] == [(str(late.id), True)], found

        ran = make("ran", Scheduled())
        client.set_flow_run_state(ran.id, Running(), force=True)
        client.set_flow_run_state(ran.id, Completed(), force=True)
        assert [s for s in find_stalled(after) if s.run_id == str(late.id)] == []
        for run in (late, ran):
            client.delete_flow_run(run.id)


def test_a_stuck_worker_is_found_among_many_future_runs_of_scheduled_scans(prefect_server, calmops_home, monkeypatch):
    """Prefect's scheduler keeps up to a hundred future runs per scheduled scan, and its listing is in random id
    order: with more queued runs than the watchdog reads (LISTED), a late file run could be left out, and a hung
    worker was never restarted. Only runs due by the cutoff are read now (here LISTED is 3 against 20 future
    runs, so the late run is found only if the future ones are not read at all)."""
    import time
    from datetime import UTC, datetime, timedelta

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    from calmops.core.flow_runs import runs_in_states
    from calmops.core.names import TAG
    from calmops.core.settings import get_settings
    from calmops.deployments import stalls

    @flow(name="stall-probe-scans")
    def probe(pipeline: str, path: str | None = None) -> None:
        pass

    monkeypatch.setattr(stalls, "LISTED", 3)
    after = 2.0
    with get_client(sync_client=True) as client:
        pool = get_settings().work_pool
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
        deployment = client.create_deployment(client.create_flow(probe), "probe-scans", work_pool_name=pool)
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        future = [client.create_flow_run_from_deployment(deployment, parameters={"pipeline": "scans"}, tags=[TAG],
                                                         state=Scheduled(scheduled_time=tomorrow + timedelta(minutes=i)))
                  for i in range(20)]
        late = client.create_flow_run_from_deployment(
            deployment, parameters={"pipeline": "late", "path": "/in/late.csv"}, tags=[TAG], state=Scheduled())
        time.sleep(after + 0.5)
        try:
            due = runs_in_states(client, [StateType.SCHEDULED], due_before=datetime.now(UTC))
            assert late.id in {r.id for r in due} and not {r.id for r in future} & {r.id for r in due}
            found = [s for s in stalls.find_stalled(after) if s.run_id == str(late.id)]
            assert [s.worker_stuck for s in found] == [True], found
        finally:
            for run in (*future, late):
                client.delete_flow_run(run.id)


def test_a_run_left_running_by_an_outage_that_holds_no_claim_is_found_dead(prefect_server, calmops_home):
    """A run that ended (its claim given back, pending) while Prefect's server was down stays Running there for
    good and keeps its pipeline's slot: every later run of the pipeline waits behind it. It holds no claim and
    has decided nothing for longer than the ledger's lease, and its process has ended, so it is found dead (and
    crashed, which gives the slot back). A run that just gave its claim back, one whose process still runs long
    after it decided (rerunning pending files), one with a live claim, and one waiting for its turn (no ledger
    entry of its own) are not."""
    import sqlite3
    import subprocess

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from calmops.core.names import TAG
    from calmops.core.store import CLAIM_LEASE, ledger, pipeline_paths, save_spec, spec_from_dict
    from calmops.deployments import stalls
    from tests.conftest import STREAM_SPEC

    spec = spec_from_dict(dict(STREAM_SPEC))
    save_spec(spec, create=True)
    book = ledger(pipeline_paths(spec).ensure())

    @flow(name="dead-probe")
    def probe(pipeline: str, path: str) -> None:
        pass

    with get_client(sync_client=True) as client:
        def running(name: str) -> str:
            return str(client.create_flow_run(probe, parameters={"pipeline": "sea", "path": f"/in/{name}"},
                                               tags=[TAG], state=Running()).id)

        names = ("ended.csv", "released.csv", "alive.csv", "live.csv", "turn.csv")
        ended, released, alive, live, turn = (running(n) for n in names)
    content = {name: f"{i}".rjust(64, "0") for i, name in enumerate(names)}
    for name, run_id in zip(names[:4], (ended, released, alive, live), strict=True):
        assert book.claim(content[name], name, run_id)  # owned by this process
    for name in names[:3]:
        book.release(content[name])
    gone = subprocess.Popen(["true"])
    gone.wait()
    long_ago = (datetime.now(UTC) - timedelta(seconds=CLAIM_LEASE + 30)).isoformat(timespec="seconds")
    with sqlite3.connect(book.path) as con:
        con.execute("UPDATE files SET updated=? WHERE file IN ('ended.csv', 'alive.csv')", (long_ago,))
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE file='ended.csv'", (gone.pid,))
    found = {s.run_id: s for s in stalls.find_dead()}
    assert set(found) == {ended}, found
    assert found[ended].dead and "its process has ended, holding no claim" in found[ended].reason
    assert found[ended].reason.endswith("; it had decided no file"), found[ended].reason  # its file was given back
    assert turn not in found  # waiting for its turn: no entry names it


def test_a_run_left_pending_by_a_worker_found_gone_is_stalled_at_the_next_check():
    """A worker killed (or stopped as stuck) after it took a run leaves it Pending, holding its pipeline's slot,
    and no worker starts a run another one took. The runs Pending when the worker was found gone that are still
    Pending since the same moment at the next check wait no more, however short their wait. A run Pending again
    since another moment (taken again), one taken since by a live worker, and one whose deployment is gone (it
    is deleted, as Prefect cannot cancel it) are told apart; no clocks are compared."""
    from calmops.deployments.stalls import Taken

    orphan = run("a", state="Pending", kind="PENDING", waited=45, pending_for=45)
    again = run("c", state="Pending", kind="PENDING", waited=45, pending_for=5)  # Pending anew since the note
    new = run("b", state="Pending", kind="PENDING", waited=20, pending_for=20)  # not Pending when noted
    behind = run("a", state="AwaitingConcurrencySlot", waited=400)  # behind the orphan: its turn comes
    orphaned_gone = run("d", state="Pending", kind="PENDING", waited=45, pending_for=45, deployment=uuid4())
    taken = Taken("the worker (pid 4242), which exited",
                  {str(r.id): r.state.timestamp - timedelta(seconds=r is again) for r in (orphan, again, orphaned_gone)})
    found = stalled_among([orphan, again, new, behind, orphaned_gone], busy=set(), deployments={DEPLOYMENT},
                          now=NOW, after=300, worker_idle=False, taken=taken)
    assert [f.run_id for f in found] == [str(orphan.id), str(orphaned_gone.id)]
    assert "taken by the worker (pid 4242), which exited" in found[0].reason and not found[0].worker_stuck
    assert not found[0].deployment_gone and found[1].deployment_gone  # deleted, as Prefect cannot cancel it
    assert stalled_among([orphan], busy=set(), deployments={DEPLOYMENT}, now=NOW, after=300) == []  # none noted


def test_a_run_that_died_with_its_worker_names_the_file_it_was_deciding_and_those_it_had_decided():
    """Crashed in the Prefect UI with "its process is gone" said nothing of which files the run had got through
    in its turn and which one is left to the next run."""
    from calmops.deployments.stalls import _why_dead

    held = [{"sha256": str(i), "file": f"f{i}.csv", "updated": NOW.isoformat()} for i in range(8)]
    states = {**{str(i): "done" for i in range(7)}, "7": "orphaned"}
    why = _why_dead(held, states, lease=120, now=NOW.timestamp())
    assert why == ("its process is gone (the claim of f7.csv is orphaned: the pipeline's next run decides it); it "
                   "had decided f0.csv, f1.csv, f2.csv, f3.csv, f4.csv and 2 more")
    assert _why_dead(held, {**states, "7": "in_progress"}, lease=120, now=NOW.timestamp()) is None  # it runs

