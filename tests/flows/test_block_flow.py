"""The block flow on a real Prefect API (test harness) and a real MLflow store (SQLite)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from calmops.core import registry
from calmops.core.store import save_spec, spec_from_dict
from tests.conftest import write_csv
from tests.flows.helpers import incoming, run, runs_for_sha, update_spec, versions

pytestmark = pytest.mark.integration

BLOCKS = ["a", "b", "c", "d"]  # sorted: "d" is the newest block, held out for evaluation by default


def block_frame(n: int, seed: int, shifted: tuple[str, ...] = (), noisy: tuple[str, ...] = ()) -> pd.DataFrame:
    """Four sites; label = x1 > 5. A shifted site has x1 moved up by 3 and its label cut at 8; a noisy
    site has a quarter of its labels flipped."""
    rng = np.random.default_rng(seed)
    parts = []
    for site in BLOCKS:
        x1, x2 = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
        cut = 5.0
        if site in shifted:
            x1, cut = x1 + 3.0, 8.0
        y = (x1 > cut).astype(int)
        if site in noisy:
            y = np.where(rng.random(n) < 0.25, 1 - y, y)
        parts.append(pd.DataFrame({"site": site, "x1": x1, "x2": x2, "y": y}))
    return pd.concat(parts, ignore_index=True)


def create(name: str) -> None:
    save_spec(spec_from_dict({
        "name": name, "kind": "block", "target": "y", "block_column": "site",
        "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 4, "random_state": 0}},
        "evaluation": {"primary_metric": "balanced_accuracy"},
    }), create=True)


def configure_blocks(monkeypatch, name: str, **settings) -> None:
    """Block settings through the spec's ``blocks`` key, as a user sets them."""
    update_spec(name, blocks=settings)


def mlflow_metrics(name: str, sha: str) -> dict[str, float]:
    [mlrun] = runs_for_sha(name, sha)
    return mlrun.data.metrics


def test_shifted_block_is_found_and_only_its_model_is_retrained(prefect_server, calmops_home):
    create("sites")
    folder = incoming("sites")
    first = run("sites", write_csv(block_frame(400, seed=1), folder, "m1.csv"))
    assert first["decision"] == "train", first["reason"]
    assert first["details"]["evaluation"]["blocks"] == ["d"]
    v1 = registry.load_version("sites", 1).model
    # d was held out to judge the first model; once it passed, the model was refit on every block, d included
    assert sorted(v1.block_estimators_) == ["a", "b", "c", "d"]
    assert "block_d_challenger_balanced_accuracy" in mlflow_metrics("sites", first["sha256"])

    frame = block_frame(400, seed=2, shifted=("c",))
    second = run("sites", write_csv(frame, folder, "m2.csv"))
    details = second["details"]
    assert second["drift_detected"] and second["decision"].startswith("retrain_"), second["reason"]
    # drift against the reference: in block c only
    assert details["drifted_blocks"] == ["c"]
    assert {n: b["drift"]["drift"] for n, b in details["blocks"].items()} == {
        "a": False, "b": False, "c": True, "d": False}
    assert details["blocks"]["c"]["drift"]["drifted_features"] == ["x1"]
    # between blocks: c differs from every other block, the others not from each other
    matrix = details["drift_matrix"]
    assert matrix["labels"] == BLOCKS
    c = BLOCKS.index("c")
    expected = [[int(i != j and c in (i, j)) for j in range(4)] for i in range(4)]
    assert matrix["drift"] == expected, matrix
    assert matrix["p_adjusted"][c][0] < 0.05 and matrix["effect"][c][0] > 0.1
    # only c was retrained; a and b are the very same models (identical predictions after MLflow)
    assert details["retrained_blocks"] == ["c"] and details["kept_blocks"] == ["a", "b", "d"]
    assert details["blocks"]["c"]["retrained"] and not details["blocks"]["a"]["retrained"]
    assert versions("sites") == [1, 2] and second["challenger_version"] == 2
    registry._load_version.cache_clear()
    v1, v2 = registry.load_version("sites", 1).model, registry.load_version("sites", 2).model
    X = frame[["site", "x1", "x2"]]
    for site in ("a", "b"):
        rows = X[X.site == site]
        assert np.array_equal(v1.predict(rows), v2.predict(rows))
        assert v2.model_for(site) is not v2.global_estimator_
    shifted = X[X.site == "c"]
    assert not np.array_equal(v1.predict(shifted), v2.predict(shifted))
    assert (v2.predict(shifted) == frame.loc[X.site == "c", "y"]).mean() > 0.95  # learnt the new cut
    # per-block metrics: in the outcome and as MLflow metrics block_<name>_<metric>
    metrics = mlflow_metrics("sites", second["sha256"])
    for site in BLOCKS:
        assert f"block_{site}_balanced_accuracy" in metrics
        assert details["blocks"][site]["champion"]["rows"] == 400
    assert metrics["block_c_balanced_accuracy"] < metrics["block_a_balanced_accuracy"]
    assert "block_d_challenger_balanced_accuracy" in metrics
    assert details["blocks"]["d"]["role"] == "evaluation" and "approved" in details["blocks"]["d"]
    # outcome.json in MLflow holds the same details
    [mlrun] = runs_for_sha("sites", second["sha256"])
    stored = MlflowClient().download_artifacts(mlrun.info.run_id, "outcome.json")
    assert json.loads(Path(stored).read_text())["details"]["retrained_blocks"] == ["c"]


