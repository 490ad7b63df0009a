"""The drift step: importances for weighted aggregation and label-free signals on real models."""

import json

import numpy as np
import pandas as pd

from calmops.core.features import make_model
from calmops.core.spec import parse_spec
from calmops.core.verdict import DecaySignal
from calmops.tasks.drift.data import build_profile, label_free_drift, model_importances
from calmops.tasks.drift.performance import performance_decay, performance_drift

TYPES = {"a": "numeric", "b": "numeric", "c": "categorical"}


def frame(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n), "c": rng.choice(["u", "v"], n)})
    return X, pd.Series((X["a"] > shift).astype(int))


def test_importances_follow_the_model():
    spec = parse_spec({"name": "m", "target": "y", "model": {"class": "sklearn.ensemble.RandomForestClassifier",
                                                             "params": {"random_state": 0, "n_estimators": 20}}})
    X, y = frame(500, 0)
    model = make_model(spec, TYPES).fit(X, y)
    imp = model_importances(model, list(X.columns))
    assert set(imp) == {"a", "b", "c"} and max(imp, key=imp.get) == "a"
    assert abs(sum(imp.values()) - 1.0) < 1e-9


def test_label_free_drift_sees_a_shift_in_predictions():
    spec = parse_spec({"name": "m", "target": "y", "model": {"class": "sklearn.linear_model.LogisticRegression"}})
    X, y = frame(2000, 0)
    model = make_model(spec, TYPES).fit(X, y)
    profile = build_profile(X, TYPES, spec, model)
    same = label_free_drift(profile, model, frame(2000, 1)[0], spec)
    moved = label_free_drift(profile, model, frame(2000, 2, shift=1.5)[0], spec)
    assert same.drift is False and moved.drift is True
    assert {r.feature for r in moved.results} == {"prediction", "confidence"}


def test_performance_drift_relative_to_promotion_and_thresholds():
    spec = parse_spec({"name": "m", "target": "y", "evaluation": {"thresholds": {"accuracy": {"min": 0.8}},
                                                                   "performance_tolerance": 0.05}})
    assert not performance_drift({"accuracy": 0.88}, {"accuracy": 0.9}, spec, "accuracy").drift
    dropped = performance_drift({"accuracy": 0.84}, {"accuracy": 0.9}, spec, "accuracy")
    assert dropped.drift and abs(dropped.relative_drop - 0.06 / 0.9) < 1e-12
    assert performance_drift({"accuracy": 0.79}, {"accuracy": 0.8}, spec, "accuracy").threshold_failures == [
        "accuracy 0.7900 < min 0.8"]
    # a score past its bound by less than 4 decimals show is written in full: never "0.0000 > max 1e-10"
    tight = parse_spec({"name": "m", "target": "y", "evaluation": {"thresholds": {"log_loss": {"max": 1e-10},
                                                                                  "accuracy": {"min": 0.8}}}})
    assert performance_drift({"log_loss": 3e-08, "accuracy": 0.79999}, {"log_loss": 3e-08, "accuracy": 0.9}, tight,
                             "accuracy").threshold_failures == ["log_loss 3e-08 > max 1e-10", "accuracy 0.79999 < min 0.8"]
    rmse = parse_spec({"name": "m", "target": "y"})
    assert performance_drift({"rmse": 1.2}, {"rmse": 1.0}, rmse, "rmse").drift  # lower is better


def test_performance_decay_follows_the_champion_file_after_file(tmp_path):
    spec = parse_spec({"name": "m", "target": "y", "evaluation": {"performance_tolerance": 0.03}})
    scores = [0.90, 0.89, 0.88, 0.87, 0.86]  # each step 1 point: inside the 3 % tolerance

    def decay(value, batch, version=1, metric="accuracy", sp=spec):
        return performance_decay(value, batch, sp, metric, tmp_path, version, at_promotion=0.90)

    results = [decay(s, f"sha{i}") for i, s in enumerate(scores)]
    assert [r.alarm for r in results] == [False, False, False, True, True]  # 4 files: one order in 4! < 0.05
    assert results[3].files == 4 and results[3].min_decline == 0.015
    assert abs(results[4].relative_decline - 0.04 / 0.90) < 1e-9  # fitted fall over the files / score at promotion
    # a retried step (the same file again) is not counted twice, whatever score it brings
    again = decay(0.10, "sha4")
    assert again.files == 5 and again.alarm
    trail = json.loads((tmp_path / "performance.json").read_text())
    assert [t["value"] for t in trail["scores"]] == scores
    # another primary metric, or a new champion, starts its own trail
    assert decay(0.5, "sha5", metric="f1").files == 1
    assert decay(0.91, "sha6", version=2).files == 1
    # only the last decay_window files are tested: an old decline does not hide a recent one
    windowed = parse_spec({"name": "m", "target": "y", "evaluation": {"decay_window": 4}})
    for i, v in enumerate([0.95, 0.90, 0.85, 0.80, 0.92, 0.91, 0.90, 0.89]):
        last = decay(v, f"w{i}", version=3, sp=windowed)
    assert last.files == 4 and last.alarm
    off = parse_spec({"name": "m", "target": "y", "evaluation": {"decay_files": None}})
    assert decay(0.5, "sha7", sp=off) == DecaySignal(alarm=False, files=0)


def test_decay_files_must_fit_in_the_window():
    import pytest

    with pytest.raises(ValueError, match="decay_files"):
        parse_spec({"name": "m", "target": "y", "evaluation": {"decay_files": 10, "decay_window": 8}})


def test_a_fall_within_the_sampling_noise_of_a_small_holdout_is_not_performance_drift():
    from calmops.core.spec import parse_spec
    from calmops.tasks.drift.performance import performance_drift

    spec = parse_spec({"name": "p", "target": "y", "evaluation": {"primary_metric": "accuracy"}})

    def scores(acc, n):
        right = round(acc * n)
        return {"accuracy": acc, "confusion_matrix": {"labels": ["0", "1"], "matrix": [[right, 0], [n - right, 0]]}}

    # 0.92 on a 150-row holdout, 0.88 on a 500-row file: a 4.3 % fall, but inside the noise of 150 rows
    small = performance_drift(scores(0.88, 500), scores(0.92, 150), spec, "accuracy")
    assert small.relative_drop > spec.evaluation.performance_tolerance and not small.drift
    assert small.noise_band > 0.04
    # the same fall measured on 5000 rows at promotion and 5000 now is a drift
    large = performance_drift(scores(0.88, 5000), scores(0.92, 5000), spec, "accuracy")
    assert large.drift and large.noise_band < 0.02


def test_new_columns_are_named_in_the_report_a_hundred_at_most():
    import numpy as np
    import pandas as pd

    from calmops.detectors import DriftConfig, ReferenceProfile, infer_feature_types
    from calmops.tasks.drift.data import MAX_NEW_COLUMNS, data_drift

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    profile = ReferenceProfile.build(X, infer_feature_types(X), DriftConfig())
    spec = parse_spec({"name": "m", "target": "y"})
    few = data_drift(profile, X, spec, new_columns=("a", "b"))
    assert [(s.kind, s.column, s.drift) for s in few.schema_signals] == [("new_column", "a", False),
                                                                         ("new_column", "b", False)]
    many = data_drift(profile, X, spec, new_columns=tuple(f"c{i}" for i in range(MAX_NEW_COLUMNS + 250)))
    named = [s.column for s in many.schema_signals if s.kind == "new_column"]
    assert len(named) == MAX_NEW_COLUMNS + 1 and named[-1] == "(and 250 more)"
