"""The calmops command line on a real Prefect API and MLflow store."""

import json
import warnings

import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()


def _spec_file(tmp_path, **changes):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**STREAM_SPEC, **changes}))
    return path


@pytest.mark.integration
def test_create_run_status_list_show_rollback(prefect_server, calmops_home, tmp_path):
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    data = tmp_path / "data"
    first = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=1), data, "a.csv")), "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    for key in ("pipeline", "file", "sha256", "decision", "reason", "drift_detected", "drifted_features",
                "champion_version", "challenger_version", "metrics", "mlflow_run_id", "flow_run_id"):
        assert key in out
    assert out["decision"] == "train" and out["champion_version"] == 1
    second = json.loads(runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 9.5, seed=2), data, "b.csv")),
                                            "--json"]).stdout)
    assert second["decision"] == "retrain_promoted"
    again = runner.invoke(app, ["run", "sea", str(data / "a.csv")])  # its bytes were decided: a duplicate
    assert "→ duplicate" in again.stdout and "champion unchanged" in again.stdout, again.stdout  # not "champion -"

    status = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert status["champion_version"] == 2 and status["aliases"]["previous"] == 1
    assert status["files_done"] == 2 and status["last_decision"] == "retrain_promoted"
    assert status["breaker"] == "closed"
    listing = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    assert [p["name"] for p in listing] == ["sea"]
    assert "target: y" in runner.invoke(app, ["show", "sea"]).stdout

    # the first file trained the first model: no drift was checked, so it has no report; the second has
    no_page = runner.invoke(app, ["report", "sea", "a.csv"])
    assert no_page.exit_code != 0 and "hint:" in no_page.stderr
    assert "no run of file 'a.csv' in pipeline 'sea' recorded a drift verdict (decided: train)" in no_page.stderr
    never = runner.invoke(app, ["report", "sea", "nosuch.csv"])  # a name it never took is not a first model
    assert never.exit_code != 0 and "pipeline 'sea' has decided no file named 'nosuch.csv'" in never.stderr, \
        never.output
    nowhere = runner.invoke(app, ["report", "sea", "-o", str(tmp_path / "no-such-folder" / "b.html")])
    assert nowhere.exit_code == 1 and f"{tmp_path / 'no-such-folder'} is not a folder" in nowhere.stderr, \
        nowhere.output  # said as such, not a bare FileNotFoundError with a hint to debug
    folder = runner.invoke(app, ["report", "sea", "-o", str(tmp_path)])
    assert folder.exit_code == 1 and f"{tmp_path} is a folder" in folder.stderr, folder.output
    page = tmp_path / "b.html"
    made = runner.invoke(app, ["report", "sea", "-o", str(page)])  # the latest file checked: b.csv
    assert made.exit_code == 0, made.output
    assert "b.csv (retrain_promoted)" in made.stdout and "<h1>sea · b.csv" in page.read_text()
    from mlflow import MlflowClient

    run = MlflowClient().get_run(second["mlflow_run_id"])  # the same page is in the run's artifacts
    assert "drift/report.html" in {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "drift")}
    # MLflow as its users read it: the batch is the run's dataset input, the registered model says whose it is
    (batch,) = run.inputs.dataset_inputs
    assert batch.dataset.name == "b.csv" and batch.dataset.digest == second["sha256"][:32]
    assert json.loads(batch.dataset.source)["uri"].endswith("b.csv")
    assert json.loads(batch.dataset.profile)["num_rows"] == 1000
    assert {t.key: t.value for t in batch.tags}["calmops.sha256"] == second["sha256"]
    # each version's holdout scores are metrics of its logged model, as in the version's scores tag
    version = MlflowClient().get_model_version("calmops.sea", "2")
    logged_model = MlflowClient().get_logged_model(version.source.removeprefix("models:/"))
    logged = {m.key: m.value for m in logged_model.metrics}
    scores = json.loads(version.tags["calmops.scores"])
    assert logged["holdout_accuracy"] == pytest.approx(scores["accuracy"]) and len(logged) >= 5, logged
    model = MlflowClient().get_registered_model("calmops.sea")
    assert "CalmOps pipeline 'sea'" in model.description and "'champion' serves predictions" in model.description
    assert model.tags["calmops.pipeline"] == "sea" and model.tags["calmops.experiment"] == "calmops/sea"

    import time

    rolling = time.time()
    rolled = runner.invoke(app, ["rollback", "sea"])
    assert rolled.exit_code == 0 and "v2 → v1" in rolled.stdout
    from calmops.core import registry
    from calmops.core.settings import get_settings
    from calmops.dashboards import data

    assert registry.alias_version("sea", "champion") == 1
    # the viewer's champion age counts from the rollback that served v1 again, not from v1's creation
    reg = data.registry_info(data.Connection(get_settings().mlflow_tracking_uri), "sea")
    created = next(v["created"] for v in reg["versions"] if v["version"] == 1)
    assert created.timestamp() < rolling <= data.champion_since(reg).timestamp() + 0.001
    assert registry.champion("sea").version == 1  # the prediction path serves it
    assert "processing a.csv" in runner.invoke(app, ["logs", "sea"]).stdout


