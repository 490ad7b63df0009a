"""``calmops history NAME``: every file of a pipeline in the order it was taken, with what was decided."""

import json

import mlflow.sklearn
import pytest
import yaml
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from calmops.core.spec import load_spec
from calmops.core.store import pipeline_paths
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()


def _run(path) -> dict:
    done = runner.invoke(app, ["run", "sea", str(path), "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


@pytest.mark.integration
def test_history_lists_each_file_in_order_with_its_decision_versions_and_the_serving_models_score(
        prefect_server, calmops_home, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    data = tmp_path / "data"
    before, after = sea_frame(1000, 8, seed=1), sea_frame(1000, 9.5, seed=2)
    outcomes = [_run(write_csv(before, data, "a.csv")), _run(write_csv(after, data, "b.csv")),
                _run(write_csv(sea_frame(1000, 9.5, seed=3), data, "c.csv")),
                _run(write_csv(sea_frame(1000, 9.5, seed=4).drop(columns=["x2"]), data, "bad.csv"))]
    assert [o["decision"] for o in outcomes[:2]] == ["train", "retrain_promoted"]
    assert outcomes[3]["decision"] == "quarantined"  # run --json says it as history does
    incoming = pipeline_paths(load_spec(spec_file)).incoming
    write_csv(sea_frame(1000, 9.5, seed=5), incoming, "later.csv")  # dropped in, no run yet

    done = runner.invoke(app, ["history", "sea", "--json"])
    assert done.exit_code == 0, done.output
    history = json.loads(done.stdout)
    files = history["files"]
    assert [f["file"] for f in files] == ["a.csv", "b.csv", "c.csv", "bad.csv", "later.csv"]
    assert history["total"] == 5 and history["metric"] == "accuracy"
    assert [f["status"] for f in files] == ["decided"] * 3 + ["quarantined", "waiting"]
    for row, outcome in zip(files, outcomes, strict=False):
        assert row["decision"] == outcome["decision"] and row["reason"] == outcome["reason"]
        assert row["champion_version"] == outcome["champion_version"]
        assert row["mlflow_run_id"] == outcome["mlflow_run_id"] and row["sha256"] == outcome["sha256"]
    assert files[-1]["decision"] is None and files[-1]["mlflow_run_id"] is None
    assert "x2" in files[3]["reason"] and files[3]["drift_detected"] is None  # quarantined unchecked
    assert files[1]["drift_detected"] is True and files[1]["drifted_features"] == outcomes[1]["drifted_features"]

    # the score is the serving model's on every row of the file, before anything learnt from it: b.csv was
    # served by the first model (version 1), c.csv by the model b.csv promoted
    assert files[0]["score"] is None  # nothing served the first file
    for row, frame, served_by in ((files[1], after, 1), (files[2], sea_frame(1000, 9.5, seed=3), 2)):
        model = mlflow.sklearn.load_model(f"models:/calmops.sea/{served_by}")
        expected = accuracy_score(frame["y"], model.predict(frame[["x1", "x2", "x3"]]))
        assert row["score"] == pytest.approx(expected, abs=1e-9), (row["file"], row["score"], expected)

    latest = json.loads(runner.invoke(app, ["history", "sea", "-n", "2", "--json"]).stdout)
    assert [f["file"] for f in latest["files"]] == ["bad.csv", "later.csv"] and latest["total"] == 5

    text = runner.invoke(app, ["history", "sea", "-n", "3"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "accuracy served" in text.stdout and "retrain_promoted" not in text.stdout
    # a refused file is "quarantined", the word of its folder and of its flow run's state, never rejected_input
    assert "c.csv" in text.stdout and "quarantined" in text.stdout and "rejected_input" not in text.stdout
    assert "the last 3 of 5 files" in text.stdout
    every = runner.invoke(app, ["history", "sea"], env={"COLUMNS": "200"}).stdout
    c_line = next(line for line in every.splitlines() if line.lstrip().startswith("c.csv"))
    assert f" {files[2]['score']:.4f} " in c_line, c_line  # scores in one form: four decimals, never 1 or 0.98

    refused = runner.invoke(app, ["history", "sea", "-n", "-1"])
    assert refused.exit_code != 0 and "-n -1 is negative" in refused.stderr


def _logged(decision: str, **metrics):
    from types import SimpleNamespace

    return SimpleNamespace(data=SimpleNamespace(tags={"calmops.decision": decision}, metrics=metrics))


def test_the_score_shown_is_the_metric_the_pipeline_decides_on_over_the_whole_file():
    """No primary metric in the spec: the task's default, as the flows decide (balanced accuracy for a
    classifier, RMSE for a regressor), not whichever metric comes first; and each kind's whole-file score."""
    from calmops.core.names import DEFAULT_PRIMARY
    from calmops.core.store import spec_from_dict
    from calmops.deployments.history import _metric, _serving_score

    spec = spec_from_dict({k: v for k, v in STREAM_SPEC.items() if k != "evaluation"})
    classifier = {"r": _logged("no_drift", champion_accuracy=0.97, champion_balanced_accuracy=0.61)}
    regressor = {"r": _logged("no_drift", champion_rmse=1.2, champion_mae=0.9)}
    assert _metric(spec, classifier) == DEFAULT_PRIMARY["classification"] == "balanced_accuracy"
    assert _metric(spec, regressor) == DEFAULT_PRIMARY["regression"] == "rmse"
    # a retrain's champion_ scores are the whole file's (the holdout's: holdout_champion_), as on every run; a
    # retrain logged before holdout_champion_ kept the holdout's there; an IPIP run's are IPIP's held-out rows
    now = _logged("retrain_rejected", champion_accuracy=0.8, holdout_champion_accuracy=0.9)
    assert _serving_score(now, "accuracy") == 0.8
    retrained = _logged("retrain_rejected", champion_accuracy=0.9, serving_full_batch_accuracy=0.8)
    ipip = _logged("retrain_promoted", champion_accuracy=0.9, champion_prequential_accuracy=0.7)
    assert _serving_score(retrained, "accuracy") == 0.8 and _serving_score(ipip, "accuracy") == 0.7
    assert _serving_score(_logged("no_drift", champion_accuracy=0.6), "accuracy") == 0.6
    assert _serving_score(_logged("train", champion_accuracy=0.6), "accuracy") is None


def test_quarantine_reasons_are_matched_by_content_not_by_name(tmp_path, monkeypatch):
    """Two different files that arrived as a.csv, both quarantined: each keeps its own reason."""
    from calmops.core.store import pipeline_paths, quarantine, quarantine_records, spec_from_dict
    from calmops.deployments.history import _quarantine_reasons

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    paths = pipeline_paths(spec_from_dict(dict(STREAM_SPEC))).ensure()
    for sha, reason in (("1" * 64, "a.csv: header only, no rows"), ("2" * 64, "=a.csv: the file is empty")):
        (paths.incoming / "a.csv").write_text("x\n")
        quarantine(paths, paths.incoming / "a.csv", sha, reason)
    reasons = _quarantine_reasons(quarantine_records(paths))
    assert (reasons[("a.csv", "1" * 64)], reasons[("a.csv", "2" * 64)]) == ("a.csv: header only, no rows",
                                                                          "=a.csv: the file is empty")


def test_a_file_moved_out_of_incoming_is_no_longer_listed_as_waiting_or_pending(calmops_home, stream_spec):
    """As `calmops status` counts: a waiting or pending file that was moved away is no longer the pipeline's."""
    from calmops.core.store import ledger
    from calmops.deployments.history import file_history

    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    for name, sha, arrived in (("kept.csv", "a", 1.0), ("moved.csv", "b", 2.0), ("failed-kept.csv", "c", 3.0),
                               ("failed-moved.csv", "d", 4.0)):
        book.arrive(sha * 64, name, arrived)
        if name.startswith("failed"):
            assert book.claim(sha * 64, name)
            book.release(sha * 64)  # a failed run leaves it pending
        if name.endswith("kept.csv"):
            write_csv(sea_frame(10, 8, seed=1), paths.incoming, name)
    assert {e["file"]: e["status"] for e in book.entries()}["failed-moved.csv"] == "pending"
    files = file_history(stream_spec)["files"]
    assert sorted((f["file"], f["status"]) for f in files) == [("failed-kept.csv", "pending"),
                                                               ("kept.csv", "waiting")]


def test_every_file_in_quarantine_is_listed_with_its_own_reason(calmops_home, stream_spec):
    """The ledger keeps one row per content: the same bytes quarantined under two names (a file, then a copy of it
    dropped again under another name) are two files in quarantine, as `calmops status` counts them, and so two
    lines of history, each with its own reason; so is a link the watcher refused without reading it (no
    content, no ledger row)."""
    import os

    from calmops.core.store import ledger, quarantine
    from calmops.deployments.history import file_history

    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    header = "x1,x2,x3,y\n"
    sha = __import__("hashlib").sha256(header.encode()).hexdigest()
    for i, name in enumerate(("slow.csv", "header_only.csv")):
        path = paths.incoming / name
        path.write_text(header)
        book.arrive(sha, name, 100.0 + i, paths.incoming, at=path)
        assert book.claim(sha, name, run_id=f"r{i}")
        quarantine(paths, path, sha, f"{name}: a header and no rows")
        book.finish(sha, "rejected_input", status="gone")
    os.symlink("/etc/passwd", paths.incoming / "link.csv")
    quarantine(paths, paths.incoming / "link.csv", None, "link.csv is a symbolic link: refused unread")
    # the ledger's own lines once each: a labels file (labels/<name> in the ledger) and a name a spreadsheet
    # would run as a formula (made inert in the sidecar)
    for name, entry in (("=sum.csv", "=sum.csv"), ("l.csv", "labels/l.csv")):
        path = paths.incoming / name
        path.write_text(f"x1,x2,x3,y\n{name}\n")
        digest = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
        book.arrive(digest, entry, 200.0)
        assert book.claim(digest, entry, run_id="r")
        quarantine(paths, path, digest, f"{name}: no rows")
        book.finish(digest, "rejected_input", status="gone")

    files = file_history(stream_spec)["files"]
    assert [(f["file"], f["status"], f["decision"]) for f in files] == [
        ("slow.csv", "quarantined", "quarantined"), ("header_only.csv", "quarantined", "quarantined"),
        ("link.csv", "quarantined", "quarantined"), ("=sum.csv", "quarantined", "quarantined"),
        ("labels/l.csv", "quarantined", "quarantined")]  # the ledger records rejected_input: shown as its folder says
    assert [f["reason"] for f in files] == ["slow.csv: a header and no rows", "header_only.csv: a header and no rows",
                                            "link.csv is a symbolic link: refused unread", "=sum.csv: no rows",
                                            "l.csv: no rows"]


def _history_of_one_empty_file_quarantined(paths):
    """`calmops history sea` (its table) once its only file, empty.csv, was quarantined: no score anywhere."""
    from calmops.core.store import ledger, quarantine

    (paths.incoming / "empty.csv").write_text("")
    ledger(paths).arrive("e" * 64, "empty.csv", 1.0)
    quarantine(paths, paths.incoming / "empty.csv", "e" * 64, "empty.csv: the file is empty")
    ledger(paths).finish("e" * 64, "rejected_input", status="gone")
    text = runner.invoke(app, ["history", "sea"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    return text


def test_the_table_has_no_score_column_while_no_run_has_a_score(calmops_home):
    """A pipeline without a primary metric whose only file was quarantined has logged no score: the table shows
    no "score served" column of dashes, and gains its metric's column once a score exists to show."""
    from calmops.core.store import save_spec, spec_from_dict

    spec = spec_from_dict({k: v for k, v in STREAM_SPEC.items() if k != "evaluation"})
    save_spec(spec, create=True)
    paths = pipeline_paths(spec)
    text = _history_of_one_empty_file_quarantined(paths)
    assert "empty.csv" in text.stdout and "served" not in text.stdout and "score" not in text.stdout
    assert not [line for line in text.stdout.splitlines() if line.endswith(" ")], text.stdout  # piped: no padding
    assert json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)["metric"] is None


def test_the_table_has_no_score_column_while_no_row_shown_has_a_score(calmops_home, stream_spec):
    """The spec names its primary metric (accuracy), but the only file was quarantined and scored nothing: a column
    "accuracy served" of dashes alone says nothing, so the table has none; --json still names the metric."""
    paths = pipeline_paths(stream_spec)
    text = _history_of_one_empty_file_quarantined(paths)
    assert "empty.csv" in text.stdout and "served" not in text.stdout and "accuracy" not in text.stdout, text.stdout
    assert json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)["metric"] == "accuracy"


@pytest.mark.integration
def test_bytes_quarantined_then_moved_back_and_decided_keep_both_lines_each_with_its_outcome(
        prefect_server, calmops_home, tmp_path):
    """A file refused (over the size limit), the limit raised, the file moved back from quarantine into incoming
    (under its own name, and another under a new name) and decided: the ledger's row of those bytes now says
    decided, but the history still shows the refusal, with its own reason, before the decision."""
    import shutil

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, "limits": {"max_bytes": 1000}}))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    paths = pipeline_paths(load_spec(spec_file))
    data = tmp_path / "data"
    refused = [_run(write_csv(sea_frame(1000, 8, seed=s), data, name)) for s, name in ((1, "a.csv"), (2, "b.csv"))]
    assert [o["decision"] for o in refused] == ["quarantined"] * 2
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["update", "sea", str(spec_file)]).exit_code == 0
    shutil.move(paths.quarantine / "a.csv", paths.incoming / "a.csv")
    shutil.move(paths.quarantine / "b.csv", paths.incoming / "b2.csv")
    decided = [_run(paths.incoming / "a.csv"), _run(paths.incoming / "b2.csv")]
    assert [o["decision"] for o in decided] == ["train", "no_drift"]

    files = json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)["files"]
    assert [(f["file"], f["status"], f["decision"]) for f in files] == [
        ("a.csv", "quarantined", "quarantined"), ("b.csv", "quarantined", "quarantined"),
        ("a.csv", "decided", "train"), ("b2.csv", "decided", "no_drift")]
    for row, outcome in zip(files, refused + decided, strict=True):
        assert row["reason"] == outcome["reason"] and row["sha256"] == outcome["sha256"]
        assert row["decided"] is not None
    assert "over the limit of 1000" in files[0]["reason"] and files[2]["reason"] == decided[0]["reason"]
    assert [f["mlflow_run_id"] for f in files[2:]] == [o["mlflow_run_id"] for o in decided]
    text = runner.invoke(app, ["history", "sea"], env={"COLUMNS": "250"}).stdout
    assert [line.split()[0] for line in text.splitlines() if line.lstrip().startswith(("a.csv", "b"))] == [
        "a.csv", "b.csv", "a.csv", "b2.csv"]


