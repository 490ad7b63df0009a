"""File arrival on the real stack: Prefect server, process worker and watcher as subprocesses.

A file written into a pipeline's incoming folder becomes a Prefect event, the pipeline's deployment
trigger creates one flow run with the file's path, the worker runs it, the decision lands in MLflow
(SQLite under the temporary CALMOPS_HOME). Everything started here is stopped at the end; the Prefect
server has its own temporary home and a free port.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import running_stack, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
PIPELINES = ("sea", "sea-b", "sea-c")
VACUUM_EVERY = 5  # seconds between the Prefect server's database clean-ups on this stack (hourly by default)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Prefect server + deployments + worker + watcher on a private home; torn down afterwards."""
    from calmops.core.store import save_spec, spec_from_dict

    def create_pipelines():
        for name in PIPELINES:
            extra = {"schedule": "1h"} if name == "sea-c" else {}
            save_spec(spec_from_dict({**STREAM_SPEC, "name": name, **extra}), create=True)
        # the challenger learns the joined rows alone (`full` would learn the old concept's rows of the reference
        # too, and whether it beats the champion would then hang on which rows are held out)
        save_spec(spec_from_dict({**STREAM_SPEC, "name": "sea-late", "labels": {"join_on": ["id"]},
                                  "retrain": {**STREAM_SPEC["retrain"], "mode": "window", "window_batches": 1}}),
                  create=True)
        save_spec(spec_from_dict({**STREAM_SPEC, "name": "sea-late-burst", "labels": {"join_on": ["id"]}}),
                  create=True)
        save_spec(spec_from_dict({**STREAM_SPEC, "name": "sea-forest", "labels": {"join_on": ["id"]},
                                  "model": {"class": "sklearn.ensemble.RandomForestClassifier",
                                            "params": {"n_estimators": 30, "random_state": 0}}}), create=True)

    with running_stack(tmp_path_factory.mktemp("file-arrival") / "calmops", before_up=create_pipelines,
                       env={"PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": str(VACUUM_EVERY)}) as home:
        yield home


# -- reading the results -----------------------------------------------------------------------------


def incoming(name: str) -> Path:
    from calmops.core.store import pipeline_paths, read_spec

    return pipeline_paths(read_spec(name)).incoming


def processed(name: str) -> Path:
    from calmops.core.store import pipeline_paths, read_spec

    return pipeline_paths(read_spec(name)).processed


def ledger_done(name: str) -> dict[str, str]:
    """file name -> sha256 of every file the pipeline finished."""
    from calmops.core.store import has_ledger, ledger, pipeline_paths, read_spec

    paths = pipeline_paths(read_spec(name))
    if not has_ledger(paths):
        return {}
    return {e["file"]: e["sha256"] for e in ledger(paths).entries() if e["status"] == "done"}