@pytest.mark.integration
def test_the_report_of_a_quarantined_file_says_why_it_was_quarantined(prefect_server, calmops_home, tmp_path):
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    data = tmp_path / "data"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(500, 8, seed=1), data, "a.csv"))])
    assert first.exit_code == 0, first.output
    # MLflow's hint about integer columns is not printed at every model and batch logged: the model's inputs
    # are declared as floats, its integer outputs (classes) are never missing
    assert not [w for w in caught if "integer column" in str(w.message)], [str(w.message)[:80] for w in caught]
    lacking = sea_frame(500, 8, seed=2).drop(columns=["x2"])
    held = json.loads(runner.invoke(app, ["run", "sea", str(write_csv(lacking, data, "bad.csv")), "--json"]).stdout)
    assert held["decision"] == "quarantined"

    asked = runner.invoke(app, ["report", "sea", "bad.csv"])
    assert asked.exit_code != 0
    said = " ".join(asked.stderr.split())
    assert "'bad.csv' was quarantined before any drift check" in said and "x2" in said, said
    assert "bad.csv.reason.json" in said and "drop it into the incoming folder again" in said, said


def test_bad_spec_is_one_line_naming_the_key(calmops_home, tmp_path):
    result = runner.invoke(app, ["create", str(_spec_file(tmp_path, colour="blue"))])
    assert result.exit_code == 2
    assert "unknown key 'colour'" in result.stderr and "hint:" in result.stderr
    # the checks made when a spec is saved (its model class, its params) name the file as the others do
    typo = {"model": {"class": "sklearn.ensemble.RandomForestClassifierr"}}
    said = runner.invoke(app, ["create", str(_spec_file(tmp_path, **typo))])
    assert said.exit_code == 2 and said.stderr.startswith(f"error: {tmp_path / 'spec.yaml'}: model.class: "), \
        said.stderr
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    said = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path, **typo))])
    assert said.exit_code == 2 and said.stderr.startswith(f"error: {tmp_path / 'spec.yaml'}: model.class: "), \
        said.stderr


@pytest.mark.parametrize("change, named", [
    # each would have been created and then never promoted, never trained, or never deployed
    ({"evaluation": {"primary_metric": "acuracy"}},
     "evaluation.primary_metric: 'acuracy' is not a metric; did you mean 'accuracy'?"),
    ({"evaluation": {"thresholds": {"acuracy": {"min": 0.6}}}}, "evaluation.thresholds.acuracy: 'acuracy'"),
    ({"evaluation": {"thresholds": {"accuracy": {"min": 0.9, "max": 0.5}}}}, "min 0.9 is above max 0.5"),
    ({"evaluation": {"task": "classification", "primary_metric": "rmse"}}, "'rmse' is not a metric of classification"),
    ({"schedule": "every tuesday-ish"}, "schedule 'every tuesday-ish' is neither an interval"),
    ({"schedule": "61 * * * *"}, "schedule '61 * * * *' is not a cron expression"),
    ({"breaker": {"cooldown_seconds": 600, "max_cooldown_seconds": 60}}, "breaker.max_cooldown_seconds (60) is below"),
    ({"model": {"class": "sklearn.linear_model.Ridge"}, "evaluation": {}, "retrain": {"mode": "recalibration"}},
     "retrain.mode: recalibration applies to classifiers only"),
    ({"model": {"class": "sklearn.linear_model.Ridge"}, "evaluation": {},
      "retrain": {"mode": "full", "fallback_mode": "recalibration"}},
     "retrain.fallback_mode: recalibration applies to classifiers only"),
])
def test_a_value_that_would_break_the_pipeline_later_is_refused_at_create(calmops_home, tmp_path, change, named):
    from calmops.core.store import list_pipelines

    result = runner.invoke(app, ["create", str(_spec_file(tmp_path, **change))])
    assert result.exit_code == 2, result.output
    assert named in result.stderr.replace("\n", " "), result.stderr
    assert list_pipelines() == []  # nothing half-made


