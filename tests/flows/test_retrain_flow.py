"""Retraining modes, hooks and fallback through the real flow, registry and skops round-trip."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from calmops.core import registry
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec, versions

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["stacking", "recalibration", "replay", "window", "incremental"])
def test_mode_runs_end_to_end_and_is_recorded(prefect_server, stream_spec, mode):
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    update_spec("sea", retrain={"mode": mode, "retrain_on": "always"}, evaluation={"thresholds": {}})
    out = run("sea", write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv"))
    assert out["decision"] in ("retrain_promoted", "retrain_rejected"), out["reason"]
    [training] = out["details"]["training"]
    assert training["mode"] == mode and training["challenger_version"] == 2
    # the challenger was saved with skops and loads back from the registry
    loaded = registry.load_version("sea", 2)
    assert len(loaded.model.predict(sea_frame(10, 8, seed=3)[["x1", "x2", "x3"]])) == 10
    if mode == "incremental":  # a decision tree cannot partial_fit: a recorded fallback
        assert training["fallback"] == "full"


HOOKS = '''
from sklearn.linear_model import LogisticRegression
from sklearn.dummy import DummyClassifier

def train(X, y, spec):
    return LogisticRegression().fit(X, y)

def weak(champion, X, y, reference, history, spec):
    return DummyClassifier(strategy="most_frequent").fit(X, y)

def strong(champion, X, y, reference, history, spec):
    from sklearn.tree import DecisionTreeClassifier
    return DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y)

def broken(champion, X, y, reference, history, spec):
    raise ValueError("the feature store is down")
'''


def test_hooks_and_fallback_run_when_configured(prefect_server, stream_spec, tmp_path, calmops_home):
    module = tmp_path / "hooks.py"
    module.write_text(HOOKS)
    update_spec("sea", hooks={"train": f"{module}:train", "retrain": f"{module}:weak",
                              "fallback": f"{module}:strong"}, evaluation={"thresholds": {}})
    folder = incoming("sea")
    first = run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    assert first["details"]["training"][0]["mode"] == "hook:train"
    assert type(registry.champion("sea").model).__name__ == "LogisticRegression"
    out = run("sea", write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv"))
    modes = [t["mode"] for t in out["details"]["training"]]
    assert modes == ["hook:retrain", "hook:fallback"]
    assert out["details"]["training"][0]["promoted"] is False  # the weak one was rejected
    assert out["decision"] == "retrain_promoted" and out["champion_version"] == 3
    # both versions were registered in the file's run: each keeps its own reference, read on a machine that has
    # no copy of either (the weak one predicts one class with one confidence, the strong one many)
    shutil.rmtree(calmops_home / "cache" / "models")
    registry._load_version.cache_clear()
    weak, strong = registry.load_version("sea", 2), registry.load_version("sea", 3)
    assert np.unique(weak.profile.confidences).size == 1
    assert np.unique(strong.profile.confidences).size > 1
    assert type(weak.model).__name__ == "DummyClassifier"


def test_failing_hook_is_reported_and_the_champion_stays(prefect_server, stream_spec, tmp_path):
    module = tmp_path / "hooks.py"
    module.write_text(HOOKS)
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    update_spec("sea", hooks={"retrain": f"{module}:broken"}, retrain={"retrain_on": "always"})
    path = write_csv(sea_frame(1000, 9.5, seed=2), folder, "b.csv")
    out = run("sea", path)
    assert out["decision"] == "failed"
    assert "retrain hook" in out["reason"] and "the feature store is down" in out["reason"]
    assert registry.alias_version("sea", "champion") == 1 and versions("sea") == [1]
    assert path.exists()  # kept for a retry
    # history lists it with the files still to decide: pending, why its run failed, no time decided
    from typer.testing import CliRunner

    from calmops.core.store import read_spec
    from calmops.deployments.cli import app
    from calmops.deployments.history import file_history

    row = file_history(read_spec("sea"))["files"][-1]
    assert (row["file"], row["status"], row["decided"]) == ("b.csv", "pending", None)
    assert "the feature store is down" in row["reason"]
    shown = CliRunner().invoke(app, ["history", "sea"])
    assert shown.exit_code == 0, shown.output
    [line] = [line for line in shown.output.splitlines() if line.strip().startswith("b.csv")]
    assert line.split()[1] == "-" and line.split()[2] == "pending", line  # decided: -, decision: pending


def test_recalibration_on_regression_is_refused_before_any_file(prefect_server, calmops_home):
    """A regressor cannot be recalibrated: the pipeline could never retrain, so the spec is refused when it is
    saved (``calmops create`` / ``update``), not on the first drift."""
    from calmops.core.spec import SpecError
    from calmops.core.store import list_pipelines, save_spec, spec_from_dict

    spec = spec_from_dict({"name": "reg", "target": "t", "model": {"class": "sklearn.linear_model.Ridge"},
                           "retrain": {"mode": "recalibration", "retrain_on": "always"}})
    with pytest.raises(SpecError, match="retrain.mode: recalibration applies to classifiers only"):
        save_spec(spec, create=True)
    assert list_pipelines() == []


def test_the_winner_is_refit_on_the_whole_batch_and_both_fits_are_recorded(prefect_server, stream_spec):
    import json

    from mlflow import MlflowClient

    folder = incoming("sea")
    first = run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    [t1] = first["details"]["training"]
    assert first["decision"] == "train"
    assert t1["selection"]["rows"] == 700 and t1["selection"]["holdout_rows"] == 300
    assert t1["refit"]["rows"] == 1000
    assert len(registry.load_reference("sea", 1)) == 1000  # the first champion has seen every row

    out = run("sea", write_csv(sea_frame(1000, 4, seed=2), folder, "b.csv"))  # a new concept
    assert out["decision"] == "retrain_promoted", out["reason"]
    [t2] = out["details"]["training"]
    # full mode: the champion's reference (1000) + the training part (700) chose it; the refit has all 2000 rows
    assert t2["selection"]["rows"] == 1700 and t2["refit"]["rows"] == 2000
    assert t2["selection"]["paired_test"]["test"] == "McNemar exact" or \
        t2["selection"]["paired_test"]["test"].startswith("paired bootstrap")
    assert "holdout rows" in out["reason"] and "p =" in out["reason"]
    reference = registry.load_reference("sea", 2)
    assert len(reference) == 2000
    batch_b = sea_frame(1000, 4, seed=2)
    assert reference.iloc[1000:][["x1", "x2", "x3"]].round(9).reset_index(drop=True).equals(
        batch_b[["x1", "x2", "x3"]].round(9))  # every row of the batch, its holdout rows included
    tag = MlflowClient().get_model_version("calmops.sea", "2").tags["calmops.training"]
    assert json.loads(tag)["refit"]["rows"] == 2000
    # the decision gives the serving model's score on the whole file (``champion``, as on every run; MLflow's
    # champion_accuracy), both models' on the holdout they were compared on, and who wrote the predictions
    served = registry.load_version("sea", 1).model.predict(batch_b.drop(columns="y"))
    assert out["metrics"]["champion"]["accuracy"] == pytest.approx((served == batch_b["y"]).mean())
    assert out["metrics"]["champion"]["accuracy"] < 0.8
    assert out["metrics"]["holdout_champion"]["accuracy"] == t2["selection"]["champion_score"]
    assert out["metrics"]["challenger"]["accuracy"] == t2["selection"]["score"]
    logged = MlflowClient().get_run(out["mlflow_run_id"]).data.metrics
    assert logged["champion_accuracy"] == pytest.approx(out["metrics"]["champion"]["accuracy"])
    assert logged["holdout_champion_accuracy"] == pytest.approx(t2["selection"]["champion_score"])
    assert out["details"]["predictions"] == {"model_version": 2, "trained_on_this_file": True}


def test_a_version_registered_with_its_reference_in_the_run_s_reference_folder_still_loads(prefect_server,
                                                                                            stream_spec, calmops_home):
    """Versions registered before each had a folder of its own keep their reference under ``reference/`` and no
    ``calmops.reference`` tag: they load as before (model, schema, profile, selection fit, reference rows)."""
    from urllib.parse import unquote, urlparse

    import mlflow
    from mlflow import MlflowClient

    run("sea", write_csv(sea_frame(1000, 8, seed=1), incoming("sea"), "a.csv"))
    client = MlflowClient()
    mv = client.get_model_version("calmops.sea", "1")
    assert mv.tags["calmops.reference"] == "reference/v1" and mv.tags.get("calmops.selection_sha256")
    uri = mlflow.get_run(mv.run_id).info.artifact_uri
    assert uri.startswith("file:"), uri  # the local stack keeps artifacts as plain files
    own = Path(unquote(urlparse(uri).path)) / "reference" / "v1"
    for part in own.iterdir():  # laid out as before
        part.rename(own.parent / part.name)
    own.rmdir()
    client.delete_model_version_tag("calmops.sea", "1", "calmops.reference")
    shutil.rmtree(calmops_home / "cache" / "models")  # a machine that never read it
    registry._load_version.cache_clear()
    registry._load_selection.cache_clear()

    loaded = registry.load_version("sea", 1)
    assert loaded.schema.columns == ["x1", "x2", "x3"] and loaded.profile.n_rows > 0
    assert loaded.watched is not loaded.model  # its selection fit, kept apart as before
    assert len(registry.load_reference("sea", 1)) == 1000
