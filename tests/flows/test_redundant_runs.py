"""Which waiting flow runs a pipeline's turn cancels (calmops.flows.redundant), on Prefect's test server.

The end-to-end test (tests/e2e/ordered/test_arrival_order.py) sees it on the running stack: a burst decided
by one run, the other files' runs cancelled before they start.
"""

from __future__ import annotations

import pytest

from calmops.core.logs import RunLog
from calmops.core.names import pipeline_tag
from calmops.flows.redundant import DECIDED_ELSEWHERE, cancel_redundant_runs

pytestmark = pytest.mark.integration


def test_only_the_waiting_runs_of_the_decided_contents_are_cancelled(prefect_server, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running, Scheduled

    @flow(name="file-run")
    def file_run(pipeline: str, path: str) -> None:
        pass

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "again.csv").write_text("x\n1\n")  # the same name arrived again, with new content: still to decide

    @flow(name="event-run")
    def event_run(pipeline: str, path: str, sha256: str) -> None:
        pass

    def make(pipeline: str, name: str, state, folder=incoming, sha256: str | None = None):
        if sha256:  # as the watcher's event makes it: the file's SHA-256 among the parameters
            return client.create_flow_run(event_run, parameters={"pipeline": pipeline, "path": str(folder / name),
                                                                 "sha256": sha256},
                                          tags=[pipeline_tag(pipeline)], state=state)
        return client.create_flow_run(file_run, parameters={"pipeline": pipeline, "path": str(folder / name)},
                                      tags=[pipeline_tag(pipeline)], state=state)

    with get_client(sync_client=True) as client:
        decider = make("p", "own.csv", Running())
        waiting = make("p", "a.csv", Scheduled())
        awaiting_slot = make("p", "b.csv", Scheduled(name="AwaitingConcurrencySlot"))
        # its event named the content decided: cancelled though a file of that name is in the folder again
        first_bytes = make("p", "again.csv", Scheduled(), sha256="1" * 64)
        untouched = {
            "started already": make("p", "c.csv", Running()),
            "same name, new file": make("p", "again.csv", Scheduled()),
            "not decided": make("p", "d.csv", Scheduled()),
            "another pipeline": make("q", "a.csv", Scheduled()),
            "another folder": make("p", "a.csv", Scheduled(), folder=tmp_path / "elsewhere"),
            "same name, other bytes decided": make("p", "b.csv", Scheduled(), sha256="2" * 64),
        }
        decided = {"a.csv": "a" * 64, "b.csv": "b" * 64, "c.csv": "c" * 64, "again.csv": "1" * 64}

        cancelled = cancel_redundant_runs("p", incoming, decided, str(decider.id), RunLog("p", tmp_path / "logs"))

        # each cancelled run is named after its file (Prefect gave it a random name), as its deciding run is
        assert sorted(cancelled) == ["stream/p/a.csv", "stream/p/again.csv", "stream/p/b.csv"]
        for run, name in ((waiting, "a.csv"), (awaiting_slot, "b.csv"), (first_bytes, "again.csv")):
            read = client.read_flow_run(run.id)
            assert read.state.is_cancelled() and str(decider.id) in read.state.message, read.state
            assert read.state.name == DECIDED_ELSEWHERE  # what the Prefect UI's badge says, not "Cancelled"
            assert read.name == f"stream/p/{name}"
        for why, run in untouched.items():
            assert not client.read_flow_run(run.id).state.is_cancelled(), why
        assert client.read_flow_run(decider.id).state.is_running()


def test_nothing_decided_asks_nothing(tmp_path):
    # no Prefect server in this test: with nothing decided the turn makes no API call at all
    assert cancel_redundant_runs("p", tmp_path, {}, None, RunLog("p", tmp_path / "logs")) == []