def flow_runs(name: str):
    """The pipeline's file runs (not scans), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"calmops.pipeline.{name}"])))
    runs = [r for r in runs if "path" in r.parameters]
    return sorted(runs, key=lambda r: r.expected_start_time)


def mlflow_runs(name: str) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    if exp is None:
        return []
    return [{"file": r.data.tags.get("calmops.file"), "decision": r.data.tags.get("calmops.decision")}
            for r in client.search_runs([exp.experiment_id], max_results=1000)]


def settled(name: str, files: list[str]) -> bool:
    """Every file is done, and no run of the pipeline is still queued or running."""
    done = ledger_done(name)
    return all(f in done for f in files) and all(r.state.is_final() for r in flow_runs(name))


def write_sea(folder: Path, name: str, seed: int, theta: float = 8.0, rows: int = 600) -> bytes:
    data = sea_frame(rows, theta, seed=seed).to_csv(index=False).encode()
    tmp = folder.parent / f".{name}.staging"  # written beside, renamed into place
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return data


def typed(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``calmops ARGS`` as a user's shell runs it: no Prefect or MLflow address in the environment (the command
    finds the stack)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    return subprocess.run([str(Path(sys.executable).with_name("calmops")), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


# -- the tests ---------------------------------------------------------------------------------------


def test_a_file_starts_exactly_one_run_with_its_path_and_the_decision_lands_in_mlflow(live):
    folder = incoming("sea")
    sea_frame(1000, 8, seed=1).to_csv(folder / "a.csv", index=False)  # written in place: taken on close
    until(lambda: settled("sea", ["a.csv"]), 240, "a.csv to be processed")

    [run] = flow_runs("sea")
    assert run.state.is_completed(), run.state
    assert run.name == "stream/sea/a.csv"
    assert run.parameters["pipeline"] == "sea" and run.parameters["path"] == str(folder / "a.csv")
    assert run.parameters["sha256"] == ledger_done("sea")["a.csv"]
    assert (processed("sea") / "a.csv").exists() and not (folder / "a.csv").exists()
    assert [r for r in mlflow_runs("sea") if r["file"] == "a.csv"] == [{"file": "a.csv", "decision": "train"}]
    # the run was forked by the warm runner (the worker's command is its client), not started cold
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    assert f"flow run {run.id} in process" in stack.log_file(get_settings(), "runner").read_text()


def test_a_slow_writer_is_processed_once_with_the_whole_file(live):
    folder = incoming("sea")
    frame = sea_frame(800, 8, seed=2)
    text = frame.to_csv(index=False).encode()
    half = len(text) // 2
    with open(folder / "slow.csv", "wb") as fh:
        fh.write(text[:half])
        fh.flush()
        time.sleep(4)  # deliberate: the writer pauses for longer than the watcher's settle time
        fh.write(text[half:])
    until(lambda: settled("sea", ["slow.csv"]), 180, "slow.csv to be processed")

    runs = [r for r in flow_runs("sea") if r.parameters["path"].endswith("/slow.csv")]
    assert len(runs) == 1 and runs[0].state.is_completed()
    assert (processed("sea") / "slow.csv").read_bytes() == text
    assert ledger_done("sea")["slow.csv"] == hashlib.sha256(text).hexdigest()
    assert len([r for r in mlflow_runs("sea") if r["file"] == "slow.csv"]) == 1


def test_calmops_run_is_handed_to_the_warm_runner_and_prints_exactly_one_json_document(live, tmp_path):
    """As a user's shell runs it: no Prefect or MLflow address in the environment (the command finds the stack)."""
    import json

    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    data = tmp_path / "r.csv"
    sea_frame(600, 8, seed=300).to_csv(data, index=False)
    done = typed("run", "sea", str(data), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert outcome["file"] == "r.csv" and outcome["decision"] != "failed", outcome
    assert f"calmops run sea {data} --json in process" in stack.log_file(get_settings(), "runner").read_text()
    assert "temporary server" not in done.stderr  # the stack's Prefect API was used
    assert done.stderr.count("Beginning flow run") == 1, done.stderr  # each log line once
    assert "View run" not in done.stderr + done.stdout  # MLflow's links to the run, printed when it ended
    assert len([r for r in mlflow_runs("sea") if r["file"] == "r.csv"]) == 1


def test_create_and_delete_are_handed_to_the_warm_runner_as_a_user_types_them(live, tmp_path):
    """They import MLflow and Prefect before their first step (seconds of a user's wait); with the stack up the
    warm runner, which has, runs them in the user's folder and terminal, with the same effects, output and exit
    codes as a process of their own."""
    import json

    from calmops.core.settings import get_settings
    from calmops.deployments import stack
    from calmops.deployments.deploy import describe

    (tmp_path / "handed.yaml").write_text(yaml.safe_dump({**STREAM_SPEC, "name": "handed"}))
    runner_log = stack.log_file(get_settings(), "runner")

    created = typed("create", "handed.yaml", cwd=tmp_path)  # a path relative to the user's folder
    assert created.returncode == 0, created.stderr[-3000:]
    assert "created pipeline handed" in created.stdout
    assert "calmops create handed.yaml in process" in runner_log.read_text()
    assert describe("handed")["automations"] == ["calmops-file-arrived-handed"]

    again = typed("create", "handed.yaml", cwd=tmp_path)
    assert again.returncode == 1 and "error: pipeline 'handed' exists already" in again.stderr, again.stderr
    usage = typed("create", cwd=tmp_path)
    assert usage.returncode == 2 and "Usage: calmops create" in usage.stderr, usage.stderr

    deleted = typed("delete", "handed", "--yes", "--json", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert json.loads(deleted.stdout)["automations"] == ["calmops-file-arrived-handed"]  # stdout: the JSON alone
    assert "calmops delete handed --yes --json in process" in runner_log.read_text()
    assert describe("handed")["deployments"] == [] and not (live / "pipelines" / "handed").exists()
    assert len([p for p in (live / "deleted").iterdir() if p.name.startswith("handed-")]) == 1


def test_delete_while_a_run_decides_files_lets_it_finish_before_its_deployment_goes(live, tmp_path):
    """Deleting a deployment deletes its concurrency limit; a run still holding the limit's slot then cannot end
    (Prefect refuses its final state, it shows Running for good) and delete waited its two minutes for nothing.
    Delete stops the triggers, lets the run in flight finish, and only then deletes the deployments."""
    import json

    (tmp_path / "flight.yaml").write_text(yaml.safe_dump({**STREAM_SPEC, "name": "flight"}))
    assert typed("create", "flight.yaml", cwd=tmp_path).returncode == 0
    for i in range(5):
        write_sea(incoming("flight"), f"flight-{i}.csv", seed=400 + i)
    until(lambda: any(r.state.is_running() for r in flow_runs("flight")), 120, "a run of the pipeline to start")

    started = time.monotonic()
    deleted = typed("delete", "flight", "--yes", "--json", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert json.loads(deleted.stdout)["still_running"] == [] and "still running" not in deleted.stderr
    assert time.monotonic() - started < 100, "delete waited for a run that could not end"
    runs = flow_runs("flight")
    assert runs and all(r.state.is_final() for r in runs), [(r.name, r.state.name) for r in runs]
    assert any(r.state.is_completed() for r in runs)


def test_a_burst_across_pipelines_is_processed_once_and_serialized_per_pipeline(live):
    from calmops.core.store import ledger, pipeline_paths, read_spec

    files = {name: [f"burst-{i}.csv" for i in range(2)] for name in PIPELINES}
    for i in range(2):
        for n, name in enumerate(PIPELINES):
            write_sea(incoming(name), files[name][i], seed=100 + 10 * n + i)
    for name in PIPELINES:
        until(lambda name=name: settled(name, files[name]), 300, f"the burst in {name}")

    for name in PIPELINES:
        # In its turn a run decides every waiting file of its pipeline, before and after its own (order:
        # arrival), so a file may be decided by the other file's run before its own run starts or is even
        # created; a run of such a file that still waits is cancelled, naming the run that decided the file.
        # No file has two runs.
        runs = [r for r in flow_runs(name) if Path(r.parameters["path"]).name in files[name]]
        made = [Path(r.parameters["path"]).name for r in runs]
        assert made and len(made) == len(set(made)), made
        deciders = {e["run_id"] for e in ledger(pipeline_paths(read_spec(name))).entries()}
        assert all(r.state.is_completed() or (r.state.is_cancelled() and r.run_count == 0 and any(
            d in (r.state.message or "") for d in deciders)) for r in runs), [(r.name, r.state) for r in runs]
        runs = [r for r in runs if r.run_count > 0]
        spans = sorted((r.start_time, r.end_time) for r in runs)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"runs of {name} overlapped: {spans}"
        for f in files[name]:
            assert len([r for r in mlflow_runs(name) if r["file"] == f]) == 1


def test_a_prefect_restart_in_the_middle_of_a_stream_loses_and_repeats_nothing(live):
    from calmops.deployments import stack

    name, folder = "sea-b", incoming("sea-b")
    names = [f"restart-{i}.csv" for i in range(3)]
    write_sea(folder, names[0], seed=200)
    until(lambda: settled(name, names[:1]), 240, "the first file")

    stack.stop("prefect")
    write_sea(folder, names[1], seed=201)  # announced while the server is down: that event is lost
    stack.start("prefect")
    write_sea(folder, names[2], seed=202)
    until(lambda: settled(name, names), 300, "every file after the restart")

    done = ledger_done(name)
    for f in names:
        assert (processed(name) / f).exists()
        assert len([r for r in mlflow_runs(name) if r["file"] == f]) == 1, f"{f} was processed more than once"
    assert len({done[f] for f in names}) == len(names)
    assert not [p for p in folder.iterdir() if p.is_file()]


def test_delete_leaves_no_deployment_automation_or_scheduled_run(live):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from typer.testing import CliRunner

    from calmops.deployments.cli import app
    from calmops.deployments.deploy import automations_of, describe

    name = "sea-c"
    before = describe(name)
    assert sorted(before["deployments"]) == ["calmops-scan/sea-c", "calmops-stream/sea-c"]
    assert before["automations"] == ["calmops-file-arrived-sea-c"]

    with get_client(sync_client=True) as client:
        ids = [d.id for d in client.read_deployments(deployment_filter=DeploymentFilter(
            tags=DeploymentFilterTags(all_=["calmops.pipeline.sea-c"])))]

        def scheduled():
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=ids),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))))

        until(scheduled, 90, "the scan schedule to create its runs")
        result = CliRunner().invoke(app, ["delete", name, "--yes"])
        assert result.exit_code == 0, result.output
        assert client.read_deployments(deployment_filter=DeploymentFilter(
            tags=DeploymentFilterTags(all_=["calmops.pipeline.sea-c"]))) == []
        assert scheduled() == []
        assert client.read_automations_by_name("calmops-file-arrived-sea-c") == []
        for deployment_id in ids:
            assert client.read_resource_related_automations(f"prefect.deployment.{deployment_id}") == []
    assert automations_of(name) == []
    assert not (live / "pipelines" / name).exists()
    assert len([p for p in (live / "deleted").iterdir() if p.name.startswith(f"{name}-")]) == 1  # its files, kept


