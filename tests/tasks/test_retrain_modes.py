"""Each retraining mode's defining property, on the plain functions."""

import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from calmops.core.features import make_model
from calmops.core.spec import parse_spec
from calmops.tasks.retrain import RetrainModeUnavailable, train_challenger

TYPES = {"a": "numeric", "b": "numeric", "c": "categorical"}


def data(n, seed, task="binary", shift=0.0, prior=None):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n), "c": rng.choice(["u", "v"], n)})
    score = X["a"] - 0.5 * X["b"] + (X["c"] == "u") * 0.5 + rng.normal(0, 0.7, n)
    if task == "regression":
        y = pd.Series(3 * X["a"] - X["b"] + rng.normal(0, 0.3, n), name="y")
    elif task == "multiclass":
        y = pd.Series(np.array(["low", "mid", "high"])[np.digitize(score, [-0.5, 0.5])], name="y")
    else:
        threshold = np.quantile(score, 1 - prior) if prior else 0.0
        y = pd.Series((score > threshold).astype(int), name="y")
    return X, y


def spec(model="sklearn.linear_model.LogisticRegression", params=None, **retrain):
    return parse_spec({"name": "m", "target": "y", "model": {"class": model, "params": params or {}},
                       "retrain": retrain})


def fitted(sp, X, y):
    return make_model(sp, TYPES).fit(X, y)


def with_target(X, y):
    return X.assign(y=y.to_numpy())


def test_incremental_continues_the_same_fitted_estimator():
    sp = spec("sklearn.linear_model.SGDClassifier", {"random_state": 0}, mode="incremental")
    X0, y0 = data(500, 0)
    champion = fitted(sp, X0, y0)
    before = champion[-1].coef_.copy()
    X1, y1 = data(300, 1)
    result = train_challenger("incremental", sp, TYPES, with_target(X0, y0), X1, y1, champion=champion)
    expected = copy.deepcopy(champion)
    expected[-1].partial_fit(expected[:-1].transform(X1), y1, classes=expected[-1].classes_)
    assert np.allclose(result.model[-1].coef_, expected[-1].coef_)
    assert not np.allclose(result.model[-1].coef_, before)  # it learned from the new rows
    assert np.allclose(champion[-1].coef_, before)  # and the champion itself is untouched
    assert "fallback" not in result.info


def test_incremental_falls_back_to_full_and_says_so():
    sp = spec("sklearn.tree.DecisionTreeClassifier", mode="incremental")
    X0, y0 = data(300, 0)
    X1, y1 = data(200, 1)
    result = train_challenger("incremental", sp, TYPES, with_target(X0, y0), X1, y1, champion=fitted(sp, X0, y0))
    assert result.info["fallback"] == "full" and "no partial_fit" in result.info["fallback_reason"]
    assert len(result.X) == 500


def test_window_uses_exactly_the_last_n_rows():
    sp = spec(mode="window", window_rows=500)
    history = [(f"h{i}", with_target(*data(300, 10 + i))) for i in range(3)]
    X1, y1 = data(300, 1)
    result = train_challenger("window", sp, TYPES, None, X1, y1, history=history)
    everything = pd.concat([h[[*TYPES]] for _, h in history] + [X1], ignore_index=True)
    assert len(result.X) == 500
    pd.testing.assert_frame_equal(result.X.reset_index(drop=True), everything.iloc[-500:].reset_index(drop=True))
    assert result.info["batches"] == ["h2", "current"]  # 300 + 200 of h2's rows; h0 and h1 were not used


def test_window_by_default_records_only_the_batches_its_rows_come_from():
    sp = spec(mode="window")
    history = [(f"h{i}", with_target(*data(300, 10 + i))) for i in range(5)]
    X1, y1 = data(300, 1)
    result = train_challenger("window", sp, TYPES, None, X1, y1, history=history)
    assert len(result.X) == 900 and result.info["batches"] == ["h3", "h4", "current"]