def test_a_new_block_too_small_for_a_model_is_not_reported_as_retrained(prefect_server, calmops_home):
    """A new block with fewer rows than ``min_block_rows`` gets no model of its own (the global model answers
    for it): the decision lists it with the reason, not among the retrained blocks."""
    create("small")
    folder = incoming("small")
    assert run("small", write_csv(block_frame(400, seed=1), folder, "1.csv"))["decision"] == "train"
    frame = block_frame(400, seed=2, shifted=("c",))
    tiny = frame[frame.site == "a"].head(12).assign(site="a2")  # sorts before d: a training block, not evaluation
    out = run("small", write_csv(pd.concat([frame, tiny], ignore_index=True), folder, "2.csv"))
    details = out["details"]
    assert out["decision"].startswith("retrain_"), out["reason"]
    assert "a2" in details["new_blocks"] and "a2" in details["skipped_blocks"]
    assert "c" in details["retrained_blocks"] and "a2" not in details["retrained_blocks"], details
    assert "a2" not in out["reason"].split("(no model for")[0] and "no model for a2:" in out["reason"], out["reason"]
    assert "min_block_rows=30" in out["reason"]


def test_same_blocks_without_shift_is_no_drift(prefect_server, calmops_home):
    create("calm")
    folder = incoming("calm")
    assert run("calm", write_csv(block_frame(300, seed=3), folder, "1.csv"))["decision"] == "train"
    out = run("calm", write_csv(block_frame(300, seed=4), folder, "2.csv"))
    assert out["decision"] == "no_drift", out["reason"]
    assert out["details"]["drifted_blocks"] == [] and not any(out["details"]["drift_matrix"]["drift"][0])
    assert versions("calm") == [1] and out["details"]["new_blocks"] == [] and "new block" not in out["reason"]


def test_a_new_block_without_drift_is_said_and_listed_as_new(prefect_server, calmops_home):
    """A file bringing a site the champion has no model of, like the others in every feature: no retrain is
    called for, and the decision says the new site is served by the unseen route until one comes."""
    create("fresh")
    frame = block_frame(300, seed=3)
    assert run("fresh", write_csv(_without_d(frame), incoming("fresh"), "1.csv"))["decision"] == "train"
    out = run("fresh", write_csv(block_frame(300, seed=4), incoming("fresh"), "2.csv"))
    assert out["decision"] == "no_drift", out["reason"]
    assert out["details"]["new_blocks"] == ["d"]
    assert out["reason"].endswith("; new block(s) d: no model of their own yet, their rows served by the 'global' "
                                  "route until a retrain"), out["reason"]


def _without_d(frame: pd.DataFrame) -> pd.DataFrame:
    """A file without block d: the first model (refit on every block of its file) has never seen d."""
    return frame[frame.site != "d"].reset_index(drop=True)


def _d_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame.site == "d", ["site", "x1", "x2"]]


def test_unseen_block_goes_to_the_global_model_by_default(prefect_server, calmops_home):
    create("glob")
    frame = block_frame(300, seed=5)
    run("glob", write_csv(_without_d(frame), incoming("glob"), "1.csv"))
    model = registry.champion("glob").model
    assert model.unseen == "global" and model.model_for("d") is model.global_estimator_
    d = _d_rows(frame)
    assert np.array_equal(model.predict(d), model.global_estimator_.predict(d[["x1", "x2"]]))


