"""Labels that arrive after the features (spec ``labels``): predictions kept, joined, scored per model version,
a concept change caught and retrained from the joined rows, every odd id counted, each labels file once."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.awaiting import Awaiting
from calmops.core.store import pipeline_paths, read_spec, save_spec, spec_from_dict
from tests.conftest import STREAM_SPEC, sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def late_spec(calmops_home):
    spec = spec_from_dict({**STREAM_SPEC, "name": "late", "labels": {"join_on": ["id"]}})
    save_spec(spec, create=True)
    return read_spec("late")


def batch(n: int, theta: float, seed: int, first_id: int) -> pd.DataFrame:
    return sea_frame(n, theta, seed).assign(id=np.arange(first_id, first_id + n))


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="y")


def labels(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([f[["id", "y"]] for f in frames], ignore_index=True)


def accuracy_of(version: int, frame: pd.DataFrame) -> float:
    model = registry.load_version("late", version).model
    return float((model.predict(frame[["x1", "x2", "x3"]]) == frame["y"].to_numpy()).mean())


def test_labels_two_files_later_are_joined_scored_per_version_and_retrain_on_a_concept_change(
        prefect_server, late_spec):
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    assert labels_folder is not None and labels_folder.is_dir()
    kept = pipeline_paths(late_spec).state / "awaiting"

    def kept_for():  # the features files whose rows are kept for their labels, by content
        return {p.stem for p in kept.glob("*.parquet")}

    f0, f1, f2 = batch(1000, 8.0, 1, 0), batch(1000, 8.0, 2, 1000), batch(1000, 9.5, 3, 2000)
    assert run("late", write_csv(f0, folder, "f0.csv"))["decision"] == "train"
    first = run("late", write_csv(features(f1), folder, "f1.csv"))
    sha = {"f1": first["sha256"]}
    assert first["decision"] == "predict_only" and "labels" in first["reason"]
    assert first["details"]["awaiting_labels"]["rows"] == 1000
    second = run("late", write_csv(features(f2), folder, "f2.csv"))
    assert second["decision"] == "predict_only"
    sha["f2"] = second["sha256"]
    assert kept_for() == {sha["f1"], sha["f2"]}
    assert Awaiting(pipeline_paths(late_spec).root, pipeline_paths(late_spec).state).waiting(30)["waiting"] == 2000

    # the labels of f1, two files later, with 5 ids nobody predicted and 3 named twice
    extra = pd.DataFrame({"id": np.arange(90_000, 90_005), "y": 0})
    l1 = pd.concat([labels(f1), extra, labels(f1).iloc[:3]], ignore_index=True)
    out = run("late", write_csv(l1, labels_folder, "l1.csv"))
    counts = out["details"]["labels"]
    assert (counts["matched"], counts["unmatched"], counts["duplicate"]) == (1000, 5, 3)
    assert sorted(counts["unmatched_ids"]) == [str(i) for i in range(90_000, 90_005)]  # one join column: the ids
    assert out["decision"] == "no_drift", out["reason"]  # the same concept as the champion's
    # the predictions as v1 made them, scored now that the labels are known
    assert out["metrics"]["realized_v1"]["accuracy"] == pytest.approx(accuracy_of(1, f1))
    assert kept_for() == {sha["f2"]}  # every row of f1 is labelled: its kept rows are deleted, f2's wait
    # in the MLflow UI the run is named as the ledger and the CLI name the file (a features file l1.csv's would be
    # l1.csv)
    from mlflow import MlflowClient

    assert MlflowClient().get_run(out["mlflow_run_id"]).info.run_name == "labels/l1.csv"

    # the labels of f2 (a concept change the champion predicted blind): caught now, retrained on the joined rows
    f3 = batch(1000, 9.5, 4, 3000)
    third = run("late", write_csv(features(f3), folder, "f3.csv"))
    assert third["decision"] == "predict_only"
    out = run("late", write_csv(labels(f2), labels_folder, "l2.csv"))
    assert out["drift_detected"] and out["decision"] == "retrain_promoted", out["reason"]
    assert out["metrics"]["realized_v1"]["accuracy"] == pytest.approx(accuracy_of(1, f2))
    assert out["metrics"]["realized_v1"]["accuracy"] < 0.92  # θ 8 → 9.5 relabels about 13 % of the plane
    v2 = out["champion_version"]
    assert registry.alias_version("late", "champion") == v2
    assert registry.load_version("late", v2).tags["calmops.training"].count("l2.csv") == 1
    # trained on labels/l2.csv: the tag says the folder (the viewer names the file as the ledger does)
    assert registry.load_version("late", v2).training["folder"] == "labels"
    assert kept_for() == {third["sha256"]}

    # the next features are predicted by v2; one labels file for rows of both versions scores each on its own
    f4 = batch(1000, 9.5, 5, 4000)
    assert run("late", write_csv(features(f4), folder, "f4.csv"))["champion_version"] == v2
    out = run("late", write_csv(labels(f3, f4), labels_folder, "l34.csv"))
    realized = out["details"]["labels"]["realized"]
    assert {int(v): r["rows"] for v, r in realized.items()} == {1: 1000, v2: 1000}
    assert out["metrics"][f"realized_v{v2}"]["accuracy"] == pytest.approx(accuracy_of(v2, f4))
    assert out["metrics"][f"realized_v{v2}"]["accuracy"] > out["metrics"]["realized_v1"]["accuracy"]
    assert kept_for() == set()
    # all together, the predictions as they were made: the labels file's serving score in history (not the score
    # of the champion at the time its labels came, v2 on f3 too)
    made = (accuracy_of(1, f3) + accuracy_of(v2, f4)) / 2  # as many rows of each
    assert out["metrics"]["realized"]["accuracy"] == pytest.approx(made)
    from calmops.deployments.history import file_history

    told = file_history(read_spec("late"))
    [row] = [f for f in told["files"] if f["file"] == "labels/l34.csv"]
    assert row["score"] == pytest.approx(out["metrics"]["realized"][told["metric"]])
    assert row["score"] != pytest.approx(out["metrics"]["champion"][told["metric"]])

    # the same labels bytes again: decided once; ids labelled before by another file are counted, not reused
    again = write_csv(labels(f2), labels_folder, "l2-again.csv")
    assert run("late", again)["decision"] == "duplicate"
    relabel = run("late", write_csv(labels(f1).iloc[:50].assign(y=1), labels_folder, "l1-fixed.csv"))
    assert relabel["decision"] == "rejected_input" and "none of its 50 id(s)" in relabel["reason"]
    assert "were labelled by an earlier labels file" in relabel["reason"] and "drop it again" not in relabel["reason"]
    assert relabel["details"]["quarantined_as"]


def test_a_bad_labels_file_is_quarantined_with_its_reason_and_its_rows_keep_waiting(prefect_server, late_spec):
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    out = run("late", write_csv(labels(f1).rename(columns={"y": "label"}), labels_folder, "l1.csv"))
    assert out["decision"] == "rejected_input" and "without column(s) y" in out["reason"]
    missing = labels(f1).astype({"y": float})
    missing.loc[7, "y"] = np.nan
    out = run("late", write_csv(missing, labels_folder, "l1b.csv"))
    assert out["decision"] == "rejected_input" and "'y' has 1 missing value(s) (first at row 8)" in out["reason"]
    assert "remove the rows without a label and drop the file in again" in out["reason"]
    quarantined = sorted(p.name for p in pipeline_paths(late_spec).quarantine.iterdir())
    assert "l1.csv" in quarantined and "l1b.csv" in quarantined
    # nothing was taken from the rows waiting: the good labels file matches all of them
    out = run("late", write_csv(labels(f1), labels_folder, "l1c.csv"))
    assert out["details"]["labels"]["matched"] == 600


def test_a_file_without_its_ids_is_refused_and_labels_are_only_for_stream_pipelines(prefect_server, late_spec):
    folder = incoming("late")
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    out = run("late", write_csv(features(batch(600, 8.0, 2, 1000)).drop(columns="id"), folder, "f1.csv"))
    assert out["decision"] == "rejected_input" and "id column(s) id missing" in out["reason"]
    with pytest.raises(ValueError, match="'labels'.*is for the stream kind, not 'block'") as refused:
        spec_from_dict({**STREAM_SPEC, "name": "late2", "kind": "block", "block_column": "b",
                        "labels": {"join_on": ["id"]}})
    assert "prediction_only" not in str(refused.value)  # a block spec with a target: said as what it is
    with pytest.raises(ValueError, match="'labels'.*remove 'prediction_only: true'"):
        spec_from_dict({**STREAM_SPEC, "name": "late3", "prediction_only": True, "labels": {"join_on": ["id"]}})


def test_a_partly_labelled_file_is_refused_with_its_unlabelled_rows_counted_and_the_split_that_takes_it(
        prefect_server, late_spec):
    """A file whose target is filled in some rows only is neither a labelled file nor one whose labels come later:
    it is refused, and the reason names the file, counts the rows without a label and says how to split it. The
    split it describes is taken: every row without the target column (predicted, kept for labels), then the
    labelled rows' ids and labels as a labels file (joined)."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    f1 = batch(600, 8.0, 2, 1000).astype({"y": float})
    f1.loc[f1.index % 4 == 1, "y"] = np.nan  # 150 rows without a label, the first in data row 2
    out = run("late", write_csv(f1, folder, "f1.csv"))
    assert out["decision"] == "rejected_input"
    reason = out["reason"]
    assert reason.startswith("f1.csv: target column 'y' is empty in 150 of its 600 row(s)"), reason
    assert "data row 2, 6," in reason
    assert "without the 'y' column into the incoming folder" in reason
    assert f"the 450 labelled rows' id and y as a labels file into {labels_folder}" in reason
    # the split, as the reason says
    features_run = run("late", write_csv(f1.drop(columns="y"), folder, "f1-features.csv"))
    assert features_run["decision"] == "predict_only" and features_run["details"]["awaiting_labels"]["rows"] == 600
    joined = run("late", write_csv(f1.dropna(subset=["y"])[["id", "y"]], labels_folder, "f1-labels.csv"))
    assert joined["details"]["labels"]["matched"] == 450, joined["reason"]