def test_prefect_deploy_all_from_prefect_yaml(live):
    """`prefect deploy --all` against the server: one deployment per kind, trigger templated from the event."""
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_client  # noqa: F401 - the client emit_event uses

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    kinds = [d["name"] for d in config["deployments"]]
    assert kinds == ["stream", "block", "ipip"]
    cmd = [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all"]
    env = {**os.environ, "PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from calmops.deployments.deploy import kind_deployments, prune_automations

    try:
        with get_client(sync_client=True) as client:
            deployed = {d.name: d for d in client.read_deployments() if d.name in kinds}
            assert sorted(deployed) == sorted(kinds)
            stream = deployed["stream"]
            assert stream.work_pool_name == "calmops" and stream.entrypoint == "calmops.flows.stream.stream_flow"
            assert stream.concurrency_limit == 1 or stream.global_concurrency_limit.limit == 1
            [automation] = client.read_resource_related_automations(f"prefect.deployment.{stream.id}")
            assert automation.name == "calmops-file-arrived-kind-stream"
            action = automation.actions[0]
            assert action.parameters["path"] == "{{ event.resource['calmops.file.path'] }}"
            assert automation.trigger.match.model_dump() == {"prefect.resource.id": "calmops.pipeline.*",
                                                             "calmops.pipeline.kind": "stream"}
    finally:  # the stack is shared: while they exist, they serve every pipeline of their kind (and the watcher
        # announces no file of a pipeline that also has its own deployment)
        with get_client(sync_client=True) as client:
            for deployment in kind_deployments():
                client.delete_deployment(deployment.id)
        prune_automations()


def test_labels_that_come_later_are_joined_through_the_watcher_once_even_across_a_watcher_restart(live):
    """Features first, labels later, both dropped as a producer does: the labels folder is watched, the labels
    file's run joins it to the predictions v1 made, catches the concept change the champion predicted blind,
    and retrains from the joined rows; a labels file dropped while the watcher is down is decided once."""
    from mlflow import MlflowClient

    from calmops.core.registry import load_version
    from calmops.core.store import pipeline_paths, read_spec
    from calmops.deployments import stack

    name = "sea-late"
    folder, labels = incoming(name), pipeline_paths(read_spec(name)).labels

    def publish(target: Path, file: str, frame) -> None:
        tmp = target.parent / f".{file}.staging"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, target / file)

    f0 = sea_frame(800, 8, seed=300).assign(id=range(800))
    f1 = sea_frame(800, 9.5, seed=301).assign(id=range(800, 1600))  # the concept moved: θ 8 → 9.5
    f2 = sea_frame(800, 9.5, seed=302).assign(id=range(1600, 2400))
    publish(folder, "f0.csv", f0)
    publish(folder, "f1.csv", f1.drop(columns="y"))
    publish(folder, "f2.csv", f2.drop(columns="y"))
    until(lambda: settled(name, ["f0.csv", "f1.csv", "f2.csv"]), 300, "the features files")
    publish(labels, "l1.csv", f1[["id", "y"]])
    until(lambda: settled(name, ["labels/l1.csv"]), 300, "the labels file")  # the ledger's name for it

    decisions = {r["file"]: r["decision"] for r in mlflow_runs(name)}
    assert decisions == {"f0.csv": "train", "f1.csv": "predict_only", "f2.csv": "predict_only",
                         "l1.csv": "retrain_promoted"}, decisions
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    [run] = client.search_runs([exp.experiment_id], "tags.`calmops.file` = 'l1.csv'")
    model = load_version(name, 1).model
    expected = float((model.predict(f1[["x1", "x2", "x3"]]) == f1["y"].to_numpy()).mean())
    assert run.data.metrics["realized_v1_accuracy"] == pytest.approx(expected)
    assert (processed(name) / "l1.csv").exists() and not (labels / "l1.csv").exists()

    stack.stop("watcher")  # the labels of f2 come while the watcher is down: its start-up scan finds them
    publish(labels, "l2.csv", f2[["id", "y"]])
    stack.start("watcher")
    until(lambda: settled(name, ["labels/l2.csv"]), 300, "the labels file dropped while the watcher was down")
    publish(labels, "l2-copy.csv", f2[["id", "y"]])  # the same bytes again: a duplicate, joined never twice
    until(lambda: (processed(name) / "l2-copy.csv").exists() and all(r.state.is_final() for r in flow_runs(name)),
          120, "the copy to be set aside")
    files = [r["file"] for r in mlflow_runs(name)]
    assert files.count("l2.csv") == 1 and "l2-copy.csv" not in files
    [l2] = client.search_runs([exp.experiment_id], "tags.`calmops.file` = 'l2.csv'")
    assert l2.data.metrics["realized_v1_accuracy"] < 0.95  # f2 was predicted by v1, before the labels of f1 came


def test_files_without_labels_that_did_not_change_are_not_called_drift_through_the_watcher(live):
    """A forest is near certain of the rows it learnt: checked against its outputs on those, every new file without
    labels looked drifted. Through the watcher, a burst of unchanged files is predicted without a drift signal,
    and a file whose inputs moved is called drift by the label-free signals."""
    from mlflow import MlflowClient

    name = "sea-forest"
    folder = incoming(name)

    def publish(file: str, frame) -> None:
        tmp = folder.parent / f".{file}.staging"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, folder / file)

    def frame(seed: int, first_id: int):
        return sea_frame(1000, 8, seed=seed, noise=0.1).assign(id=range(first_id, first_id + 1000))

    publish("f0.csv", frame(500, 0))
    until(lambda: settled(name, ["f0.csv"]), 300, "the first file")
    for i in range(1, 4):  # a burst of unchanged files without labels
        publish(f"f{i}.csv", frame(500 + i, 1000 * i).drop(columns="y"))
    until(lambda: settled(name, ["f1.csv", "f2.csv", "f3.csv"]), 300, "the unchanged files")
    moved = frame(509, 9000).drop(columns="y")
    moved["x1"] *= 0.6
    publish("moved.csv", moved)
    until(lambda: settled(name, ["moved.csv"]), 300, "the moved file")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    tags = {r.data.tags["calmops.file"]: r.data.tags for r in client.search_runs([exp.experiment_id])}
    label_free = "label-free drift in the champion's predictions"
    for file in ("f1.csv", "f2.csv", "f3.csv"):
        assert tags[file]["calmops.decision"] == "predict_only", tags[file]["calmops.reason"]
        assert tags[file]["calmops.drift_detected"] == "false", tags[file]["calmops.reason"]
    assert tags["moved.csv"]["calmops.drift_detected"] == "true"
    assert label_free in tags["moved.csv"]["calmops.reason"], tags["moved.csv"]["calmops.reason"]


