"""Bad input is quarantined with a reason, bytes unchanged, and nothing else changes."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run, runs_for_sha, versions

pytestmark = pytest.mark.integration


def _bad_files(folder):
    """(name, bytes, words the reason must contain) for each kind of bad input."""
    good = sea_frame(200, 8, seed=3)
    wrong_type = good.copy().astype({"x2": object})
    wrong_type.loc[5, "x2"] = "abc"
    return [
        ("empty.csv", b"", "empty"),
        ("header.csv", b"x1,x2,x3,y\n", "header only"),
        ("no-target.csv", good.drop(columns=["y"]).to_csv(index=False).encode(), "target column 'y' is missing"),
        ("garbage.csv", bytes(range(256)) * 4, "unknown format"),
        ("wrong-type.csv", wrong_type.to_csv(index=False).encode(), "column 'x2' should be numeric"),
        ("missing-feature.csv", good.drop(columns=["x3"]).to_csv(index=False).encode(), "missing: x3"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "unknown format"),
        ("ragged.csv", b"x1,x2,x3,y\n1,2,3,0\n1,2\n4,5,6,7,8,9\n", "line 4 has 6 fields where the lines before it have 4"),
    ]


def test_each_bad_file_is_quarantined_with_its_reason_and_nothing_changes(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "good.csv"))
    paths = pipeline_paths(read_spec("sea"))
    before_versions, before_champion = versions("sea"), registry.alias_version("sea", "champion")
    before_history = sorted(paths.history.iterdir())
    for name, content, words in _bad_files(folder):
        path = folder / name
        path.write_bytes(content)
        sha = digest(path)
        out = run("sea", path)
        assert out["decision"] == "rejected_input", (name, out)
        assert words in out["reason"], (name, out["reason"])
        kept = paths.quarantine / name
        assert kept.read_bytes() == content, name  # original bytes, unchanged
        sidecar = json.loads((paths.quarantine / f"{name}.reason.json").read_text())
        assert sidecar["reason"] == out["reason"] and sidecar["sha256"] == sha
        assert not path.exists()
        # a file that is only bad is a result, not a failure: Prefect shows its ingest task Completed, none Failed
        states = _task_states(out["flow_run_id"])
        assert states["ingest"] == "COMPLETED" and "FAILED" not in states.values(), (name, states)
        ended = _flow_run_state(out["flow_run_id"])  # and the run says what became of the file
        assert ended.is_completed() and ended.name == "Quarantined", (name, ended)
        # in the words of its state (and of the quarantine folder): quarantined, not the recorded rejected_input
        assert ended.message.startswith("quarantined: ") and words in ended.message, (name, ended.message)
    assert versions("sea") == before_versions
    assert registry.alias_version("sea", "champion") == before_champion
    assert sorted(paths.history.iterdir()) == before_history
    # bad data does not count against the breaker by default
    from calmops.core.breaker import read_breaker

    assert read_breaker("sea").state == "closed" and read_breaker("sea").consecutive_failures == 0
    rejected = [e for e in ledger(paths).entries() if e["decision"] == "rejected_input"]
    assert len(rejected) == len(_bad_files(folder))


def test_a_reason_naming_a_file_with_control_characters_is_escaped_in_the_sidecar_and_mlflow(prefect_server,
                                                                                              stream_spec):
    """The reason starts with the file's name: its line break and terminal escape are written escaped in the
    quarantine sidecar, the run's calmops.reason tag and its name, as the pipeline log writes them."""
    from mlflow import MlflowClient

    name = "h14_esc\x1b[31mRED\nline.csv"
    escaped = r"h14_esc\x1b[31mRED\nline.csv"
    path = incoming("sea") / name
    path.write_bytes(b"x1,x2,x3,y\n")
    sha = digest(path)
    out = run("sea", path)
    assert out["decision"] == "rejected_input" and "header only" in out["reason"]
    paths = pipeline_paths(read_spec("sea"))
    assert (paths.quarantine / name).read_bytes() == b"x1,x2,x3,y\n"  # the file keeps its name and bytes
    sidecar = json.loads((paths.quarantine / f"{name}.reason.json").read_text())
    assert sidecar["reason"].startswith(f"{escaped}: ") and "header only" in sidecar["reason"]
    [mlflow_run] = runs_for_sha("sea", sha)
    tags = MlflowClient().get_run(mlflow_run.info.run_id).data.tags
    for said in (sidecar["reason"], tags["calmops.reason"], tags["mlflow.runName"]):
        assert "\x1b" not in said and "\n" not in said, said
    assert tags["calmops.reason"] == sidecar["reason"] and tags["mlflow.runName"] == escaped


