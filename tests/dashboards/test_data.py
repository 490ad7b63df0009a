"""The viewer's data layer without any service: report tables, matrices, spec history, URLs, the CLI command."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from calmops.core.verdict import DriftVerdict
from calmops.dashboards import data

REPORT_A = {
    "drifted_features": ["income"], "feature_scores": {"income": 3.0},
    "features": [
        {"feature": "age", "kind": "numeric", "test": "ks", "effect_size": 0.05, "threshold": 0.1, "drift": False,
         "status": "no_drift"},
        {"feature": "income", "kind": "numeric", "test": "ks", "effect_size": 0.3, "threshold": 0.1, "drift": True,
         "status": "drift"},
        {"feature": "income", "kind": "numeric", "test": "psi", "effect_size": 0.15, "threshold": 0.1,
         "drift": True, "status": "drift"},
    ],
    "multivariate": [{"method": "mmd", "statistic": 0.02, "p_value": 0.01, "threshold": 0.05, "drift": True}],
}
REPORT_B = {
    "drifted_features": ["region", "income"], "feature_scores": {"region": None, "income": 1.5},
    "features": [
        {"feature": "income", "test": "ks", "effect_size": 0.15, "threshold": 0.1, "drift": True},
        {"feature": "region", "test": "chi2", "effect_size": None, "threshold": 0.1, "drift": True,
         "status": "error", "detail": "column missing from the batch"},
    ],
}


def test_feature_table_puts_drifted_worst_first_with_ratio():
    table = data.feature_table(REPORT_A)
    assert table[["feature", "test"]].values.tolist()[0] == ["income", "ks"]
    assert table["ratio"].iloc[0] == pytest.approx(3.0)
    assert table["feature"].iloc[-1] == "age" and not table["drift"].iloc[-1]
    assert data.feature_table(None).empty and "ratio" in data.feature_table({}).columns


def test_drift_matrix_takes_the_worst_test_and_flags_missing_columns():
    matrix = data.drift_matrix({"a": REPORT_A, "b": REPORT_B, "c": None}, {"a": "f1", "b": "f2", "c": "f3"})
    assert list(matrix.columns) == ["f1", "f2"]  # a run without a report has no column
    assert matrix.loc["income", "f1"] == pytest.approx(3.0)
    assert matrix.loc["region", "f2"] == pytest.approx(6.0)  # missing column: 2 × the largest finite value
    assert matrix.index[0] == "region" and math.isnan(matrix.loc["age", "f2"])


def test_culprit_ranking_counts_runs_and_keeps_worst_score():
    ranking = data.culprit_ranking({"a": REPORT_A, "b": REPORT_B}).set_index("feature")
    assert ranking.loc["income", "times_drifted"] == 2 and ranking.loc["income", "share_of_runs"] == 1.0
    assert ranking.loc["income", "worst_score"] == 3.0 and ranking.loc["region", "worst_score"] == math.inf


def test_multivariate_concept_and_performance_frames():
    multi = data.multivariate_frame({"a": REPORT_A}, {"a": "f1"})
    assert multi.iloc[0][["run", "method", "drift"]].tolist() == ["f1", "mmd", True]
    verdicts = {"a": {"concept": {"alarm": True, "detectors": {"adwin": {"alarm": True, "first_alarm_index": 512,
                                                                         "first_alarm_row": 12,
                                                                         "status": {"drift": True}}}},
                      "performance": {"metric": "accuracy", "now": 0.8, "at_promotion": 0.9,
                                      "relative_drop": 0.11, "tolerance": 0.05, "noise_band": 0.04, "drift": True,
                                      "threshold_failures": ["accuracy 0.80 < min 0.85"]},
                      "decay": {"alarm": True, "files": 5, "p_value": 0.008, "relative_decline": 0.06}},
                "b": None}
    verdicts = {run: DriftVerdict.from_dict({"data": None, **v}) if v else None for run, v in verdicts.items()}
    concept = data.concept_frame(verdicts, {"a": "f1", "b": "f2"})
    assert concept.iloc[0][["detector", "alarm", "first_alarm_row"]].tolist() == ["adwin", 1, 12]  # of f1's rows
    perf = data.performance_frame(verdicts, {"a": "f1", "b": "f2"})
    assert len(perf) == 1 and perf.iloc[0]["threshold_failures"] == "accuracy 0.80 < min 0.85"
    assert perf.iloc[0]["noise_band"] == 0.04  # why a drop beyond the tolerance can still be no drift
    assert perf.iloc[0][["decay_files", "decay_decline", "decay"]].tolist() == [5, 0.06, True]


def test_spec_history_keeps_distinct_consecutive_specs_with_diffs():
    history = data.spec_history([("f0", "t0", "a: 1\n"), ("f1", "t1", "a: 1\n"), ("f2", "t2", None),
                                 ("f3", "t3", "a: 2\n"), ("f4", "t4", "a: 1\n")])
    assert [h["label"] for h in history] == ["f0", "f3", "f4"]
    assert "-a: 1" in history[1]["diff"] and "+a: 2" in history[1]["diff"]
    assert [h["number"] for h in history] == [1, 2, 3]


def test_block_tables_accept_the_usual_shapes():
    out = data.block_tables({"blocks": {"jan": {"rows": 10, "scores": {"accuracy": 0.9}}, "feb": {"rows": 5}},
                             "drift_matrix": {"labels": ["jan", "feb"], "matrix": [[0, 0.4], [0.4, 0]]}})
    assert out["blocks"].loc["jan", "scores.accuracy"] == 0.9
    assert out["drift_matrix"].loc["jan", "feb"] == 0.4
    nested = data.matrix_frame({"jan": {"feb": 0.2}, "feb": {"jan": 0.2}})
    assert nested.loc["jan", "feb"] == 0.2
    assert data.matrix_frame([[0, 1], [1, 0]]).shape == (2, 2)
    assert data.matrix_frame("nonsense") is None
    listed = data.block_tables({"blocks": [{"block": "a", "accuracy": 0.7}]})
    assert listed["blocks"].iloc[0]["accuracy"] == 0.7 and "drift_matrix" not in listed
    assert data.block_tables(None) == {}


def test_health_age_thresholds_and_primary_metric():
    assert data.health("no_drift", "open", False) == "down"
    assert data.health("quarantined", "closed", False) == "bad input"  # bad input is no failure of the pipeline
    assert data.health("quarantined", "closed", False, bad_input_fails=True) == "failing"  # breaker.count_bad_input
    assert data.health("failed", "closed", False) == "failing"
    # a challenger lost to a working champion: the champion serves on; not a failure (docs/spec.md)
    assert data.health("retrain_rejected", "closed", True) == "drift"
    assert data.health("no_drift", "closed", True) == "drift"
    assert data.health("no_drift", "closed", False) == "ok" and data.health(None, None, None) == "new"
    now = pd.Timestamp("2026-01-01T12:00:00Z")
    assert data.age_text(now - pd.Timedelta(hours=3), now.timestamp()) == "3 h"
    assert data.age_text(None) == "—"
    spec = {"evaluation": {"primary_metric": "f1_macro", "thresholds": {"accuracy": {"min": 0.7}}}}
    assert data.thresholds(spec) == {"accuracy": {"min": 0.7, "max": None}}
    runs = pd.DataFrame({"metric.champion_accuracy": [0.9], "metric.challenger_rmse": [1.0]})
    assert data.primary_metric(spec, runs) == "f1_macro" and data.primary_metric(None, runs) == "accuracy"
    assert data.metric_names(runs, "challenger") == ["rmse"]
    # a spec that names none: the task's default, the metric the pipeline decides on and `calmops history` shows
    logged = pd.DataFrame({f"metric.champion_{m}": [0.9] for m in ("accuracy", "balanced_accuracy", "f1_macro")})
    assert data.primary_metric({"evaluation": {"primary_metric": None}}, logged) == "balanced_accuracy"
    assert data.primary_metric(None, pd.DataFrame({"metric.champion_r2": [0.5], "metric.champion_rmse": [1.0]})) == "rmse"


def test_urls_follow_the_ui_addresses():
    conn = data.Connection("sqlite:///x.db", prefect_api="http://h:4200/api", prefect_ui="http://h:4200",
                           mlflow_ui="http://h:5000/")
    assert data.prefect_run_url(conn, "abc") == "http://h:4200/runs/flow-run/abc"
    assert data.mlflow_run_url(conn, "3", "r1") == "http://h:5000/#/experiments/3/runs/r1"
    assert data.mlflow_model_url(conn, "sea", 2) == "http://h:5000/#/models/calmops.sea/versions/2"
    bare = data.Connection("sqlite:///x.db")
    assert data.prefect_run_url(bare, "abc") is None and data.mlflow_run_url(bare, "3", "r1") is None
    assert "no Prefect API" in data.check_prefect(bare)


def test_connection_reads_environment_and_missing_sqlite_store_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CALMOPS_MLFLOW_UI", raising=False)
    conn = data.connection()
    assert conn.tracking_uri.startswith("sqlite:///") and str(tmp_path) in conn.tracking_uri
    assert data.check_mlflow(conn) is None and data.list_pipelines(conn) == []
    assert not (tmp_path / "home" / "mlflow" / "mlflow.db").exists()  # the viewer creates nothing
    dead = data.Connection("http://127.0.0.1:9")
    assert "does not answer" in data.check_mlflow(dead, timeout=1)


def test_block_metric_names_are_split_on_known_metrics():
    from calmops.dashboards.views.blocks import block_metrics

    runs = pd.DataFrame({"run_name": ["a", "b"], "metric.block_2024_01_accuracy": [0.9, 0.8],
                         "metric.block_north_f1_macro": [0.5, None]})
    long = block_metrics(runs)
    assert set(zip(long["block"], long["metric"])) == {("2024_01", "accuracy"), ("north", "f1_macro")}
    assert len(long) == 3


def test_viewer_command_binds_loopback_and_registers_on_the_cli():
    import typer
    from typer.testing import CliRunner

    from calmops.dashboards import cli
    from calmops.deployments import viewer_cli

    cmd = cli.command()
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("calmops/dashboards/app.py")
    for flag, value in (("--server.address", "127.0.0.1"), ("--server.port", "8501"),
                        ("--browser.gatherUsageStats", "false"), ("--server.headless", "true")):
        assert cmd[cmd.index(flag) + 1] == value
    app = typer.Typer()
    viewer_cli.register(app)

    @app.command("other")
    def other():  # a second command so typer keeps sub-command names
        pass

    result = CliRunner().invoke(app, ["viewer", "--help"])
    assert result.exit_code == 0 and "--port" in result.output


def test_spec_changes_reads_only_runs_where_the_spec_hash_changes():
    runs = pd.DataFrame({"run_id": list("abcdefg"), "spec_sha256": ["s1", "s1", "s2", "", "s2", "s2", "s1"]})
    # a run without the tag is always read (it may predate the tag); a change of hash starts a new version
    assert data.spec_changes(runs)["run_id"].tolist() == ["a", "c", "d", "e", "g"]
    assert data.spec_changes(runs.drop(columns="spec_sha256"))["run_id"].tolist() == list("abcdefg")


def test_artifact_texts_fetch_by_uri_keep_what_they_found_and_ask_again_for_the_rest(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("calmops/t", artifact_location=str(tmp_path / "artifacts"))
    with_spec, without = client.create_run(exp), client.create_run(exp)
    client.log_text(with_spec.info.run_id, "name: t\n", "spec.yaml")
    conn = data.Connection(uri)
    data.forget_artifacts()
    uris = [with_spec.info.artifact_uri, without.info.artifact_uri]
    assert data.artifact_texts(conn, uris, "spec.yaml") == {uris[0]: "name: t\n", uris[1]: None}

    # a run's artifacts are written once: the text found is kept even if the store goes away...
    (tmp_path / "artifacts").rename(tmp_path / "moved")
    assert data.artifact_text(conn, uris[0], "spec.yaml") == "name: t\n"
    # ...while an absent one is asked for again (it may be written later)
    client.log_text(without.info.run_id, "late\n", "spec.yaml")
    assert data.artifact_text(conn, uris[1], "spec.yaml") == "late\n"
    data.forget_artifacts()
    assert data.artifact_text(conn, uris[0], "spec.yaml") is None  # cold again: the store really moved


def test_overview_reads_only_the_latest_runs_and_says_when_there_are_more(tmp_path):
    import mlflow

    from calmops.dashboards.views import overview

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("calmops/many", artifact_location=str(tmp_path / "artifacts"))
    for i in range(overview.RECENT_RUNS + 3):
        run = client.create_run(exp, run_name=f"f{i:03d}.csv", start_time=1_700_000_000_000 + i * 1000,
                                tags={"calmops.decision": "no_drift", "calmops.kind": "stream"})
        client.set_terminated(run.info.run_id)
    row = overview.summary(data.Connection(uri), {"name": "many", "experiment_id": exp}, prefect_ok=False)
    assert row["runs"] == f"{overview.RECENT_RUNS}+"
    assert row["last file"] == f"f{overview.RECENT_RUNS + 2:03d}.csv"  # the newest run, not the oldest read


def test_a_verdict_that_cannot_be_read_is_left_out_and_named():
    good = {"drift_detected": True, "reasons": ["performance drift: x"], "data": None,
            "performance": {"metric": "accuracy", "now": 0.8, "at_promotion": 0.9, "threshold_failures": None,
                            "relative_drop": 0.11, "tolerance": 0.05, "drift": True}}
    bad = {"drift_detected": False, "data": {"features": [{"feature": "x"}]}}  # a feature result without its fields
    verdicts, unreadable = data.read_verdicts({"a": good, "b": bad, "c": None})
    assert unreadable == ["b"] and verdicts["b"] is None and verdicts["c"] is None
    perf = data.performance_frame(verdicts, {"a": "f1", "b": "f2", "c": "f3"})
    assert perf["run"].tolist() == ["f1"] and perf.iloc[0]["threshold_failures"] == ""
    assert perf.iloc[0][["decay_files", "decay"]].isna().all()  # no decay recorded: blank, not 0 / False


def _store(tmp_path, name: str, runs: list[dict]) -> tuple[data.Connection, str]:
    """An MLflow store with one pipeline's experiment and ``runs`` (their calmops.* tags), oldest first."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment(f"calmops/{name}", artifact_location=str(tmp_path / "artifacts"),
                                   tags={"calmops.pipeline": name})
    for i, tags in enumerate(runs):
        run = client.create_run(exp, run_name=f"f{i}.csv", start_time=1_700_000_000_000 + i * 1000,
                                tags={f"calmops.{k}": v for k, v in tags.items()})
        client.set_terminated(run.info.run_id)
    return data.Connection(uri), exp