def test_a_burst_of_labels_files_through_the_watcher_is_decided_in_arrival_order(live):
    """Labels files dropped together start their runs in any order; each run decides the labels files that
    came before its own first, so they are decided oldest first (a newer file decided first had promoted a model
    of the wrong concept over the right one)."""
    from mlflow import MlflowClient

    from calmops.core.store import ledger, pipeline_paths, read_spec

    name = "sea-late-burst"
    folder, labels = incoming(name), pipeline_paths(read_spec(name)).labels
    frames = [sea_frame(300, 8, seed=400 + i).assign(id=range(300 * i, 300 * (i + 1))) for i in range(7)]

    def write(target: Path, file: str, frame) -> None:  # written beside, renamed into place
        frame.to_csv(target.parent / f".{file}.staging", index=False)
        os.replace(target.parent / f".{file}.staging", target / file)

    write(folder, "f0.csv", frames[0])
    for i in range(1, 7):
        write(folder, f"f{i}.csv", frames[i].drop(columns="y"))
    until(lambda: settled(name, [f"f{i}.csv" for i in range(7)]), 300, "the features files")
    for i in range(1, 7):  # one after another, as an export writes them
        write(labels, f"l{i}.csv", frames[i][["id", "y"]])
    until(lambda: settled(name, [f"labels/l{i}.csv" for i in range(1, 7)]), 300, "the labels files")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    started = {r.data.tags["calmops.file"]: r.info.start_time
               for r in client.search_runs([exp.experiment_id], "tags.`calmops.file` LIKE 'l%'")}
    assert sorted(started, key=started.get) == [f"l{i}.csv" for i in range(1, 7)], started
    # the runs of the files decided in another run's turn were cancelled before they started, or found them done
    states = [r.state for r in flow_runs(name) if "/labels/" in r.parameters["path"]]
    assert len(states) == 6 and not any(s.is_failed() or s.is_crashed() for s in states), states
    assert all(s.is_completed() or s.name == "Decided by another run" for s in states), states

    # features files each written just before their labels, copied in as `rsync -t` does (times kept, the labels
    # folder first): the labels files' runs start first, and each is decided after its features file, which
    # arrived before it, and joins all of its rows
    more = [sea_frame(300, 8, seed=500 + i).assign(id=range(300 * i, 300 * (i + 1))) for i in range(7, 10)]
    written = time.time() - 60

    def copied(target: Path, file: str, frame, at: float) -> None:  # its time kept, then renamed into place
        frame.to_csv(target.parent / f".{file}.staging", index=False)
        os.utime(target.parent / f".{file}.staging", (at, at))
        os.replace(target.parent / f".{file}.staging", target / file)

    for i, frame in enumerate(more, start=7):
        copied(labels, f"l{i}.csv", frame[["id", "y"]], written + 2 * i + 1)
    for i, frame in enumerate(more, start=7):
        copied(folder, f"f{i}.csv", frame.drop(columns="y"), written + 2 * i)
    pairs = [f"f{i}.csv" for i in range(7, 10)] + [f"labels/l{i}.csv" for i in range(7, 10)]
    paths = pipeline_paths(read_spec(name))

    def decided() -> bool:  # done, or quarantined (as they were when a labels file overtook its features)
        ends = {e["file"]: e["status"] for e in ledger(paths).entries()}
        return all(ends.get(f) in ("done", "gone") for f in pairs) and all(r.state.is_final() for r in flow_runs(name))

    until(decided, 300, "the features files and their labels")
    tags = {r.data.tags["calmops.file"]: r.data.tags
            for r in client.search_runs([exp.experiment_id], "tags.`calmops.file` LIKE 'l%'")}
    for i in range(7, 10):
        assert tags[f"l{i}.csv"]["calmops.decision"] != "rejected_input", tags[f"l{i}.csv"]["calmops.reason"]
    quarantined = paths.quarantine
    assert not list(quarantined.glob("l*")), list(quarantined.iterdir())