@pytest.mark.parametrize("current", [210, 50])
def test_the_default_window_holds_the_two_batches_before_the_current_one_whole_whatever_its_size(current):
    """The fit judged on the holdout (the batch less its holdout rows) and the refit on the whole batch learn
    from the same history; a small file does not shrink the window to a part of one batch."""
    sp = spec(mode="window")
    history = [(f"h{i}", with_target(*data(300, 10 + i))) for i in range(5)]
    X1, y1 = data(current, 1)
    result = train_challenger("window", sp, TYPES, None, X1, y1, history=history)
    assert len(result.X) == 2 * 300 + current and result.info["batches"] == ["h3", "h4", "current"]
    expected = pd.concat([history[3][1][[*TYPES]], history[4][1][[*TYPES]], X1], ignore_index=True)
    pd.testing.assert_frame_equal(result.X.reset_index(drop=True), expected)


def test_window_by_batches():
    sp = spec(mode="window", window_batches=2)
    history = [(f"h{i}", with_target(*data(100 + i, 10 + i))) for i in range(3)]
    X1, y1 = data(50, 1)
    result = train_challenger("window", sp, TYPES, None, X1, y1, history=history)
    assert len(result.X) == 102 + 50  # the newest history batch plus the current one
    assert result.info["batches"] == ["h2", "current"]


def test_stacking_leaves_the_frozen_champion_predictions_unchanged():
    sp = spec(mode="stacking")
    X0, y0 = data(500, 0)
    champion = fitted(sp, X0, y0)
    probe, _ = data(200, 5)
    before = champion.predict_proba(probe)
    X1, y1 = data(400, 1, shift=1.0)
    result = train_challenger("stacking", sp, TYPES, with_target(X0, y0), X1, y1, champion=champion)
    frozen = result.model.named_estimators_["model_0"]
    assert frozen.estimator is champion
    assert np.array_equal(frozen.predict_proba(probe), before)
    assert set(result.model.predict(probe)) <= {0, 1}


def test_stacking_again_unpacks_the_stacked_champion_and_keeps_the_last_members():
    sp = spec(mode="stacking", stacking_members=3)
    X0, y0 = data(500, 0)
    champion = fitted(sp, X0, y0)
    probe, _ = data(200, 5)
    fitted_models = [champion]
    for i in range(1, 4):  # three promotions in a row
        X, y = data(400, i, shift=0.5 * i)
        champion = train_challenger("stacking", sp, TYPES, None, X, y, champion=champion).model
        fitted_models.append(champion.named_estimators_["new"])
    members = [m.estimator if hasattr(m, "estimator") else m for m in champion.estimators_]
    # flat, not nested: the last three models fitted (the first champion has dropped out), in order
    assert len(members) == 3 and not any(isinstance(m, type(champion)) for m in members)
    assert [id(m) for m in members[:2]] == [id(m) for m in fitted_models[-3:-1]]
    assert list(champion.named_estimators_) == ["model_1", "model_2", "new"]
    # the frozen members still predict exactly as when they were fitted
    assert np.array_equal(champion.estimators_[0].predict_proba(probe), fitted_models[1].predict_proba(probe))


