"""The stream flow on a real Prefect API (test harness) and a real MLflow store (SQLite)."""

import json

import numpy as np
import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run, runs_for_sha, update_spec, versions

pytestmark = pytest.mark.integration


def test_seeded_scenario_train_no_drift_then_retrain_promoted(prefect_server, stream_spec):
    """Files 1–4 from concept θ=8, files 5–8 from θ=9.5 (13 % of the plane changes label)."""
    folder = incoming("sea")
    outcomes = []
    for i in range(8):
        theta = 8.0 if i < 4 else 9.5
        outcomes.append(run("sea", write_csv(sea_frame(1000, theta, seed=100 + i), folder, f"f{i}.csv")))
    decisions = [o["decision"] for o in outcomes]
    assert decisions[0] == "train"
    assert decisions[1:4] == ["no_drift"] * 3, [o["reason"] for o in outcomes[1:4]]
    assert outcomes[4]["drift_detected"] and decisions[4] == "retrain_promoted", outcomes[4]["reason"]
    assert "performance drift" in outcomes[4]["reason"]
    # aliases: v1 was champion until file 5 promoted v2; v1 is now 'previous'
    promoted = outcomes[4]["champion_version"]
    assert registry.alias_version("sea", "champion") == max(
        o["champion_version"] for o in outcomes if o["decision"] in ("train", "retrain_promoted"))
    assert registry.alias_version("sea", "previous") is not None
    assert promoted == 2 and outcomes[4]["challenger_version"] == 2
    # 'challenger' names a model still waiting, never the champion it became
    assert registry.alias_version("sea", "challenger") not in (registry.alias_version("sea", "champion"), promoted)
    # every processed file is in processed/, byte for byte, and none are left waiting
    paths = pipeline_paths(read_spec("sea"))
    assert sorted(p.name for p in paths.processed.iterdir()) == [f"f{i}.csv" for i in range(8)]
    assert not list(folder.iterdir())
    # the decision landed in MLflow with the file hash and the flow run id
    sha = digest(paths.processed / "f4.csv")
    [mlrun] = runs_for_sha("sea", sha)
    assert mlrun.data.tags["calmops.decision"] == "retrain_promoted"
    assert mlrun.data.tags["calmops.flow_run_id"] == outcomes[4]["flow_run_id"]
    assert mlrun.data.metrics["challenger_accuracy"] > mlrun.data.metrics["holdout_champion_accuracy"]
    # predictions written for every file with the version that served them
    preds = pd.read_csv(paths.predictions / "f4.csv.predictions.csv")
    assert len(preds) == 1000 and set(preds["model_version"]) == {promoted}


def test_a_slow_decay_inside_the_tolerance_triggers_a_retrain(prefect_server, stream_spec):
    """Same inputs every file, the champion wrong on 0.6 % more rows each time: no file falls 3 % below the
    score at promotion, but four files in a row worsen, and the fourth is a significant trend."""
    update_spec("sea", drift={"concept": []})  # only the score trail speaks here
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8.0, seed=1), folder, "a.csv"))["decision"] == "train"
    champion = registry.champion("sea").model
    outcomes = []
    for k in range(1, 5):
        frame = sea_frame(1000, 8.0, seed=10 + k)
        labels = champion.predict(frame[["x1", "x2", "x3"]])
        labels[: 6 * k] = 1 - labels[: 6 * k]  # accuracy exactly 1 − 0.006 k
        outcomes.append(run("sea", write_csv(frame.assign(y=labels), folder, f"d{k}.csv")))
    assert [o["decision"] for o in outcomes[:3]] == ["no_drift"] * 3, [o["reason"] for o in outcomes]
    assert "performance decay" in outcomes[3]["reason"] and "performance drift" not in outcomes[3]["reason"]
    assert outcomes[3]["decision"] in ("retrain_promoted", "retrain_rejected")
    trail = json.loads((pipeline_paths(read_spec("sea")).state / "performance.json").read_text())
    assert [round(t["value"], 3) for t in trail["scores"]] == [0.994, 0.988, 0.982, 0.976]