def test_drift_is_not_said_no_for_files_that_were_never_checked(tmp_path):
    """Runs recorded before the flows left the tag out say drift_detected=false for a first model and for a
    quarantined file too; neither was checked."""
    from calmops.dashboards import ui
    from calmops.dashboards.views import overview

    recorded = [("train", "false"), ("no_drift", "false"), ("retrain_promoted", "true"),
                ("duplicate", "false"), ("held", "false"), ("failed", None), ("rejected_input", "false")]
    conn, exp = _store(tmp_path, "quar", [{"decision": d, "kind": "stream",
                                           **({"drift_detected": t} if t else {})} for d, t in recorded])
    runs = data.runs_frame(conn, exp)
    shown = runs["drift"].map(ui.yes_no).tolist()
    assert shown == ["—", "no", "yes", "—", "—", "—", "—"], shown
    row = overview.summary(conn, {"name": "quar", "experiment_id": exp}, prefect_ok=False)
    # recorded rejected_input, shown as the quarantine folder and the flow run's state say it
    assert row["last decision"] == "quarantined" and row["drift"] == "—" and row["health"] == "file quarantined"


def test_the_kind_of_a_pipeline_without_runs_is_read_from_its_spec(tmp_path, monkeypatch):
    from calmops.core.settings import get_settings
    from calmops.core.store import spec_from_dict
    from calmops.dashboards.views import overview
    from tests.conftest import STREAM_SPEC

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    spec = spec_from_dict({**STREAM_SPEC, "name": "fresh", "kind": "block", "block_column": "month"})
    folder = get_settings().pipeline_dir("fresh")
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec.to_yaml())
    conn, exp = _store(tmp_path, "fresh", [])
    row = overview.summary(conn, {"name": "fresh", "experiment_id": exp}, prefect_ok=False)
    assert row["kind"] == "block"
    elsewhere = overview.summary(conn, {"name": "nowhere", "experiment_id": exp}, prefect_ok=False)
    assert elsewhere["kind"] == "—"  # no spec on this host, no run: unknown


