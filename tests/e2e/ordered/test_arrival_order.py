"""Files of a pipeline are decided in arrival order on the real stack (Prefect server, warm runner, worker,
watcher), whatever order Prefect starts their runs in; a failing file holds the files behind it unless the
spec says ``order: none``.

Orders compared for a burst: the order the files were renamed into place, the ledger's claim order, the start
order of the MLflow runs that made the decisions, and the start times of the flow runs that made them.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import STREAM_SPEC, sea_frame
from tests.e2e.stack import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

POISON = '''
from pathlib import Path

FLAG = Path({flag!r})


def preprocess(df):
    if FLAG.exists() and (df["x1"] < 0).any():
        raise RuntimeError("poisoned file")
    return df
'''


def create(name: str, tmp: Path, **extra) -> None:
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.deployments.deploy import deploy_pipeline

    save_spec(spec_from_dict({**STREAM_SPEC, "name": name, **extra}), create=True)
    deploy_pipeline(name)  # what 'calmops create' does when the stack runs: its deployment and trigger


def paths_of(name: str):
    from calmops.core.store import pipeline_paths, read_spec

    return pipeline_paths(read_spec(name)).ensure()


def entries(name: str) -> list[dict]:
    from calmops.core.store import ledger

    return ledger(paths_of(name)).entries()


def done_in_claim_order(name: str) -> list[str]:
    return [e["file"] for e in sorted(entries(name), key=lambda e: e["claimed_at"] or 0) if e["status"] == "done"]


def decisions(name: str) -> list[dict]:
    """MLflow runs that made a decision, in start order."""
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(f"calmops/{name}")
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    runs = [r for r in runs if r.data.tags.get("calmops.decision") not in (None, "failed")]
    return [{"file": r.data.tags["calmops.file"], "decision": r.data.tags["calmops.decision"],
             "flow_run_id": r.data.tags.get("calmops.flow_run_id"), "start": r.info.start_time}
            for r in sorted(runs, key=lambda r: r.info.start_time)]


def assert_decided_once_in_arrival_order(name: str, names: list[str]) -> None:
    """Ledger claim order, MLflow decision order and the decisions' flow-run start order all agree with the
    arrival order, each file decided once, and nothing is left in incoming."""
    from prefect.client.orchestration import get_client

    assert done_in_claim_order(name) == names
    made = decisions(name)
    assert [d["file"] for d in made] == names  # each once, in arrival order
    with get_client(sync_client=True) as client:
        starts = [client.read_flow_run(d["flow_run_id"]).start_time for d in made]
    assert all(a <= b for a, b in itertools.pairwise(starts)), "a later file was decided by an earlier run"
    assert not [p for p in paths_of(name).incoming.iterdir() if p.is_file()]


def rename_in(folder: Path, name: str, frame, gap: float = 0.2) -> None:
    staged = folder.parent / f".{name}.staging"
    frame.to_csv(staged, index=False)
    os.replace(staged, folder / name)
    time.sleep(gap)


@contextmanager
def second_worker(tmp_path: Path):
    """Another process worker on the pool, started like the stack's own, for the length of the block."""
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    cmd, env = stack.command(stack.services()["worker"], get_settings())
    cmd[cmd.index("--name") + 1] = "calmops-second-worker"
    with open(tmp_path / "second-worker.log", "w") as log:
        worker = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(60)


def test_a_burst_of_30_files_is_decided_in_arrival_order_each_once(live, tmp_path):
    """Each file is announced as it arrives, so 30 runs are queued; two workers on the pool take them."""

    name = "order-burst"
    create(name, tmp_path)
    folder = paths_of(name).incoming
    names = [f"{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}{i:02d}.csv" for i in range(30)]  # name order ≠ arrival
    with second_worker(tmp_path):
        for i, f in enumerate(names):
            rename_in(folder, f, sea_frame(400, 8, seed=500 + i))
        until(lambda: len(done_in_claim_order(name)) == 30, 900, "the 30 files to be decided", interval=2)

    assert_decided_once_in_arrival_order(name, names)