@pytest.mark.integration
def test_a_name_refused_again_after_its_first_refusal_was_moved_back_and_decided_keeps_both_refusals(
        prefect_server, calmops_home, tmp_path):
    """a.csv refused (over the size limit), moved back from quarantine into incoming and decided once the limit is
    raised (its sidecar stays there as the record), then another a.csv refused (a column missing): the second
    refusal is kept under a name of its own, so the history still shows the first refusal, the decision and the
    second refusal, each with its reason."""
    import shutil

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, "limits": {"max_bytes": 1000}}))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    paths = pipeline_paths(load_spec(spec_file))
    first = _run(write_csv(sea_frame(1000, 8, seed=1), tmp_path / "one", "a.csv"))
    assert first["decision"] == "quarantined" and "over the limit of 1000" in first["reason"]
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["update", "sea", str(spec_file)]).exit_code == 0
    shutil.move(paths.quarantine / "a.csv", paths.incoming / "a.csv")
    decided = _run(paths.incoming / "a.csv")
    assert decided["decision"] == "train"
    again = _run(write_csv(sea_frame(1000, 8, seed=2).drop(columns=["x2"]), tmp_path / "two", "a.csv"))
    assert again["decision"] == "quarantined" and "x2" in again["reason"]

    files = json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)["files"]
    assert [(f["file"], f["decision"], f["sha256"], f["reason"]) for f in files] == [
        ("a.csv", o["decision"], o["sha256"], o["reason"]) for o in (first, decided, again)]
    assert json.loads((paths.quarantine / "a.csv.reason.json").read_text())["sha256"] == first["sha256"]