def test_stacking_adds_a_frozen_member_fit_on_exactly_the_last_history_batches():
    sp = spec(mode="stacking", stacking_recent_batches=2)
    X0, y0 = data(500, 0)
    champion = fitted(sp, X0, y0)
    history = [(f"h{i}", with_target(*data(200 + 10 * i, 10 + i, shift=0.3 * i))) for i in range(3)]
    X1, y1 = data(400, 1, shift=1.0)
    result = train_challenger("stacking", sp, TYPES, with_target(X0, y0), X1, y1, champion=champion, history=history)
    assert list(result.model.named_estimators_) == ["model_0", "recent", "new"]
    assert result.info["recent_batches"] == ["h1", "h2"]
    # the member is the model of the last two batches (210 + 220 rows), not refit by the stack on the new rows
    last_two = pd.concat([history[1][1], history[2][1]], ignore_index=True)
    expected = fitted(sp, last_two[["a", "b", "c"]], last_two["y"])
    probe, _ = data(200, 5)
    recent = result.model.named_estimators_["recent"]
    assert recent.estimator.n_features_in_ == 3
    assert np.allclose(recent.predict_proba(probe), expected.predict_proba(probe))
    # stacked again, the previous recent member is one of the champion's models kept (it counts in the cap)
    again = train_challenger("stacking", sp, TYPES, None, X1, y1, champion=result.model, history=history)
    assert list(again.model.named_estimators_) == ["model_0", "model_1", "model_2", "recent", "new"]
    assert again.model.named_estimators_["model_1"].estimator is recent.estimator
    # turned off, or with no history yet, the stack is the champion + the new model only
    off = train_challenger("stacking", spec(mode="stacking", stacking_recent_batches=0), TYPES, None, X1, y1,
                           champion=champion, history=history)
    assert list(off.model.named_estimators_) == ["model_0", "new"]
    none = train_challenger("stacking", sp, TYPES, None, X1, y1, champion=champion)
    assert list(none.model.named_estimators_) == ["model_0", "new"] and none.info["recent_batches"] == []


def test_replay_mixes_history_at_the_configured_ratio_with_class_shares():
    sp = spec(mode="replay", replay_ratio=0.5)
    history = [("h0", with_target(*data(1000, 3, prior=0.2)))]
    X1, y1 = data(400, 1)
    result = train_challenger("replay", sp, TYPES, None, X1, y1, history=history)
    assert result.info["rows_replayed"] == 200 and len(result.X) == 600
    replayed_y = result.y.iloc[400:]
    assert abs(replayed_y.mean() - history[0][1]["y"].mean()) < 0.02  # stratified: same class shares


def test_recalibration_keeps_the_base_and_lowers_log_loss():
    sp = spec("sklearn.naive_bayes.GaussianNB", mode="recalibration", calibration_method="sigmoid")
    X0, y0 = data(2000, 0)
    champion = fitted(sp, X0, y0)
    params_before = champion.get_params(deep=True)
    theta_before = champion[-1].theta_.copy()
    X1, y1 = data(2000, 1, prior=0.1)  # priors moved: the champion's probabilities are off
    X2, y2 = data(2000, 2, prior=0.1)
    result = train_challenger("recalibration", sp, TYPES, None, X1, y1, champion=champion)
    assert champion.get_params(deep=True).keys() == params_before.keys()
    assert np.array_equal(champion[-1].theta_, theta_before)
    assert log_loss(y2, result.model.predict_proba(X2)) < log_loss(y2, champion.predict_proba(X2))


def test_recalibration_refuses_regression_clearly():
    sp = spec("sklearn.linear_model.Ridge", mode="recalibration")
    X0, y0 = data(200, 0, task="regression")
    with pytest.raises(RetrainModeUnavailable, match="classifiers only"):
        train_challenger("recalibration", sp, TYPES, None, X0, y0, champion=fitted(sp, X0, y0), task="regression")


CASES = {
    "binary": ("sklearn.linear_model.SGDClassifier", ["full", "incremental", "window", "stacking", "replay", "recalibration"]),
    "multiclass": ("sklearn.linear_model.SGDClassifier", ["full", "incremental", "window", "stacking", "replay", "recalibration"]),
    "regression": ("sklearn.linear_model.SGDRegressor", ["full", "incremental", "window", "stacking", "replay"]),
}


@pytest.mark.parametrize("task", list(CASES))
def test_every_applicable_mode_runs_for_each_task(task):
    model, modes = CASES[task]
    kind = "regression" if task == "regression" else "classification"
    X0, y0 = data(600, 0, task=task)
    X1, y1 = data(300, 1, task=task, shift=0.5)
    history = [("h0", with_target(X0, y0))]
    probe, _ = data(50, 9, task=task)
    for mode in modes:
        params = {"random_state": 0} if "SGD" in model else {}
        if mode == "recalibration":
            params["loss"] = "log_loss"
        sp = spec(model, params, mode=mode)
        champion = fitted(sp, X0, y0)
        result = train_challenger(mode, sp, TYPES, with_target(X0, y0), X1, y1, champion=champion,
                                  history=history, task=kind)
        pred = result.model.predict(probe)
        assert len(pred) == 50, mode
        # every mode's record splits its training rows the same way (the viewer's Retraining table shows them)
        info = result.info
        assert info["rows_new"] == 300 and info["rows"] == info["rows_new"] + info["rows_reference"], (mode, info)
        if kind == "classification":
            assert set(pred) <= set(y0), mode