def test_worse_challenger_is_not_promoted(prefect_server, stream_spec):
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    update_spec("sea", model={"class": "sklearn.dummy.DummyClassifier", "params": {}},
                evaluation={"thresholds": {}})
    out = run("sea", write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv"))
    assert out["decision"] == "retrain_rejected", out["reason"]
    assert registry.alias_version("sea", "champion") == 1
    assert registry.alias_version("sea", "challenger") == 2  # kept, with its scores and reason
    assert out["metrics"]["challenger"]["accuracy"] < out["metrics"]["holdout_champion"]["accuracy"]


def test_better_challenger_within_margin_is_not_promoted(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    update_spec("sea", evaluation={"promotion_margin": 0.9})
    out = run("sea", write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv"))
    assert out["decision"] == "retrain_rejected"
    assert "margin 0.9" in out["reason"] and registry.alias_version("sea", "champion") == 1


def test_first_model_below_threshold_is_not_promoted(prefect_server, stream_spec):
    update_spec("sea", evaluation={"thresholds": {"accuracy": {"min": 0.99}}})
    out = run("sea", write_csv(sea_frame(1000, 8, seed=1, noise=0.2), incoming("sea"), "a.csv"))
    assert out["decision"] == "retrain_rejected" and "first model not promoted" in out["reason"]
    assert registry.alias_version("sea", "champion") is None
    assert registry.alias_version("sea", "challenger") == 1


def test_same_bytes_are_processed_once_even_under_another_name(prefect_server, stream_spec):
    folder = incoming("sea")
    frame = sea_frame(800, 8, seed=5)
    first = run("sea", write_csv(frame, folder, "one.csv"))
    again = run("sea", write_csv(frame, folder, "one.csv"))
    renamed = run("sea", write_csv(frame, folder, "copy-of-one.csv"))
    assert first["decision"] == "train"
    assert again["details"].get("duplicate") and renamed["details"].get("duplicate")
    assert again["decision"] == renamed["decision"] == "duplicate"  # its own decision, not the first run's
    assert renamed["details"]["processed_by"]["file"] == "one.csv"
    assert renamed["details"]["processed_by"]["decision"] == "train"
    assert len(runs_for_sha("sea", first["sha256"])) == 1
    assert versions("sea") == [1]
    # the copies are kept, not deleted
    assert len(list(pipeline_paths(read_spec("sea")).processed.iterdir())) == 3


def test_a_decided_file_that_cannot_be_moved_keeps_its_decision_and_is_moved_by_a_later_run(
        prefect_server, stream_spec, monkeypatch):
    """The move to processed is the last step: a processed folder that cannot be written (the file system
    refuses the move, as for a read-only or immutable folder) leaves the decision as it was taken (recorded, the ledger done, the batch in the
    history), not a failed run over a promoted model with its rows taken back; the file waits in incoming,
    and once the folder can be written a run answers it a duplicate and moves it."""
    folder = incoming("sea")
    paths = pipeline_paths(read_spec("sea"))
    from calmops.flows import common

    moves = common.move_to_processed

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(paths.processed / "a.csv"))

    monkeypatch.setattr(common, "move_to_processed", refused)
    first = write_csv(sea_frame(600, 8.0, seed=1), folder, "a.csv")
    outcome = run("sea", first)
    assert outcome["decision"] == "train", outcome
    book = ledger(paths)
    assert book.status(digest(first)) == "done" and first.is_file()
    assert len(list(paths.history.glob("*.parquet"))) == 1  # the rows it was trained on stay in the history
    logged = (paths.logs / "pipeline.log").read_text()
    assert "a.csv was decided, but could not be moved to" in logged, logged[-1500:]

    monkeypatch.setattr(common, "move_to_processed", moves)  # the folder can be written again: the file is answered and moved
    again = run("sea", first)
    assert again["decision"] == "duplicate" and again["details"]["processed_by"]["file"] == "a.csv"
    assert not first.exists() and (paths.processed / "a.csv").is_file()
    assert registry.alias_version("sea", "champion") == 1


def test_a_promotion_its_run_could_not_record_is_recorded_by_the_files_next_run(prefect_server, stream_spec,
                                                                                 monkeypatch):
    """A run promotes its challenger and then cannot record the decision (MLflow's server went away; a kill
    there ends the same). The file's next run found the new champion, trained on these very rows, scored it
    perfect and answered "no drift": the promotion was credited to no file. It is recorded now, for this
    file, with its rows back in the history and no model trained again."""
    from calmops.flows import common

    folder = incoming("sea")
    for i in range(4):
        run("sea", write_csv(sea_frame(1000, 8.0, seed=100 + i), folder, f"f{i}.csv"))
    records = common.record_run
    calls = []

    def record_once_unreachable(outcome, *args, **kwargs):
        calls.append(outcome.decision)
        if len(calls) == 1:
            raise RuntimeError("the MLflow server went away")
        return records(outcome, *args, **kwargs)

    monkeypatch.setattr(common, "record_run", record_once_unreachable)
    drifted = write_csv(sea_frame(1000, 9.5, seed=104), folder, "f4.csv")
    failed = run("sea", drifted)
    assert calls[0] == "retrain_promoted" and failed["decision"] == "failed"  # promoted, then not recorded
    assert registry.alias_version("sea", "champion") == 2
    monkeypatch.setattr(common, "record_run", records)

    again = run("sea", drifted)
    assert again["decision"] == "retrain_promoted", again["reason"]
    assert again["champion_version"] == 2 and "promoted by an earlier run" in again["reason"]
    assert versions("sea") == [1, 2]  # nothing trained again
    paths = pipeline_paths(read_spec("sea"))
    assert len(list(paths.history.glob(f"*-{digest(paths.processed / 'f4.csv')[:16]}.parquet"))) == 1
    nxt = run("sea", write_csv(sea_frame(1000, 9.5, seed=105), folder, "f5.csv"))
    assert nxt["champion_version"] == 2 and nxt["decision"] != "failed", nxt

    # a promotion that was recorded is not recorded again when its file comes back to a ledger that forgot it
    # (set aside, as a damaged ledger is): the file is judged as any file is
    (paths.root / "ledger.sqlite").rename(paths.root / "ledger.sqlite.aside")
    for suffix in ("-wal", "-shm"):
        (paths.root / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    back = folder / "f4-again.csv"
    back.write_bytes((paths.processed / "f4.csv").read_bytes())
    judged = run("sea", back)
    assert "promoted by an earlier run" not in judged["reason"] and judged["decision"] != "retrain_promoted", judged


def test_duplicate_event_after_the_file_moved_is_harmless(prefect_server, stream_spec):
    from calmops.flows.stream import stream_flow

    path = write_csv(sea_frame(800, 8, seed=6), incoming("sea"), "x.csv")
    first = stream_flow(pipeline="sea", path=str(path))
    second = stream_flow(pipeline="sea", path=str(path), sha256=first["sha256"])
    assert second["details"]["duplicate"] and versions("sea") == [1]


def test_prediction_only_writes_predictions_without_labels_or_training(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "train.csv"))
    update_spec("sea", prediction_only=True)
    unlabeled = sea_frame(300, 8, seed=9).drop(columns=["y"])
    out = run("sea", write_csv(unlabeled, folder, "score-me.csv"))
    assert out["decision"] == "predict_only"
    assert versions("sea") == [1]
    preds = pd.read_csv(out["predictions_file"])
    assert len(preds) == 300 and set(preds["model_version"]) == {1}
    assert {"prediction", "proba_0", "proba_1"} <= set(preds.columns)
    assert np.allclose(preds["proba_0"] + preds["proba_1"], 1.0)


def test_prediction_only_without_a_champion_fails_clearly(prefect_server, stream_spec):
    update_spec("sea", prediction_only=True)
    path = write_csv(sea_frame(100, 8, seed=1).drop(columns=["y"]), incoming("sea"), "p.csv")
    out = run("sea", path)
    assert out["decision"] == "failed" and "no champion" in out["reason"]
    assert path.exists()  # the file waits for a retry; nothing lost


def test_multiclass_string_labels_and_regression(prefect_server, calmops_home):
    from calmops.core.store import save_spec, spec_from_dict

    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 3))
    labels = np.array(["low", "mid", "high"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    save_spec(spec_from_dict({"name": "tri", "target": "band",
                              "model": {"class": "sklearn.ensemble.RandomForestClassifier",
                                        "params": {"n_estimators": 20, "random_state": 0}}}), create=True)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(band=labels)
    out = run("tri", write_csv(frame, incoming("tri"), "t.csv"))
    assert out["decision"] == "train" and out["metrics"]["challenger"]["balanced_accuracy"] > 0.8
    assert set(out["metrics"]["challenger"]["confusion_matrix"]["labels"]) == {"low", "mid", "high"}

    save_spec(spec_from_dict({"name": "reg", "target": "t",
                              "model": {"class": "sklearn.linear_model.Ridge", "params": {}},
                              "evaluation": {"thresholds": {"r2": {"min": 0.9}}}}), create=True)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(t=3 * X[:, 0] - X[:, 1] + rng.normal(0, 0.1, 900))
    out = run("reg", write_csv(frame, incoming("reg"), "r.csv"))
    assert out["decision"] == "train" and out["metrics"]["challenger"]["r2"] > 0.9
    assert registry.champion("reg").schema.task == "regression"

    # the next files of both: the champion's performance estimated without labels, next to the realized one
    X2 = rng.normal(size=(900, 3))
    tri = run("tri", write_csv(pd.DataFrame(X2, columns=["a", "b", "c"]).assign(
        band=np.array(["low", "mid", "high"])[np.digitize(X2[:, 0], [-0.5, 0.5])]), incoming("tri"), "t2.csv"))
    assert abs(tri["metrics"]["estimated"]["balanced_accuracy"] - tri["metrics"]["champion"]["balanced_accuracy"]) < 0.05
    reg = run("reg", write_csv(pd.DataFrame(X2, columns=["a", "b", "c"]).assign(
        t=3 * X2[:, 0] - X2[:, 1] + rng.normal(0, 0.1, 900)), incoming("reg"), "r2.csv"))
    estimated, realized = reg["metrics"]["estimated"], reg["metrics"]["champion"]
    assert estimated["rmse_low"] <= realized["rmse"] * 1.2 and estimated["rmse_high"] >= realized["rmse"] * 0.8
    assert abs(estimated["mae"] - realized["mae"]) < 0.2 * realized["mae"], (estimated, realized)


def test_ledger_records_every_file(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(600, 8, seed=1), folder, "a.csv"))
    (folder / "bad.csv").write_text("")
    run("sea", folder / "bad.csv")
    entries = {e["file"]: e for e in ledger(pipeline_paths(read_spec("sea"))).entries()}
    assert entries["a.csv"]["decision"] == "train" and entries["a.csv"]["status"] == "done"
    sidecar = pipeline_paths(read_spec("sea")).quarantine / "bad.csv.reason.json"
    assert json.loads(sidecar.read_text())["reason"].endswith("the file is empty (0 bytes): nothing to read; if it was written in place, write it under another name (x.csv.part) and rename it when complete; drop it in again once it holds its rows")


def test_a_model_version_is_downloaded_once_per_machine(prefect_server, stream_spec, monkeypatch):
    """Each flow run is its own process: the champion comes from the local copy, not from MLflow again."""
    import mlflow

    assert run("sea", write_csv(sea_frame(500, 8.0, seed=1), incoming("sea"), "a.csv"))["decision"] == "train"
    registry._load_version.cache_clear()  # a fresh process
    fetched = []
    real = mlflow.artifacts.download_artifacts
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda *a, **k: fetched.append(k) or real(*a, **k))
    champion = registry.champion("sea")
    assert champion.version == 1 and fetched == []  # the flow's own load left the copy behind
    copies = list((pipeline_paths(read_spec("sea")).root.parent.parent / "cache" / "models").rglob("MLmodel"))
    assert len(copies) == 1 and f"1-{champion.run_id}" in str(copies[0])
    probe = sea_frame(50, 8.0, seed=2).drop(columns="y")
    registry._load_version.cache_clear()
    copies[0].parent.parent.rename(copies[0].parent.parent.with_name("gone"))  # no copy: download again
    again = registry.champion("sea")
    assert fetched and (again.model.predict(probe) == champion.model.predict(probe)).all()