HOLD_FIRST = '''
import time
from pathlib import Path

MARKER, GO = Path({marker!r}), Path({go!r})


def preprocess(df):
    if not MARKER.exists():
        MARKER.touch()
        while not GO.exists():
            time.sleep(0.2)
    return df
'''


def test_the_runs_of_files_a_turn_decided_are_cancelled_before_they_start(live, tmp_path):
    """While the first file's run holds the pipeline's turn, five more arrive and their runs wait for the
    pipeline's slot. The first run goes on to decide them (arrival order), and cancels their runs: none of
    them starts to find its file done, and each says which run decided its file."""
    from tests.e2e.test_file_arrival import flow_runs

    name = "order-redundant"
    marker, go = tmp_path / "first-call", tmp_path / "go"
    (tmp_path / "hold_first.py").write_text(HOLD_FIRST.format(marker=str(marker), go=str(go)))
    create(name, tmp_path, preprocess=str(tmp_path / "hold_first.py"))
    folder = paths_of(name).incoming
    names = [f"r{i}.csv" for i in range(6)]
    rename_in(folder, names[0], sea_frame(400, 8, seed=800))
    until(marker.exists, 300, "the first run to reach its preprocess step")
    for i, f in enumerate(names[1:], start=1):
        rename_in(folder, f, sea_frame(400, 8, seed=800 + i))
    run_of = lambda: {Path(r.parameters["path"]).name: r for r in flow_runs(name)}
    until(lambda: set(run_of()) == set(names), 120, "a flow run for each file")
    assert not any(r.state.is_running() for f, r in run_of().items() if f != names[0])  # the slot is taken
    go.touch()
    until(lambda: len(done_in_claim_order(name)) == 6, 300, "the six files to be decided", interval=2)
    until(lambda: all(r.state.is_final() for r in flow_runs(name)), 120, "every run to end")

    assert_decided_once_in_arrival_order(name, names)
    first = run_of()[names[0]]
    assert {d["flow_run_id"] for d in decisions(name)} == {str(first.id)}  # the first run decided all six
    assert first.state.is_completed(), first.state
    runs = flow_runs(name)
    assert len(runs) == 6, [(r.name, r.state.name) for r in runs]  # no file was announced a second time
    for run in runs:
        if run.id != first.id:
            assert run.state.is_cancelled() and str(first.id) in (run.state.message or ""), (run.name, run.state)
            assert run.state.name == "Decided by another run", run.state
            assert run.run_count == 0, run.name  # never started: no worker process, no slot taken


def _poisoned_stream(tmp: Path, name: str, order: str) -> tuple[Path, list[str]]:
    flag = tmp / f"{name}.poison"
    flag.write_text("on")
    module = tmp / f"{name}_poison.py"
    module.write_text(POISON.format(flag=str(flag)))
    create(name, tmp, order=order, preprocess=str(module),
           breaker={"max_failures": 100, "cooldown_seconds": 0.5, "max_cooldown_seconds": 1})
    folder = paths_of(name).incoming
    files = ["h0.csv", "h1-bad.csv", "h2.csv", "h3.csv"]
    for i, f in enumerate(files):
        frame = sea_frame(400, 8, seed=600 + i)
        if f == "h1-bad.csv":
            frame.loc[0, "x1"] = -1.0
        rename_in(folder, f, frame)
    return flag, files


def status_line(name: str) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("calmops")), "status", name], capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout


def calmops(*args: str) -> subprocess.CompletedProcess:
    """The command as a user's shell runs it: with this process's environment as Python holds it (a library that
    set COLUMNS in the C environment, as readline does, would fold its output at 80 columns)."""
    return subprocess.run([str(Path(sys.executable).with_name("calmops")), *args], capture_output=True, text=True,
                          timeout=120, check=False, env=dict(os.environ))