def test_a_run_waiting_minutes_for_a_worker_shows_scheduled_and_one_five_minutes_behind_shows_late(live):
    """A file's run is scheduled for the moment its file arrived; in a burst it waits for a worker or its
    pipeline's turn. Prefect marks a run Late 15 s after its time; the server the stack starts waits 5 minutes.
    Two runs no worker can take, one a minute past its time and one ten: Prefect's own late-runs service (every
    5 s) marks the second Late and leaves the first Scheduled."""
    import httpx

    api = os.environ["PREFECT_API_URL"]
    flow = httpx.post(f"{api}/flows/", json={"name": "calmops-test-late-badge"}).json()
    now, made = datetime.now(UTC), {}
    for behind in (1, 10):
        made[behind] = httpx.post(f"{api}/flow_runs/", json={
            "flow_id": flow["id"], "name": f"waiting-{behind}-min", "state": {
                "type": "SCHEDULED", "name": "Scheduled",
                "state_details": {"scheduled_time": (now - timedelta(minutes=behind)).isoformat()}}}).json()["id"]

    def state(behind: int) -> str:
        return httpx.get(f"{api}/flow_runs/{made[behind]}").json()["state"]["name"]

    try:
        until(lambda: state(10) == "Late", 60, "Prefect's late-runs service to mark the run 10 minutes behind")
        assert state(1) == "Scheduled"
    finally:
        for run in made.values():
            httpx.delete(f"{api}/flow_runs/{run}")