def test_hyperparameter_search_respects_its_budget():
    sp = parse_spec({"name": "m", "target": "y", "model": {"class": "sklearn.tree.DecisionTreeClassifier"},
                     "retrain": {"search": {"method": "random", "params": {"max_depth": [1, 2, 3, 4, 5, 6]},
                                            "budget": 3, "cv": 2}}})
    X0, y0 = data(300, 0)
    result = train_challenger("full", sp, TYPES, None, X0, y0)
    assert result.info["search"]["tried"] == 3
    assert result.info["search"]["best_params"]["max_depth"] in range(1, 7)


def test_history_mode_fits_on_every_kept_batch_plus_the_new_rows():
    sp = spec(mode="history")
    history = [(f"h{i}", with_target(*data(200, 10 + i))) for i in range(4)]
    X, y = data(150, 1)
    result = train_challenger("history", sp, TYPES, None, X, y, champion=fitted(sp, *data(200, 0)),
                              history=history)
    assert len(result.X) == 4 * 200 + 150 and result.info["history_batches"] == 4
    assert (result.info["rows_new"], result.info["rows_reference"]) == (150, 4 * 200)


def test_auto_keeps_all_data_so_far_when_the_concept_has_held():
    from calmops.tasks.retrain import AUTO_CANDIDATES, retrain_auto

    sp = spec("sklearn.tree.DecisionTreeClassifier", {"max_depth": 4, "random_state": 0}, mode="auto")
    # the concept changed long ago and has held since: every history batch is of the current concept,
    # so nothing can show a recipe on fewer rows better than all of them
    history = [(f"h{i}", with_target(*data(300, 20 + i, shift=1.5))) for i in range(6)]
    champion = fitted(sp, *data(300, 0))
    X, y = data(120, 2, shift=1.5)
    X_hold, y_hold = data(400, 3, shift=1.5)
    result = retrain_auto.fn(sp, TYPES, None, X, y, X_hold, y_hold, "accuracy", champion=champion,
                             history=history)
    why = result.info["auto"]
    assert set(why["candidates"]) == set(AUTO_CANDIDATES)
    assert result.mode == why["chosen"] == "history"
    assert set(why["p_values"]) == set(AUTO_CANDIDATES) - {"history"}


def test_auto_leaves_history_when_the_concept_turned_and_says_by_which_test():
    from calmops.tasks.retrain import refit, retrain_auto

    sp = spec("sklearn.tree.DecisionTreeClassifier", {"max_depth": 4, "random_state": 0}, mode="auto")

    def flipped(n, seed):
        X, y = data(n, seed)
        return X, 1 - y

    # six batches of the old concept, then the labels turn round: all data so far is mostly the old concept
    history = [(f"h{i}", with_target(*data(300, 20 + i))) for i in range(6)]
    champion = fitted(sp, *data(300, 0))
    X, y = flipped(300, 2)
    X_hold, y_hold = flipped(300, 3)
    result = retrain_auto.fn(sp, TYPES, None, X, y, X_hold, y_hold, "accuracy", champion=champion,
                             history=history)
    why = result.info["auto"]
    assert result.mode != "history"
    assert why["p_values"][result.mode] < sp.evaluation.promotion_alpha / 2
    assert why["candidates"][result.mode] > why["candidates"]["history"] + sp.evaluation.promotion_min_effect
    # the winner refit on the whole batch (what a promotion registers) still says how auto chose its recipe
    whole = refit.fn(result, result.mode, sp, TYPES, None, pd.concat([X, X_hold]), pd.concat([y, y_hold]),
                     champion=champion, history=history)
    assert whole.mode == result.mode and whole.info["auto"] == why
    assert whole.info["selection"] == {"rows": len(result.X), "mode": result.mode}