def test_unseen_block_goes_to_a_vote_when_configured(prefect_server, calmops_home, monkeypatch):
    create("vote")
    configure_blocks(monkeypatch, "vote", unseen="vote")
    frame = block_frame(300, seed=5)
    out = run("vote", write_csv(_without_d(frame), incoming("vote"), "1.csv"))
    assert out["details"]["unseen"] == "vote"
    model = registry.champion("vote").model
    assert model.unseen == "vote" and model.model_for("d") == "vote"
    d = _d_rows(frame)
    proba = np.mean([m.predict_proba(d[["x1", "x2"]]) for m in model.block_estimators_.values()], axis=0)
    assert np.array_equal(model.predict(d), model.classes_[proba.argmax(axis=1)])


def test_configured_evaluation_blocks_and_per_block_approval(prefect_server, calmops_home, monkeypatch):
    create("evalb")
    configure_blocks(monkeypatch, "evalb", evaluation=["a", "b"])
    update_spec("evalb", evaluation={"thresholds": {"balanced_accuracy": {"min": 0.85}}})
    out = run("evalb", write_csv(block_frame(300, seed=6, noisy=("b",)), incoming("evalb"), "1.csv"))
    details = out["details"]
    assert details["evaluation"]["blocks"] == ["a", "b"] and details["blocks"]["a"]["role"] == "evaluation"
    assert sorted(registry.load_version("evalb", 1).model.block_estimators_) == ["c", "d"]
    # both evaluation blocks together pass the threshold, but block b alone does not: not approved
    assert out["metrics"]["challenger"]["balanced_accuracy"] >= 0.85
    assert details["blocks"]["a"]["approved"] is True and details["blocks"]["b"]["approved"] is False
    assert out["decision"] == "retrain_rejected" and "evaluation block(s) b" in out["reason"]
    assert registry.alias_version("evalb", "champion") is None


def test_a_drifted_evaluation_block_is_refit_on_its_own_rows_and_judged_on_rows_held_out_of_it(
        prefect_server, calmops_home):
    """The newest block, d, is the evaluation block, and only d drifted (its cut moved from 5 to 8). Held out
    whole, it could not be refit on this file: the challenger would keep the champion's model of d, score the
    same there and be rejected. So rows of d are held out (``evaluation.holdout`` of them) and d is refit on
    the others; the challenger learnt the new cut and beats the champion on d's held-out rows."""
    create("sites")
    folder = incoming("sites")
    assert run("sites", write_csv(block_frame(400, seed=1), folder, "m1.csv"))["decision"] == "train"
    frame = block_frame(400, seed=2, shifted=("d",))
    out = run("sites", write_csv(frame, folder, "m2.csv"))
    details = out["details"]
    assert out["decision"] == "retrain_promoted", out["reason"]
    assert details["drifted_blocks"] == ["d"] and details["retrained_blocks"] == ["d"], details
    assert details["kept_blocks"] == ["a", "b", "c"]
    assert "block drift in d → retrained blocks d:" in out["reason"], out["reason"]
    assert details["evaluation"]["blocks"] == ["d"]
    assert "drifted evaluation block(s) d: 0.3 of their rows held out" in details["evaluation"]["how"]
    # judged on 30 % of d's 400 rows: the champion's old cut is wrong on the rows with x1 in (5, 8)
    assert details["blocks"]["d"]["holdout_challenger"]["rows"] == 120
    assert (details["blocks"]["d"]["holdout_challenger"]["balanced_accuracy"]
            > details["blocks"]["d"]["holdout_champion"]["balanced_accuracy"] + 0.2)
    registry._load_version.cache_clear()
    v1, v2 = registry.load_version("sites", 1).model, registry.load_version("sites", 2).model
    X = frame[["site", "x1", "x2"]]
    for site in ("a", "b", "c"):  # the blocks that did not drift keep their models
        rows = X[X.site == site]
        assert np.array_equal(v1.predict(rows), v2.predict(rows))
    d = X.site == "d"
    assert (v2.predict(X[d]) == frame.loc[d, "y"]).mean() > 0.95  # d learnt its new cut