def test_prefects_database_keeps_task_run_state_events_a_day_and_other_events_a_week(live):
    """A decided file leaves about 36 events in Prefect's database, 25 of them its task runs' state events.
    The server the stack starts keeps those a day and every other event Prefect's seven; finished flow runs go
    after 30 days. Events dated in the past go in through Prefect's events API; the server's own clean-up
    (every few seconds on this stack) deletes the two-day-old state event of a task run and keeps the rest."""
    import uuid

    import httpx

    api = os.environ["PREFECT_API_URL"]
    vacuum = httpx.get(f"{api}/admin/settings").json()["server"]["services"]["db_vacuum"]
    assert set(vacuum["enabled"]) >= {"events", "flow_runs"} and vacuum["retention_period"] == "P30D", vacuum

    now, marker = datetime.now(UTC), uuid.uuid4().hex
    sent = {"task-run state, 2 days old": ("prefect.task-run.Completed", timedelta(days=2)),
            "task-run state, 1 hour old": ("prefect.task-run.Completed", timedelta(hours=1)),
            "task-run failure, 2 days old": ("prefect.task-run.Failed", timedelta(days=2)),
            "flow-run state, 2 days old": ("prefect.flow-run.Completed", timedelta(days=2))}
    response = httpx.post(f"{api}/events", json=[
        {"id": str(uuid.uuid4()), "occurred": (now - age).isoformat(), "event": event, "payload": {},
         "resource": {"prefect.resource.id": f"calmops.test.{marker}", "calmops.test.what": what}}
        for what, (event, age) in sent.items()])
    assert response.status_code == 204, response.text

    def kept() -> set[str]:
        page = httpx.post(f"{api}/events/filter", json={"limit": 50, "filter": {
            "occurred": {"since": (now - timedelta(days=3)).isoformat(), "until": now.isoformat()},
            "resource": {"id": [f"calmops.test.{marker}"]}}})
        page.raise_for_status()
        return {e["resource"]["calmops.test.what"] for e in page.json()["events"]}

    expected = set(sent) - {"task-run state, 2 days old"}
    until(lambda: kept() >= expected, 60, "the events to be stored")
    time.sleep(2 * VACUUM_EVERY)  # two clean-ups after they were stored, in one batch
    assert kept() == expected