def test_a_partly_labelled_first_file_is_told_to_train_on_its_labelled_rows_first(prefect_server, late_spec):
    """With no model yet, rows without the target cannot be predicted (a file of them alone is refused: no first
    model without labels) and a labels file has nothing to join: the reason leads with the labelled rows as a file
    of their own, and that split is taken: they train the first model, then the others are predicted and kept."""
    folder = incoming("late")
    f0 = batch(800, 8.0, 1, 0).astype({"y": float})
    f0.loc[f0.index % 4 == 1, "y"] = np.nan  # 200 rows without a label
    reason = run("late", write_csv(f0, folder, "f0.csv"))["reason"]
    assert reason.startswith("f0.csv: target column 'y' is empty in 200 of its 800 row(s)"), reason
    split = reason.split("Split it: ", 1)[1]
    assert split.startswith("the pipeline has no model yet, so put the 600 labelled rows into the incoming folder "
                            "first, as a file of their own"), reason
    assert "then the 200 others without the 'y' column" in split and "labels file" not in split, reason
    # the split, as the reason says
    trained = run("late", write_csv(f0.dropna(subset=["y"]), folder, "f0-labelled.csv"))
    assert trained["decision"] == "train", trained["reason"]
    rest = run("late", write_csv(f0[f0["y"].isna()].drop(columns="y"), folder, "f0-rest.csv"))
    assert rest["decision"] == "predict_only" and rest["details"]["awaiting_labels"]["rows"] == 200