def test_thresholds_are_said_in_words():
    """The caption showed the spec's bounds as a Python dict: {'min': 0.6, 'max': None}."""
    assert data.bounds_text({"min": 0.6, "max": None}) == "minimum 0.6"
    assert data.bounds_text({"min": 0.6, "max": 0.9}) == "minimum 0.6, maximum 0.9"
    assert data.bounds_text({"min": None, "max": 2.5}) == "maximum 2.5"
    assert data.bounds_text(None) == data.bounds_text({}) == ""


def test_ipip_quantities_are_shown_once_each_dotted_where_a_run_has_it():
    """The flows record p, b and the replaced share as ``ipip_*`` metrics and as the ``ipip`` details: the
    table had both columns and the chart drew the share twice."""
    runs = pd.DataFrame({"run_id": ["old", "new"], "run_name": ["f0.csv", "f1.csv"],
                         "decision": ["train", "no_drift"], "metric.ipip_p": [3.0, 3.0],
                         "metric.ipip_b": [5.0, 4.0], "metric.ipip_replaced_share": [1.0, 0.5],
                         "metric.ipip_mean_ensemble_size": [5.0, 4.5]})
    outcomes = {"old": None,  # a run recorded before the details: its metrics only
                "new": {"details": {"ipip": {"p": 3, "b": 4, "replaced_share": 0.25, "n_new_kept": 1},
                                    "ensemble_sizes": [5, 4], "blocks": {"2024-01": {"rows": 10}},
                                    "promotion": {"reason": "better"}, "predictions_note": "kept"}}}
    frame = data.ipip_frame(runs, outcomes).set_index("run")
    quantities = [c.removeprefix("ipip.") for c in frame.columns if c.startswith("ipip")]
    assert len(quantities) == len(set(quantities)) and not [c for c in frame.columns if c.startswith("ipip_")]
    assert frame.loc["f0.csv", ["ipip.p", "ipip.b", "ipip.replaced_share"]].tolist() == [3, 5, 1.0]
    assert frame.loc["f1.csv", ["ipip.b", "ipip.replaced_share", "ipip.n_new_kept"]].tolist() == [4, 0.25, 1]
    assert frame.loc["f1.csv", "ipip.mean_ensemble_size"] == 4.5
    assert frame.loc["f1.csv", "details.ensemble_sizes"] == "5, 4"
    # keys that only start like an IPIP quantity (b…, p…) are not IPIP's
    assert [c for c in frame.columns if c.startswith("details.")] == ["details.ensemble_sizes"]