@pytest.mark.integration
def test_a_pending_file_is_listed_with_the_files_still_to_decide_in_arrival_order(calmops_home, stream_spec):
    """A failed run leaves its file pending (claimed, then released): it holds the files that arrived after it, so
    it is listed before them, among the files still to be decided, not among those decided."""
    from calmops.core.store import ledger
    from calmops.deployments.history import file_history

    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    for name, sha, arrived in (("first.csv", "a", 1.0), ("more_0001.csv", "b", 2.0), ("more_0002.csv", "c", 3.0)):
        book.arrive(sha * 64, name, arrived)
        write_csv(sea_frame(10, 8, seed=1), paths.incoming, name)
    assert book.claim("b" * 64, "more_0001.csv")
    book.release("b" * 64)  # its run failed: pending
    assert book.claim("a" * 64, "first.csv")  # taken after it, and still in progress
    files = file_history(stream_spec)["files"]
    assert [(f["file"], f["status"]) for f in files][1:] == [("more_0001.csv", "pending"),
                                                             ("more_0002.csv", "waiting")], files
    assert files[0]["file"] == "first.csv"


@pytest.mark.parametrize("old_record", [False, True])
def test_a_labels_file_refused_then_joined_is_named_labels_name_in_both_lines_with_its_arrival(calmops_home,
                                                                                                old_record):
    """A labels file that came before its features (docs/late-labels.md) is quarantined; the same bytes dropped
    into the labels folder again are joined. The ledger's row now stands for the join, so the refusal's line is
    rebuilt from the quarantine's record: it names the file labels/early.csv, as the ledger, `status` and `report`
    do (never early.csv, a features file's name), and says when the refused file arrived. A record written before
    records kept the folder and the arrival (``old_record``) is still named by the ledger's row of its bytes; its
    arrival is unknown."""
    from calmops.core.store import (
        arrival_time,
        ledger,
        quarantine,
        quarantine_records,
        save_spec,
        sha256_of,
        spec_from_dict,
    )
    from calmops.deployments.history import file_history

    spec = spec_from_dict({**STREAM_SPEC, "labels": {"join_on": ["id"]}})
    save_spec(spec, create=True)
    paths = pipeline_paths(spec).ensure()
    book = ledger(paths)
    early = paths.labels / "early.csv"
    early.write_text("id,y\n1,0\n2,1\n")
    sha, first = sha256_of(early), arrival_time(early.stat().st_mtime_ns)
    book.arrive(sha, "labels/early.csv", first, paths.labels, at=early)
    assert book.claim(sha, "labels/early.csv", run_id="r1", arrived=first)
    moved = quarantine(paths, early, sha, "early.csv: none of its 2 id(s) match a row predicted and waiting",
                       arrived=book.arrival(sha))
    book.finish(sha, "rejected_input", status="gone")
    [(sidecar, record)] = quarantine_records(paths)
    assert (record["folder"], record["arrived"]) == ("labels", first)
    if old_record:
        sidecar.write_text(json.dumps({k: v for k, v in record.items() if k not in ("folder", "arrived")}))
    in_quarantine = file_history(spec)["files"]
    assert [(f["file"], f["status"]) for f in in_quarantine] == [("labels/early.csv", "quarantined")]

    moved.rename(early)  # its features came: dropped into the labels folder again, and joined
    again = first + 60.0
    book.arrive(sha, "labels/early.csv", again, paths.labels, at=early)
    assert book.claim(sha, "labels/early.csv", run_id="r2")
    book.finish(sha, "no_drift")
    early.unlink()

    files = file_history(spec)["files"]
    assert [(f["file"], f["status"], f["decision"]) for f in files] == [
        ("labels/early.csv", "quarantined", "quarantined"), ("labels/early.csv", "decided", "no_drift")]
    from calmops.deployments.readout import iso_seconds

    assert files[0]["arrived"] == (None if old_record else iso_seconds(first))
    assert files[0]["reason"].startswith("early.csv: none of its 2 id(s)")