def test_the_quarantine_line_in_the_pipeline_log_names_the_file_once(prefect_server, stream_spec):
    path = incoming("sea") / "h11.csv"
    path.write_bytes(b"x1,x2,x3,y\n")
    assert run("sea", path)["reason"].startswith("h11.csv: header only, no rows: nothing to read")
    paths = pipeline_paths(read_spec("sea"))
    lines = [line for line in (paths.logs / "pipeline.log").read_text().splitlines() if "quarantined" in line]
    assert len(lines) == 1 and "quarantined h11.csv: header only, no rows: nothing to read" in lines[0], lines
    assert lines[0].count("h11.csv") == 2  # the file, then where it was moved (quarantine/h11.csv)


def _flow_run_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def _task_states(flow_run_id: str) -> dict[str, str]:
    """The flow run's task runs by task name (``ingest-0`` → ``ingest``) and state type, once the server has them
    all in a final state (task states reach it as events, a moment after the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tests.e2e.stack import until

    def final():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        states = {r.name.rsplit("-", 1)[0]: r.state.type.value for r in runs if r.state}
        return states if states and all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in
                                        states.values()) else None

    return until(final, 30, "the flow run's task runs in a final state")


def test_a_quarantined_file_dropped_again_after_the_cause_is_mended_is_decided_not_taken_for_a_duplicate(
        prefect_server, stream_spec):
    """Refused bytes were never processed: moved back into incoming (here after the row limit that refused them
    was raised), they are decided like a new file, at their new arrival, not filed in processed/ as 'already
    processed' with no prediction and no decision."""
    from calmops.core.store import arrival_time
    from tests.flows.helpers import update_spec

    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    paths = pipeline_paths(read_spec("sea"))
    update_spec("sea", limits={"max_rows": 100})
    big = write_csv(sea_frame(500, 8, seed=2), folder, "big.csv")
    sha = digest(big)
    refused = run("sea", big)
    assert refused["decision"] == "rejected_input" and "over the limit of 100" in refused["reason"], refused

    update_spec("sea", limits={"max_rows": 5_000_000})
    back = folder / "big.csv"
    (paths.quarantine / "big.csv").rename(back)  # the user's fix: the same bytes, dropped in again
    book = ledger(paths)
    first_arrival = next(e["arrived"] for e in book.entries() if e["sha256"] == sha)
    before = time.time()
    book.arrive(sha, "big.csv", arrival_time(back.stat().st_mtime_ns), at=back)  # announced, as the watcher does
    # waiting again, from the moment it came back: the move kept the modification time of its first arrival,
    # which would put it before the files that came since
    [again] = [e for e in book.entries() if e["sha256"] == sha]
    assert again["status"] == "waiting" and again["decision"] is None and again["arrived"] >= before > first_arrival
    decided = run("sea", back)
    assert decided["decision"] in ("no_drift", "retrain_promoted", "retrain_rejected"), decided
    assert pd.read_csv(decided["predictions_file"]).shape[0] == 500
    assert book.status(sha) == "done" and (paths.processed / "big.csv").exists() and not back.exists()