def test_the_prefect_ui_calls_the_api_of_its_own_stack_on_a_port_other_than_4200(live):
    """The stack here runs on free ports (as with CALMOPS_PREFECT_PORT). The Prefect UI's pages ask
    /ui-settings where the API is; on 4200 they would show "Can't connect to Server API", or another stack's runs."""
    import httpx

    api = os.environ["PREFECT_API_URL"]
    assert not api.startswith("http://127.0.0.1:4200/"), api  # the point of the test: a non-default port
    ui = httpx.get(api.removesuffix("/api") + "/ui-settings").json()
    assert ui["api_url"] == api, ui
    # the UI's pages are served from files the server wrote into the host's run folder (a service user may not
    # own site-packages, where Prefect writes them by default, and without them there is no UI)
    from calmops.core.settings import get_settings

    page = httpx.get(api.removesuffix("/api") + "/")
    assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
    assert any((get_settings().run_dir / "prefect-ui").rglob("index.html"))


def test_status_typed_without_the_port_variables_finds_the_stack_on_the_ports_it_runs_on(live):
    """`calmops up` was given other ports; a command typed later in a shell without them (only CALMOPS_HOME)
    finds the services where they run (stack.json), not on the default ports, where it called them not
    answering (or would have called another stack there healthy)."""
    import json

    port = os.environ["CALMOPS_PREFECT_PORT"]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")
           and not (k.startswith("CALMOPS_") and k.endswith("_PORT"))}
    done = subprocess.run([str(Path(sys.executable).with_name("calmops")), "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    prefect = json.loads(done.stdout)["stack"]["services"]["prefect"]
    assert prefect["url"] == f"http://127.0.0.1:{port}" and prefect["healthy"] is True, prefect