@pytest.mark.integration
def test_a_duplicate_is_listed_as_decided_duplicate_naming_the_first_file(prefect_server, calmops_home, tmp_path):
    """The ledger keeps one row per content, the first file's: a copy answered a duplicate has none of its own, and
    history dropped it once it was decided, though it sits in processed/ beside the first."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    data = tmp_path / "data"
    first = _run(write_csv(sea_frame(1000, 8, seed=1), data, "a.csv"))
    write_csv(sea_frame(1000, 8, seed=1), data, "copy.csv")
    copy = _run(data / "copy.csv")
    assert first["decision"] == "train" and copy["decision"] == "duplicate"
    later = _run(write_csv(sea_frame(1000, 8, seed=2), data, "b.csv"))
    processed = pipeline_paths(load_spec(spec_file)).processed
    assert sorted(p.name for p in processed.iterdir()) == ["a.csv", "b.csv", "copy.csv"]

    history = json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)
    files = history["files"]
    assert [f["file"] for f in files] == ["a.csv", "copy.csv", "b.csv"] and history["total"] == 3
    dup = files[1]
    assert dup["status"] == "decided" and dup["decision"] == "duplicate"
    assert dup["reason"] == "same content as a.csv, decided before it"
    assert dup["sha256"] == first["sha256"] and dup["mlflow_run_id"] is None and dup["drift_detected"] is None
    assert files[2]["decision"] == later["decision"]

    # the same bytes again under the first one's own name: put beside it as <sha256[:12]>-a.csv, and listed; other
    # bytes named a.csv, put there because the name was taken, are that file's own line, not a copy
    again = _run(data / "a.csv")
    other = _run(write_csv(sea_frame(1000, 8, seed=3), tmp_path / "elsewhere", "a.csv"))
    assert again["decision"] == "duplicate" and other["decision"] not in ("duplicate", "failed")
    assert sorted(p.name for p in processed.iterdir()) == sorted(
        ["a.csv", "b.csv", "copy.csv", f"{first['sha256'][:12]}-a.csv", f"{other['sha256'][:12]}-a.csv"])
    files = json.loads(runner.invoke(app, ["history", "sea", "--json"]).stdout)["files"]
    assert sorted((f["file"], f["decision"], f["sha256"][:12]) for f in files) == sorted([
        ("a.csv", "train", first["sha256"][:12]), ("copy.csv", "duplicate", first["sha256"][:12]),
        ("b.csv", later["decision"], later["sha256"][:12]), ("a.csv", "duplicate", first["sha256"][:12]),
        ("a.csv", other["decision"], other["sha256"][:12])])