def test_a_spec_saved_before_a_check_existed_still_loads_and_update_mends_it(calmops_home, tmp_path):
    """The checks above run at create/update, not on every read: a pipeline saved with a value a newer version
    refuses (a cooldown above the default cap, a metric typo) keeps listing, and update can fix it."""
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    saved = calmops_home / "pipelines" / "sea" / "spec.yaml"
    data = yaml.safe_load(saved.read_text())
    data["breaker"] = {"cooldown_seconds": 7200}
    data["evaluation"] = {"primary_metric": "acuracy"}
    saved.write_text(yaml.safe_dump(data))
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0 and [p["name"] for p in json.loads(listed.stdout)] == ["sea"], listed.output
    assert runner.invoke(app, ["status", "sea", "--json"]).exit_code == 0
    mended = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path, seed=3))])
    assert mended.exit_code == 0, mended.output


def test_a_created_pipeline_is_in_the_viewer_before_its_first_file(calmops_home, tmp_path):
    """The viewer reads MLflow only: a pipeline whose experiment came with its first run was missing from the
    Overview (and 'no pipeline yet' was shown) until a file was decided."""
    from calmops.dashboards import data

    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    listed = data.list_pipelines(data.connection())
    assert [p["name"] for p in listed] == ["sea"], listed
    assert data.health(None, "closed", None) == "new"  # what its Overview row says: no run yet


def test_logs_of_a_service_of_the_stack(calmops_home, monkeypatch, tmp_path):
    """production.md: each service logs to $CALMOPS_HOME/logs/NAME.log, and `calmops logs` reads it too."""
    logs = calmops_home / "logs"
    logs.mkdir(parents=True)
    (logs / "worker.log").write_text("".join(f"line {i}\n" for i in range(100)))
    result = runner.invoke(app, ["logs", "worker", "-n", "3"])
    assert result.exit_code == 0 and result.stdout.splitlines() == ["line 97", "line 98", "line 99"], result.output
    missing = runner.invoke(app, ["logs", "watcher"])
    assert missing.exit_code == 1 and "when the watcher service first starts" in missing.stderr
    unknown = runner.invoke(app, ["logs", "nosuch"])
    assert unknown.exit_code == 1 and "no pipeline named 'nosuch'" in unknown.stderr
    assert "or a service: prefect, mlflow" in unknown.stderr  # the hint says both kinds of name it takes
    # the stack hands its services CALMOPS_RUN_DIR even when it is the default: a worker one of them starts (the
    # watcher, restarting it) logs where `calmops up`'s did, and `calmops logs` finds it there
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    monkeypatch.setenv("CALMOPS_RUN_DIR", str(calmops_home / "run"))
    assert stack.log_file(get_settings(), "worker") == logs / "worker.log"
    # a host with a run folder of its own reads its own services' logs, not the shared root's
    monkeypatch.setenv("CALMOPS_RUN_DIR", str(tmp_path / "host-b"))
    (tmp_path / "host-b" / "logs").mkdir(parents=True)
    (tmp_path / "host-b" / "logs" / "worker.log").write_text("host b's worker\n")
    assert runner.invoke(app, ["logs", "worker", "-n", "1"]).stdout.splitlines() == ["host b's worker"]


