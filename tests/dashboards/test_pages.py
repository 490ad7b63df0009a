"""Every viewer page under Streamlit's AppTest on real MLflow/Prefect data, plus empty and error states."""

from __future__ import annotations

import os

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from calmops.core import registry
from tests.conftest import STREAM_SPEC

pytestmark = pytest.mark.integration

PAGES = ("overview", "pipeline", "blocks", "ipip", "simulator")
TIMEOUT = 120


def page(name: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_string(f"from calmops.dashboards.views import {name}\n{name}.render()", default_timeout=TIMEOUT)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def app() -> AppTest:
    return AppTest.from_file("../../calmops/dashboards/app.py", default_timeout=TIMEOUT).run()


def clean(at: AppTest, warnings: bool = False) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if not warnings:
        assert not at.warning, [w.value for w in at.warning]


TABLES = {  # a table is found by columns only it has (AppTest does not expose a dataframe's key)
    "overview_table": {"pipeline", "champion", "last decision"},
    "runs_table": {"file", "decision", "MLflow", "Prefect"},
    "feature_table": {"feature", "test", "p_adjusted", "ratio"},
    "concept": {"detector", "first_alarm_row"},
    "retraining": {"version", "mode", "outcome", "rows new"},
    "aliases": {"alias", "version", "trained on"},
    "duel": {"metric", "champion v1", "challenger v2"},  # f3's head-to-head: v2 promoted over v1
    "schema": {"column", "dtype", "feature type"},
    "sample": {"x1", "x2", "x3", "y"},
    "quality": {"column", "null rate", "distinct"},
    "blocks_table": {"block", "rows", "accuracy"},
    "drift_matrix": {"block", "2024-01", "2024-02"},
    "block_metrics": {"run", "2024-01", "2024-02"},
    "ipip_table": {"run", "ipip.p"},
    "sim_preview": {"x0", "x1", "x2", "y", "concept"},
    "orphans": {"name", "state", "start_time", "duration_s"},
}


def table(at: AppTest, name: str):
    want = TABLES[name]
    found = [d.value for d in at.dataframe if want <= set(d.value.columns) | {d.value.index.name}]
    assert found, f"no table with columns {want}: {[list(d.value.columns) for d in at.dataframe]}"
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def mlflow_truth(name: str = "sea") -> dict:
    """What MLflow itself says, read independently of the viewer."""
    from calmops.core.settings import get_settings

    client = MlflowClient(get_settings().mlflow_tracking_uri)
    exp = client.get_experiment_by_name(registry.experiment_name(name))
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    champion = int(client.get_registered_model(f"calmops.{name}").aliases["champion"])
    return {"champion": champion, "last": runs[0], "runs": runs}


def test_app_starts_on_overview_with_sidebar(home, monkeypatch):
    for var in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "MLFLOW_DISABLE_TELEMETRY",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # the app's prepare() sets these: restore them after
        if not os.environ[var]:
            monkeypatch.delenv(var)
    at = app()
    clean(at)
    assert at.title[0].value == "CalmOps pipelines"
    assert at.sidebar.selectbox(key="refresh_every").value == "30 s"


def test_overview_matches_mlflow(home):
    at = page("overview")
    clean(at)
    truth = mlflow_truth()
    overview = table(at, "overview_table").set_index("pipeline")
    assert set(overview.index) == {"sea", "blk", "imb"}
    sea = overview.loc["sea"]
    assert sea["champion"] == f"v{truth['champion']}" == "v2"
    assert sea["last decision"] == truth["last"].data.tags["calmops.decision"] == "retrain_promoted"
    assert sea["last file"] == "f3.csv" and sea["kind"] == "stream" and sea["runs"] == "4"
    assert sea["breaker"] == "closed" and sea["drift"] == "yes" and sea["health"] == "drift"
    assert overview.loc["blk", "kind"] == "block" and overview.loc["imb", "kind"] == "ipip"
    assert metrics(at)["Pipelines"] == "3"


def test_pipeline_page_header_and_sections_match_mlflow(home):
    at = page("pipeline", {"pipeline": "sea"})
    clean(at)
    truth = mlflow_truth()
    shown = metrics(at)
    assert shown["Champion"] == f"v{truth['champion']}"
    assert shown["Last decision"] == truth["last"].data.tags["calmops.decision"]
    assert shown["Kind"] == "stream" and shown["Breaker"] == "closed" and shown["Drift (last run)"] == "yes"
    # runs & logs: newest first, decisions and links as in MLflow and Prefect
    runs = table(at, "runs_table")
    assert runs["decision"].tolist() == [r.data.tags["calmops.decision"] for r in truth["runs"]]
    assert runs["file"].tolist() == ["f3.csv", "f2.csv", "f1.csv", "f0.csv"]
    assert set(runs["flow state"]) == {"Completed"}
    assert all(u.endswith(r.data.tags["calmops.flow_run_id"]) for u, r in zip(runs["Prefect"], truth["runs"]))
    logs = [c.value for c in at.code if c.language == "log"]
    assert logs and "f3.csv" in logs[0] and "retrain_promoted" in logs[0]
    # drift: the per-feature table of the latest checked run, from its report
    features = table(at, "feature_table")
    assert sorted(features["feature"]) == ["x1", "x2", "x3"] and set(features["test"]) == {"ks"}
    concept = table(at, "concept")
    assert "adwin" in set(concept["detector"])
    # retraining history: v2 promoted by f3 (full), v1 trained by f0
    history = table(at, "retraining").set_index("version")
    assert history.loc["v2", "outcome"] == "retrain_promoted" and history.loc["v2", "mode"] == "full"
    assert history.loc["v1", "outcome"] == "train" and history.loc["v1", "file"] == "f0.csv"
    assert "champion" in history.loc["v2", "aliases"] and "previous" in history.loc["v1", "aliases"]
    # champion vs challenger, data, spec
    aliases = table(at, "aliases").set_index("alias")
    assert aliases.loc["champion", "version"] == "v2" and aliases.loc["previous", "version"] == "v1"
    duel = table(at, "duel").set_index("metric")
    last = truth["last"].data.metrics
    # each column names its version: v1 was the champion f3's challenger v2 was compared with, now 'previous'
    assert duel.loc["accuracy", "challenger v2"] == pytest.approx(last["challenger_accuracy"])
    # on the holdout the two were compared on, not the whole file (the run's champion_accuracy)
    assert duel.loc["accuracy", "champion v1"] == pytest.approx(last["holdout_champion_accuracy"])
    assert last["holdout_champion_accuracy"] != pytest.approx(last["champion_accuracy"])
    assert table(at, "schema")["column"].tolist() == ["x1", "x2", "x3"]
    assert len(table(at, "sample")) == 100
    specs = [c.value for c in at.code if c.language == "yaml"]
    assert specs and "name: sea" in specs[0] and "DecisionTreeClassifier" in specs[0]


def test_pipeline_page_widgets_rerun_cleanly(home):
    at = page("pipeline", {"pipeline": "sea"})
    at.selectbox(key="drift_run").select_index(2).run()
    clean(at)
    at.selectbox(key="perf_metric").set_value("f1_macro").run()
    clean(at)
    at.selectbox(key="data_version").set_value(1).run()
    clean(at)
    assert table(at, "quality")["null rate"].max() == 0
    at.multiselect(key="dist_versions").set_value([1]).run()
    at.selectbox(key="dist_feature").set_value("x2").run()
    clean(at)
    at.selectbox(key="log_run").select_index(3).run()
    clean(at)
    assert "f0.csv" in next(c.value for c in at.code if c.language == "log")


def test_pipeline_select_box_switches_pipeline(home):
    at = page("pipeline", {"pipeline": "sea"})
    at.selectbox(key="pipeline").set_value("blk").run()
    clean(at)
    assert metrics(at)["Kind"] == "block" and metrics(at)["Champion"] == "—"


def test_block_view_renders_details_and_block_metrics(home):
    at = page("blocks")
    clean(at)
    blocks = table(at, "blocks_table")
    assert set(blocks["block"]) == {"2024-01", "2024-02"} and "accuracy" in blocks.columns
    matrix = table(at, "drift_matrix").set_index("block")
    assert matrix.loc["2024-01", "2024-02"] == pytest.approx(2.3)  # the newest run is shown first
    per_run = table(at, "block_metrics")
    assert len(per_run) == 3 and {"2024-01", "2024-02"} <= set(per_run.columns)


def charts_on(at: AppTest) -> list[dict]:
    """The plotly figures a page drew, as the browser gets them."""
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(encoded) -> list:
    """A trace's x or y as a list (plotly sends numeric arrays base64-encoded), NaN as None."""
    import base64

    import numpy as np

    if isinstance(encoded, dict):
        encoded = np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"]).tolist()
    return [None if isinstance(v, float) and np.isnan(v) else v for v in encoded]


def test_ipip_view_shows_p_b_and_replaced_share_once_each(home):
    at = page("ipip")
    clean(at)
    ipips = table(at, "ipip_table")
    assert {"ipip.p", "ipip.b", "ipip.replaced_share"} <= set(ipips.columns)
    quantities = [c.removeprefix("ipip.").removeprefix("ipip_") for c in ipips.columns
                  if c.startswith("ipip")]
    assert len(quantities) == len(set(quantities)), list(ipips.columns)  # not ipip_p beside ipip.p
    assert ipips["ipip.b"].tolist() == [4, 5, 5]  # newest first, the metric where the details say otherwise
    series = [{t["name"] for t in chart["data"]} for chart in charts_on(at)]
    assert series == [{"ipip.p", "ipip.b"}, {"ipip.replaced_share"}], series  # not every detail as a line


def test_simulator_generates_and_writes_files(home, tmp_path):
    from calmops.core.settings import get_settings

    at = page("simulator")
    clean(at)
    assert len(table(at, "sim_preview")) == 50
    at.selectbox(key="sim_drift").set_value("gradual").run()
    at.number_input(key="sim_rows").set_value(2000).run()
    clean(at)
    # the viewer has no login: it writes into a pipeline's incoming folder or under the data root, never a typed path
    assert not [t for t in at.text_input if t.key == "sim_folder"]
    places = at.selectbox(key="sim_target").options
    assert "sea: incoming" in places, places
    # the default is the folder under the data root: one click never fills a pipeline with files of other columns
    assert at.selectbox(key="sim_target").value.startswith("simulated/"), at.selectbox(key="sim_target").value
    simulated = next(p for p in places if p.startswith("simulated/"))
    at.selectbox(key="sim_target").set_value(simulated)
    at.number_input(key="sim_files").set_value(4)
    next(b for b in at.button if b.label == "Write files").click().run()
    clean(at)
    out = get_settings().home / "simulated" / simulated.split()[0].removeprefix("simulated/")
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 4 and written[0].endswith(".csv")
    assert at.success and at.success[0].value.startswith("Wrote 4 files to ")


def test_a_link_to_a_pipeline_that_is_not_there_says_so(home):
    """?pipeline=NAME of a misspelt or deleted pipeline showed another pipeline's data without a word."""
    at = page("pipeline", {"pipeline": "nosuch"})
    assert not at.exception, [e.message for e in at.exception]
    assert any("No pipeline named nosuch" in w.value for w in at.warning), [w.value for w in at.warning]


def test_simulator_writes_nothing_when_the_viewer_is_told_not_to(home, monkeypatch):
    monkeypatch.setenv("CALMOPS_VIEWER_WRITES", "off")
    at = page("simulator")
    clean(at)
    assert not [b for b in at.button if b.label == "Write files"]
    assert any("turned off" in c.value for c in at.caption)


def test_open_breaker_is_shown(home):
    from calmops.core.breaker import BreakerPolicy, update_breaker
    from calmops.dashboards import cache

    policy = BreakerPolicy(max_failures=1, cooldown_seconds=600)
    update_breaker("sea", lambda s: s.record_failure(policy, "seeded failure"))
    try:
        cache.clear()
        at = page("overview")
        clean(at)
        sea = table(at, "overview_table").set_index("pipeline").loc["sea"]
        assert sea["breaker"] == "open" and sea["health"] == "breaker open"
        at = page("pipeline", {"pipeline": "sea"})
        clean(at)
        assert metrics(at)["Breaker"] == "open" and metrics(at)["Consecutive failures"] == "1"
    finally:
        update_breaker("sea", lambda s: s.reset("test over"))
        cache.clear()


def test_a_paused_pipeline_says_so_above_its_page(home):
    from calmops.core import pause

    pause.pause("sea", "model under review")
    try:
        at = page("pipeline", {"pipeline": "sea"})
        clean(at, warnings=True)
        said = [w.value.replace("\\", "") for w in at.warning]  # as shown: the markdown escapes removed
        assert any(w.startswith("pipeline sea has been paused since") and "(model under review)" in w
                   for w in said), said
    finally:
        pause.resume("sea")


@pytest.mark.parametrize("name", PAGES)
def test_empty_store_says_how_to_start(name, prefect_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    at = page(name)
    clean(at)
    if name != "simulator":
        assert at.info and "calmops create SPEC.yaml" in at.info[0].value and "make demo" in at.info[0].value


def test_store_without_pipelines_is_empty_too(prefect_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "other"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from calmops.core.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    (tmp_path / "other" / "mlflow").mkdir(parents=True)
    MlflowClient(uri).create_experiment("unrelated")
    at = page("overview")
    clean(at)
    assert "calmops create SPEC.yaml" in at.info[0].value


@pytest.mark.parametrize("name", ("overview", "pipeline", "blocks", "ipip"))
def test_unreachable_mlflow_is_an_error_message_not_a_crash(name, prefect_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    at = page(name)
    assert not at.exception, [e.message for e in at.exception]
    shown = at.error[0].value.replace("\\", "") if at.error else ""  # data is markdown-escaped: read it as shown
    assert "Cannot read MLflow" in shown and "127.0.0.1:9" in shown


def test_unreachable_prefect_keeps_mlflow_data(home, monkeypatch):
    from calmops.dashboards import data

    monkeypatch.setattr(data, "_prefect_api_url", lambda: "http://127.0.0.1:9/api")
    at = page("pipeline", {"pipeline": "sea"})
    assert not at.exception and not at.error
    assert metrics(at)["Champion"] == "v2" and metrics(at)["Breaker"] == "unknown"
    assert any("does not answer" in w.value for w in at.warning)
    at = page("overview")
    assert not at.exception
    assert table(at, "overview_table").set_index("pipeline").loc["sea", "breaker"] == "unknown"
    assert metrics(at)["Breakers open"] == "unknown"  # not 0 beside the warning that their states are unknown


def test_performance_draws_the_serving_score_and_says_the_thresholds_in_words(home):
    """The champion line is the serving model's score on every row of each file: a run that retrained logs it
    as ``champion_<m>`` like every other run (runs logged before ``holdout_champion_<m>`` kept the holdout
    there); the caption showed the spec's thresholds as a Python dict."""
    from calmops.core.names import serving_score

    at = page("pipeline", {"pipeline": "sea"})
    clean(at)
    line = next(t for chart in charts_on(at) for t in chart["data"] if t.get("name") == "champion accuracy")
    shown = dict(zip(values(line["x"]), values(line["y"]), strict=True))
    runs = {r.info.run_name: r for r in mlflow_truth()["runs"]}
    for name, run in runs.items():
        first_model = run.data.tags["calmops.decision"] == "train"
        expected = None if first_model else pytest.approx(serving_score(run.data.metrics, "accuracy"))
        assert shown[name] == expected, name
    retrained = runs["f3.csv"].data.metrics
    assert shown["f3.csv"] == pytest.approx(retrained["champion_accuracy"])  # one meaning on every run
    assert shown["f3.csv"] != pytest.approx(retrained["holdout_champion_accuracy"])  # the holdout: another number
    threshold = STREAM_SPEC["evaluation"]["thresholds"]["accuracy"]["min"]
    caption = next(c.value for c in at.caption if "spec's thresholds" in c.value)
    assert f"for accuracy: minimum {threshold}." in caption and "{" not in caption, caption


def test_a_first_model_is_not_said_to_have_no_drift(home):
    at = page("pipeline", {"pipeline": "sea"})
    runs = table(at, "runs_table").set_index("file")
    tags = {r.info.run_name: r.data.tags for r in mlflow_truth()["runs"]}
    assert tags["f0.csv"]["calmops.decision"] == "train" and runs.loc["f0.csv", "drift"] == "—"
    for name in ("f1.csv", "f2.csv", "f3.csv"):  # checked files: as their tag says
        assert runs.loc[name, "drift"] == {"true": "yes", "false": "no"}[tags[name]["calmops.drift_detected"]]


@pytest.mark.parametrize("name, query", [("overview", None), ("pipeline", {"pipeline": "sea"}),
                                         ("blocks", None), ("ipip", None)])
def test_no_table_shows_none_for_a_missing_value(home, name, query):
    """Streamlit writes "None" in a table's empty cell unless told otherwise (concept detectors without an
    alarm, versions without reference rows, the per-block metrics of blocks a run did not have…)."""
    at = page(name, query)
    clean(at)
    assert at.dataframe
    for frame in at.dataframe:
        assert frame.proto.placeholder == "—", list(frame.value.columns)
        text = frame.value.astype(str).where(frame.value.notna(), "")
        assert not text.isin(["None", "nan", "NaN", "<NA>"]).any().any(), frame.value


def test_the_between_block_matrix_says_what_its_numbers_are(home):
    at = page("blocks")
    clean(at)
    assert any("Higher means the two blocks differ more" in c.value for c in at.caption)
    heatmap = next(chart for chart in charts_on(at) if chart["data"][0].get("type") == "heatmap")
    assert "minimum effect" in heatmap["layout"]["coloraxis"]["colorbar"]["title"]["text"]
    over_runs = next(chart for chart in charts_on(at) if chart["data"][0].get("mode") == "lines+markers")
    oldest_first = ["part0.csv", "part1.csv", "part2.csv"]
    assert over_runs["layout"]["xaxis"]["categoryarray"] == oldest_first


def test_files_never_checked_show_no_drift_answer_and_a_pipeline_without_runs_its_spec_kind(
        prefect_server, tmp_path, monkeypatch):
    """A quarantined last file read 'Drift (last run): no'; a pipeline created without a run read kind '—'."""
    from calmops.core.settings import get_settings
    from calmops.core.store import spec_from_dict

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = get_settings()
    (settings.home / "mlflow").mkdir(parents=True)
    client = MlflowClient(settings.mlflow_tracking_uri)
    quar = client.create_experiment("calmops/quar", tags={"calmops.pipeline": "quar"})
    for i, decision in enumerate(("train", "rejected_input")):  # recorded the old way: drift_detected=false
        run = client.create_run(quar, run_name=f"f{i}.csv", start_time=1_700_000_000_000 + i * 1000, tags={
            "calmops.decision": decision, "calmops.drift_detected": "false", "calmops.kind": "stream",
            "calmops.reason": "seeded", "calmops.file": f"f{i}.csv"})
        client.set_terminated(run.info.run_id)
    client.create_experiment("calmops/fresh", tags={"calmops.pipeline": "fresh"})
    spec = spec_from_dict({**STREAM_SPEC, "name": "fresh", "kind": "ipip", "block_column": "month"})
    settings.pipeline_dir("fresh").mkdir(parents=True)
    (settings.pipeline_dir("fresh") / "spec.yaml").write_text(spec.to_yaml())

    at = page("overview")
    clean(at)
    overview = table(at, "overview_table").set_index("pipeline")
    assert overview.loc["quar", "drift"] == "—" and overview.loc["fresh", "kind"] == "ipip"
    at = page("pipeline", {"pipeline": "quar"})
    assert not at.exception and not at.error
    assert metrics(at)["Drift (last run)"] == "—" and metrics(at)["Last decision"] == "quarantined"
    assert table(at, "runs_table")["drift"].tolist() == ["—", "—"]
    at = page("pipeline", {"pipeline": "fresh"})
    assert metrics(at)["Kind"] == "ipip"


@pytest.fixture
def empty_home(prefect_server, tmp_path, monkeypatch) -> MlflowClient:
    """A CALMOPS_HOME of this test's own, its MLflow store empty; the client of that store."""
    from calmops.core.settings import get_settings

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = get_settings()
    (settings.home / "mlflow").mkdir(parents=True)
    return MlflowClient(settings.mlflow_tracking_uri)


def shown_log(at: AppTest) -> str:
    return next(c.value for c in at.code if c.language == "log")


def test_the_log_picker_lists_a_flow_run_once_named_after_its_turn_with_the_files_it_decided(empty_home, tmp_path):
    """order: arrival: the flow run made for b.csv held the turn and decided a.csv, b.csv and c.csv. The picker
    listed that flow run three times, each labelled a.csv (the oldest file), over a log that said b.csv's run."""
    from tests.dashboards.seed import seed_one_turn

    seed_one_turn(empty_home, "turn", tmp_path / "incoming")
    at = page("pipeline", {"pipeline": "turn"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    picker = at.selectbox(key="log_run")
    assert picker.options[:2] == ["b.csv (decided 3 files: a.csv, b.csv, c.csv)", "f0.csv"], picker.options
    assert len(picker.options) == len(set(picker.options)), picker.options
    assert "Beginning flow run 'stream/turn/b.csv'" in shown_log(at)
    assert any("decided 3 files in it, in this order: a.csv, b.csv, c.csv" in c.value.replace("\\", "")
               for c in at.caption), [c.value for c in at.caption]
    picker.select_index(1).run()
    assert "Beginning flow run 'stream/turn/f0.csv'" in shown_log(at)


def test_flow_runs_cancelled_because_another_run_decided_their_file_are_not_said_to_lack_a_record(empty_home,
                                                                                                  tmp_path):
    """The runs made for a.csv and c.csv, cancelled as Decided by another run, were listed among the flow runs
    without an MLflow record, though each file's MLflow run is in the runs table."""
    from tests.dashboards.seed import seed_one_turn

    seed_one_turn(empty_home, "turn2", tmp_path / "incoming")
    at = page("pipeline", {"pipeline": "turn2"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    runs = table(at, "runs_table")
    assert {"a.csv", "c.csv"} <= set(runs["file"])
    orphans = table(at, "orphans")
    assert orphans["name"].tolist() == ["stream/turn2/d.csv"] and orphans["state"].tolist() == ["Running"]
    said = [c.value.replace("\\", "") for c in at.caption]
    assert any(c.startswith("2 flow run(s) cancelled as *Decided by another run*") for c in said), said
    assert "a.csv (Decided by another run, no MLflow record)" not in at.selectbox(key="log_run").options


def test_per_block_metrics_are_blocks_in_block_order_and_the_challengers_apart(empty_home):
    """Blocks named by numbers were ordered as text (10 before 9), and the challenger's scores
    (block_<name>_challenger_<metric>) were drawn and tabled as blocks named "<name>_challenger"."""
    from tests.dashboards.seed import recorded_run

    experiment = empty_home.create_experiment("calmops/wards", tags={"calmops.pipeline": "wards"})
    for at, (decision, champion, challenger) in enumerate([
            ("train", {}, {"10": 0.71}),
            ("no_drift", {"9": 0.8, "10": 0.7, "2": 0.9}, {}),
            ("retrain_promoted", {"9": 0.6, "10": 0.65, "2": 0.85}, {"10": 0.75})]):
        run_id = recorded_run(empty_home, experiment, f"w{at}.csv", at, kind="block", decision=decision)
        for block, score in champion.items():
            empty_home.log_metric(run_id, f"block_{block}_accuracy", score)
        for block, score in challenger.items():
            empty_home.log_metric(run_id, f"block_{block}_challenger_accuracy", score)
    at = page("blocks")
    assert not at.exception and not at.error, [e.value for e in at.error]
    per_run = [d.value for d in at.dataframe if "run" in d.value.columns]
    assert [list(f.columns) for f in per_run] == [["run", "2", "9", "10"], ["run", "10"]], per_run
    champion, challenger = per_run
    assert champion["run"].tolist() == ["w1.csv", "w2.csv"] and champion["10"].tolist() == [0.7, 0.65]
    assert challenger["run"].tolist() == ["w0.csv", "w2.csv"] and challenger["10"].tolist() == [0.71, 0.75]
    lines = next(chart for chart in charts_on(at) if chart["data"][0].get("mode") == "lines+markers")
    assert [t["name"] for t in lines["data"]] == ["2", "9", "10"]
    assert any("`block_<name>_challenger_<metric>`" in c.value for c in at.caption)


def test_the_drift_report_download_says_the_rows_the_run_read(empty_home, monkeypatch):
    """The page showed "rows –" where `calmops report` shows the file's rows: the tab passed none."""
    from calmops.core import report_page
    from tests.dashboards.seed import seed_null_rates

    seed_null_rates(empty_home, "nulls", rows=500)
    pages = []
    real = report_page.render_report
    monkeypatch.setattr(report_page, "render_report", lambda outcome, verdict: pages.append(
        real(outcome, verdict)) or pages[-1])  # the real page, kept to be read
    at = page("pipeline", {"pipeline": "nulls"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert pages and "<td><b>rows</b></td><td>500</td>" in pages[-1], pages


def test_the_drift_report_download_is_the_page_calmops_report_writes_what_a_labels_file_joined_included(
        empty_home, monkeypatch):
    """The download is made from the run's own outcome.json, as `calmops report` makes it: a labels file's page
    shows what it joined (the tab built the outcome from the runs table, without the run's details)."""
    from calmops.core import report_page
    from tests.dashboards.seed import seed_null_rates

    joined = {"label_rows": 500, "matched": 480, "unmatched": 20, "duplicate": 0, "labelled_before": 0, "late": 0,
              "unmatched_ids": ["9001", "9002"], "realized": {"1": {"accuracy": 0.9, "rows": 480}}}
    seed_null_rates(empty_home, "joins", outcome={"pipeline": "joins", "file": "f1.csv", "decision": "retrain_rejected",
                                                  "reason": "r", "rows": 480, "details": {"folder": "labels",
                                                                                          "labels": joined}})
    pages = []
    real = report_page.render_report
    monkeypatch.setattr(report_page, "render_report", lambda outcome, verdict: pages.append(
        real(outcome, verdict)) or pages[-1])
    at = page("pipeline", {"pipeline": "joins"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert pages and "Labels joined" in pages[-1] and "joins · labels/f1.csv" in pages[-1]
    assert '<td>joined to a waiting prediction</td><td class="num">480</td>' in pages[-1]
    assert "9001, 9002" in pages[-1]


def test_schema_signal_p_values_read_as_the_feature_tables_do(empty_home):
    """A null-rate signal's p-value (below 1e-20) was printed in full, dozens of zeros; the feature table beside
    it shows p-values in the form 2.00e-62."""
    import json

    from tests.dashboards.seed import seed_null_rates

    seed_null_rates(empty_home, "nulls2")
    at = page("pipeline", {"pipeline": "nulls2"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    schema = next(d for d in at.dataframe if {"kind", "column", "detail", "p_value"} <= set(d.value.columns))
    features = next(d for d in at.dataframe if TABLES["feature_table"] <= set(d.value.columns))
    assert schema.value.loc[schema.value["kind"] == "null_rate", "p_value"].iloc[0] < 1e-20
    config = {name: json.loads(d.proto.columns).get("p_value") for name, d in (("schema", schema),
                                                                               ("features", features))}
    assert config["schema"] == config["features"] and config["schema"]["type_config"]["format"] == "%.2e", config


def test_a_labels_file_is_named_labels_name_in_the_latest_runs_and_the_versions_it_trained(empty_home, tmp_path):
    """A labels file and a features file both called same.csv (docs/late-labels.md): the overview's Latest runs
    listed same.csv twice, and the models and Retraining tabs said a version trained on the labels file was
    trained on same.csv; each names it labels/same.csv, as the ledger and the CLI do (a version registered
    before its training tag kept the folder is named by its run's folder tag)."""
    import json

    from tests.dashboards.seed import recorded_run

    experiment = empty_home.create_experiment("calmops/credit", tags={"calmops.pipeline": "credit"})
    first = recorded_run(empty_home, experiment, "f0.csv", 0, decision="train")
    recorded_run(empty_home, experiment, "same.csv", 1, decision="predict_only")
    joined = recorded_run(empty_home, experiment, "same.csv", 2, folder="labels", decision="retrain_promoted")
    empty_home.create_registered_model("calmops.credit")
    for run_id, training in ((first, {"mode": "full", "file": "f0.csv", "folder": "incoming"}),
                             (joined, {"mode": "full", "file": "same.csv"})):
        version = empty_home.create_model_version("calmops.credit", str(tmp_path), run_id=run_id)
        empty_home.set_model_version_tag("calmops.credit", version.version, "calmops.training", json.dumps(training))
    empty_home.set_registered_model_alias("calmops.credit", "champion", "2")

    at = page("overview")
    assert not at.exception and not at.error, [e.value for e in at.error]
    recent = next(d.value for d in at.dataframe if {"started", "pipeline", "file", "reason"} <= set(d.value.columns))
    assert recent["file"].tolist() == ["labels/same.csv", "same.csv", "f0.csv"], recent
    assert table(at, "overview_table").set_index("pipeline").loc["credit", "last file"] == "labels/same.csv"
    at = page("pipeline", {"pipeline": "credit"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert table(at, "retraining").set_index("version")["file"].to_dict() == {"v2": "labels/same.csv",
                                                                             "v1": "f0.csv"}
    assert table(at, "aliases").set_index("alias").loc["champion", "trained on"] == "labels/same.csv"
    assert any("labels/same.csv" in c.value.replace("\\", "") for c in at.caption), [c.value for c in at.caption]