def test_the_simulator_names_one_file_once():
    from pathlib import Path

    from calmops.dashboards.views.simulator import written_text

    folder = Path("/data/in")
    assert written_text([folder / "sea-1.csv"], folder) == "Wrote 1 file to /data/in: sea-1.csv"
    two = written_text([folder / "a.csv", folder / "b.csv"], folder)
    assert two == "Wrote 2 files to /data/in: a.csv … b.csv"


def test_a_file_decided_in_another_files_turn_says_whose_turn_not_that_runs_state():
    """order: arrival: the flow run of a.csv decided b.csv too (b's MLflow run names a's flow run) and ended Held
    on a's account; beside b the viewer says whose turn decided it, beside a its own state. A labels file's
    flow run is named by its ledger name (labels/<file>), its MLflow run by the file and its folder."""
    runs = pd.DataFrame({"flow_run_id": ["fa", "fa", "fl", "gone"], "file": ["a.csv", "b.csv", "a.csv", "c.csv"],
                         "folder": ["incoming", "incoming", "labels", "incoming"]})
    flows = pd.DataFrame({"flow_run_id": ["fa", "fl"], "state": ["Held", "Completed"],
                          "file": ["a.csv", "labels/a.csv"]})
    assert data.flow_states(runs, flows) == ["Held", "in the turn of a.csv", "Completed", ""]