def test_format_not_accepted_by_the_pipeline(prefect_server, stream_spec):
    from tests.flows.helpers import update_spec

    update_spec("sea", formats=["parquet"])
    out = run("sea", write_csv(sea_frame(200, 8, seed=1), incoming("sea"), "a.csv"))
    assert out["decision"] == "rejected_input" and "format 'csv' is not accepted" in out["reason"]


def test_new_column_is_a_signal_not_an_error(prefect_server, stream_spec):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    extra = sea_frame(500, 8, seed=2).assign(extra=1.0)
    out = run("sea", write_csv(extra, folder, "b.csv"))
    assert out["decision"] in ("no_drift", "retrain_promoted", "retrain_rejected")
    assert pd.read_csv(out["predictions_file"]).shape[0] == 500
    # the drift report names it (as its page and the viewer show schema signals): told, not tested, not drift
    from calmops.core import registry

    _, verdict, _ = registry.recorded_verdict("sea", "b.csv")
    signals = [(s["kind"], s["column"], s["drift"]) for s in verdict["data"]["schema_signals"]]
    assert ("new_column", "extra", False) in signals, signals


def test_a_feature_column_empty_in_every_row_is_said_in_the_record_the_log_and_the_run_output(
        prefect_server, stream_spec):
    """A file whose x2 is empty in every row (an export that lost a column) is predicted, x2 imputed: said as a
    signal in the decision's details, the pipeline log and `calmops run`'s output, for the first model too."""
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    folder = incoming("sea")
    first = run("sea", write_csv(sea_frame(1000, 8, seed=1).assign(x3=np.nan), folder, "a.csv"))
    assert first["decision"] == "train"
    assert "feature column(s) empty in every row, read as missing and imputed (the model sees no value there): " \
        "'x3'" in first["details"]["signals"]
    mine = write_csv(sea_frame(500, 8, seed=2).assign(x2=np.nan), folder.parent / "mine", "b.csv")
    said = CliRunner().invoke(app, ["run", "sea", str(mine)])
    assert said.exit_code == 0, said.output
    assert "note: feature column(s) empty in every row, read as missing and imputed" in said.stdout, said.stdout
    log = (pipeline_paths(read_spec("sea")).logs / "pipeline.log").read_text()
    assert "b.csv: feature column(s) empty in every row" in log and "a.csv: feature column(s) empty" in log


def test_a_time_index_among_the_features_of_a_first_file_is_said_with_what_to_do(prefect_server, stream_spec):
    """A first file with a running day number and a date per row among its columns: both will drift on every
    later file (each holds days the model never saw); `calmops run` says so and what to do, once, for the first
    model. x1..x3 are not said (they do not move one way), nor a score the export is sorted by (its steps vary)."""
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    frame = sea_frame(600, 8, seed=1)
    frame["day"] = np.arange(100, 700)
    frame["score"] = np.sort(np.random.default_rng(3).normal(size=600))
    frame["stamp"] = pd.date_range("2026-01-01", periods=600, freq="h").strftime("%Y-%m-%d %H:%M")
    mine = write_csv(frame, incoming("sea").parent / "mine", "first.csv")
    said = CliRunner().invoke(app, ["run", "sea", str(mine)])
    assert said.exit_code == 0, said.output
    text = " ".join(said.stdout.split())
    assert "note: column(s) 'day', 'stamp' look like a time index or a running id (they move one way on every " \
        "row)" in text, text
    assert "list them in id_columns or drop_columns" in text and "'score'" not in text
    later = write_csv(sea_frame(600, 8, seed=2).assign(day=np.arange(700, 1300), score=frame["score"], stamp=pd.date_range(
        "2026-02-01", periods=600, freq="h").strftime("%Y-%m-%d %H:%M")), incoming("sea").parent / "mine", "next.csv")
    again = CliRunner().invoke(app, ["run", "sea", str(later)])
    assert again.exit_code == 0 and "time index" not in again.stdout, again.stdout  # said for the first model


