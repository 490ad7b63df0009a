"""A pipeline's turn gives way to pipelines waiting for a worker, without breaking arrival order.

The rule (:func:`calmops.flows.fair_turns.give_way`) is checked on Prefect's own flow-run objects; the turn
itself on real flow runs (Prefect test server, MLflow in SQLite), with the waiting runs made in that server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, State, StateDetails, StateType

from calmops.core.names import EVENT, TAG, pipeline_tag
from calmops.core.store import sha256_of
from calmops.flows.fair_turns import DUE_FOR, GiveWay, give_way, step_back, turn_budget

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INCOMING = Path("/data/pipelines/mine/incoming")


def flow_run(pipeline: str, path: Path, state: str = "Scheduled", waited: float = 60.0) -> FlowRun:
    kind = {"Running": StateType.RUNNING, "Pending": StateType.PENDING}.get(state, StateType.SCHEDULED)  # Late, …
    due = NOW - timedelta(seconds=waited)
    return FlowRun(flow_id=uuid4(), name=f"{pipeline}-{path.name}", parameters={"pipeline": pipeline, "path": str(path)},
                   state=State(type=kind, name=state, state_details=StateDetails(scheduled_time=due)),
                   expected_start_time=due, next_scheduled_start_time=due if kind == StateType.SCHEDULED else None)


def test_gives_way_when_another_pipeline_waits_for_a_worker_and_a_file_left_has_its_own_run():
    scan = flow_run("mine", INCOMING / "scan", waited=-600)  # the pipeline's scheduled scan, due in 10 minutes
    scan.parameters.pop("path")
    runs = [flow_run("mine", INCOMING / "b.csv"), flow_run("other", Path("/data/pipelines/other/incoming/x.csv"), "Late"),
            scan]
    way = give_way(runs, "mine", INCOMING, ["b.csv", "c.csv"], now=NOW)
    assert way is not None and way.starving == ("other",) and way.next_run == "mine-b.csv"
    assert [r.name for r in way.queued] == ["mine-b.csv"]  # moved behind "other"; the scan keeps its time
    assert "other" in way.reason(61) and "mine-b.csv" in way.reason(61)


def test_no_way_is_given_to_a_paused_pipeline_whose_queued_runs_would_only_end_held(tmp_path, monkeypatch):
    from calmops.core import pause

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    runs = [flow_run("mine", INCOMING / "b.csv"), flow_run("other", Path("/data/pipelines/other/incoming/x.csv"), "Late")]
    assert give_way(runs, "mine", INCOMING, ["b.csv"], now=NOW) is not None
    pause.pause("other")
    assert give_way(runs, "mine", INCOMING, ["b.csv"], now=NOW) is None


def test_the_turn_goes_to_the_run_of_the_oldest_file_left_whatever_order_the_api_lists_them_in():
    """The API lists runs by id, a random order. Workers take the run due first, and the turn schedules its
    pipeline's queued runs again one after the other: the run of the oldest file left must come first (it takes
    the turn and decides that file first), the others in their files' arrival order, and a run of no file left
    last."""
    runs = [flow_run("mine", INCOMING / "gone.csv"), flow_run("mine", INCOMING / "d.csv"),
            flow_run("other", Path("/o/x.csv"), "Late"), flow_run("mine", INCOMING / "b.csv"),
            flow_run("mine", INCOMING / "c.csv", "AwaitingConcurrencySlot")]
    way = give_way(runs, "mine", INCOMING, ["b.csv", "c.csv", "d.csv"], now=NOW)
    assert way is not None and way.next_run == "mine-b.csv"
    assert [r.name for r in way.queued] == ["mine-b.csv", "mine-c.csv", "mine-d.csv", "mine-gone.csv"]


def test_the_runs_the_deployments_limit_bounced_while_the_turn_was_held_are_moved_too():
    """A worker tried ``c.csv``'s run while this turn held the pipeline's deployment slot: Prefect put it back
    AwaitingConcurrencySlot. Once the turn ends a worker takes it, so it goes behind the starving pipeline."""
    runs = [flow_run("mine", INCOMING / "c.csv", "AwaitingConcurrencySlot", waited=-3), flow_run("mine", INCOMING / "d.csv"),
            flow_run("other", Path("/o/x.csv"), "Late")]
    way = give_way(runs, "mine", INCOMING, ["c.csv", "d.csv"], now=NOW)
    assert way is not None and {r.name for r in way.queued} == {"mine-c.csv", "mine-d.csv"}


@pytest.mark.parametrize("others", [
    [],  # nobody waits
    [flow_run("other", Path("/o/x.csv")), flow_run("other", Path("/o/y.csv"), "Running")],  # it runs: it waits for its turn
    [flow_run("other", Path("/o/x.csv"), waited=DUE_FOR / 2)],  # just made: a worker may take it at its next poll
    [flow_run("mine", INCOMING / "z.csv", "Late")],  # only this pipeline's own runs wait
    # a free worker slot would not start these: one waits for its deployment's slot (held by a run that died),
    # one for the retry its own process makes
    [flow_run("other", Path("/o/x.csv"), "AwaitingConcurrencySlot"), flow_run("third", Path("/t/x.csv"), "AwaitingRetry")],
])
def test_keeps_the_turn_when_no_other_pipeline_is_starved(others):
    runs = [flow_run("mine", INCOMING / "b.csv"), *others]
    assert give_way(runs, "mine", INCOMING, ["b.csv"], now=NOW) is None


@pytest.mark.parametrize("own", [
    [],  # the files left were found by a scan: none has a run
    [flow_run("mine", INCOMING / "gone.csv")],  # a run whose file is not among those left
    [flow_run("mine", Path("/elsewhere/b.csv"))],  # the same name in another folder
])
def test_announces_the_oldest_file_left_when_none_has_a_queued_run(own):
    """A scan announces only a pipeline's oldest waiting file, so files found by one have no runs: the turn
    names the oldest file left for an announcement of its own, whose run takes the turn after the waiting
    pipeline."""
    runs = [flow_run("mine", INCOMING / "a.csv", "Running"), *own, flow_run("other", Path("/o/x.csv"), "Late")]
    way = give_way(runs, "mine", INCOMING, ["b.csv", "c.csv"], now=NOW)  # a.csv: this turn's own, decided
    assert way is not None and way.announce == "b.csv" and way.next_run is None and way.starving == ("other",)
    assert [r.name for r in way.queued] == [r.name for r in own]  # its queued runs still go behind "other"
    assert "b.csv is announced" in way.reason(61) and "other" in way.reason(61)


@pytest.mark.parametrize("own", [
    [flow_run("mine", INCOMING / "b.csv", "Running")],  # started (waits for this turn): it takes the turn next
    [flow_run("mine", INCOMING / "c.csv", "Pending")],
    [flow_run("mine", INCOMING / "b.csv", "AwaitingRetry")],  # its own process makes the retry
])
def test_keeps_the_turn_when_a_run_of_a_file_left_has_started_or_awaits_its_retry(own):
    runs = [*own, flow_run("other", Path("/o/x.csv"), "Late")]
    assert give_way(runs, "mine", INCOMING, ["b.csv", "c.csv"], now=NOW) is None


def test_the_budget_comes_from_the_environment_and_a_bad_value_falls_back_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "15")
    assert turn_budget() == 15
    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "a minute")
    assert turn_budget() == 60
    assert "CALMOPS_TURN_BUDGET='a minute'" in caplog.text


def announced_since(since: datetime, timeout: float = 30.0):
    """The one file event the Prefect server has stored since ``since`` (the server stores events a moment
    after they are sent)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.monotonic() + timeout
    while True:
        # made anew each time: the filter's end defaults to the moment it is made
        wanted = EventFilter(event=EventNameFilter(name=[EVENT]), occurred=EventOccurredFilter(since=since))
        with get_client(sync_client=True) as client:
            events = client.read_events(wanted, limit=50).events  # the server takes 50 at most
        if events or time.monotonic() > deadline:
            assert len(events) == 1, events
            return events[0]
        time.sleep(0.5)