def test_a_paused_pipeline_s_files_wait_and_are_decided_in_arrival_order_once_it_is_resumed(live, tmp_path):
    """`calmops pause` through the running stack: a burst into the paused pipeline starts no flow run (the
    watcher scans every 3 s and announces again after 10 s, and would have announced every file by then); the
    files wait, counted by `status`, which says the pipeline is paused. `calmops resume`: decided in arrival
    order, each once."""
    import json

    from calmops.core.flow_runs import runs_in_states

    name = "order-paused"
    create(name, tmp_path)
    paused = calmops("pause", name, "--reason", "upstream export under review")
    assert paused.returncode == 0 and f"paused pipeline {name}" in paused.stdout, paused.stdout + paused.stderr
    folder = paths_of(name).incoming
    names = [f"{'dcba'[i]}{i}.csv" for i in range(4)]  # name order is not arrival order
    for i, f in enumerate(names):
        rename_in(folder, f, sea_frame(400, 8, seed=900 + i))
    time.sleep(20)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        assert runs_in_states(client, list(StateType), pipeline=name) == []  # no run, queued or otherwise
    shown = calmops("status", name, "--json")
    row = json.loads(shown.stdout)
    assert row["files_waiting"] == 4 and row["paused"]["reason"] == "upstream export under review", row
    assert f"pipeline {name} has been paused since" in " ".join(calmops("status", name).stdout.split())

    resumed = calmops("resume", name)
    assert resumed.returncode == 0 and "the watcher announces the files that waited" in resumed.stdout, resumed
    until(lambda: len(done_in_claim_order(name)) == 4, 600, "the 4 files decided after the resume", interval=2)
    assert_decided_once_in_arrival_order(name, names)


def test_a_failing_file_holds_the_files_behind_it_until_it_succeeds(live, tmp_path):
    name = "order-hold"
    flag, files = _poisoned_stream(tmp_path, name, "arrival")
    by_file = lambda: {e["file"]: e["status"] for e in entries(name)}
    try:
        until(lambda: by_file().get("h0.csv") == "done" and by_file().get("h1-bad.csv") == "pending", 900,
              "h0 decided and h1 failed")
        time.sleep(25)  # the watcher announces h2 and h3 again meanwhile (reemit after 10 s): they stay held
        held = by_file()
        assert held["h2.csv"] != "done" and held["h3.csv"] != "done", held
        # the status table's row; while a retry of h1 runs, that run holds nothing back ("-"): between retries
        until(lambda: "held behind h1-bad.csv" in " ".join(status_line(name).split()), 120, "status: held behind")
    finally:
        flag.unlink()  # the cause is fixed (also when this test fails: the next tests share the worker)
    # h1 succeeds at its next retry, then the files behind it go
    until(lambda: len(done_in_claim_order(name)) == 4, 300, "every file after the fix", interval=2)
    assert done_in_claim_order(name) == files
    assert [d["file"] for d in decisions(name)] == files


def test_with_order_none_a_failing_file_does_not_hold_the_others(live, tmp_path):
    name = "order-none"
    flag, _files = _poisoned_stream(tmp_path, name, "none")
    # while h1 keeps failing (its flag stays), the files after it are decided all the same: nothing is held
    until(lambda: set(done_in_claim_order(name)) == {"h0.csv", "h2.csv", "h3.csv"}
          and {e["file"]: (e["status"], e["decision"]) for e in entries(name)}["h1-bad.csv"] == ("pending", "failed"),
          900, "the healthy files decided while h1-bad.csv has failed")
    flag.unlink()