@pytest.fixture
def quick_models(monkeypatch):
    """These tests are about input and order of steps, not the model's environment: skip MLflow's slow
    pip-requirement inference when a model is logged."""
    import mlflow.models

    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", lambda path, flavor, fallback=None: fallback or [])


def test_a_class_never_seen_is_reported_scored_per_class_and_may_retrain(prefect_server, stream_spec, quick_models):
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    frame = sea_frame(600, 8, seed=2)
    frame.loc[frame.index[:150], "y"] = 2  # a third class the binary champion never saw
    out = run("sea", write_csv(frame, folder, "b.csv"))
    assert out["decision"] in ("retrain_promoted", "retrain_rejected"), out  # a retrain is allowed
    assert out["details"]["new_classes"] == ["2"]
    champion = out["metrics"]["champion"]
    assert champion["confusion_matrix"]["labels"] == ["0", "1", "2"]  # per class, the new one included
    assert 0.0 <= champion["f1_macro"] <= 1.0 and "f1" not in champion  # averaged over classes, never binary


def test_a_single_class_file_is_scored_and_predicted_without_training(prefect_server, stream_spec, quick_models):
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    before = versions("sea")
    out = run("sea", write_csv(sea_frame(300, 8, seed=2).assign(y=1), folder, "ones.csv"))
    assert out["decision"] == "predict_only", out
    assert "single class" in out["reason"] and "champion scored and predicted" in out["reason"]
    assert out["metrics"]["champion"]["accuracy"] is not None
    assert pd.read_csv(out["predictions_file"]).shape[0] == 300
    assert versions("sea") == before
    from calmops.core.breaker import read_breaker

    assert read_breaker("sea").consecutive_failures == 0


def test_predictions_failing_after_a_challenger_won_leave_the_champion_and_no_partial_file(
        prefect_server, stream_spec, quick_models, monkeypatch):
    import errno

    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    paths = pipeline_paths(read_spec("sea"))
    drifted = write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv")

    def disk_full(self, path, *args, **kwargs):
        Path(path).write_text("id,predic")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    real_to_csv = pd.DataFrame.to_csv
    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    out = run("sea", drifted)
    assert out["decision"] == "failed" and "No space left" in out["reason"], out
    assert registry.alias_version("sea", "champion") == 1  # the challenger was never promoted
    assert not list(paths.predictions.glob(".*.part")) and not list(paths.predictions.glob("b.csv*"))
    assert drifted.exists() and ledger(paths).status(digest(drifted)) == "pending"  # kept for a retry
    monkeypatch.setattr(pd.DataFrame, "to_csv", real_to_csv)  # space again (undo() would also drop CALMOPS_HOME)
    again = run("sea", drifted)
    assert again["decision"] == "retrain_promoted" and registry.alias_version("sea", "champion") > 1


def test_a_file_deleted_during_its_run_is_recorded_as_gone(prefect_server, stream_spec, monkeypatch):
    from calmops.core.breaker import read_breaker
    from calmops.tasks import ingest as ingest_module

    path = write_csv(sea_frame(300, 8, seed=1), incoming("sea"), "vanishing.csv")
    sha = digest(path)
    real = ingest_module.parse_and_validate

    def deleted_first(p, *args, **kwargs):
        Path(p).unlink(missing_ok=True)  # someone removes the file while its run is in progress
        return real(p, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "parse_and_validate", deleted_first)
    out = run("sea", path)
    assert out["decision"] == "failed" and "deleted while its run was in progress" in out["reason"], out
    book = ledger(pipeline_paths(read_spec("sea")))
    assert book.status(sha) == "gone"  # closed, not pending forever
    assert read_breaker("sea").consecutive_failures == 0  # not the pipeline's failure
    assert book.claim(sha, "vanishing.csv")  # the same bytes dropped again are taken as new