def test_a_claim_left_by_a_dead_run_is_taken_over_and_that_run_closed_in_prefect_and_mlflow(
        prefect_server, stream_spec):
    """A run killed while deciding a file (kill -9, out of memory) can close nothing itself: its flow run would
    show Running in the Prefect UI for ever and its MLflow run RUNNING. The run that takes its claim over closes
    both; the file is then decided once."""
    import sqlite3
    import subprocess

    from mlflow import MlflowClient
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    @flow(name="calmops-killed-run")
    def killed() -> None: ...

    data = write_csv(sea_frame(600, 8.0, seed=7), incoming("sea"), "k.csv")
    sha = digest(data)
    with get_client(sync_client=True) as client:
        dead_flow_run = client.create_flow_run(killed, state=Running())
    dead_mlflow_run = registry.start_run("sea", "k.csv", {"calmops.file": "k.csv"})
    book = ledger(pipeline_paths(read_spec("sea")))
    assert book.claim(sha, "k.csv", str(dead_flow_run.id))
    book.attach_run(sha, dead_mlflow_run)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with sqlite3.connect(book.path) as con:  # its owner is a process that has ended
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE sha256=?", (gone.pid, sha))

    outcome = run("sea", data)

    assert outcome["decision"] == "train"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(dead_flow_run.id).state
    assert state.is_crashed(), state
    assert "ended while deciding k.csv" in state.message and outcome["flow_run_id"] in state.message
    assert MlflowClient().get_run(dead_mlflow_run).info.status == "KILLED"
    assert [e["status"] for e in book.entries()] == ["done"]