def test_prefect_yaml_s_deployment_serves_its_kind_instead_of_per_pipeline_ones_and_stale_automations_go(
        live, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.events import DeploymentEventTrigger
    from typer.testing import CliRunner

    from calmops.core.names import TAG
    from calmops.deployments.cli import app
    from calmops.deployments.deploy import describe, file_trigger
    from calmops.flows.stream import stream_flow

    create("order-scheme", tmp_path)  # with its own deployment
    trigger = DeploymentEventTrigger(**{**file_trigger("order-scheme").model_dump(),
                                        "name": "calmops-file-arrived-kind-stream",
                                        "match": {"prefect.resource.id": "calmops.pipeline.*",
                                                  "calmops.pipeline.kind": "stream"}})
    kind_id = stream_flow.to_deployment(name="stream", tags=[TAG, "calmops.kind.stream"], triggers=[trigger],
                                        work_pool_name="calmops").apply()  # what prefect.yaml makes
    try:
        result = CliRunner().invoke(app, ["deploy", "order-scheme"], terminal_width=400)
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())  # the console may fold the line (its width is set once a process)
        assert "served by prefect.yaml's deployment calmops-stream/stream" in said, said
        assert "removed calmops-stream/order-scheme" in said, said  # both would run every file
        assert describe("order-scheme")["deployments"] == [], describe("order-scheme")
    finally:  # the stack is shared: a per-kind deployment left behind would serve every later stream pipeline
        with get_client(sync_client=True) as client:
            client.delete_deployment(kind_id)  # deleted the way Prefect does: its automation stays behind
            assert client.read_automations_by_name("calmops-file-arrived-kind-stream")
    result = CliRunner().invoke(app, ["deploy", "order-scheme"], terminal_width=400)
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name("calmops-file-arrived-kind-stream") == []
        assert client.read_automations_by_name("calmops-file-arrived-order-scheme")


def test_files_waiting_when_the_watcher_starts_are_decided_in_arrival_order_each_once(live, tmp_path):
    """30 files already in incoming when the watcher starts (as at 'calmops up'): arrival order is their
    modification time, not their name nor the order they were written in."""

    from calmops.deployments import stack

    name = "order-waiting"
    names = [f"w-{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}{i:02d}.csv" for i in range(30)]  # name order ≠ arrival
    stack.stop("watcher")
    try:
        create(name, tmp_path)
        folder = paths_of(name).incoming
        t0 = time.time() - 600
        for i, f in enumerate(reversed(names)):  # written newest first: the order on disk is no guide
            sea_frame(400, 8, seed=700 + i).to_csv(folder / f, index=False)
        for i, f in enumerate(names):
            os.utime(folder / f, (t0 + i, t0 + i))
    finally:
        stack.start("watcher")
    until(lambda: len(done_in_claim_order(name)) == 30, 900, "the 30 waiting files to be decided", interval=2)

    assert_decided_once_in_arrival_order(name, names)


def database_errors() -> list[str]:
    """Lines of the stack's service logs that say Prefect's SQLite database refused a statement."""
    from calmops.core.settings import get_settings
    from calmops.deployments.prefect_server import database_refusals

    return database_refusals(get_settings().logs_dir)


def test_a_burst_of_100_files_over_4_pipelines_leaves_no_database_is_locked_in_any_log(live, tmp_path):
    """The embedded default under load: 100 files renamed into 4 pipelines' folders 0.05 s apart, each decided
    once in its pipeline's arrival order, and Prefect's SQLite database never refuses a write (no 'database is
    locked' traceback or failed state validation in any service's log since the stack started, which covers
    this package's other bursts before it too)."""
    names = {f"burst-{p}": [] for p in range(4)}
    for name in names:
        create(name, tmp_path)
    folders = {name: paths_of(name).incoming for name in names}
    for i in range(100):
        name = f"burst-{i % 4}"
        names[name].append(f"{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}{i:03d}.csv")
        rename_in(folders[name], names[name][-1], sea_frame(400, 8, seed=1000 + i), gap=0.05)
    until(lambda: all(len(done_in_claim_order(n)) == 25 for n in names), 1200, "the 100 files to be decided",
          interval=2)

    for name, files in names.items():
        assert_decided_once_in_arrival_order(name, files)
    assert database_errors() == []