class Fixed:
    """A model whose predictions on the holdout are set by the test."""

    classes_ = np.array([0, 1])

    def __init__(self, pred):
        self.pred = np.asarray(pred)

    def predict(self, X):
        return self.pred[: len(X)]


def _candidates(y, right: dict[str, int]):
    """Each candidate right on its first ``right[m]`` holdout rows and wrong on the rest."""
    from calmops.tasks.retrain import TrainingResult

    flip = 1 - y
    return {m: TrainingResult(Fixed(np.where(np.arange(len(y)) < k, y, flip)), None, None, m)
            for m, k in right.items()}


# history right on 24 of 30 holdout rows; window right on those and ``extra`` more, wrong on none of history's.
# McNemar's one-sided exact p-value is 0.5 ** extra; with two alternatives the bar is 0.05 / 2 = 0.025.
@pytest.mark.parametrize(("extra", "others", "chosen"), [
    (1, ["stacking"], "history"),   # p = 0.5: a one-row win is chance
    (5, ["stacking"], "history"),   # p = 0.031: below 0.05, but not below 0.025 with two alternatives tried
    (5, [], "window"),              # the same win with window the only alternative: the bar is 0.05
    (6, ["stacking"], "window"),    # p = 0.016 < 0.025
])
def test_auto_leaves_history_only_for_a_win_the_paired_test_shows(extra, others, chosen):
    from calmops.tasks.retrain import best_of

    sp = spec(mode="auto")
    y = pd.Series(np.array([1, 0] * 15))
    X = pd.DataFrame({"a": np.zeros(30)})
    result, why = best_of(_candidates(y, {"history": 24, "window": 24 + extra, **dict.fromkeys(others, 24)}),
                          X, y, "classification", "accuracy", sp)
    assert max(why["candidates"], key=why["candidates"].get) == "window"  # the raw best is always window
    assert result.mode == why["chosen"] == chosen
    assert why["p_values"]["window"] == pytest.approx(0.5 ** extra)
    assert str(round(0.05 / (1 + len(others)), 3)) in why["rule"]


@pytest.mark.parametrize(("default", "extra", "chosen"), [
    ("stacking", 5, "stacking"),  # history's five-row win (p = 0.031) does not clear 0.025: the default stays
    ("stacking", 6, "history"),   # p = 0.016: history leaves the stack behind
    ("history", 0, "history"),    # a tie keeps whichever is the default
    ("stacking", 0, "stacking"),
])
def test_auto_keeps_the_default_it_is_given_unless_another_candidate_beats_it(default, extra, chosen):
    from calmops.tasks.retrain import best_of

    sp = spec(mode="auto")
    y = pd.Series(np.array([1, 0] * 15))
    X = pd.DataFrame({"a": np.zeros(30)})
    others = {m: 24 for m in ("stacking", "window") if m != default}
    result, why = best_of(_candidates(y, {default: 24, **others, "history": 24 + extra}),
                          X, y, "classification", "accuracy", sp, default=default)
    assert result.mode == why["chosen"] == chosen
    assert why["default"] == default and why["rule"].startswith(f"{default} unless beaten")
    assert default not in why["p_values"] and len(why["p_values"]) == 2


def test_the_auto_default_follows_the_kind_of_drift():
    from calmops.tasks.retrain import AUTO_DEFAULT, auto_default

    assert auto_default(real_concept_drift=True) == "stacking"
    assert auto_default(real_concept_drift=False) == AUTO_DEFAULT == "history"


