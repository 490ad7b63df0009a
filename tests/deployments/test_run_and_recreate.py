"""`calmops run` leaves the user's file where it is; `create` refuses to adopt an old registered model silently."""

import json
import time

import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()
pytestmark = pytest.mark.integration


def test_run_copies_an_outside_file_and_recreate_refuses_the_old_champion(prefect_server, calmops_home, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    outside = write_csv(sea_frame(1000, 8, seed=1), tmp_path / "mine", "a.csv")
    before = outside.read_bytes()
    result = runner.invoke(app, ["run", "sea", str(outside), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"] == "train"
    assert outside.read_bytes() == before  # the user's copy is still there, unchanged
    from calmops.core.store import pipeline_paths, read_spec

    processed = pipeline_paths(read_spec("sea")).processed
    assert [p.read_bytes() for p in processed.iterdir()] == [before]  # the run worked on a copy

    # the pipeline's folder goes (as `calmops delete` moves it aside); MLflow keeps its registered model
    import shutil

    shutil.move(str(pipeline_paths(read_spec("sea")).root), str(tmp_path / "deleted-sea"))
    refused = runner.invoke(app, ["create", str(spec_file)])
    assert refused.exit_code != 0
    assert "registered model 'calmops.sea' with champion v1" in refused.stderr and "--adopt" in refused.stderr
    adopted = runner.invoke(app, ["create", str(spec_file), "--adopt"])
    assert adopted.exit_code == 0, adopted.output
    status = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert status["champion_version"] == 1


def test_models_registered_before_the_prefix_are_renamed_and_other_teams_models_left_alone(
        prefect_server, calmops_home, tmp_path):
    """A pipeline's registered model is ``calmops.<name>``. One that CalmOps registered as ``<name>`` (before the
    prefix) is renamed with its versions and aliases by ``calmops up`` or the pipeline's next run, which is judged
    by that champion (no new first model); ``create`` refuses to adopt it silently; a model of another team
    that merely has a pipeline's name is never touched."""
    from mlflow import MlflowClient

    from calmops.core import registry
    from calmops.deployments.operations_cli import migrate_model_names

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    data = tmp_path / "data"
    first = json.loads(runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=1), data, "a.csv")),
                                           "--json"]).stdout)
    assert first["decision"] == "train"
    client = MlflowClient()
    client.rename_registered_model("calmops.sea", "sea")  # as an older CalmOps left it
    # a pipeline created again under that name: refused (the old champion would serve it), nothing renamed,
    # unless it is adopted on purpose
    import shutil

    from calmops.core.store import pipeline_paths, read_spec

    shutil.move(str(pipeline_paths(read_spec("sea")).root), str(tmp_path / "deleted-sea"))
    refused = runner.invoke(app, ["create", str(spec_file)])
    assert refused.exit_code != 0 and "registered model 'sea' with champion v1" in refused.stderr
    assert {a: int(v) for a, v in client.get_registered_model("sea").aliases.items()} == {"champion": 1}
    assert runner.invoke(app, ["create", str(spec_file), "--adopt"]).exit_code == 0
    assert registry.aliases("sea") == {"champion": 1}  # under calmops.sea now
    client.rename_registered_model("calmops.sea", "sea")  # old again, for what `calmops up` does
    client.create_registered_model("fraud")  # another team's model, no CalmOps tags
    other = {**STREAM_SPEC, "name": "fraud"}
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(other))
    assert runner.invoke(app, ["create", str(tmp_path / "fraud.yaml")]).exit_code == 0  # no clash: calmops.fraud

    assert migrate_model_names() == {"sea": "calmops.sea"}  # what `calmops up` does and prints
    assert registry.aliases("sea") == {"champion": 1}
    assert client.get_registered_model("fraud").description in ("", None)  # untouched
    client.rename_registered_model("calmops.sea", "sea")  # and lazily, on the pipeline's next run
    second = json.loads(runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=2), data, "b.csv")),
                                            "--json"]).stdout)
    assert second["decision"] != "train" and second["champion_version"] in (1, 2), second
    model = client.get_registered_model("calmops.sea")
    assert model.tags["calmops.pipeline"] == "sea" and "CalmOps pipeline 'sea'" in model.description
    assert [m.name for m in client.search_registered_models()].count("sea") == 0


