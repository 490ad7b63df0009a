"""Block steps as plain functions: splitting, evaluation blocks, drift per block and between blocks."""

import numpy as np
import pandas as pd
import pytest

from calmops.core.spec import PipelineSpec
from calmops.core.store import spec_from_dict
from calmops.tasks import BadInput
from calmops.tasks import blocks as B
from calmops.tasks.drift.data import build_profile

SPEC = {"name": "blk", "kind": "block", "target": "y", "block_column": "site",
        "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 3}}}
TYPES = {"site": "categorical", "x1": "numeric", "x2": "numeric"}


def spec(**changes) -> PipelineSpec:
    return spec_from_dict({**SPEC, **changes})


def frame(sizes: dict, seed: int = 0, shift: dict | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for site, n in sizes.items():
        x1 = rng.normal(size=n) + (shift or {}).get(site, 0.0)
        parts.append(pd.DataFrame({"site": site, "x1": x1, "x2": rng.normal(size=n)}))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(y=(out.x1 > 0).astype(int))


def test_split_blocks_sorts_values_and_names_integral_numbers_plainly():
    blocks = B.split_blocks(pd.Series([3.0, 1.0, 3.0, 2.0], name="month"))
    assert [b.name for b in blocks] == ["1", "2", "3"] and blocks[-1].rows.tolist() == [0, 2]
    assert B.block_name("2024-05") == "2024-05" and B.metric_key("site #1/x") == "site__1_x"
    with pytest.raises(BadInput, match="1 missing"):
        B.split_blocks(pd.Series(["a", None], name="site"))


def test_newest_block_is_held_out_and_small_newest_blocks_are_joined():
    s = spec()
    df = frame({"a": 100, "b": 100, "c": 100})
    split, names, how = B.evaluation_split(B.split_blocks(df.site), B.BlockSettings(), df.y, s, "classification", 0)
    assert names == ["c"] and how == "newest block held out"
    assert set(df.site.iloc[split.holdout]) == {"c"} and set(df.site.iloc[split.train]) == {"a", "b"}
    df = frame({"a": 100, "b": 100, "c": 5})  # below min_holdout_rows (20): b joins c
    _, names, how = B.evaluation_split(B.split_blocks(df.site), B.BlockSettings(), df.y, s, "classification", 0)
    assert names == ["c", "b"] and "small" in how


def test_a_drifted_block_held_out_whole_is_split_by_rows_and_the_others_stay_as_they_were():
    s = spec()
    df = frame({"a": 100, "b": 100, "c": 100, "d": 10})  # d alone is below min_holdout_rows: c joins it
    blocks = B.split_blocks(df.site)
    split, names, _ = B.evaluation_split(blocks, B.BlockSettings(), df.y, s, "classification", 0)
    assert names == ["d", "c"]
    # c and d drifted; d is too small to hold 20 rows out and train on the rest, so it stays held out whole
    new, split_names = B.split_drifted_evaluation(split, blocks, ["c", "d"], df.y, s, "classification", 0)
    assert split_names == ["c"]
    held, trained = df.site.iloc[new.holdout], df.site.iloc[new.train]
    assert (held == "c").sum() == 30 and (trained == "c").sum() == 70  # evaluation.holdout 0.3 of its rows
    assert (held == "d").sum() == 10 and set(trained) == {"a", "b", "c"}
    assert sorted(np.concatenate([new.train, new.holdout]).tolist()) == list(range(len(df)))  # each row once
    # both classes held out in about the block's proportions (about half each): stratified, as the stream kind holds out
    assert df.y.iloc[new.holdout][held.to_numpy() == "c"].value_counts().min() >= 10
    # a drifted training block, or nothing drifted: the split is the same
    assert B.split_drifted_evaluation(split, blocks, ["a"], df.y, s, "classification", 0) == (split, [])


def test_evaluation_falls_back_to_rows_when_no_block_is_left_to_train_on():
    s = spec()
    df = frame({"a": 200})
    split, names, how = B.evaluation_split(B.split_blocks(df.site), B.BlockSettings(), df.y, s, "classification", 0)
    assert names == ["a"] and "single block" in how and 0 < len(split.holdout) < 200
    df = frame({"a": 100, "b": 100})
    settings = B.BlockSettings(evaluation=["zz"])
    _, names, how = B.evaluation_split(B.split_blocks(df.site), settings, df.y, s, "classification", 0)
    assert names == ["a", "b"] and "none of the evaluation blocks" in how
    _, names, how = B.evaluation_split(B.split_blocks(df.site), B.BlockSettings(evaluation="rows"), df.y, s,
                                       "classification", 0)
    assert how == "rows of every block held out"


def test_block_settings_default_when_the_spec_has_none():
    assert B.block_settings(spec()) == B.BlockSettings("newest", "global", 30)


def test_drift_matrix_flags_only_pairs_with_the_shifted_block_after_matrix_wide_correction():
    df = frame({"a": 300, "b": 300, "c": 300, "d": 300}, seed=1, shift={"c": 1.0})
    out = B.drift_matrix.fn(df.drop(columns="y"), B.split_blocks(df.site), TYPES, spec())
    assert out["labels"] == ["a", "b", "c", "d"] and out["n_tests"] == 12  # 6 pairs x 2 features
    assert out["drift"] == [[0, 0, 1, 0], [0, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]]
    assert [p["features"] for p in out["pairs"]] == [["x1"]] * 3
    assert out["matrix"][2][0] == out["matrix"][0][2] > 1 and out["p_adjusted"][0][1] > 0.05
    # Bonferroni over the whole matrix multiplies each raw p-value by the 12 tests
    raw = B.drift_matrix.fn(df.drop(columns="y"), B.split_blocks(df.site), TYPES,
                            spec(drift={"correction": "none"}))
    bonf = B.drift_matrix.fn(df.drop(columns="y"), B.split_blocks(df.site), TYPES,
                             spec(drift={"correction": "bonferroni"}))
    assert bonf["p_adjusted"][0][1] == pytest.approx(min(1.0, raw["p_adjusted"][0][1] * 12), rel=1e-4)


def test_blocks_are_compared_with_their_own_reference_rows_when_they_have_them():
    s = spec()
    # in the reference, site b sits at +2: a new b at +2 is not drift, a new a at +2 is
    reference = frame({"a": 300, "b": 300}, seed=2, shift={"b": 2.0})
    profile = build_profile(reference.drop(columns="y"), TYPES, s)
    assert "site" not in profile.feature_types  # the block column is never profiled
    batch = frame({"a": 200, "b": 200, "new": 200}, seed=3, shift={"a": 2.0, "b": 2.0})
    out = B.blocks_vs_reference.fn(reference, profile, batch.drop(columns="y"), B.split_blocks(batch.site),
                                   TYPES, s)
    assert {n: v.reference for n, v in out.items()} == {"a": "block", "b": "block", "new": "reference"}
    assert {n: v.report.drift_detected for n, v in out.items()} == {"a": True, "b": False, "new": True}
    assert out["a"].alpha == pytest.approx(0.05 / 3)


def test_refit_data_drops_the_old_rows_of_refit_blocks_only():
    s = spec()
    reference = frame({"a": 10, "b": 10})
    new = frame({"a": 5, "b": 5}, seed=1)
    X, y = B.refit_data(reference, new.drop(columns="y"), new.y, s, ["b"])
    assert len(X) == 20 and (X.site == "b").sum() == 5 and len(y) == 20
    X, _ = B.refit_data(reference, new.drop(columns="y"), new.y, spec(retrain={"data": "new_only"}), ["b"])
    assert len(X) == 10


def test_refit_blocks_leaves_the_champion_untouched():
    s, settings = spec(), B.BlockSettings(min_block_rows=10)
    df = frame({"a": 100, "b": 100}, seed=4)
    champion = B.fit_blocks.fn(s, TYPES, settings, df.drop(columns="y"), df.y)
    before = {k: id(v) for k, v in champion.block_estimators_.items()}
    challenger = B.refit_blocks.fn(champion, settings, df.drop(columns="y"), df.y, ["b"])
    assert {k: id(v) for k, v in champion.block_estimators_.items()} == before
    assert challenger.block_estimators_["b"] is not champion.block_estimators_["b"]


def test_block_metric_names():
    per_block = {"2024-05": {"rows": 10, "accuracy": 0.9, "confusion_matrix": {}}, "x y": {"rows": 3, "r2": 0.5}}
    assert B.mlflow_block_metrics(per_block) == {"block_2024-05_accuracy": 0.9, "block_x_y_r2": 0.5}
    assert B.mlflow_block_metrics(per_block, "challenger") == {"block_2024-05_challenger_accuracy": 0.9,
                                                               "block_x_y_challenger_r2": 0.5}


def test_month_block_names_keep_their_text():
    from calmops.core.features import coerce_features, resolve_feature_types

    months = spec(block_column="month")
    raw = pd.DataFrame({"month": ["2024-01", "2024-02", "2024-02", "2024-03"], "x1": [1.0, 2.0, 3.0, 4.0]})
    types = resolve_feature_types(months, raw)
    assert types["month"] == "categorical"  # not a datetime turned into epoch seconds
    X = coerce_features(raw, types)
    assert [b.name for b in B.split_blocks(X["month"])] == ["2024-01", "2024-02", "2024-03"]
    # a stream pipeline's date column stays a datetime feature
    stream = spec_from_dict({**SPEC, "kind": "stream", "block_column": None})
    assert resolve_feature_types(stream, raw)["month"] == "datetime"
