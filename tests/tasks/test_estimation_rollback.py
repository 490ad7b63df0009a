"""The performance estimator of whichever version is champion: kept per version, so a champion served again (a
rollback, v5 → v4) estimates with the calibration it took office with; and when a champion has none, the run's
log says why instead of the metrics going missing without a word."""

import json
import logging

import pytest
from sklearn.linear_model import LogisticRegression

from calmops.core.spec import parse_spec
from calmops.detectors.estimation import CalibratedEstimator
from calmops.tasks.drift.estimated import KEPT_VERSIONS, STATE_FILE, estimated_performance, fit_estimator
from tests.conftest import sea_frame

SPEC = parse_spec({"name": "m", "target": "y", "model": {"class": "sklearn.linear_model.LogisticRegression"}})


def champion(theta: float, seed: int):
    """A classifier of SEA concept ``theta`` fit on one part of a file, with the rows it was not fit on (the
    holdout its estimator is calibrated on)."""
    data = sea_frame(1500, theta, seed=seed, noise=0.1)
    fit, holdout = data.iloc[:1000], data.iloc[1000:]
    model = LogisticRegression().fit(fit.drop(columns="y"), fit["y"])
    return model, holdout.drop(columns="y"), holdout["y"]


def estimate(state_dir, version, model, X):
    return estimated_performance(model, X, SPEC, "accuracy", state_dir, version, 0.9, labelled=False)


def test_a_champion_served_again_after_a_rollback_estimates_with_its_own_calibration(tmp_path):
    v4, X4, y4 = champion(8.0, seed=1)
    v5, X5, y5 = champion(9.5, seed=2)
    assert fit_estimator(tmp_path, 4, v4, X4, y4, "classification")  # v4 takes office...
    assert fit_estimator(tmp_path, 5, v5, X5, y5, "classification")  # ...then v5, which is rolled back
    batch = sea_frame(800, 8.0, seed=3).drop(columns="y")
    after_rollback = estimate(tmp_path, 4, v4, batch)
    assert after_rollback is not None, "the champion served again has lost its estimator"
    # v4's own calibration (fit on its holdout, seed 0 as fit_estimator's), not v5's: the same numbers
    own = CalibratedEstimator.fit(v4.predict_proba(X4), y4, list(v4.classes_))
    expected = own.estimate(v4.predict_proba(batch), v4.predict(batch), seed=SPEC.seed)["accuracy"]
    assert after_rollback.estimates["accuracy"]["value"] == pytest.approx(expected.value)
    assert after_rollback.reference_rows == len(y4)
    assert estimate(tmp_path, 5, v5, batch) is not None  # and v5 keeps its own, should it be served again


def test_the_estimator_state_of_one_champion_written_before_still_serves_it(tmp_path):
    """A state file of one champion (as written when one was kept) reads as that champion's, and the next
    champion's fit keeps it."""
    v4, X4, y4 = champion(8.0, seed=1)
    state = CalibratedEstimator.fit(v4.predict_proba(X4), y4, list(v4.classes_)).to_state()
    (tmp_path / STATE_FILE).write_text(json.dumps({"champion_version": 4, "state": state}))
    batch = sea_frame(800, 8.0, seed=3).drop(columns="y")
    assert estimate(tmp_path, 4, v4, batch) is not None
    v5, X5, y5 = champion(9.5, seed=2)
    fit_estimator(tmp_path, 5, v5, X5, y5, "classification")
    assert estimate(tmp_path, 4, v4, batch) is not None and estimate(tmp_path, 5, v5, batch) is not None


def test_the_last_fit_versions_are_kept_and_a_champion_without_one_is_named_in_the_log(tmp_path, caplog):
    model, X, y = champion(8.0, seed=1)
    for version in range(1, KEPT_VERSIONS + 3):  # two more versions than are kept
        fit_estimator(tmp_path, version, model, X, y, "classification")
    batch = sea_frame(300, 8.0, seed=3).drop(columns="y")
    kept = [v for v in range(1, KEPT_VERSIONS + 3) if estimate(tmp_path, v, model, batch) is not None]
    assert kept == list(range(3, KEPT_VERSIONS + 3))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert estimate(tmp_path, 1, model, batch) is None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "champion v1" in warned[0] and "kept: v3" in warned[0], warned


def test_a_failed_fit_keeps_the_champions_estimator_and_a_new_champion_without_one_says_why(tmp_path, caplog):
    model, X, y = champion(8.0, seed=1)
    batch = sea_frame(300, 8.0, seed=3).drop(columns="y")
    fit_estimator(tmp_path, 4, model, X, y, "classification")
    assert not fit_estimator(tmp_path, 4, model, X.iloc[:5], y.iloc[:5], "classification")  # a concept alarm's file
    assert estimate(tmp_path, 4, model, batch) is not None  # too small to refit on: the one from promotion stays
    assert not fit_estimator(tmp_path, 5, model, X.iloc[:5], y.iloc[:5], "classification")  # a promotion's holdout
    with caplog.at_level(logging.INFO):
        assert estimate(tmp_path, 5, model, batch) is None
    said = [r.getMessage() for r in caplog.records]
    assert any("champion v5" in m and "5 labelled rows" in m for m in said), said
    assert estimate(tmp_path, 4, model, batch) is not None  # v4's, for a rollback to it


@pytest.mark.integration
def test_after_a_rollback_the_files_without_labels_are_estimated_by_the_champion_served_again(
        prefect_server, stream_spec):
    """The flow end to end: v1 trained, v2 promoted by a drift, ``calmops rollback`` serves v1 again; the next
    file, without labels, is estimated with v1's estimator, in the outcome and in the run's MLflow metrics."""
    from calmops.core import registry
    from tests.conftest import write_csv
    from tests.flows.helpers import incoming, run, runs_for_sha, update_spec

    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8.0, seed=100), folder, "f0.csv"))["decision"] == "train"
    drifted = run("sea", write_csv(sea_frame(1000, 9.5, seed=101), folder, "f1.csv"))
    assert drifted["decision"] == "retrain_promoted" and drifted["champion_version"] == 2, drifted["reason"]
    assert registry.rollback("sea") == (2, 1)
    update_spec("sea", prediction_only=True)
    out = run("sea", write_csv(sea_frame(1000, 8.0, seed=102).drop(columns="y"), folder, "f2.csv"))
    assert out["champion_version"] == 1, out["reason"]
    assert "accuracy" in out["metrics"].get("estimated", {}), out["metrics"]
    assert "estimated_accuracy" in runs_for_sha("sea", out["sha256"])[0].data.metrics