def queue_as_the_automation(pipeline: str, path: Path, due: datetime | None = None):
    """The file's queued run, as the pipeline's automation makes it: a flow run of a deployment (the pipeline
    kind's flow), Scheduled for ``due`` (now by default), that no worker has taken yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Scheduled

    from calmops.flows import flow_for

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="fair-turns", type="process"), overwrite=True)
        deployment = client.create_deployment(client.create_flow(flow_for("stream")), "fair-turns",
                                              work_pool_name="fair-turns")
        return client.create_flow_run_from_deployment(
            deployment, parameters={"pipeline": pipeline, "path": str(path)}, tags=[TAG, pipeline_tag(pipeline)],
            state=Scheduled(scheduled_time=due or datetime.now(UTC)))


def starved_run(client, due: datetime):
    """Another pipeline's run, waiting for a worker since ``due`` (a stand-in flow: only its queued run is
    listed, it is never run)."""
    from prefect import flow
    from prefect.states import Scheduled

    @flow(name="calmops-fair-turn-stand-in")
    def stand_in(pipeline: str, path: str) -> None:
        return None

    return client.create_flow_run(stand_in, parameters={"pipeline": "starved",
                                                       "path": "/data/pipelines/starved/incoming/x.csv"},
                                  tags=[TAG, pipeline_tag("starved")], state=Scheduled(scheduled_time=due))


def run_queued(flow_run) -> dict:
    """A queued run of a deployment, as a worker starts it (run here)."""
    from prefect.flow_engine import run_flow

    from calmops.flows import flow_for

    return run_flow(flow_for("stream"), flow_run=flow_run, parameters=flow_run.parameters,
                    return_type="state").result()


def run_as_a_worker(pipeline: str, path: Path) -> dict:
    """The file's run as a worker starts it: a flow run of a deployment (the pipeline kind's flow), run here."""
    return run_queued(queue_as_the_automation(pipeline, path))


@pytest.mark.integration
def test_a_turn_gives_way_then_the_queued_run_decides_the_rest_in_arrival_order(prefect_server, stream_spec,
                                                                                monkeypatch):
    """Four files wait; another pipeline's run has waited a minute for a worker; ``c.csv`` has a queued run.
    The run of ``a.csv`` decides its own file, gives the turn up and schedules ``c.csv``'s run behind the
    waiting one (a worker takes the run due first). Started later, ``c.csv``'s run decides ``b.csv``; the other
    pipeline still waits and the budget is spent, so it gives way before its own file too. No file left has a
    queued run (``d.csv`` has none, as if a scan had found it), so that turn announces the oldest file left,
    ``c.csv`` (the watcher's event, what makes a run through the pipeline's automation), and its run ends
    ``held``, the file waiting. The announced run then decides ``c.csv`` and ``d.csv``."""
    from prefect.client.orchestration import get_client

    from tests.flows.helpers import incoming, run
    from tests.flows.test_arrival_order import arrive, claim_order

    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "0.001")
    book, files = arrive(incoming("sea"), ["a.csv", "b.csv", "c.csv", "d.csv"])
    due = datetime.now(UTC) - timedelta(seconds=60)
    with get_client(sync_client=True) as client:
        made = [starved_run(client, due), queue_as_the_automation("sea", files["c.csv"], due)]
    try:
        first = run_as_a_worker("sea", files["a.csv"])
        assert first["file"] == "a.csv" and first["decision"] == "train"  # the pipeline's first model
        assert claim_order(book) == ["a.csv"]  # gave way before b.csv
        with get_client(sync_client=True) as client:  # and sent c.csv's queued run behind the starved one
            starved, queued = (client.read_flow_run(r.id) for r in made)
        assert queued.state.name == "Scheduled" and "behind pipeline(s) starved" in queued.state.message
        assert queued.next_scheduled_start_time > starved.next_scheduled_start_time
        assert [e["status"] for e in sorted(book.entries(), key=lambda e: e["file"])] == ["done", "waiting",
                                                                                          "waiting", "waiting"]
        since = datetime.now(UTC) - timedelta(seconds=1)
        later = run_queued(queued)  # the queued run, when a worker takes it
        assert later["file"] == "c.csv" and later["decision"] == "held"
        assert later["details"]["turn_given_up"] == {"to": ["starved"], "next_run": None, "announced": "c.csv"}
        assert claim_order(book) == ["a.csv", "b.csv"]
        assert [e["status"] for e in sorted(book.entries(), key=lambda e: e["file"])] == ["done", "done",
                                                                                          "waiting", "waiting"]
        event = announced_since(since)
        assert event.resource["calmops.pipeline"] == "sea" and event.resource["calmops.pipeline.kind"] == "stream"
        assert event.resource["calmops.file.path"] == str(files["c.csv"])
        assert event.resource["calmops.file.sha256"] == sha256_of(files["c.csv"])
        last = run("sea", files["c.csv"])  # the run the pipeline's automation makes of that event
        assert last["file"] == "c.csv" and last["decision"] not in ("failed", "held")
        assert claim_order(book) == ["a.csv", "b.csv", "c.csv", "d.csv"]
    finally:
        with get_client(sync_client=True) as client:
            for r in made:
                client.delete_flow_run(r.id)


@pytest.mark.integration
def test_a_run_whose_file_is_far_back_gives_the_turn_to_the_run_of_the_oldest_file_left(prefect_server,
                                                                                       stream_spec, monkeypatch):
    """A burst: six files, ``a.csv`` first and ``f.csv`` last, four between them with queued runs of their own,
    their arrival order the reverse of the order the Prefect API lists their runs in; another pipeline's run
    has waited a minute for a worker. Prefect starts ``f.csv``'s run first. With a tiny budget it decides
    ``a.csv`` (a turn always moves the queue on by one file), then gives the turn up instead of deciding the
    whole queue: its own file stays waiting (the run ends ``held``), and the queued runs are scheduled again
    behind the waiting pipeline's in their files' arrival order, so the run of the oldest file left takes the
    turn next. Taken in the order they are due, each queued run decides the oldest file left, its own; every
    file is decided once, in arrival order."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    from calmops.core.flow_runs import runs_in_states
    from tests.flows.helpers import digest, incoming, run, runs_for_sha
    from tests.flows.test_arrival_order import arrive, claim_order

    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "0.001")
    folder = incoming("sea")

    @flow(name="calmops-fair-turn-stand-in")
    def stand_in(pipeline: str, path: str) -> None:  # never run: only its queued run is listed
        return None

    due = datetime.now(UTC) - timedelta(seconds=60)
    made = [queue_as_the_automation("sea", folder / name, due) for name in ("b.csv", "c.csv", "d.csv", "e.csv")]
    with get_client(sync_client=True) as client:
        made.append(client.create_flow_run(stand_in, parameters={"pipeline": "starved",
                                                                 "path": "/data/pipelines/starved/incoming/x.csv"},
                                           tags=[TAG, pipeline_tag("starved")], state=Scheduled(scheduled_time=due)))
        listed = [Path(r.parameters["path"]).name for r in runs_in_states(client, [StateType.SCHEDULED])
                  if r.id in {m.id for m in made[:4]}]
    order = ["a.csv", *reversed(listed), "f.csv"]  # the API's first run is the one whose file arrived last
    book, files = arrive(folder, order)
    sha = {name: digest(path) for name, path in files.items()}  # a decided file moves to processed/

    def queued_by_time() -> list:
        with get_client(sync_client=True) as client:
            runs = [client.read_flow_run(r.id) for r in made[:4]]
        return sorted((r for r in runs if r.state.is_scheduled()), key=lambda r: r.next_scheduled_start_time)

    try:
        last = run_as_a_worker("sea", files["f.csv"])
        assert claim_order(book) == ["a.csv"]  # not the whole queue up to its own file
        assert last["file"] == "f.csv" and last["decision"] == "held"
        assert last["details"]["held_behind"] == order[1]
        assert last["details"]["turn_given_up"]["to"] == ["starved"]
        assert book.status(sha["f.csv"]) == "waiting"
        queued = queued_by_time()
        assert [Path(r.parameters["path"]).name for r in queued] == order[1:5]  # oldest file's run first
        assert last["details"]["turn_given_up"]["next_run"] == queued[0].name
        with get_client(sync_client=True) as client:
            starved = client.read_flow_run(made[4].id)
        assert all(r.next_scheduled_start_time > starved.next_scheduled_start_time for r in queued)
        for i, name in enumerate(order[1:5], start=2):  # a worker takes the run due first, each time
            taken = queued_by_time()[0]
            assert Path(taken.parameters["path"]).name == name
            outcome = run_queued(taken)
            assert outcome["file"] == name and outcome["decision"] not in ("failed", "held", "duplicate")
            assert claim_order(book) == order[:i]
        # f.csv's run has ended: the last turn announced f.csv, and the run of that event decides it
        assert run("sea", files["f.csv"])["decision"] not in ("failed", "held", "duplicate")
        assert claim_order(book) == order
        assert [len(runs_for_sha("sea", sha[name])) for name in order] == [1] * len(order)  # once each
    finally:
        with get_client(sync_client=True) as client:
            for r in made:
                client.delete_flow_run(r.id)