def test_labels_of_another_type_than_the_models_classes_are_quarantined_with_the_reason(prefect_server, late_spec):
    """Text labels for a model trained on 0/1 can never match a prediction: the labels file is quarantined
    with a reason that says so (not a failed run), and the rows keep waiting for usable labels."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    text = labels(f1).assign(y=lambda d: d["y"].map({0: "no", 1: "yes"}))
    out = run("late", write_csv(text, labels_folder, "l1.csv"))
    assert out["decision"] == "rejected_input", out["reason"]
    assert "target column 'y' holds text" in out["reason"] and "classes are numbers ('0', '1')" in out["reason"]
    assert not any(k.startswith("realized") for k in out["metrics"]) and "labels" not in out["details"]
    assert run("late", write_csv(labels(f1), labels_folder, "l1-fixed.csv"))["details"]["labels"]["matched"] == 600


def test_labels_before_their_features_are_set_aside_and_the_same_bytes_join_once_the_features_came(
        prefect_server, late_spec):
    """Labels may overtake their features: the labels file is quarantined with the reason, and the very same
    bytes dropped again after the features were predicted are joined (not taken for a duplicate)."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    early = run("late", write_csv(labels(f1), labels_folder, "f1.csv"))
    assert early["decision"] == "rejected_input" and "drop it again" in early["reason"]
    assert not any(k.startswith("realized") for k in early["metrics"])
    run("late", write_csv(features(f1), folder, "f1.csv"))
    served = pd.read_csv(pipeline_paths(late_spec).predictions / "f1.csv.predictions.csv")
    # the same bytes again, under the features file's own name: joined, and the served predictions stay as made
    out = run("late", write_csv(labels(f1), labels_folder, "f1.csv"))
    assert out["decision"] != "rejected_input" and out["details"]["labels"]["matched"] == 600, out["reason"]
    assert out["predictions_file"] is None
    assert pd.read_csv(pipeline_paths(late_spec).predictions / "f1.csv.predictions.csv").equals(served)
    # the labels file is in the ledger under its folder's name: never queued with the incoming files
    from calmops.core.store import ledger

    book = ledger(pipeline_paths(late_spec))
    assert "labels/f1.csv" in [e["file"] for e in book.entries()] and not book.queue()
    # and in the history, the refusal as well as the join: each with when its file arrived
    from calmops.deployments.history import file_history

    told = [f for f in file_history(read_spec("late"))["files"] if f["sha256"] == early["sha256"]]
    assert [(f["file"], f["status"]) for f in told] == [("labels/f1.csv", "quarantined"), ("labels/f1.csv", "decided")]
    assert all(f["arrived"] for f in told) and told[0]["arrived"] <= told[1]["arrived"], told