def test_a_default_that_cannot_be_scored_leaves_all_data_so_far_as_the_default():
    from calmops.tasks.retrain import TrainingResult, best_of

    class WithProba(Fixed):
        def predict_proba(self, X):
            p = self.predict(X).astype(float)
            return np.column_stack([1 - p, p])

    sp = spec(mode="auto")
    y = pd.Series(np.array([1, 0] * 15))
    X = pd.DataFrame({"a": np.zeros(30)})
    candidates = {m: TrainingResult(WithProba(r.model.pred), None, None, m)
                  for m, r in _candidates(y, {"window": 25, "history": 24}).items()}
    candidates["stacking"] = _candidates(y, {"stacking": 30})["stacking"]  # no probabilities: no roc_auc
    result, why = best_of(candidates, X, y, "classification", "roc_auc", sp, default="stacking")
    assert why["candidates"]["stacking"] is None and why["candidates"]["window"] > why["candidates"]["history"]
    assert why["default"] == "history" and why["default_not_scored"] == "stacking"
    assert result.mode == why["chosen"] == "window" and "no paired test" in why["rule"]  # roc_auc: raw best
    with pytest.raises(ValueError, match="not one of its candidates"):
        best_of(candidates, X, y, "classification", "accuracy", sp, default="replay")


@pytest.mark.parametrize("mode", ["full", "incremental", "window", "stacking", "replay", "recalibration", "history"])
def test_a_class_the_champion_never_saw_is_learnt_by_every_mode(mode):
    """A champion fit on two classes, a batch with a third: every mode gives a challenger that predicts all
    three (stacking and recalibration failed with scikit-learn's own error, the run failed and the breaker
    opened); the modes that build on the champion fit in full instead and say why."""
    params = {"random_state": 0, "loss": "log_loss"}
    sp = spec("sklearn.linear_model.SGDClassifier", params, mode=mode)
    X, y = data(900, 0, task="multiclass")
    old = y != "high"
    champion = fitted(sp, X[old], y[old])
    X1, y1 = data(600, 1, task="multiclass")
    assert set(y1) == {"low", "mid", "high"}
    history = [("h0", with_target(X[old], y[old]))]
    result = train_challenger(mode, sp, TYPES, with_target(X[old], y[old]), X1, y1, champion=champion,
                              history=history)
    assert set(result.model.predict(X1)) == {"low", "mid", "high"}, mode
    assert len(result.model.predict_proba(X1.iloc[:5])[0]) == 3
    if mode in ("incremental", "stacking", "recalibration"):
        assert result.info["fallback"] == "full", mode
        assert "class(es) 'high' never seen by the champion" in result.info["fallback_reason"]
        assert result.info["fallback_reason"].startswith(f"{mode} impossible")
    else:
        assert "fallback" not in result.info


def test_stacking_leaves_out_a_recent_member_that_lacks_a_class_of_the_new_rows():
    """The champion knows three classes, the last history batch only two: a member fit on it could not answer
    for the third, so the stack is built without it (and not refused)."""
    sp = spec("sklearn.linear_model.LogisticRegression", mode="stacking", stacking_recent_batches=1)
    X, y = data(900, 0, task="multiclass")
    champion = fitted(sp, X, y)
    Xh, yh = data(600, 2, task="multiclass")
    two = yh != "high"
    X1, y1 = data(600, 1, task="multiclass")
    result = train_challenger("stacking", sp, TYPES, with_target(X, y), X1, y1, champion=champion,
                              history=[("h0", with_target(Xh[two], yh[two]))])
    assert "fallback" not in result.info and result.info["recent_batches"] == []
    assert set(result.model.predict(X1)) == {"low", "mid", "high"}


@pytest.mark.parametrize("mode", ["stacking", "recalibration"])
def test_rows_without_a_class_the_champion_knows_still_predict(mode):
    """The other way round: the champion knows three classes and the new rows hold two of them."""
    sp = spec("sklearn.linear_model.LogisticRegression", mode=mode)
    X, y = data(900, 0, task="multiclass")
    champion = fitted(sp, X, y)
    X1, y1 = data(600, 1, task="multiclass")
    two = y1 != "high"
    result = train_challenger(mode, sp, TYPES, with_target(X, y), X1[two], y1[two], champion=champion)
    assert len(result.model.predict(X1)) == len(X1)
    assert "class(es) 'high' of the champion absent from the new rows" in result.info["fallback_reason"]