def test_delete_from_a_script_without_yes_says_why_nothing_was_deleted(calmops_home, tmp_path):
    """No terminal to answer the question (a script, CI): one error, JSON under --json; it printed 'Aborted!'
    on stderr and nothing on stdout."""
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    result = runner.invoke(app, ["delete", "sea", "--json"])  # CliRunner's stdin is not a terminal
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert "no terminal to confirm" in document["error"] and "--yes" in document["hint"], document
    assert (calmops_home / "pipelines" / "sea" / "spec.yaml").exists()


def test_unknown_pipeline_exits_non_zero_with_hint(calmops_home, tmp_path):
    path = write_csv(sea_frame(10, 8, seed=1), tmp_path, "a.csv")
    result = runner.invoke(app, ["run", "nope", str(path)])
    assert result.exit_code == 1 and "no pipeline named 'nope'" in result.stderr


def test_update_is_versioned(calmops_home, tmp_path):
    from calmops.core.store import spec_history

    runner.invoke(app, ["create", str(_spec_file(tmp_path))])
    assert runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path, seed=3))]).exit_code == 0
    history = spec_history("sea")
    assert len(history) == 2 and "+seed: 3" in history[-1]["diff"]


def test_an_update_that_drops_the_labels_section_warns_that_its_ids_are_no_longer_id_columns(calmops_home, tmp_path):
    """labels.join_on's ids are id columns; an update without the labels section (to serve prediction-only, say)
    dropped them silently: the predictions lost their ids, and the next model would learn them as features."""
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path, labels={"join_on": ["rid"]}))]).exit_code == 0
    said = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path))])
    assert said.exit_code == 0, said.output
    text = " ".join(said.output.split())
    assert ("warning: id_columns: 'rid' is no longer an id column (labels.join_on added it): the predictions files "
            "no longer carry it, and the next model trained would take it as a feature; add id_columns: [rid] to "
            "keep it") in text, text
    kept = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path, id_columns=["rid"]))])
    assert kept.exit_code == 0 and "warning" not in kept.output, kept.output


@pytest.mark.integration
def test_a_prediction_only_pipeline_needs_a_champion_to_serve(prefect_server, calmops_home, tmp_path):
    """Without a champion every file of a prediction-only pipeline failed and opened its breaker; create and
    update now refuse such a spec, naming the way to a first model. Once one is trained, the update goes through."""
    only = _spec_file(tmp_path, prediction_only=True)
    refused = runner.invoke(app, ["create", str(only)])
    assert refused.exit_code == 1 and "prediction_only, but MLflow has no champion" in refused.stderr, refused.stderr
    assert "train one first" in refused.stderr

    (tmp_path / "plain").mkdir()
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path / "plain"))]).exit_code == 0
    refused = runner.invoke(app, ["update", "sea", str(only)])
    assert refused.exit_code == 1 and "no champion" in refused.stderr, refused.stderr
    trained = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=1), tmp_path / "d", "a.csv"))])
    assert trained.exit_code == 0, trained.output
    assert runner.invoke(app, ["update", "sea", str(only)]).exit_code == 0
    served = runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(300, 8, seed=2), tmp_path / "d", "b.csv")),
                                 "--json"])
    assert json.loads(served.stdout)["decision"] == "predict_only"


