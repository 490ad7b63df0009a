"""The drift verdict: built from typed signals, written to JSON once, read back by the viewer unchanged."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd

from calmops.core.spec import parse_spec
from calmops.core.verdict import (
    BlockDrift,
    ConceptSignal,
    DecaySignal,
    DriftVerdict,
    EstimatedSignal,
    LabelFreeSignal,
    PerformanceSignal,
)
from calmops.detectors import ReferenceProfile, compare
from calmops.detectors.report import FeatureResult

SPEC = parse_spec({"name": "v", "target": "y"})


def report(shift: float):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(0, 1, 500)})
    now = pd.DataFrame({"a": rng.normal(shift, 1, 500), "b": rng.normal(0, 1, 500)})
    profile = ReferenceProfile.build(ref, {"a": "numeric", "b": "numeric"}, SPEC.drift)
    return compare(profile, now, SPEC.drift)


def test_each_signal_that_fires_gives_its_reason_in_a_fixed_order():
    perf = PerformanceSignal(metric="accuracy", now=0.80, at_promotion=0.90, threshold_failures=[],
                             relative_drop=0.1 / 0.9, tolerance=0.05, drift=True)
    decay = DecaySignal(alarm=True, files=5, metric="accuracy", p_value_max=0.05, min_decline=0.025,
                        p_value=0.008, slope=-0.01, relative_decline=0.06)
    concept = ConceptSignal(alarm=True, detectors={"adwin": {"alarm": True}, "ddm": {"alarm": False}})
    verdict = DriftVerdict.of(report(2.0), performance=perf, decay=decay, concept=concept)
    assert verdict.drift_detected and verdict.drifted_features == ["a"]
    assert [r.split(":")[0] for r in verdict.reasons] == ["data drift", "performance drift", "performance decay",
                                                          "concept drift alarm"]
    assert "accuracy fell 11.1% since promotion (0.9000 → 0.8000)" in verdict.reasons[1]
    assert verdict.reasons[3] == "concept drift alarm: adwin"
    assert ".;" not in verdict.reason and verdict.reason.startswith("data drift: 1 of 2 features drifted (worst: a); ")
    # an error metric worsens upward, and the reason says so
    rmse = PerformanceSignal(metric="rmse", now=1.09, at_promotion=0.54, threshold_failures=[],
                             relative_drop=0.55 / 0.54, tolerance=0.03, drift=True)
    assert rmse.reason == "performance drift: rmse rose 101.9% since promotion (0.5400 → 1.0900)"
    # a threshold broken with no score at promotion to compare with: the thresholds are the reason
    first = PerformanceSignal("accuracy", 0.6, None, ["accuracy 0.6000 < min 0.7"], None, 0.05, drift=True)
    assert first.reason == "performance drift: accuracy 0.6000 < min 0.7"
    quiet = DriftVerdict.of(report(0.0), performance=PerformanceSignal("accuracy", 0.9, 0.9, [], 0.0, 0.05),
                            decay=DecaySignal(), concept=ConceptSignal())
    assert not quiet.drift_detected and quiet.reason == "no drift signal"


def test_the_recorded_json_reads_back_to_the_same_verdict():
    lf = LabelFreeSignal(drift=True, results=[FeatureResult(feature="prediction", kind="prediction", test="chi2",
                                                            statistic=12.0, p_value=0.001, p_adjusted=0.002,
                                                            effect_size=0.3, threshold=0.1, drift=True,
                                                            status="drift")])
    perf = PerformanceSignal("rmse", 1.3, 1.0, ["rmse 1.30 > max 1.2"], 0.3, 0.05, noise_band=None, drift=True)
    data = report(2.0)
    with_labels = DriftVerdict.of(data, performance=perf, decay=DecaySignal(), concept=ConceptSignal())
    estimated = EstimatedSignal(estimates={"accuracy": {"value": 0.71, "low": 0.69, "high": 0.73}},
                                reference_rows=300, metric="accuracy", at_promotion=0.9, trigger=0.1,
                                relative_drop=0.19 / 0.9, drift=True)
    without = DriftVerdict.of(data, label_free=lf, estimated=estimated)
    blocks = replace(with_labels, blocks={"north": BlockDrift("block", 0.025, data, perf),
                                          "south": BlockDrift("reference", 0.025, report(0.0))})
    for verdict in (with_labels, without, blocks):
        written = json.loads(json.dumps(verdict.to_dict()))  # what drift/verdict.json holds
        assert DriftVerdict.from_dict(written).to_dict() == written
    shape = json.loads(json.dumps(without.to_dict()))
    # a signal that was not measured is written as {}; a decay test switched off as alarm/files only
    assert shape["performance"] == {} and shape["concept"] == {} and "blocks" not in shape
    assert with_labels.to_dict()["decay"] == {"alarm": False, "files": 0}
    assert "noise_band" not in with_labels.to_dict()["performance"]
    assert blocks.blocks["north"].drift and not blocks.blocks["south"].drift
    # the estimate is the last reason, said with its band, and flat for MLflow's metrics
    assert without.reasons[-1] == ("estimated performance drift: accuracy estimated at 0.7100 (0.6900–0.7300) "
                                   "without labels, 21.1% worse than 0.9000 at promotion (trigger 10.0%)")
    assert estimated.flat() == {"accuracy": 0.71, "accuracy_low": 0.69, "accuracy_high": 0.73}


def test_real_concept_drift_is_a_worse_champion_on_inputs_that_did_not_move():
    worse = PerformanceSignal(metric="accuracy", now=0.80, at_promotion=0.90, threshold_failures=[],
                              relative_drop=0.1 / 0.9, tolerance=0.05, drift=True)
    held = replace(worse, now=0.89, relative_drop=0.01 / 0.9, drift=False)
    below = replace(held, threshold_failures=["accuracy 0.8900 < min 0.95"], drift=True)  # always was
    alarm = ConceptSignal(alarm=True, detectors={"adwin": {"alarm": True}})
    decay = DecaySignal(alarm=True, files=5, metric="accuracy", p_value_max=0.05, min_decline=0.025,
                        p_value=0.008, slope=-0.01, relative_decline=0.06)
    still, moved = report(0.0), report(1.0)
    assert not still.drift_detected and moved.drift_detected
    assert DriftVerdict.of(still, performance=worse).real_concept_drift
    assert DriftVerdict.of(still, performance=held, concept=alarm).real_concept_drift
    assert DriftVerdict.of(still, performance=held, decay=decay).real_concept_drift
    assert not DriftVerdict.of(moved, performance=worse).real_concept_drift  # the inputs moved too
    # a feature drifted, though too few for the batch's verdict (aggregation share or weighted): moved all the same
    assert not DriftVerdict.of(replace(moved, drift_detected=False), performance=worse).real_concept_drift
    untested = replace(still, features=[replace(f, status="insufficient_data") for f in still.features])
    assert not DriftVerdict.of(untested, performance=worse).real_concept_drift  # too few rows to tell
    assert not DriftVerdict.of(None, performance=worse).real_concept_drift  # inputs not checked: not known
    assert not DriftVerdict.of(still, performance=held).real_concept_drift  # nothing got worse
    assert not DriftVerdict.of(still, performance=below).real_concept_drift  # below a threshold, no fall
    # label-free estimates say nothing about the labels' relation to the inputs
    estimate = EstimatedSignal({"accuracy": {"value": 0.7, "low": 0.65, "high": 0.75}}, 500, "accuracy", 0.9, 0.05,
                               0.22, drift=True)
    assert estimate.reason and not DriftVerdict.of(still, performance=held, estimated=estimate).real_concept_drift