def test_labels_of_which_some_overtook_their_features_join_the_others_and_set_the_rest_aside_to_drop_again(
        prefect_server, late_spec):
    """A labels file for two features files, only the first of which has come: its rows are joined, and the
    rows of the second are set aside in quarantine, with a reason saying to drop them into the labels folder
    again (the file itself is taken: the same bytes again are a duplicate). Dropped again once the second
    features file is predicted, they are joined: no label is lost."""
    from calmops.core.store import quarantine_records

    paths = pipeline_paths(late_spec)
    folder, labels_folder = incoming("late"), paths.labels
    f0, f1, f2 = batch(600, 8.0, 1, 0), batch(300, 8.0, 2, 1000), batch(200, 8.0, 3, 2000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    both = run("late", write_csv(labels(f1, f2), labels_folder, "l12.csv"))
    joined = both["details"]["labels"]
    assert (joined["matched"], joined["unmatched"]) == (300, 200), both["reason"]
    aside = Path(joined["unmatched_file"])
    assert aside.parent == paths.quarantine and aside.name == "l12.unmatched.csv"
    kept = pd.read_csv(aside)
    assert sorted(kept["id"]) == list(range(2000, 2200))  # f2's ids, each with its label as written
    assert kept.set_index("id")["y"].to_dict() == f2.set_index("id")["y"].to_dict()
    [(_, record)] = [r for r in quarantine_records(paths) if r[1]["file"] == aside.name]
    assert "200 of the 500 label rows of l12.csv match no row waiting" in record["reason"]
    assert f"drop this file into the labels folder ({labels_folder})" in record["reason"]
    assert run("late", write_csv(labels(f1, f2), labels_folder, "l12.csv"))["decision"] == "duplicate"

    run("late", write_csv(features(f2), folder, "f2.csv"))
    again = run("late", aside.rename(labels_folder / aside.name))
    assert (again["details"]["labels"]["matched"], again["details"]["labels"]["unmatched"]) == (200, 0)
    assert "unmatched_file" not in again["details"]["labels"]
    assert Awaiting(paths.root, paths.state).waiting(30)["waiting"] == 0  # every predicted row got its label


def test_unmatched_labels_are_set_aside_in_their_own_format_and_delimiter_and_join_when_dropped_again(
        prefect_server, late_spec):
    """A Parquet labels file's unmatched rows are set aside as Parquet, a semicolon CSV's as a semicolon CSV: each
    is read back as its labels file was, and joins once the features have come."""
    paths = pipeline_paths(late_spec)
    folder, labels_folder = incoming("late"), paths.labels
    f0, f1, f2 = batch(600, 8.0, 1, 0), batch(200, 8.0, 2, 1000), batch(200, 8.0, 3, 2000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    labels(f1, f2).to_parquet(labels_folder / "l12.parquet", index=False)
    out = run("late", labels_folder / "l12.parquet")
    parquet_aside = Path(out["details"]["labels"]["unmatched_file"])
    assert parquet_aside.name == "l12.unmatched.parquet"
    assert sorted(pd.read_parquet(parquet_aside)["id"]) == list(range(2000, 2200))  # f2's
    run("late", write_csv(features(f2.iloc[:100]), folder, "f2a.csv"))
    assert run("late", parquet_aside.rename(labels_folder / parquet_aside.name))["details"]["labels"]["matched"] == 100
    semicolons = labels_folder / "l2b.csv"  # the rest set aside again: f2's second half, as a semicolon CSV
    labels(f2).to_csv(semicolons, sep=";", index=False)
    run("late", write_csv(features(f2.iloc[100:150]), folder, "f2b.csv"))
    out = run("late", semicolons)
    joined = out["details"]["labels"]
    assert (joined["matched"], joined["labelled_before"], joined["unmatched"]) == (50, 100, 50), joined
    csv_aside = Path(joined["unmatched_file"])
    assert csv_aside.name == "l2b.unmatched.csv" and csv_aside.read_text().splitlines()[0] == "id;y"
    run("late", write_csv(features(f2.iloc[150:]), folder, "f2c.csv"))
    again = run("late", csv_aside.rename(labels_folder / csv_aside.name))
    assert again["details"]["labels"]["matched"] == 50, again["reason"]  # read with its delimiter, joined
    assert Awaiting(paths.root, paths.state).waiting(30)["waiting"] == 0


def test_a_first_file_without_labels_and_labels_before_any_model_are_told_to_start_with_a_labelled_file(
        prefect_server, late_spec):
    """A new pipeline's first file without the target cannot train, and its labels cannot help (nothing was
    predicted for them to label): both refusals say the way out, a file with the target in every row."""
    paths = pipeline_paths(late_spec)
    f0 = batch(600, 8.0, 1, 0)
    first = run("late", write_csv(features(f0), incoming("late"), "f0.csv"))
    assert first["decision"] == "rejected_input"
    assert "whose target column 'y' is filled in every row" in first["reason"]
    assert f"drop such a file into {paths.incoming} first, then this one again" in first["reason"]
    early = run("late", write_csv(labels(f0), paths.labels, "l0.csv"))
    assert early["decision"] == "rejected_input" and "no champion yet" in early["reason"]
    assert f"whose target column 'y' is filled in every row, dropped into {paths.incoming}" in early["reason"]
    assert run("late", write_csv(f0, incoming("late"), "labelled.csv"))["decision"] == "train"  # the way out


def test_a_labels_file_too_small_to_train_on_says_its_predictions_were_scored_not_that_it_was_predicted(
        prefect_server, late_spec):
    paths = pipeline_paths(late_spec)
    f0, f1 = batch(600, 8.0, 1, 0), batch(300, 8.0, 2, 1000)
    run("late", write_csv(f0, incoming("late"), "f0.csv"))
    run("late", write_csv(features(f1), incoming("late"), "f1.csv"))
    few = run("late", write_csv(labels(f1).iloc[:10], paths.labels, "few.csv"))
    assert few["decision"] == "predict_only" and few["details"]["labels"]["matched"] == 10
    assert "too few to train" in few["reason"] and "made when their features came, are scored" in few["reason"]
    assert "predicted the file" not in few["reason"] and few["predictions_file"] is None
    assert "realized_v1" in few["metrics"]


def test_labels_written_as_floats_score_the_predictions_made_as_integers(prefect_server, late_spec):
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    floats = labels(f1).astype({"y": float})
    path = labels_folder / "l1.parquet"
    floats.to_parquet(path, index=False)
    out = run("late", path)
    assert out["metrics"]["realized_v1"]["accuracy"] == pytest.approx(accuracy_of(1, f1))
    assert out["metrics"]["realized_v1"]["accuracy"] > 0.9


def test_calmops_relaunch_finds_a_labels_file_waiting_in_the_labels_folder(prefect_server, late_spec):
    """Without the watcher, 'calmops relaunch --local' decides what waits in both folders (and a scheduled scan
    announces it): the labels file joins the rows it labels."""
    from rich.console import Console

    from calmops.deployments.operations_cli import relaunch_files
    from calmops.deployments.watcher import waiting_files

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    waiting = write_csv(labels(f1), labels_folder, "l1.csv")
    assert waiting_files("late") == [waiting]
    assert relaunch_files(["late"], local=True, console=Console(quiet=True)) == {"late": [str(waiting)]}
    paths = pipeline_paths(late_spec)
    assert Awaiting(paths.root, paths.state).waiting(30)["waiting"] == 0
    assert (paths.processed / "l1.csv").exists() and not waiting.exists()


def test_labels_written_as_floats_in_a_csv_are_the_integer_classes_and_the_retrained_model_keeps_them(
        prefect_server, late_spec):
    """A labels CSV that went through pandas with a missing value writes 1.0/0.0: those are the classes 1/0 of a
    model trained on integers, not new classes, and the model retrained from them learns 0/1 (so the next
    retrain, on history and new rows together, sees one type of label)."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(1000, 8.0, 1, 0), batch(1000, 9.5, 2, 1000)
    assert run("late", write_csv(f0, folder, "f0.csv"))["decision"] == "train"
    run("late", write_csv(features(f1), folder, "f1.csv"))
    floats = labels(f1).astype({"y": float})
    assert "1.0" in write_csv(floats, labels_folder, "l1.csv").read_text()
    out = run("late", labels_folder / "l1.csv")
    assert out["decision"] == "retrain_promoted", out["reason"]
    assert "new class" not in out["reason"] and out["details"]["labels"]["matched"] == 1000
    v2 = registry.load_version("late", out["champion_version"])
    assert v2.schema.classes == [0, 1] and all(type(c) is int for c in v2.schema.classes)
    # a labelled file later retrains on the history (f0 and the joined rows) and its own rows: one label type
    update_spec("late", retrain={"mode": "history"})
    out = run("late", write_csv(batch(1000, 7.0, 3, 2000), folder, "f2.csv"))
    assert out["decision"] in ("retrain_promoted", "retrain_rejected", "no_drift"), out["reason"]
    assert "new class" not in out["reason"]


def test_boolean_or_fractional_labels_for_integer_classes_are_quarantined_naming_file_column_values_and_classes(
        prefect_server, late_spec):
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    run("late", write_csv(f0, folder, "f0.csv"))
    run("late", write_csv(features(f1), folder, "f1.csv"))
    booleans = labels(f1).assign(y=lambda d: d["y"].astype(bool))
    out = run("late", write_csv(booleans, labels_folder, "l1.csv"))
    assert out["decision"] == "rejected_input", out["reason"]
    assert out["reason"].startswith("l1.csv: target column 'y' holds booleans ('True', 'False') but the "
                                    "champion's classes are numbers ('0', '1')"), out["reason"]
    halves = labels(f1).astype({"y": float})
    halves.loc[3, "y"] = 0.5
    out = run("late", write_csv(halves, labels_folder, "l1b.csv"))
    assert out["decision"] == "rejected_input" and "\n" not in out["reason"]
    assert "l1b.csv: target column 'y' holds numbers that are not whole ('0.5')" in out["reason"]
    assert "classes are whole numbers ('0', '1')" in out["reason"]
    quarantined = {p.name for p in pipeline_paths(late_spec).quarantine.iterdir()}
    assert {"l1.csv", "l1b.csv"} <= quarantined
    assert run("late", write_csv(labels(f1), labels_folder, "l1c.csv"))["details"]["labels"]["matched"] == 600


def test_zero_padded_text_ids_join_from_a_csv_and_ids_are_listed_and_counted_as_the_docs_say(
        prefect_server, late_spec):
    """Features in Parquet keep their ids as text ("000001"); a labels CSV that writes them the same way joins
    them. A features file naming one id three times reports one repeated id; a single join column's unmatched
    ids are listed as the ids themselves, in the record and in the reason."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    f1 = batch(600, 8.0, 2, 1000).assign(id=[f"{i:06d}" for i in range(1, 601)])
    f1.loc[[10, 11], "id"] = "000001"  # the id 000001 named three times
    features(f1).to_parquet(folder / "f1.parquet", index=False)
    out = run("late", folder / "f1.parquet")
    assert out["decision"] == "predict_only" and out["details"]["awaiting_labels"]["repeated_ids"] == 1
    nobody = run("late", write_csv(pd.DataFrame({"id": ["0090001", "0090002"], "y": [0, 1]}), labels_folder,
                                   "early.csv"))
    assert nobody["decision"] == "rejected_input" and "e.g. ['0090001', '0090002']" in nobody["reason"]
    # and it is shown how the ids that wait are written: f1's first rows, all 600 rows of it waiting
    assert "600 predicted row(s) wait, with ids such as ['000001', '000002', '000003']" in nobody["reason"]
    late = pd.concat([labels(f1.drop_duplicates("id")), pd.DataFrame({"id": ["0090001"], "y": [1]})])
    path = write_csv(late, labels_folder, "l1.csv")
    assert "\n000001," in path.read_text()
    out = run("late", path)
    assert out["decision"] != "rejected_input", out["reason"]
    counts = out["details"]["labels"]
    assert (counts["matched"], counts["unmatched"]) == (600, 1) and counts["unmatched_ids"] == ["0090001"]


def test_a_features_row_without_its_id_is_counted_and_warned_not_left_waiting_for_labels(prefect_server, late_spec):
    """No labels file can name a row whose id is empty (a labels file with an empty id is refused): the row is
    predicted, but not kept waiting; the record says how many such rows, and which, and the log warns."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    f1 = batch(600, 8.0, 2, 1000).astype({"id": float})
    f1.loc[[5, 40], "id"] = np.nan  # data rows 6 and 41 have an empty id
    out = run("late", write_csv(features(f1), folder, "f1.csv"))
    assert out["decision"] == "predict_only", out["reason"]
    told = out["details"]["awaiting_labels"]
    assert (told["rows"], told["without_id"], told["without_id_rows"]) == (598, 2, [6, 41])
    assert Awaiting(paths.root, paths.state).waiting(30)["waiting"] == 598
    said = (paths.logs / "pipeline.log").read_text()
    assert "f1.csv: 2 row(s): data row 6, 41 without an id in id" in said
    # the labels of every row that has an id label the whole file: nothing is left waiting
    out = run("late", write_csv(labels(f1.dropna(subset=["id"])), labels_folder, "l1.csv"))
    assert out["details"]["labels"]["matched"] == 598
    assert Awaiting(paths.root, paths.state).waiting(30)["waiting"] == 0


def test_a_class_the_champion_never_saw_in_a_labels_file_is_listed_in_new_classes(prefect_server, late_spec):
    """Labels that name a class the champion was never trained on are said in ``details.new_classes``, as for a
    labelled features file (docs/kinds.md): here class 2 for a model of classes 0 and 1."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    f1 = batch(600, 8.0, 2, 1000)
    assert run("late", write_csv(features(f1), folder, "f1.csv"))["decision"] == "predict_only"
    late = labels(f1)
    late.loc[:9, "y"] = 2
    out = run("late", write_csv(late, labels_folder, "l1.csv"))
    assert out["decision"] != "rejected_input", out["reason"]
    assert out["details"]["new_classes"] == ["2"]


def test_a_labels_file_of_a_paused_pipeline_waits_and_is_joined_once_it_is_resumed(prefect_server, late_spec):
    """A labels file can retrain and promote: while the pipeline is paused, its run (queued before the pause, or
    `calmops run … --labels`) decides nothing and ends held; after the resume it is joined as usual."""
    from calmops.core import pause

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    f0, f1 = batch(600, 8.0, 1, 0), batch(600, 8.0, 2, 1000)
    assert run("late", write_csv(f0, folder, "f0.csv"))["decision"] == "train"
    assert run("late", write_csv(features(f1), folder, "f1.csv"))["decision"] == "predict_only"
    waiting = Awaiting(pipeline_paths(late_spec).root, pipeline_paths(late_spec).state)
    assert waiting.waiting(30)["waiting"] == 600
    pause.pause("late")
    path = write_csv(labels(f1), labels_folder, "l1.csv")
    held = run("late", path)
    assert held["decision"] == "held" and "late has been paused since" in held["reason"], held
    assert path.exists() and waiting.waiting(30)["waiting"] == 600  # nothing joined
    pause.resume("late")
    joined = run("late", path)
    assert joined["decision"] not in ("held", "failed", "rejected_input"), joined
    assert waiting.waiting(30)["waiting"] == 0


def test_ids_of_a_features_csv_reach_the_predictions_as_written_and_labels_join_them_written_either_way(
        prefect_server, late_spec):
    """A features CSV's ids are ids, not numbers: the predictions file repeats each as the file wrote it
    (``0200000`` keeps its zero, an empty id stays empty rather than turning its column into floats). A labels
    file still joins them written with or without the zeros, as a column of numbers always joined."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    run("late", write_csv(batch(600, 8.0, 1, 0), folder, "f0.csv"))
    f1 = batch(600, 8.0, 2, 0).assign(id=[f"{200000 + i:07d}" for i in range(600)])
    f1.loc[7, "id"] = ""  # data row 8 has no id
    path = folder / "f1.csv"
    features(f1).to_csv(path, index=False)
    out = run("late", path)
    assert out["decision"] == "predict_only", out["reason"]
    lines = Path(out["predictions_file"]).read_text().splitlines()
    assert lines[0].split(",")[0] == "id"
    assert [line.split(",")[0] for line in lines[1:]] == f1["id"].tolist()  # "0200000", …, "" as written
    # half the labels write the ids as the features did, half as plain numbers: all of them join
    written = labels(f1.drop(index=7))
    written["id"] = [i if n % 2 else str(int(i)) for n, i in enumerate(written["id"])]
    out = run("late", write_csv(written, labels_folder, "l1.csv"))
    assert (out["details"]["labels"]["matched"], out["details"]["labels"]["unmatched"]) == (599, 0), out["reason"]