def _block_kind(kind: str) -> tuple[str, pd.DataFrame, str]:
    """A block or IPIP pipeline and a good file for it: (pipeline, frame, target column)."""
    from calmops.core.store import save_spec, spec_from_dict
    from tests.flows import test_block_flow, test_ipip_flow

    if kind == "block":
        test_block_flow.create("sites")
        return "sites", test_block_flow.block_frame(300, seed=1), "y"
    save_spec(spec_from_dict(dict(test_ipip_flow.SPEC)), create=True)
    return "rare", test_ipip_flow.rare_frame(900, seed=10, months=["2024-01", "2024-02", "2024-03"]), "label"


@pytest.mark.parametrize("kind", ["block", "ipip"])
def test_block_and_ipip_kinds_quarantine_bad_files_and_score_single_class_files(
        prefect_server, calmops_home, quick_models, kind):
    """The validation step is the same for every kind: an infinite feature is quarantined naming its column,
    a file with one class is scored and predicted without training; neither counts against the breaker."""
    from calmops.core.breaker import read_breaker

    name, good, target = _block_kind(kind)
    folder = incoming(name)
    assert run(name, write_csv(good, folder, "first.csv"))["decision"] == "train"
    paths = pipeline_paths(read_spec(name))
    before_versions, before_champion = versions(name), registry.alias_version(name, "champion")

    bad = good.copy()
    bad.loc[bad.index[7], "x1"] = float("inf")
    path = write_csv(bad, folder, "inf.csv")
    content, sha = path.read_bytes(), digest(path)
    out = run(name, path)
    assert out["decision"] == "rejected_input", out
    assert "column 'x1' holds infinite values" in out["reason"] and "data row 8" in out["reason"], out["reason"]
    assert (paths.quarantine / "inf.csv").read_bytes() == content and not path.exists()
    assert ledger(paths).status(sha) == "gone"  # decided and set aside (the bytes may come again), never pending

    one = good.assign(**{target: good[target].iloc[0]})  # every row the same class
    out = run(name, write_csv(one, folder, "one-class.csv"))
    assert out["decision"] == "predict_only", out
    assert "single class" in out["reason"], out["reason"]
    assert pd.read_csv(out["predictions_file"]).shape[0] == len(one)
    assert versions(name) == before_versions and registry.alias_version(name, "champion") == before_champion
    assert read_breaker(name).state == "closed" and read_breaker(name).consecutive_failures == 0


def test_a_failing_preprocess_fails_the_run_once_naming_the_module_and_the_file_stays_pending(
        prefect_server, stream_spec, tmp_path):
    from tests.flows.helpers import update_spec

    calls = tmp_path / "calls.log"
    module = tmp_path / "broken_preprocess.py"
    module.write_text(f"from pathlib import Path\n\ndef preprocess(df):\n"
                      f"    with open({str(calls)!r}, 'a') as fh:\n        fh.write('call\\n')\n"
                      f"    return df['no_such_column']\n")
    update_spec("sea", preprocess=str(module))
    path = write_csv(sea_frame(300, 8, seed=5), incoming("sea"), "p.csv")
    outcome = run("sea", path)
    assert outcome["decision"] == "failed"
    assert "preprocess broken_preprocess.py raised KeyError: 'no_such_column'" in outcome["reason"]
    assert calls.read_text().count("call") == 1  # the user's code failing is not retried
    assert ledger(pipeline_paths(read_spec("sea"))).status(digest(path)) == "pending" and path.exists()