def _recorded(*rows):
    """runs_frame's columns the Runs & logs tab joins on, oldest run first: (flow_run_id, file, folder, sha)."""
    return pd.DataFrame([{"flow_run_id": f, "file": file, "run_name": file, "folder": folder, "sha256": sha}
                         for f, file, folder, sha in rows])


def _flows(*rows):
    """flow_runs' frame, newest first: (flow_run_id, file, state, sha)."""
    return pd.DataFrame([{"flow_run_id": f, "name": f"stream/p/{file}", "state": state, "file": file, "sha256": sha}
                         for f, file, state, sha in rows])


def test_a_flow_run_that_decided_several_files_is_named_once_after_its_turn():
    """order: arrival: the flow run made for b.csv held the turn and decided a.csv, b.csv and c.csv (three MLflow
    runs under its id); another decided one file of its own; one Prefect no longer lists decided two."""
    runs = _recorded(("old", "x.csv", "incoming", "s"), ("old", "y.csv", "incoming", "s"),
                     ("f0", "f0.csv", "incoming", "s0"), ("fb", "a.csv", "incoming", "sa"),
                     ("fb", "b.csv", "incoming", "sb"), ("fb", "c.csv", "incoming", "sc"),
                     ("fb", "d.csv", "incoming", "sd"), ("", "by-hand.csv", "incoming", ""))
    flows = _flows(("fb", "b.csv", "Completed", "sb"), ("f0", "f0.csv", "Completed", "s0"),
                   ("fr", "e.csv", "Running", "se"))
    labels = data.flow_run_labels(runs, flows, flows[flows["flow_run_id"] == "fr"])
    assert list(labels) == ["fb", "f0", "old", "fr"]  # once each, newest first, then those without a record
    assert labels["fb"] == "b.csv (decided 4 files: a.csv, b.csv, c.csv, …)"
    assert labels["f0"] == "f0.csv" and labels["old"] == "x.csv, y.csv (2 files, one flow run)"
    assert labels["fr"] == "e.csv (Running, no MLflow record)"
    assert data.decided_files(runs)["fb"] == ["a.csv", "b.csv", "c.csv", "d.csv"]
    assert data.flow_run_labels(runs, pd.DataFrame(), pd.DataFrame())["f0"] == "f0.csv"  # Prefect unread


