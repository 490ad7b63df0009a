"""One triggering scheme per pipeline: prefect.yaml's deployment for a kind (``prefect deploy --all``) beside the
per-pipeline deployments ``calmops deploy`` makes. Against Prefect's test server, whose automations turn the
watcher's events into flow runs as a real server's do."""

import json
import logging
import os
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calmops.core.store import pipeline_paths
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
SERVED = "served by prefect.yaml's deployment calmops-stream/stream"


@pytest.fixture
def prefect_api(prefect_server, monkeypatch):
    """The test server named in the environment, as the CLI finds a running stack's; every deployment, automation
    and run made here is removed afterwards (the server is the session's)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from calmops.deployments.deploy import _delete_deployment, delete_pipeline_deployments, kind_deployments

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    yield
    delete_pipeline_deployments("sea")
    with get_client(sync_client=True) as client:
        for d in kind_deployments():
            for run in client.read_flow_runs():
                if run.deployment_id == d.id:
                    client.delete_flow_run(run.id)
            _delete_deployment(d.id)


def apply_kind_deployment(kind: str = "stream"):
    """What `prefect deploy --all` makes of prefect.yaml's entry for the kind: its tags and its trigger."""
    from prefect.events import DeploymentEventTrigger

    from calmops.deployments.deploy import ensure_work_pool
    from calmops.flows import flow_for

    ensure_work_pool()  # 'prefect work-pool create calmops --type process', as docs/operations.md has it
    entry = next(d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if d["name"] == kind)
    trigger = DeploymentEventTrigger(**{k: v for k, v in entry["triggers"][0].items() if k != "type"})
    return flow_for(kind).to_deployment(name=kind, tags=entry["tags"], triggers=[trigger],
                                        work_pool_name="calmops").apply()


def runs_for(path: Path, least: int = 1, timeout: float = 10.0) -> list:
    """The flow runs made for the file (by any deployment), once there are ``least`` of them or ``timeout`` passed
    (with a second more for a late one)."""
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout

    def read() -> list:
        with get_client(sync_client=True) as client:
            return [r for r in client.read_flow_runs() if r.parameters.get("path") == str(path)]

    while len(read()) < least and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)
    return read()


def test_create_update_and_deploy_say_prefect_yaml_serves_the_pipeline_and_succeed(prefect_api, calmops_home,
                                                                                   tmp_path):
    """With prefect.yaml's deployment for its kind, a new pipeline is run by that one: create, update and deploy
    all say so in a sentence and succeed, and make no deployment of the pipeline's own."""
    from calmops.deployments.deploy import describe

    apply_kind_deployment()
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    for args in (["create", str(spec_file)], ["update", "sea", str(spec_file)], ["deploy", "sea"], ["deploy"]):
        done = runner.invoke(app, args, terminal_width=400)
        assert done.exit_code == 0, (args, done.output)
        said = " ".join(done.output.split())  # a line the console folds reads the same
        assert SERVED in said and "no deployment of its own" in said, (args, said)
        assert "not deployed" not in said and "Conflict" not in said, (args, said)
    assert describe("sea")["deployments"] == []


def test_a_pipeline_deployment_left_beside_prefect_yaml_s_is_refused_then_removed_one_run_per_file(
        prefect_api, stream_spec, caplog):
    """`prefect deploy --all` run while the pipeline had its own deployment: both triggers match its events, so a
    file announced would get two runs. The watcher announces nothing of it and says which deployments and what to
    run; 'calmops deploy sea' keeps prefect.yaml's and removes the pipeline's; the file then gets one run."""
    from calmops.deployments.deploy import deploy_pipeline, describe
    from calmops.deployments.watcher import scan_pipeline

    deploy_pipeline("sea")  # its own, as on a stack started before prefect.yaml's deployments were made
    assert describe("sea")["deployments"] == ["calmops-stream/sea"]
    kind_id = apply_kind_deployment()
    path = write_csv(sea_frame(200, 8, seed=1), pipeline_paths(stream_spec).incoming, "a.csv")
    os.utime(path, (time.time() - 60, time.time() - 60))

    with caplog.at_level(logging.WARNING, logger="calmops.watcher"):
        scan_pipeline("sea")
    assert runs_for(path, least=2) == []
    said = caplog.text
    assert "calmops-stream/sea and calmops-stream/stream would each start a run" in said, said
    assert "run 'calmops deploy sea' to keep prefect.yaml's calmops-stream/stream" in said, said

    done = runner.invoke(app, ["deploy", "sea"], terminal_width=400)
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert SERVED in said and "removed calmops-stream/sea" in said, said
    assert describe("sea")["deployments"] == [] and describe("sea")["automations"] == []

    assert scan_pipeline("sea") == [path]
    runs = runs_for(path, least=2)
    assert [r.deployment_id for r in runs] == [kind_id]