def test_a_file_the_working_preprocess_cannot_handle_is_quarantined_and_the_files_behind_it_go_on(
        prefect_server, stream_spec, tmp_path):
    """The docs' example preprocess modules read columns by name; a file without one, or with text in a number
    column, made the module raise. Once the same module has worked on the pipeline's files, such an error is
    the file's: it is quarantined naming the module's error, and the next file is decided. A module changed
    since it last worked, or one whose dependency is down, is the code's problem: the run fails, the file
    stays pending."""
    from calmops.core.breaker import read_breaker
    from tests.flows.helpers import update_spec

    module = tmp_path / "sum_preprocess.py"
    module.write_text("def preprocess(df):\n    df = df.copy()\n    df['x1_plus_x2'] = df['x1'] + df['x2']\n"
                      "    return df\n")
    update_spec("sea", preprocess=str(module))
    folder, paths = incoming("sea"), pipeline_paths(read_spec("sea"))
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "good.csv"))["decision"] == "train"

    text = sea_frame(300, 8, seed=2).astype({"x2": object})
    text.loc[3, "x2"] = "abc"
    # the text in a number column is named with its column, value and row (data row 4: frame row 3)
    said = "column 'x2' holds text where the champion was trained on numbers: 'abc' in 1 row(s): data row 4"
    for name, frame, error in [("no-x1.csv", sea_frame(300, 8, seed=2).drop(columns="x1"), "KeyError: 'x1'"),
                               ("text-x2.csv", text, "TypeError")]:
        path = write_csv(frame, folder, name)
        content = path.read_bytes()
        out = run("sea", path)
        assert out["decision"] == "rejected_input", (name, out)
        assert f"preprocess sum_preprocess.py raised {error}" in out["reason"], out["reason"]
        assert (said in out["reason"]) == (name == "text-x2.csv"), out["reason"]
        assert (paths.quarantine / name).read_bytes() == content and (paths.quarantine / f"{name}.reason.json").exists()
    after = run("sea", write_csv(sea_frame(300, 8, seed=3), folder, "next.csv"))
    assert after["decision"] in ("no_drift", "retrain_promoted", "retrain_rejected"), after
    assert read_breaker("sea").consecutive_failures == 0

    module.write_text(module.read_text().replace("df['x2']", "df['x9']"))  # an edit that broke the code
    path = write_csv(sea_frame(300, 8, seed=4), folder, "after-edit.csv")
    out = run("sea", path)
    assert out["decision"] == "failed" and "raised KeyError: 'x9'" in out["reason"], out
    assert ledger(paths).status(digest(path)) == "pending" and path.exists()


def test_a_target_of_numbers_is_refused_for_a_first_classifier_saying_to_name_a_regressor(prefect_server,
                                                                                          calmops_home):
    """A regression target with the default model (a classifier): the first model learnt each number as a class,
    scored 0 and was served. The first file is quarantined instead, saying why and what to write; with a regressor
    named (or the task given as classification) the same bytes train."""
    from calmops.core.store import save_spec, spec_from_dict

    save_spec(spec_from_dict({"name": "dose", "target": "y"}), create=True)  # the default model: a classifier
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x1": rng.normal(size=150), "x2": rng.normal(size=150)})
    frame["y"] = (100 + 40 * frame["x1"] + rng.normal(size=150)).round(1)
    path = write_csv(frame, incoming("dose"), "doses.csv")
    out = run("dose", path)
    assert out["decision"] == "rejected_input", out["reason"]
    distinct = frame["y"].nunique()
    assert out["reason"].startswith(f"doses.csv: target column 'y' holds {distinct} different numbers in 150 rows "
                                    "(e.g. "), out["reason"]
    assert "and the model is a classifier: it would learn each number as a class" in out["reason"]
    assert "model.class: sklearn.ensemble.HistGradientBoostingRegressor" in out["reason"]
    assert versions("dose") == []

    save_spec(spec_from_dict({"name": "dose", "target": "y",
                              "model": {"class": "sklearn.ensemble.HistGradientBoostingRegressor"}}), create=False)
    again = run("dose", write_csv(frame, incoming("dose"), "doses-again.csv"))
    assert again["decision"] == "train" and "rmse" in again["metrics"]["challenger"], again