def test_run_refuses_a_folder_or_a_link_from_outside_and_moves_nothing(calmops_home, tmp_path):
    """`calmops run NAME data/` (a folder given for a file) must not quarantine, i.e. move, the user's folder;
    nor a link (its target or the link itself). It is refused before any run, with exit code 2."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    folder = tmp_path / "data"
    data = write_csv(sea_frame(200, 8, seed=1), folder, "a.csv")
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    for given, what in ((folder, "is a folder"), (link, "is a link")):
        result = runner.invoke(app, ["run", "sea", str(given), "--json"])
        assert result.exit_code == 2, result.output
        document = json.loads(result.stdout)
        assert str(given) in document["error"] and what in document["error"], document
    assert folder.is_dir() and data.is_file() and link.is_symlink()  # everything is where it was
    from calmops.core.store import pipeline_paths, read_spec

    paths = pipeline_paths(read_spec("sea"))
    assert not paths.quarantine.exists() or not any(paths.quarantine.iterdir())
    assert not list(paths.incoming.iterdir())


def test_a_hand_run_with_the_watcher_up_makes_one_flow_run_per_file(prefect_server, calmops_home, tmp_path,
                                                                    monkeypatch):
    """`calmops run` while the stack's watcher watches the pipeline (the README's "Using it" after `make demo`):
    the copy it puts into incoming is the hand run's, so the watcher announces nothing for it (else a second flow
    run per file ends *Duplicate* beside the real one), and a file dropped into incoming after it still is. A
    user's file whose content was processed before is answered a duplicate without a copy in incoming (which the
    watcher would announce), and the user's file stays where it was."""
    from calmops.core.store import ledger, pipeline_paths, read_spec
    from tests.deployments.test_watcher import Recorder, make_watcher

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    data = tmp_path / "data"
    rec = Recorder()
    with make_watcher(rec, settle=0.0):
        for i, name in enumerate(["a.csv", "b.csv"]):
            outcome = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(600, 8, seed=i), data, name)),
                                          "--json"])
            assert outcome.exit_code == 0, outcome.output
            decided = json.loads(outcome.stdout)["decision"]  # the first file trains, the second is judged
            assert decided == "train" if i == 0 else decided in ("no_drift", "retrain_promoted", "retrain_rejected")
        again = data / "again" / "a.csv"
        again.parent.mkdir()
        again.write_bytes((data / "a.csv").read_bytes())
        import calmops.flows

        loaded = calmops.flows.flow_for

        def cold_start(kind):  # as in a fresh `calmops run` process, the flow's modules take a while to load
            time.sleep(1.0)
            return loaded(kind)

        monkeypatch.setattr(calmops.flows, "flow_for", cold_start)
        outcome = runner.invoke(app, ["run", "sea", str(again), "--json"])
        assert outcome.exit_code == 0, outcome.output
        answer = json.loads(outcome.stdout)
        assert answer["decision"] == "duplicate" and answer["details"]["processed_by"]["file"] == "a.csv", answer
        assert again.is_file() and not list(pipeline_paths(read_spec("sea")).incoming.iterdir())
        time.sleep(1.0)  # past the settle time: a copy announced would be recorded by now
        dropped = write_csv(sea_frame(600, 8, seed=9), pipeline_paths(read_spec("sea")).incoming, "c.csv")
        rec.wait_for(1)  # the watcher is alive and announces a file dropped by hand
        time.sleep(1.0)  # past the settle time of the last event
    assert rec.names() == [dropped.name]
    book = ledger(pipeline_paths(read_spec("sea")))
    assert sorted(e["file"] for e in book.entries() if e["status"] == "done") == ["a.csv", "b.csv"]


def test_the_report_of_a_duplicate_names_the_file_it_copies(prefect_server, calmops_home, tmp_path):
    """A duplicate is answered, not checked: its drift is unknown (null, not false), and its report says which
    file it copies and how to get that report (it said no run had recorded a drift verdict, as for a failed run)."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    frame = sea_frame(600, 8, seed=1)
    first = runner.invoke(app, ["run", "sea", str(write_csv(frame.copy(), tmp_path / "e", "first.csv")), "--json"])
    assert json.loads(first.stdout)["decision"] == "train"
    again = runner.invoke(app, ["run", "sea", str(write_csv(frame, tmp_path / "f", "again.csv")), "--json"])
    assert json.loads(again.stdout)["decision"] == "duplicate"
    assert json.loads(again.stdout)["drift_detected"] is None
    logged = runner.invoke(app, ["logs", "sea"]).stdout
    assert "again.csv has the same content as first.csv, already processed" in logged, logged[-2000:]
    told = runner.invoke(app, ["report", "sea", "again.csv"])
    assert told.exit_code == 1
    assert "'again.csv' has the same content as 'first.csv'" in told.stderr and "calmops report sea first.csv" in \
        told.stderr, told.stderr


def test_a_pipeline_deleted_and_created_again_starts_with_no_runs_and_the_old_ones_are_kept(
        prefect_server, calmops_home, tmp_path, monkeypatch):
    """As its folder and ledger are set aside, so is its MLflow experiment: the new pipeline's experiment (what
    the viewer and the demo's summary read) holds none of the old runs, which stay readable under the retired
    name; created again, a deleted experiment came back with every old run."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from calmops.core.registry import RETIRED_PREFIX, experiment_name

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    first = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(600, 8, seed=1), tmp_path / "a", "a.csv")),
                                "--json"])
    old_run = json.loads(first.stdout)["mlflow_run_id"]
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # delete asks the API (the test harness's)
    deleted = runner.invoke(app, ["delete", "sea", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert runner.invoke(app, ["create", str(spec_file), "--adopt"]).exit_code == 0

    client = MlflowClient()
    fresh = client.get_experiment_by_name(experiment_name("sea"))
    assert fresh.lifecycle_stage == "active" and client.search_runs([fresh.experiment_id]) == []
    retired = [e for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)
               if e.name.startswith(f"{RETIRED_PREFIX}sea-")]
    assert len(retired) == 1 and client.get_run(old_run).info.experiment_id == retired[0].experiment_id
    second = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(600, 8, seed=2), tmp_path / "b", "b.csv")),
                                 "--json"])
    assert second.exit_code == 0, second.output
    assert [r.info.run_id for r in client.search_runs([fresh.experiment_id])] == [
        json.loads(second.stdout)["mlflow_run_id"]]
    # deleted again: a second experiment set aside beside the first, each with its own runs
    assert runner.invoke(app, ["delete", "sea", "--yes"]).exit_code == 0
    retired = [e for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)
               if e.name.startswith(f"{RETIRED_PREFIX}sea-")]
    assert len(retired) == 2 and client.get_experiment_by_name(experiment_name("sea")) is None