def test_a_drifted_evaluation_block_too_small_to_split_stays_held_out_and_the_reason_says_so(
        prefect_server, calmops_home):
    """An evaluation block with too few rows to hold some out and train on the others (here 30 rows against a
    holdout of at least 30) stays held out whole: the challenger refits the training blocks, and the reason
    says it is for that, not a riddle ("block drift in d → retrained blocks a, b, c")."""
    create("sites")
    update_spec("sites", evaluation={"primary_metric": "balanced_accuracy", "min_holdout_rows": 30})
    folder = incoming("sites")
    assert run("sites", write_csv(block_frame(400, seed=1), folder, "m1.csv"))["decision"] == "train"
    frame = block_frame(400, seed=2, shifted=("d",))
    small = pd.concat([frame[frame.site != "d"], frame[frame.site == "d"].head(30)], ignore_index=True)
    out = run("sites", write_csv(small, folder, "m2.csv"))
    assert out["decision"] == "retrain_rejected", out["reason"]
    assert "block drift in d" in out["reason"], out["reason"]
    assert ("retrained blocks a, b, c (every training block: the drifted block(s) d are held out to judge the "
            "challenger)") in out["reason"], out["reason"]



def test_each_metric_of_a_block_run_is_logged_once(prefect_server, calmops_home, refused_metric_rows):
    """A block run logs each of its metrics once, whichever way it goes (first model, no drift, a retrain),
    so a PostgreSQL store logs no duplicate-key error for them."""
    create("once")
    folder = incoming("once")
    outcomes = [run("once", write_csv(block_frame(300, seed=3), folder, "1.csv")),
                run("once", write_csv(block_frame(300, seed=4), folder, "2.csv")),
                run("once", write_csv(block_frame(300, seed=2, shifted=("c",)), folder, "3.csv"))]
    assert [o["decision"] for o in outcomes[:2]] == ["train", "no_drift"], outcomes
    assert outcomes[2]["decision"].startswith("retrain_"), outcomes[2]["reason"]
    assert refused_metric_rows == []
    client = MlflowClient()
    for outcome in outcomes:  # and every metric is there, one point each
        [mlrun] = runs_for_sha("once", outcome["sha256"])
        points = {key: len(client.get_metric_history(mlrun.info.run_id, key)) for key in mlrun.data.metrics}
        assert "block_d_challenger_balanced_accuracy" in points or "block_a_balanced_accuracy" in points, points
        assert {key for key, n in points.items() if n != 1} == set(), outcome["decision"]
    for who in ("", "_challenger"):  # the retrain logs the champion's score per block and the challenger's
        assert f"block_d{who}_balanced_accuracy" in runs_for_sha("once", outcomes[2]["sha256"])[0].data.metrics


def _sites(n: int, seed: int) -> pd.DataFrame:
    """Four sites whose x1 sits apart (means 3, 4, 5, 7); label x1 > 5 with a tenth of the labels flipped."""
    rng = np.random.default_rng(seed)
    parts = []
    for site, mean in zip(BLOCKS, (3.0, 4.0, 5.0, 7.0), strict=True):
        x1, x2 = rng.normal(mean, 1.5, n), rng.uniform(0, 10, n)
        y = np.where(rng.random(n) < 0.1, x1 <= 5, x1 > 5).astype(int)
        parts.append(pd.DataFrame({"site": site, "x1": x1, "x2": x2, "y": y}))
    return pd.concat(parts, ignore_index=True)


def test_unchanged_files_of_a_prediction_only_block_pipeline_are_not_label_free_drift(prefect_server, calmops_home):
    """The block kind holds out whole blocks (the newest by default), which the fit judged there serves through its
    unseen route: its outputs on them are no reference for a later file read through every block's own model, and
    taken as one, every unchanged file was label-free drift. A block version keeps its training rows' reference."""
    save_spec(spec_from_dict({
        "name": "sites", "kind": "block", "target": "y", "block_column": "site",
        "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"random_state": 0}},
        "evaluation": {"primary_metric": "balanced_accuracy"},
    }), create=True)
    assert run("sites", write_csv(_sites(400, seed=1), incoming("sites"), "1.csv"))["decision"] == "train"
    update_spec("sites", prediction_only=True)
    for i in range(2, 5):
        out = run("sites", write_csv(_sites(400, seed=i).drop(columns="y"), incoming("sites"), f"{i}.csv"))
        assert out["decision"] == "predict_only", out["reason"]
        assert "label-free" not in out["reason"] and not out["drift_detected"], out["reason"]