def test_flow_runs_cancelled_as_decided_by_another_run_are_not_without_a_record():
    runs = _recorded(("fb", "a.csv", "incoming", "sa"), ("fb", "b.csv", "incoming", "sb"),
                     ("fl", "a.csv", "labels", "la"))
    decided = "Decided by another run"
    flows = _flows(("fb", "b.csv", "Completed", "sb"), ("fa", "a.csv", decided, "sa"),
                   ("fl2", "labels/a.csv", decided, "la"), ("fn", "n.csv", decided, "sn"),
                   ("fo", "a.csv", decided, "other bytes"), ("fr", "r.csv", "Running", "sr"),
                   ("fc", "c.csv", "Crashed", ""))
    orphans, elsewhere = data.unrecorded_flow_runs(runs, flows)
    assert elsewhere["flow_run_id"].tolist() == ["fa", "fl2"]
    # no record of its file (the deciding run crashed before recording), or of those bytes: still without one
    assert orphans["flow_run_id"].tolist() == ["fn", "fo", "fr", "fc"]
    empty = pd.DataFrame()
    assert data.unrecorded_flow_runs(runs, empty)[0].empty


def test_block_metrics_keep_block_order_and_tell_the_challenger_apart():
    from calmops.dashboards.views.blocks import block_metrics, per_run

    runs = pd.DataFrame({"run_name": ["f0.csv", "f1.csv"], "metric.block_10_accuracy": [0.7, 0.6],
                         "metric.block_9_accuracy": [0.8, None], "metric.block_2_challenger_accuracy": [None, 0.9],
                         "metric.block_2024-10_f1_macro": [0.5, 0.5], "metric.block_2024-09_f1_macro": [0.4, 0.4]})
    long = block_metrics(runs)
    champion = long[long["model"] == "champion"]
    assert set(long["block"]) == {"9", "10", "2", "2024-09", "2024-10"}  # no "2_challenger" block
    assert long.loc[long["model"] == "challenger", ["run", "block", "metric"]].values.tolist() == [
        ["f1.csv", "2", "accuracy"]]
    assert list(per_run(champion[champion["metric"] == "accuracy"]).columns) == ["run", "9", "10"]
    assert list(per_run(champion[champion["metric"] == "f1_macro"]).columns) == ["run", "2024-09", "2024-10"]