def graded_frame(n: int, seed: int, *, crowded: bool = False) -> pd.DataFrame:
    """SEA's boundary x1 + x2 = 8 with graded certainty: P(y = 1) = sigmoid(1.5 (8 - x1 - x2)), so rows near the
    boundary are coin flips and rows far from it are sure. ``crowded``: every row near the boundary (the same
    concept, other inputs)."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, n)
    x2 = np.clip(8 - x1 + rng.normal(0, 0.5, n), 0, 10) if crowded else rng.uniform(0, 10, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * (8 - x1 - x2)))).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": rng.uniform(0, 10, n), "y": y})


def test_the_champions_performance_is_estimated_on_every_batch_and_a_fall_without_labels_is_a_signal(
        prefect_server, stream_spec):
    """CBPE end to end in the flow: calibrated on the holdout that chose the first model, the estimate of a
    labelled batch lands next to its realized accuracy in MLflow; on unlabeled rows crowded at the class
    boundary (a covariate shift: the concept is the same) the estimate falls with the accuracy the labels would
    have shown, and ``evaluation.estimated_trigger`` says so."""
    folder = incoming("sea")
    update_spec("sea", model={"class": "sklearn.linear_model.LogisticRegression", "params": {}})
    run("sea", write_csv(graded_frame(3000, 1), folder, "train.csv"))
    labelled = run("sea", write_csv(graded_frame(2000, 2), folder, "labelled.csv"))
    estimated, realized = labelled["metrics"]["estimated"], labelled["metrics"]["champion"]["accuracy"]
    assert abs(estimated["accuracy"] - realized) < 0.03, (estimated, realized)
    assert estimated["accuracy_low"] <= estimated["accuracy"] <= estimated["accuracy_high"]
    logged = runs_for_sha("sea", labelled["sha256"])[0].data.metrics
    assert logged["estimated_accuracy"] == pytest.approx(estimated["accuracy"])
    assert logged["champion_accuracy"] == pytest.approx(realized)

    update_spec("sea", prediction_only=True, evaluation={"estimated_trigger": 0.1})
    crowded = graded_frame(2000, 3, crowded=True)
    realized_crowded = float(np.mean(registry.champion("sea").model.predict(crowded) == crowded["y"]))
    out = run("sea", write_csv(crowded.drop(columns=["y"]), folder, "near-the-boundary.csv"))
    assert out["decision"] == "predict_only" and out["drift_detected"]
    assert "estimated performance drift: accuracy" in out["reason"], out["reason"]
    now = out["metrics"]["estimated"]
    assert realized_crowded < realized - 0.15  # the labels would have shown a large fall...
    assert abs(now["accuracy"] - realized_crowded) < 0.04, (now, realized_crowded)  # ...and the estimate shows it


def test_a_repeated_event_for_a_long_named_file_already_processed_is_a_duplicate(prefect_server, stream_spec):
    """A file event can come twice; the second finds the file gone from incoming and looks for it in processed/,
    where a name longer than a file system allows is kept shortened (store.bounded_name)."""
    path = write_csv(sea_frame(800, 8, seed=6), incoming("sea"), "a" * 250 + ".csv")
    assert run("sea", path)["decision"] == "train" and not path.exists()
    again = run("sea", path)
    assert again["decision"] == "duplicate", again["reason"]
