"""compare(): robustness cases, report shape, schema signals, ranking."""

import json

import numpy as np
import pandas as pd
import pytest

from calmops.detectors import DriftConfig, DriftReport, ReferenceProfile, compare, infer_feature_types

N = 2000


def _reference(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.exponential(size=n),
            "cat": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]),
            "flag": rng.random(n) < 0.4,
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 86400 * 30, n), unit="s"),
            "gappy": np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n)),
            "const": np.full(n, 3.0),
            "mixed": np.array([1, "a", 2.5, None] * (n // 4), dtype=object),
        }
    )


@pytest.fixture(scope="module")
def ref():
    return _reference()


@pytest.fixture(scope="module")
def profile(ref):
    return ReferenceProfile.build(ref, infer_feature_types(ref), DriftConfig())


def test_inferred_types(ref):
    assert infer_feature_types(ref) == {
        "x": "numeric",
        "y": "numeric",
        "cat": "categorical",
        "flag": "boolean",
        "when": "datetime",
        "gappy": "numeric",
        "const": "numeric",
        "mixed": "categorical",
    }


def test_inference_rules_on_object_columns():
    df = pd.DataFrame(
        {
            "num_obj": np.array([1, 2.5, None, 3], dtype=object),
            "bool_obj": np.array([True, False, None, True], dtype=object),
            "yes_no": ["yes", "no", "no", "yes"],
            "dates": ["2024-01-01", "2024-02-03", None, "2024-03-04 10:00"],
            "ints01": np.array([0, 1, 1, 0]),
            "ints": np.array([0, 1, 2, 5]),
            "empty": [None] * 4,
        }
    )
    assert infer_feature_types(df) == {
        "num_obj": "numeric",
        "bool_obj": "boolean",
        "yes_no": "boolean",
        "dates": "datetime",
        "ints01": "boolean",
        "ints": "numeric",
        "empty": "categorical",
    }


def test_same_distribution_is_no_drift(profile):
    batch = _reference(seed=1, n=1500)
    rep = compare(profile, batch, DriftConfig())
    assert not rep.drift_detected, rep.summary_markdown()
    assert rep.drifted_features == []
    assert rep.reason.startswith("No drift")
    statuses = {r.feature: r.status for r in rep.features}
    assert statuses["const"] == "no_drift"  # constant in both: D = 0


def test_shift_is_drift_and_ranked(profile):
    batch = _reference(seed=2, n=1500)
    batch["x"] = batch["x"] + 1.0  # KS D of a 1-sigma shift: 2*Phi(0.5)-1 = 0.383
    batch["y"] = batch["y"] + 0.1  # exponential shifted by 0.1: D = 1 - exp(-0.1) = 0.095 < 0.1
    rep = compare(profile, batch, DriftConfig())
    assert rep.drift_detected
    assert rep.drifted_features[0] == "x"
    x = next(r for r in rep.features if r.feature == "x")
    assert x.status == "drift" and x.p_adjusted < 0.05 and x.effect_size >= x.threshold == 0.1
    assert "x" in rep.reason


def test_constant_reference_batch_differs(profile):
    batch = _reference(seed=3, n=500)
    batch["const"] = 4.0
    rep = compare(profile, batch, DriftConfig())
    r = next(r for r in rep.features if r.feature == "const")
    assert r.statistic == 1.0 and r.drift


def test_small_batch_is_insufficient_not_drift(profile):
    batch = _reference(seed=4, n=20)
    batch["x"] = batch["x"] + 5
    rep = compare(profile, batch, DriftConfig(min_samples=30))
    assert not rep.drift_detected
    assert all(r.status == "insufficient_data" for r in rep.features)
    assert "min_samples" in rep.features[0].detail


def test_all_nan_column_and_null_rate_signal(profile):
    batch = _reference(seed=5, n=1000)
    batch["gappy"] = np.nan
    rep = compare(profile, batch, DriftConfig())
    r = next(r for r in rep.features if r.feature == "gappy")
    assert r.status == "insufficient_data" and r.detail == "all values missing in batch"
    sig = next(s for s in rep.schema_signals if s.kind == "null_rate" and s.column == "gappy")
    assert sig.drift and sig.batch == 1.0
    assert rep.drift_detected and "gappy" in rep.drifted_features