def test_a_labels_files_runs_are_named_labels_name_and_so_is_the_file_a_version_was_trained_on(tmp_path):
    """docs/late-labels.md: a labels file and a features file may share a name. The viewer named both same.csv (the
    overview's Latest runs, the tables' run labels, which numbered the second "same.csv (2)") and a version
    trained on labels/f03.csv "f03.csv"; it names a labels file labels/<name>, as the ledger and the CLI do."""
    from calmops.dashboards.views import overview
    from calmops.dashboards.views.pipeline import _labels

    conn, exp = _store(tmp_path, "credit", [{"file": "f0.csv", "folder": "incoming", "decision": "train"},
                                            {"file": "same.csv", "folder": "incoming", "decision": "predict_only"},
                                            {"file": "same.csv", "folder": "labels", "decision": "no_drift"},
                                            {"file": "new.csv", "folder": "labels", "decision": "no_drift"},
                                            {"file": "old.csv", "decision": "no_drift"}])  # before the folder tag
    import mlflow

    client = mlflow.MlflowClient(conn.tracking_uri)
    for run in client.search_runs([exp]):  # each run named after its file, as the flows named them (a labels
        # file's is now named labels/<name> by the flow itself: new.csv)
        file = run.data.tags["calmops.file"]
        client.set_tag(run.info.run_id, "mlflow.runName", f"labels/{file}" if file == "new.csv" else file)
    runs = data.runs_frame(conn, exp)
    named = ["f0.csv", "same.csv", "labels/same.csv", "labels/new.csv", "old.csv"]
    assert runs["run_name"].tolist() == named
    assert list(_labels(runs).values()) == named  # none numbered
    assert [data.shown_file(row) for _, row in runs.iterrows()] == runs["run_name"].tolist()
    recent = overview._recent_runs(conn, [{"name": "credit", "experiment_id": exp}])
    assert sorted(recent["file"]) == ["f0.csv", "labels/new.csv", "labels/same.csv", "old.csv", "same.csv"]
    labels_run = runs.loc[(runs["folder"] == "labels") & (runs["file"] == "same.csv"), "run_id"].item()
    trained = {"run_id": labels_run, "training": {"mode": "window", "file": "same.csv"}}  # a tag without the folder
    assert data.training_file(trained, runs) == "labels/same.csv"  # the registering run's folder says it
    tagged = {"run_id": "elsewhere", "training": {"file": "f03.csv", "folder": "labels"}}
    assert data.training_file(tagged, runs) == "labels/f03.csv"
    assert data.training_file({"run_id": runs["run_id"][0], "training": {"file": "f0.csv"}}, runs) == "f0.csv"
    assert data.training_file({"run_id": None, "training": {}}, runs) == ""