def test_relaunch_and_status_say_a_pipeline_both_schemes_would_run_is_not_served_and_what_to_run(
        prefect_api, stream_spec):
    """In that state 'calmops relaunch sea' said '0 file(s) announced' and 'calmops status' nothing: the reason was
    only in the watcher's and the pipeline's logs. Both now say that the pipeline is not served, by which two
    deployments, and the command that keeps one (relaunch then fails); once one is kept, both say it is served
    and relaunch announces the file."""
    from calmops.deployments.deploy import deploy_pipeline

    deploy_pipeline("sea")
    apply_kind_deployment()
    path = write_csv(sea_frame(200, 8, seed=1), pipeline_paths(stream_spec).incoming, "a.csv")
    os.utime(path, (time.time() - 60, time.time() - 60))
    both = "calmops-stream/sea and calmops-stream/stream would each start a run for every one of its files"
    advice = "run 'calmops deploy sea' to keep prefect.yaml's calmops-stream/stream (it removes calmops-stream/sea)"

    relaunched = runner.invoke(app, ["relaunch", "sea"], terminal_width=400)
    assert relaunched.exit_code == 1, relaunched.output
    said = " ".join(relaunched.output.split())
    assert f"sea: no file announced: the deployments {both}; {advice}" in said, said
    assert "then 'calmops relaunch sea'" in said and "sea not served" in said, said
    assert runs_for(path, least=2, timeout=3.0) == []

    for args in (["status", "sea"], ["status"]):
        shown = runner.invoke(app, args, terminal_width=400)
        assert shown.exit_code == 0, shown.output
        said = " ".join(shown.output.split())
        assert f"warning: sea is not served: the deployments {both}, so none is announced; {advice}" in said, said
    row = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert row["served_by"] == ["calmops-stream/sea", "calmops-stream/stream"] and advice in row["not_served"]

    assert runner.invoke(app, ["deploy", "sea"], terminal_width=400).exit_code == 0  # keeps prefect.yaml's
    row = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert row["served_by"] == ["calmops-stream/stream"] and row["not_served"] is None, row
    relaunched = runner.invoke(app, ["relaunch", "sea"], terminal_width=400)
    assert relaunched.exit_code == 0 and "1 file(s) announced" in relaunched.output, relaunched.output
    assert len(runs_for(path)) == 1


def test_a_turn_giving_way_announces_no_file_both_schemes_would_run(prefect_api, stream_spec):
    """A run that gives its pipeline's turn up announces the oldest file left itself (calmops.flows.fair_turns).
    With the pipeline's own deployment beside prefect.yaml's for its kind that event started two runs of the file,
    as the watcher's would: the turn announces nothing then, says why in the pipeline's log, and goes on."""
    from calmops.core.logs import RunLog
    from calmops.core.store import sha256_of
    from calmops.deployments.deploy import deploy_pipeline
    from calmops.flows.fair_turns import announce

    deploy_pipeline("sea")
    kind_id = apply_kind_deployment()
    paths = pipeline_paths(stream_spec)
    path = write_csv(sea_frame(200, 8, seed=1), paths.incoming, "a.csv")
    log = RunLog("sea", paths.logs)

    assert announce("sea", "stream", path, sha256_of(path), log) is False
    assert runs_for(path, least=2) == []
    said = (paths.logs / "pipeline.log").read_text()
    assert "not announcing a.csv to give pipeline sea's turn up: the deployments calmops-stream/sea and " \
           "calmops-stream/stream would each start a run" in said, said

    assert runner.invoke(app, ["deploy", "sea"], terminal_width=400).exit_code == 0  # one scheme again
    assert announce("sea", "stream", path, sha256_of(path), log) is True
    assert [r.deployment_id for r in runs_for(path, least=2)] == [kind_id]
