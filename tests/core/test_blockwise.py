"""BlockwiseEstimator: routing, unseen policy, selective refit, class mapping, sklearn conventions, skops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from calmops.core.blockwise import SKOPS_TRUSTED_TYPES, BlockwiseEstimator


def _concept_file(seed, flipped_block=None, blocks=("b1", "b2", "b3", "b4"), rows=120):
    """label = x0 > 0 in every block, except `flipped_block` where label = x0 < 0."""
    rng = np.random.default_rng(seed)
    frames = []
    for block in blocks:
        x = rng.normal(size=(rows, 2))
        label = (x[:, 0] < 0) if block == flipped_block else (x[:, 0] > 0)
        frames.append(pd.DataFrame({"block": block, "x0": x[:, 0], "x1": x[:, 1], "y": label.astype(int)}))
    df = pd.concat(frames, ignore_index=True)
    return df.drop(columns="y"), df["y"].to_numpy()


def _slopes_file(sizes=(("s1", 30, 1.0), ("s2", 30, 2.0), ("s3", 90, 3.0))):
    """Block k: y = slope_k * x exactly, on the same x grid 1..10 repeated (3 times per 30 rows)."""
    frames, ys = [], []
    for block, n, slope in sizes:
        x = np.tile(np.arange(1.0, 11.0), n // 10)
        frames.append(pd.DataFrame({"block": block, "x": x}))
        ys.append(slope * x)
    return pd.concat(frames, ignore_index=True), np.concatenate(ys)


# ---------------------------------------------------------------- selective refit


def test_refit_of_the_drifted_block_changes_only_that_model():
    X1, y1 = _concept_file(seed=0)
    model = BlockwiseEstimator(LogisticRegression(), block_column="block").fit(X1, y1)
    before = dict(model.block_estimators_)
    old_global = model.global_estimator_
    assert sorted(before) == ["b1", "b2", "b3", "b4"]

    X2, y2 = _concept_file(seed=1, flipped_block="b3")  # the third block's concept is reversed
    b3_rows = (X2["block"] == "b3").to_numpy()
    # before the refit the b3 model gets the flipped rows wrong almost always
    assert (model.predict(X2[b3_rows]) == y2[b3_rows]).mean() < 0.2

    assert model.refit_blocks(X2, y2, ["b3"]) is model
    assert model.block_estimators_["b3"] is not before["b3"]
    for block in ("b1", "b2", "b4"):
        assert model.block_estimators_[block] is before[block]
    assert model.global_estimator_ is not old_global
    # now b3 rows are routed to a model of the new concept
    assert (model.predict(X2[b3_rows]) == y2[b3_rows]).mean() > 0.9


def test_refit_of_a_block_without_rows_is_an_error():
    X1, y1 = _concept_file(seed=0)
    model = BlockwiseEstimator(LogisticRegression(), block_column="block").fit(X1, y1)
    with pytest.raises(ValueError, match="no rows"):
        model.refit_blocks(X1, y1, ["b9"])


# ---------------------------------------------------------------- routing


def test_each_block_is_predicted_by_its_own_model():
    X, y = _slopes_file()
    model = BlockwiseEstimator(LinearRegression(), block_column="block").fit(X, y)
    pred = model.predict(X)
    for block, slope in (("s1", 1.0), ("s2", 2.0), ("s3", 3.0)):
        rows = (X["block"] == block).to_numpy()
        own = model.block_estimators_[block].predict(X.loc[rows, ["x"]])
        np.testing.assert_array_equal(pred[rows], own)
        np.testing.assert_allclose(pred[rows], slope * X.loc[rows, "x"], atol=1e-9)
        assert model.model_for(block) is model.block_estimators_[block]


def test_unseen_blocks_global_vs_vote():
    X, y = _slopes_file()
    new = pd.DataFrame({"block": ["zz", "zz", "s2"], "x": [4.0, 10.0, 5.0]})
    # global: pooled exact data, every x has y = slope_k x with weights 30:30:90, so the pooled least
    # squares line is y = (30*1 + 30*2 + 90*3) / 150 * x = 2.4 x
    g = BlockwiseEstimator(LinearRegression(), block_column="block", unseen="global").fit(X, y)
    np.testing.assert_allclose(g.predict(new), [2.4 * 4, 2.4 * 10, 2.0 * 5], atol=1e-9)
    assert g.model_for("zz") is g.global_estimator_
    # vote: mean of the three block models = (1 + 2 + 3) / 3 = 2 x
    v = BlockwiseEstimator(LinearRegression(), block_column="block", unseen="vote").fit(X, y)
    np.testing.assert_allclose(v.predict(new), [2.0 * 4, 2.0 * 10, 2.0 * 5], atol=1e-9)
    assert v.model_for("zz") == "vote"


def test_small_block_has_no_model_and_is_routed_like_unseen():
    X, y = _slopes_file(sizes=(("s1", 30, 1.0), ("s2", 30, 2.0), ("tiny", 20, 5.0)))
    model = BlockwiseEstimator(LinearRegression(), block_column="block", unseen="vote").fit(X, y)
    assert sorted(model.block_estimators_) == ["s1", "s2"]
    assert "tiny" in model.skipped_blocks_ and "tiny" in model.blocks_
    tiny = pd.DataFrame({"block": ["tiny"], "x": [2.0]})
    np.testing.assert_allclose(model.predict(tiny), [1.5 * 2.0], atol=1e-9)  # mean of slopes 1 and 2


# ---------------------------------------------------------------- classifiers


def test_block_missing_a_class_maps_probabilities_onto_global_classes():
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=(3 * n, 1))
    labels = np.array(["cat", "dog", "eel"])
    # block A only has cat/dog, block B has all three
    y_a = labels[(x[:n, 0] > 0).astype(int)]
    y_b = labels[np.digitize(x[n:, 0], [-0.5, 0.5])]
    X = pd.DataFrame({"block": ["A"] * n + ["B"] * (2 * n), "x": x[:, 0]})
    y = np.concatenate([y_a, y_b])
    model = BlockwiseEstimator(LogisticRegression(), block_column="block", unseen="vote").fit(X, y)
    assert model.classes_.tolist() == ["cat", "dog", "eel"]
    assert model.block_estimators_["A"].classes_.tolist() == ["cat", "dog"]
    proba = model.predict_proba(X)
    a = (X["block"] == "A").to_numpy()
    assert proba.shape == (3 * n, 3)
    np.testing.assert_array_equal(proba[a, 2], 0.0)  # block A never saw "eel"
    np.testing.assert_allclose(proba[a, :2], model.block_estimators_["A"].predict_proba(X.loc[a, ["x"]]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # vote for an unseen block = mean of the two blocks' mapped probabilities
    new = pd.DataFrame({"block": ["C"], "x": [0.2]})
    pa = np.append(model.block_estimators_["A"].predict_proba(new[["x"]])[0], 0.0)
    pb = model.block_estimators_["B"].predict_proba(new[["x"]])[0]
    np.testing.assert_allclose(model.predict_proba(new)[0], (pa + pb) / 2)
    assert model.predict(new)[0] == model.classes_[np.argmax((pa + pb) / 2)]
    assert model.predict(X).dtype == model.classes_.dtype


def test_single_class_block_is_skipped_for_classifiers():
    X, y = _concept_file(seed=0)
    y = y.copy()
    y[(X["block"] == "b2").to_numpy()] = 1
    model = BlockwiseEstimator(LogisticRegression(), block_column="block").fit(X, y)
    assert "b2" not in model.block_estimators_ and model.skipped_blocks_["b2"] == "a single class"
    assert model.model_for("b2") is model.global_estimator_


# ---------------------------------------------------------------- conventions


def test_clone_get_params_and_estimator_type():
    clf = BlockwiseEstimator(DecisionTreeClassifier(max_depth=2), block_column="block", unseen="vote")
    params = clf.get_params()
    assert params["block_column"] == "block" and params["estimator__max_depth"] == 2
    twin = clone(clf).set_params(estimator__max_depth=4, min_block_rows=10)
    assert twin.estimator.max_depth == 4 and clf.estimator.max_depth == 2
    assert is_classifier(clf) and not is_regressor(clf)
    assert is_regressor(BlockwiseEstimator(LinearRegression(), block_column="b"))
    assert not hasattr(BlockwiseEstimator(LinearRegression(), block_column="b"), "predict_proba")
    X, y = _concept_file(seed=0)
    fitted = clf.fit(X, y)
    assert not hasattr(clone(fitted), "block_estimators_")


def test_input_errors():
    X, y = _concept_file(seed=0)
    with pytest.raises(ValueError, match="block column"):
        BlockwiseEstimator(LogisticRegression(), block_column="site").fit(X, y)
    with pytest.raises(ValueError, match="unseen"):
        BlockwiseEstimator(LogisticRegression(), block_column="block", unseen="nearest").fit(X, y)
    with pytest.raises(TypeError, match="DataFrame"):
        BlockwiseEstimator(LogisticRegression(), block_column="block").fit(X.to_numpy(), y)


def test_skops_round_trip_with_listed_trusted_types():
    X, y = _concept_file(seed=0)
    model = BlockwiseEstimator(LogisticRegression(), block_column="block", unseen="vote").fit(X, y)
    dumped = sio.dumps(model)
    assert sorted(sio.get_untrusted_types(data=dumped)) == sorted(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(dumped, trusted=SKOPS_TRUSTED_TYPES)
    new = pd.concat([X, pd.DataFrame({"block": ["unseen"], "x0": [0.3], "x1": [0.0]})], ignore_index=True)
    np.testing.assert_array_equal(loaded.predict_proba(new), model.predict_proba(new))


#: The one scikit-learn check that cannot apply: the block column routes rows and is never a feature, so on the
#: check's two-feature blobs (column 0 taken as the blocks) the models see one feature and stay under its 0.83
#: accuracy bar. Every other check runs.
EXPECTED_FAILED_CHECKS = {"check_classifiers_train": "the block column is not a feature, so the check's "
                                                     "two-feature blobs leave the models one feature"}


@pytest.mark.parametrize("template", [LogisticRegression(), LinearRegression()], ids=["classifier", "regressor"])
def test_passes_scikit_learn_estimator_checks(template):
    """With a numeric array, ``block_column`` is a column position; the wrapper then behaves as any scikit-learn
    estimator (input validation, n_features_in_, cloning, pickling, idempotent fit...)."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(BlockwiseEstimator(template, block_column=0), on_fail=None,
                              expected_failed_checks=EXPECTED_FAILED_CHECKS)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert len(results) > 40 and failed == []