def test_small_null_rate_change_is_not_a_signal(profile):
    batch = _reference(seed=6, n=1000)
    rep = compare(profile, batch, DriftConfig())
    assert not any(s.drift for s in rep.schema_signals)


def test_missing_and_new_columns(profile):
    batch = _reference(seed=7, n=1000).drop(columns=["y"])
    batch["extra"] = 1
    rep = compare(profile, batch, DriftConfig())
    kinds = {(s.kind, s.column): s for s in rep.schema_signals}
    assert kinds[("missing_column", "y")].drift
    assert not kinds[("new_column", "extra")].drift
    assert rep.drifted_features[0] == "y"  # a missing column ranks first
    assert next(r for r in rep.features if r.feature == "y").status == "error"


def test_unseen_categories_are_explicit(profile):
    batch = _reference(seed=8, n=1000)
    batch.loc[:299, "cat"] = "zzz"
    rep = compare(profile, batch, DriftConfig())
    r = next(r for r in rep.features if r.feature == "cat")
    assert r.drift and "unseen categories: ['zzz']" in r.detail
    assert any(s.kind == "new_categories" and s.column == "cat" for s in rep.schema_signals)


def test_boolean_and_datetime(profile):
    batch = _reference(seed=9, n=1000)
    batch["flag"] = True  # 40% -> 100% True: TVD 0.6
    batch["when"] = batch["when"] + pd.Timedelta(days=60)  # entirely after the reference window: D = 1
    rep = compare(profile, batch, DriftConfig())
    by = {r.feature: r for r in rep.features}
    assert by["flag"].drift and by["flag"].effect_size == pytest.approx(0.6, abs=0.04)
    assert by["when"].drift and by["when"].statistic == 1.0


def test_mixed_type_object_column_as_strings(profile):
    batch = _reference(seed=10, n=1000)
    batch["mixed"] = np.array(["1", "a", 2.5, 1.0] * 250, dtype=object)  # 1.0 and "1" are the same category
    rep = compare(profile, batch, DriftConfig())
    r = next(r for r in rep.features if r.feature == "mixed")
    assert r.status in ("drift", "no_drift") and "unseen" not in r.detail


def test_tz_aware_and_string_datetimes_compare_as_epoch():
    ref = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=500, freq="h", tz="Europe/Madrid")})
    prof = ReferenceProfile.build(ref, {"t": "datetime"}, DriftConfig())
    batch = pd.DataFrame({"t": ref["t"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S%z")})
    rep = compare(prof, batch, DriftConfig())
    assert rep.features[0].statistic == 0.0


def test_report_round_trip_and_json(profile):
    batch = _reference(seed=11, n=800)
    batch["x"] += 2
    batch["gappy"] = np.nan
    rep = compare(profile, batch, DriftConfig(numeric_tests=["ks", "psi"]))
    d = rep.to_dict()
    text = json.dumps(d, allow_nan=False)  # no NaN/inf anywhere
    back = DriftReport.from_dict(json.loads(text))
    assert back.to_dict() == d
    assert back.drifted_features == rep.drifted_features
    rows = rep.table_rows()
    assert len(rows) == len(profile.feature_types) and rows[0]["feature"] == rep.drifted_features[0]
    md = rep.summary_markdown()
    assert "| x |" in md and rep.reason in md


def test_profile_save_load_gives_identical_report(profile, tmp_path):
    profile.save(tmp_path / "p")
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"profile.json", "profile_arrays.npz"}
    assert np.load(tmp_path / "p" / "profile_arrays.npz", allow_pickle=False).files  # loads without pickle
    loaded = ReferenceProfile.load(tmp_path / "p")
    batch = _reference(seed=12, n=700)
    batch["y"] *= 1.5
    cfg = DriftConfig(numeric_tests=["ks", "cvm", "js", "hellinger", "psi"], categorical_tests=["chi2", "js"])
    assert compare(loaded, batch, cfg).to_dict() == compare(profile, batch, cfg).to_dict()


def test_failing_test_is_error_not_crash(profile, monkeypatch):
    import calmops.detectors.comparison as cmpmod

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cmpmod, "run_numeric_test", boom)
    rep = compare(profile, _reference(seed=13, n=300), DriftConfig())
    r = next(r for r in rep.features if r.feature == "x")
    assert r.status == "error" and "kaput" in r.detail and not r.drift