@pytest.mark.integration
def test_a_run_by_hand_keeps_its_turn_while_another_pipeline_waits_for_a_worker(prefect_server, stream_spec,
                                                                                 monkeypatch):
    """``calmops run`` holds no worker slot: ending its turn early would free nothing (and with the stack down
    nothing would decide the files it left), so it decides every waiting file, as with no budget."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from tests.flows.helpers import incoming, run
    from tests.flows.test_arrival_order import arrive, claim_order

    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "0.001")
    book, files = arrive(incoming("sea"), ["a.csv", "b.csv", "c.csv"])

    @flow(name="calmops-fair-turn-stand-in")
    def stand_in(pipeline: str, path: str) -> None:  # never run: only its queued run is listed
        return None

    with get_client(sync_client=True) as client:
        starved = client.create_flow_run(
            stand_in, parameters={"pipeline": "starved", "path": "/data/pipelines/starved/incoming/x.csv"},
            tags=[TAG, pipeline_tag("starved")], state=Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=1)))
    try:
        assert run("sea", files["a.csv"])["decision"] == "train"
        assert claim_order(book) == ["a.csv", "b.csv", "c.csv"]
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(starved.id)


@pytest.mark.integration
def test_a_queued_run_a_worker_took_meanwhile_is_not_scheduled_again(prefect_server, tmp_path):
    """The runs were listed Scheduled; by the time the turn moves them, one has been taken (Running here). The
    server itself would accept Scheduled over Running (and a worker would then start the run twice), so
    :func:`step_back` reads each run first: it moves the one still waiting and leaves the running one alone."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Running, Scheduled

    from calmops.core.logs import RunLog

    @flow(name="calmops-fair-turn-stand-in")
    def stand_in(pipeline: str, path: str) -> None:  # never run: its runs' states are set by hand
        return None

    due = datetime.now(UTC) - timedelta(seconds=60)
    with get_client(sync_client=True) as client:
        waiting, taken = (client.create_flow_run(stand_in, parameters={"pipeline": "mine", "path": f"/in/{f}"},
                                                 tags=[TAG, pipeline_tag("mine")], state=Scheduled(scheduled_time=due))
                          for f in ("w.csv", "t.csv"))
        for state in (Pending(), Running()):
            assert client.set_flow_run_state(taken.id, state).status.value == "ACCEPT"
    try:
        way = GiveWay(starving=("other",), next_run=waiting.name, queued=(waiting, taken))  # as listed: both waiting
        assert step_back(way, RunLog("mine", tmp_path)) == 1
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(taken.id).state.is_running()
            moved = client.read_flow_run(waiting.id)
            assert moved.state.name == "Scheduled" and "behind pipeline(s) other" in moved.state.message
            # what the read prevents: the server takes Scheduled over a running run without a word
            assert client.set_flow_run_state(taken.id, Scheduled()).status.value == "ACCEPT"
    finally:
        with get_client(sync_client=True) as client:
            for r in (waiting, taken):
                client.delete_flow_run(r.id)