@pytest.mark.parametrize("force_color", [None, "1"])
def test_a_long_path_stays_on_its_line_when_the_output_is_not_a_terminal(tmp_path, monkeypatch, force_color):
    """Piped or captured output is read by scripts: a path split over two lines at column 80 breaks them. CI
    systems set FORCE_COLOR (rich then treats the pipe as a terminal): colours, but no folding."""
    import click

    from calmops.core import registry
    from calmops.core.settings import get_settings

    home = tmp_path / ("a_home_whose_name_alone_is_longer_than_eighty_columns_" + "x" * 40)
    monkeypatch.setenv("CALMOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    if force_color:
        monkeypatch.setenv("FORCE_COLOR", force_color)
    import calmops.deployments.console as consoles

    monkeypatch.delitem(vars(consoles), "console", raising=False)  # made anew, as in a new process
    registry.configure(get_settings())  # this home's own registry, as a new process would use
    result = runner.invoke(app, ["create", str(_spec_file(tmp_path))])
    assert result.exit_code == 0, result.output
    incoming = home / "pipelines" / "sea" / "incoming"
    assert any(str(incoming) in click.unstyle(line) for line in result.stdout.splitlines()), result.stdout


@pytest.mark.integration
def test_rollback_waits_for_the_run_deciding_files_and_then_stays(prefect_server, calmops_home, tmp_path):
    """A rollback while a run decides files used to act at once, and the run then promoted over the model
    rolled back to, judged against the one it replaced. It waits for the pipeline's turn (held here as a run
    holds it), is written to the pipeline's log, and says what it did in JSON."""
    import threading
    import time

    from calmops.core import registry, statedb
    from calmops.core.store import pipeline_paths, read_spec

    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    data = tmp_path / "data"
    assert json.loads(runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 8, seed=1), data, "a.csv")),
                                          "--json"]).stdout)["decision"] == "train"
    assert json.loads(runner.invoke(app, ["run", "sea", str(write_csv(sea_frame(1000, 9.5, seed=2), data, "b.csv")),
                                          "--json"]).stdout)["decision"] == "retrain_promoted"
    paths = pipeline_paths(read_spec("sea"))
    held, released = threading.Event(), {}

    def a_run_deciding_files():
        with statedb.turn(paths.root):
            held.set()
            time.sleep(3)
            released["at"] = time.monotonic()

    holder = threading.Thread(target=a_run_deciding_files)
    holder.start()
    assert held.wait(30)
    result = runner.invoke(app, ["rollback", "sea", "--json"])
    done = time.monotonic()
    holder.join()
    assert result.exit_code == 0, result.output
    assert done >= released["at"]  # it waited for the turn
    assert json.loads(result.stdout) == {"pipeline": "sea", "champion": 1, "previous": 2}
    assert "the rollback waits" in result.stderr
    assert registry.alias_version("sea", "champion") == 1
    log = (paths.logs / "pipeline.log").read_text()
    assert "rollback (calmops rollback): champion v2 → v1" in log
    # a second rollback serves v2 again: it is no longer marked as rolled back (the viewer said so of the champion)
    from mlflow import MlflowClient

    assert json.loads(runner.invoke(app, ["rollback", "sea", "--json"]).stdout)["champion"] == 2
    tags = {v: MlflowClient().get_model_version("calmops.sea", str(v)).tags.get("calmops.rolled_back") for v in (1, 2)}
    assert tags == {1: "true", 2: None}, tags


@pytest.mark.integration
def test_relaunch_local_says_which_files_the_first_ones_turn_decided(prefect_server, calmops_home, tmp_path):
    """`calmops relaunch NAME --local` runs the first waiting file, whose turn decides the files behind it
    (order: arrival): those were then run again and printed "→ duplicate", as if they copied something."""
    import os

    from calmops.core.store import pipeline_paths, read_spec

    assert runner.invoke(app, ["create", str(_spec_file(tmp_path))]).exit_code == 0
    folder = pipeline_paths(read_spec("sea")).incoming
    for i, name in enumerate(["a.csv", "b.csv", "c.csv"]):
        path = write_csv(sea_frame(600, 8, seed=i), folder, name)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))  # arrival order a, b, c
    done = runner.invoke(app, ["relaunch", "sea", "--local"])
    assert done.exit_code == 0, done.output
    lines = [line for line in done.stdout.splitlines() if line.startswith("sea · ")]
    assert lines[0] == "sea · a.csv → train", lines
    assert lines[1:] == [f"sea · {n} → decided in the same turn (see 'calmops history sea')" for n in ("b.csv", "c.csv")]
    assert "duplicate" not in done.stdout


@pytest.mark.integration
def test_create_warns_when_incremental_retraining_would_fit_in_full(prefect_server, calmops_home, tmp_path):
    spec = _spec_file(tmp_path, retrain={"mode": "incremental"})  # the spec's model: a decision tree
    out = runner.invoke(app, ["create", str(spec)])
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert "warning:" in said and "retrain.mode: 'incremental'" in said
    assert "DecisionTreeClassifier does not have" in said
