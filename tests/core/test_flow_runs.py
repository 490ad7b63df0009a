"""Which flow runs the shared query returns (calmops.core.flow_runs), and the watcher's view of a file's live
runs built on it (calmops.deployments.watcher.live_run_paths), on Prefect's test server."""

from __future__ import annotations

import pytest

from calmops.core.flow_runs import runs_in_states
from calmops.core.names import TAG, pipeline_tag
from calmops.deployments.watcher import live_run_paths

pytestmark = pytest.mark.integration
P, Q = "runs-query-p", "runs-query-q"  # names no other test uses: the test server is shared


def test_runs_are_chosen_by_pipeline_and_state_and_the_watcher_knows_which_have_not_started(prefect_server, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Completed, Running, Scheduled

    @flow(name="file-run")
    def file_run(pipeline: str, path: str) -> None:
        pass

    def make(pipeline: str, name: str, state):
        return client.create_flow_run(file_run, parameters={"pipeline": pipeline, "path": str(tmp_path / name)},
                                      tags=[TAG, pipeline_tag(pipeline)], state=state)

    with get_client(sync_client=True) as client:
        queued = make(P, "a.csv", Scheduled())
        running = make(P, "b.csv", Running())
        done = make(P, "c.csv", Completed())
        other = make(Q, "a.csv", Scheduled())
        rerun = [make(P, "d.csv", Running()), make(P, "d.csv", Scheduled())]  # one started, one still queued
        foreign = client.create_flow_run(file_run, parameters={"pipeline": P, "path": str(tmp_path / "e.csv")},
                                         state=Scheduled())  # not CalmOps' (no tag): never listed

        made = [queued, running, done, other, *rerun, foreign]

        def ids(runs):
            return {r.id for r in runs}

        try:
            assert ids(runs_in_states(client, [StateType.SCHEDULED], pipeline=P)) == {queued.id, rerun[1].id}
            assert ids(runs_in_states(client, [StateType.SCHEDULED, StateType.RUNNING], pipeline=P)) == {
                queued.id, running.id, *ids(rerun)}
            # every pipeline's (the server is shared with other tests: only this test's runs are checked)
            every = ids(runs_in_states(client, [StateType.SCHEDULED])) & ids(made)
            assert every == {queued.id, other.id, rerun[1].id}
            assert ids(runs_in_states(client, [StateType.COMPLETED])) & ids(made) == {done.id}
            assert foreign.id not in ids(runs_in_states(client, list(StateType)))

            # each live file of pipeline P, and whether one of its runs has not started yet
            assert live_run_paths(P) == {str(tmp_path / "a.csv"): True, str(tmp_path / "b.csv"): False,
                                           str(tmp_path / "d.csv"): True}
        finally:  # queued CalmOps runs left on the shared server would look stalled to the watchdog's tests
            for run in made:
                client.delete_flow_run(run.id)


def test_every_run_is_listed_however_many_pages_it_takes_or_the_first_limit(prefect_server, tmp_path):
    """More queued runs than one request returns (a burst into one pipeline): all of them, each once."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    @flow(name="file-run")
    def file_run(pipeline: str, path: str) -> None:
        pass

    pipeline = "runs-query-pages"
    with get_client(sync_client=True) as client:
        made = [client.create_flow_run(file_run, parameters={"pipeline": pipeline, "path": str(tmp_path / f"{i}.csv")},
                                       tags=[TAG, pipeline_tag(pipeline)], state=Scheduled()) for i in range(7)]
        try:
            listed = runs_in_states(client, [StateType.SCHEDULED], pipeline=pipeline, page=3)  # pages of 3, 3, 1
            assert sorted(r.id for r in listed) == sorted(r.id for r in made)
            first = runs_in_states(client, [StateType.SCHEDULED], pipeline=pipeline, page=3, limit=5)
            assert [r.id for r in first] == [r.id for r in listed[:5]]  # the same order, stopped at the limit
        finally:
            for run in made:
                client.delete_flow_run(run.id)


def test_the_runs_of_a_kinds_deployment_are_their_pipelines(prefect_server, calmops_home, tmp_path):
    """prefect.yaml's deployments (one per kind, `prefect deploy --all`) tag their runs with the kind only: the
    pipeline is a parameter. Those runs were invisible to the queries by pipeline, so runs of files already
    decided were not cancelled, the watcher announced files whose run was queued, and so on."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    from calmops.core.names import kind_tag
    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    for name in (P, Q):
        save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)

    @flow(name="kind-run")
    def kind_run(pipeline: str, path: str) -> None:
        pass

    with get_client(sync_client=True) as client:
        made = [client.create_flow_run(kind_run, parameters={"pipeline": pipeline, "path": str(tmp_path / name)},
                                       tags=[TAG, kind_tag("stream")], state=Scheduled())
                for pipeline, name in ((P, "a.csv"), (Q, "b.csv"))]
        try:
            assert {r.id for r in runs_in_states(client, [StateType.SCHEDULED], pipeline=P)} == {made[0].id}
            assert live_run_paths(Q) == {str(tmp_path / "b.csv"): True}
        finally:
            for run in made:
                client.delete_flow_run(run.id)
