"""Retrain: build a challenger with one of six modes (docs/retraining.md, Modes), or the user's hooks.

Every mode takes the same :class:`RetrainInputs` and returns a :class:`TrainingResult` saying what it
fitted on, so the flows never special-case a mode. The rows a challenger may use never include the
batch's held-out rows: the flows pass only the training part of the current batch, and history excludes it.

=============  ==============================================================================
full           a fresh model on the champion's reference + the new rows (or the new rows only)
incremental    ``partial_fit`` of a copy of the champion on the new rows; recorded fallback to full (no
               ``partial_fit``, or a class the champion never saw: so for stacking and recalibration too)
window         a fresh model on the most recent ``window_rows`` rows (or ``window_batches`` batches)
stacking       the champion's models frozen (the last ``stacking_members`` − 1) + a frozen model on the last
               ``stacking_recent_batches`` history batches + a model on the new rows + a meta-model combining them
replay         the new rows + a stratified sample of history, ``replay_ratio`` × the new rows
recalibration  the champion kept as is, its probabilities recalibrated on the new rows
=============  ==============================================================================
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline

from calmops.core.errors import UserCodeFailed
from calmops.core.features import make_model
from calmops.core.frozen import FrozenEstimator
from calmops.core.metrics import HIGHER_IS_BETTER
from calmops.core.spec import PipelineSpec
from calmops.tasks import BadInput, step
from calmops.tasks.evaluate import compare_on_holdout, score
from calmops.tasks.validate import Labels, excerpt


class RetrainModeUnavailable(BadInput):
    """The mode cannot apply to this pipeline (e.g. recalibration of a regressor)."""


class HookFailed(UserCodeFailed):
    """A training or validation hook cannot be loaded, raised, or returned something that is not a model."""


@dataclass
class RetrainInputs:
    spec: PipelineSpec
    feature_types: dict[str, str]
    X_new: pd.DataFrame                      # training rows of the current batch (never its holdout)
    y_new: pd.Series
    task: str = "classification"
    champion: Any = None                     # the fitted champion model, when there is one
    reference: pd.DataFrame | None = None    # the champion's training data (features + target)
    history: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (sha prefix, batch), oldest first


@dataclass
class TrainingResult:
    model: Any
    X: pd.DataFrame            # the rows the model was fit on (the new reference)
    y: pd.Series
    mode: str
    info: dict[str, Any] = field(default_factory=dict)


def _fit_fresh(inputs: RetrainInputs, X: pd.DataFrame, y: pd.Series):
    model = make_model(inputs.spec, inputs.feature_types)
    search = inputs.spec.retrain.search
    if search is None:
        return model.fit(X, y), {}
    prefix = "model__" if isinstance(model, Pipeline) and inputs.spec.model.steps is None else ""
    grid = {prefix + k: v for k, v in search.params.items()}
    if search.method == "grid":
        from sklearn.model_selection import ParameterGrid

        candidates = list(ParameterGrid(grid))[: search.budget]
        searcher = GridSearchCV(model, [{k: [v] for k, v in c.items()} for c in candidates], cv=search.cv)
    else:
        searcher = RandomizedSearchCV(model, grid, n_iter=search.budget, cv=search.cv, random_state=inputs.spec.seed)
    searcher.fit(X, y)
    best = {k.removeprefix(prefix): _plain(v) for k, v in searcher.best_params_.items()}
    return searcher.best_estimator_, {"search": {"method": search.method, "tried": len(searcher.cv_results_["params"]),
                                                 "best_params": best, "best_cv_score": float(searcher.best_score_)}}


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _features_target(frame: pd.DataFrame, inputs: RetrainInputs) -> tuple[pd.DataFrame, pd.Series]:
    return frame[list(inputs.X_new.columns)], frame[inputs.spec.target]


def _concat(parts: list[tuple[pd.DataFrame, pd.Series]]) -> tuple[pd.DataFrame, pd.Series]:
    X = pd.concat([p[0].reset_index(drop=True) for p in parts], ignore_index=True)
    y = pd.concat([p[1].reset_index(drop=True) for p in parts], ignore_index=True)
    return X, y


def fit_new(spec: PipelineSpec, feature_types: dict[str, str], X: pd.DataFrame, y: pd.Series) -> TrainingResult:
    """A fresh model on the given rows: the first model of a pipeline."""
    inputs = RetrainInputs(spec, feature_types, X, y)
    model, extra = _fit_fresh(inputs, X, y)
    return TrainingResult(model, X, y, "train", {"rows": len(X), **extra})


# -- the modes -----------------------------------------------------------------------------


def retrain_full(inputs: RetrainInputs) -> TrainingResult:
    parts = [(inputs.X_new, inputs.y_new)]
    if inputs.spec.retrain.data == "reference_and_new" and inputs.reference is not None:
        parts.insert(0, _features_target(inputs.reference, inputs))
    X, y = _concat(parts)
    model, extra = _fit_fresh(inputs, X, y)
    return TrainingResult(model, X, y, "full", {"rows": len(X), "rows_new": len(inputs.X_new),
                                               "rows_reference": len(X) - len(inputs.X_new), **extra})


def _fitted_in_full(inputs: RetrainInputs, mode: str, why: str) -> TrainingResult:
    """A mode that builds on the champion cannot apply to this batch: a full refit learns what it cannot (a class
    the champion never saw, above all), and the record says why."""
    result = retrain_full(inputs)
    result.info.update(fallback="full", fallback_reason=f"{mode} impossible: {why}; fitted in full instead")
    return result


def _classes_apart(inputs: RetrainInputs, known: Any, *, absent: bool = True) -> str | None:
    """Why a model fit on the new rows over the answers of a model that knows the classes ``known`` cannot be: a
    class of the rows it never saw, or (``absent``) a class it knows that the rows lack (its answers for it could
    not be weighed); or None (also for regression, or a model without ``classes_``)."""
    if inputs.task != "classification" or known is None:
        return None
    unseen = Labels.of(inputs.y_new, list(known)).new_classes
    if unseen:
        return f"class(es) {', '.join(excerpt(c) for c in unseen[:10])} never seen by the champion"
    present = set(inputs.y_new.tolist())
    missing = [c for c in known if c not in present] if absent else []
    return f"class(es) {', '.join(excerpt(c) for c in missing[:10])} of the champion absent from the new rows" \
        if missing else None


def retrain_incremental(inputs: RetrainInputs) -> TrainingResult:
    champion = inputs.champion
    estimator = champion.steps[-1][1] if isinstance(champion, Pipeline) else champion
    why = None
    if champion is None:
        why = "no champion"
    elif not hasattr(estimator, "partial_fit"):
        why = f"{type(estimator).__name__} has no partial_fit"
    elif unseen := _classes_apart(inputs, getattr(estimator, "classes_", None), absent=False):
        why = f"{unseen} (partial_fit cannot add a class)"
    if why:
        return _fitted_in_full(inputs, "incremental", why)
    model = copy.deepcopy(champion)  # the champion itself stays untouched in the registry
    step_estimator = model.steps[-1][1] if isinstance(model, Pipeline) else model
    Xt = model[:-1].transform(inputs.X_new) if isinstance(model, Pipeline) else inputs.X_new
    kwargs = {}
    if inputs.task == "classification":
        kwargs["classes"] = getattr(step_estimator, "classes_", np.unique(inputs.y_new))
    step_estimator.partial_fit(Xt, inputs.y_new, **kwargs)
    X, y = inputs.X_new, inputs.y_new
    if inputs.reference is not None:  # the new reference: what the model has now seen
        X, y = _concat([_features_target(inputs.reference, inputs), (inputs.X_new, inputs.y_new)])
    return TrainingResult(model, X, y, "incremental", {"rows": len(inputs.X_new), "continued_from": "champion"})


#: the window when the spec gives neither ``window_rows`` nor ``window_batches``: the current batch and the two
#: accepted before it, whole, whatever their sizes (so the fit that is judged on the holdout and the refit on the
#: whole batch learn from the same history)
DEFAULT_WINDOW_BATCHES = 3


def retrain_window(inputs: RetrainInputs) -> TrainingResult:
    r = inputs.spec.retrain
    batches = r.window_batches or (None if r.window_rows else DEFAULT_WINDOW_BATCHES)
    history = inputs.history[-(batches - 1):] if batches and batches > 1 else (
        [] if batches == 1 else inputs.history)
    parts = [_features_target(frame, inputs) for _, frame in history] + [(inputs.X_new, inputs.y_new)]
    X, y = _concat(parts)
    if r.window_rows:
        X, y = X.iloc[-r.window_rows:].reset_index(drop=True), y.iloc[-r.window_rows:].reset_index(drop=True)
    used, left = [], len(X)  # the batches the kept rows come from, newest last
    for name, (_, y_part) in reversed(list(zip([h for h, _ in history] + ["current"], parts, strict=True))):
        if left <= 0:
            break
        used.insert(0, name)
        left -= len(y_part)
    model, extra = _fit_fresh(inputs, X, y)
    return TrainingResult(model, X, y, "window", {"rows": len(X), "batches": used,
                                                 "window_rows": r.window_rows, "window_batches": batches,
                                                 **extra})


def retrain_history(inputs: RetrainInputs) -> TrainingResult:
    """A fresh model on every kept history batch (``history_max_batches``) + the new rows: all data so far."""
    parts = [_features_target(frame, inputs) for _, frame in inputs.history] + [(inputs.X_new, inputs.y_new)]
    X, y = _concat(parts)
    model, extra = _fit_fresh(inputs, X, y)
    return TrainingResult(model, X, y, "history", {"rows": len(X), "rows_new": len(inputs.X_new),
                                                  "history_batches": len(inputs.history), **extra})


def _stacked_members(champion: Any) -> list[Any]:
    """The fitted models a stacked champion combines (its frozen members and the one it fitted), in
    order; a champion that is not a stack is its own single member."""
    if isinstance(champion, (StackingClassifier, StackingRegressor)) and hasattr(champion, "estimators_"):
        return [m.estimator if isinstance(m, FrozenEstimator) else m for m in champion.estimators_]
    return [champion]


def retrain_stacking(inputs: RetrainInputs) -> TrainingResult:
    if inputs.champion is None:
        raise RetrainModeUnavailable("stacking needs a champion to freeze; the first model is trained in full")
    # a stacked champion is unpacked rather than nested: the ensemble is the last `stacking_members` models
    members = _stacked_members(inputs.champion)
    first = max(0, len(members) - (inputs.spec.retrain.stacking_members - 1))
    kept = [(i, m) for i, m in enumerate(members) if i >= first]
    # a frozen member answers for the classes it was fit on; the meta-model needs each member's answer for every
    # class of the new rows, so a class the champion never saw is learnt by a full refit instead
    if why := next((w for _, m in kept if (w := _classes_apart(inputs, getattr(m, "classes_", None)))), None):
        return _fitted_in_full(inputs, "stacking", f"{why} (the meta-model weighs each model's answer per class)")
    estimators = [(f"model_{i}", FrozenEstimator(m)) for i, m in kept]
    recent = _recent_member(inputs)
    if recent is not None:
        estimators.append(("recent", recent[0]))
    estimators.append(("new", make_model(inputs.spec, inputs.feature_types)))
    cv = inputs.spec.retrain.stacking_cv
    if inputs.task == "classification":
        stack = StackingClassifier(estimators, final_estimator=LogisticRegression(max_iter=1000), cv=cv)
    else:
        stack = StackingRegressor(estimators, final_estimator=RidgeCV(), cv=cv)
    stack.fit(inputs.X_new, inputs.y_new)
    X, y = inputs.X_new, inputs.y_new
    return TrainingResult(stack, X, y, "stacking", {"rows": len(X), "frozen": [n for n, _ in estimators[:-1]],
                                                    "members": len(estimators),
                                                    "recent_batches": recent[1] if recent else [],
                                                    "meta": type(stack.final_estimator_).__name__})


def _recent_member(inputs: RetrainInputs) -> tuple[FrozenEstimator, list[str]] | None:
    """A model fit on the last ``stacking_recent_batches`` history batches, frozen before the stack is fit: the
    meta-model then sees its predictions on the new rows out of sample, as it sees the champion's. It carries
    recent files, usually ones the champion never learnt (slow drift lives there)."""
    n = inputs.spec.retrain.stacking_recent_batches
    batches = inputs.history[-n:] if n else []
    if not batches:
        return None
    X, y = _concat([_features_target(frame, inputs) for _, frame in batches])
    if y.nunique() < 2:  # one class (or a constant target) cannot be fitted
        return None
    if _classes_apart(inputs, np.unique(y)):  # its classes would not be the new rows': the stack could not use it
        return None
    return FrozenEstimator(make_model(inputs.spec, inputs.feature_types).fit(X, y)), [h for h, _ in batches]


def retrain_replay(inputs: RetrainInputs) -> TrainingResult:
    ratio = inputs.spec.retrain.replay_ratio
    want = round(ratio * len(inputs.X_new))
    pool_parts = [_features_target(frame, inputs) for _, frame in inputs.history]
    if not pool_parts and inputs.reference is not None:
        pool_parts = [_features_target(inputs.reference, inputs)]
    replayed = 0
    parts = [(inputs.X_new, inputs.y_new)]
    if pool_parts and want:
        pool_X, pool_y = _concat(pool_parts)
        sample = stratified_sample(pool_y, min(want, len(pool_y)), inputs.task, inputs.spec.seed)
        parts.append((pool_X.iloc[sample], pool_y.iloc[sample]))
        replayed = len(sample)
    X, y = _concat(parts)
    model, extra = _fit_fresh(inputs, X, y)
    return TrainingResult(model, X, y, "replay", {"rows": len(X), "rows_new": len(inputs.X_new),
                                                 "rows_replayed": replayed, "ratio": ratio,
                                                 "history_batches": [h for h, _ in inputs.history], **extra})


def stratified_sample(y: pd.Series, n: int, task: str, seed: int) -> np.ndarray:
    """Positions of ``n`` rows keeping the class shares of ``y`` (plain random for regression)."""
    rng = np.random.default_rng(seed)
    if task != "classification" or n >= len(y):
        return np.sort(rng.choice(len(y), size=min(n, len(y)), replace=False))
    positions = []
    shares = y.value_counts(normalize=True)
    codes = y.to_numpy()
    for label, share in shares.items():
        members = np.flatnonzero(codes == label)
        k = min(len(members), round(float(share) * n))
        positions.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(positions))


def retrain_recalibration(inputs: RetrainInputs) -> TrainingResult:
    if inputs.task != "classification":
        raise RetrainModeUnavailable("recalibration applies to classifiers only: this pipeline does regression; "
                                     "choose another retrain.mode")
    if inputs.champion is None or not hasattr(inputs.champion, "predict_proba"):
        raise RetrainModeUnavailable("recalibration needs a champion with predict_proba")
    if why := _classes_apart(inputs, getattr(inputs.champion, "classes_", None)):
        return _fitted_in_full(inputs, "recalibration", f"{why} (each class is calibrated on its own rows)")
    method = inputs.spec.retrain.calibration_method
    model = CalibratedClassifierCV(FrozenEstimator(inputs.champion), method=method)
    model.fit(inputs.X_new, inputs.y_new)
    return TrainingResult(model, inputs.X_new, inputs.y_new, "recalibration",
                          {"rows": len(inputs.X_new), "method": method, "base": "champion (unchanged)"})


MODES: dict[str, Callable[[RetrainInputs], TrainingResult]] = {
    "full": retrain_full,
    "incremental": retrain_incremental,
    "window": retrain_window,
    "stacking": retrain_stacking,
    "replay": retrain_replay,
    "recalibration": retrain_recalibration,
    "history": retrain_history,
}
# `auto`: each of these is fitted on the training rows; the default is kept unless another is shown better
AUTO_CANDIDATES = ("stacking", "window", "history")
AUTO_DEFAULT = "history"  # nothing says the older labels are wrong: more rows of the data so far
AUTO_DEFAULT_ON_CONCEPT_DRIFT = "stacking"  # the champion got worse on inputs that did not move


def auto_default(real_concept_drift: bool) -> str:
    """The candidate ``auto`` keeps unless another beats it: on real concept drift
    (:attr:`~calmops.core.verdict.DriftVerdict.real_concept_drift`) a stack that learns on this batch how far to
    trust the old models, since all data so far would teach the old answers again; otherwise all data so far."""
    return AUTO_DEFAULT_ON_CONCEPT_DRIFT if real_concept_drift else AUTO_DEFAULT


# -- user hooks ------------------------------------------------------------------------------


def load_hook(reference: str) -> Callable:
    """``path/to/module.py:function`` → the function."""
    path, _, name = reference.rpartition(":")
    if not path or not name:
        raise HookFailed(f"hook {reference!r} must look like 'path/to/module.py:function'")
    spec = importlib.util.spec_from_file_location(f"calmops_hook_{abs(hash(path))}", Path(path))
    if spec is None or spec.loader is None or not Path(path).exists():
        raise HookFailed(f"hook module not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise HookFailed(f"hook {reference!r}: {path} has no function {name!r}")
    return fn


def run_hook(kind: str, reference: str, inputs: RetrainInputs) -> TrainingResult:
    """Call a user hook with the documented contract (docs/hooks.md) and check what it returns."""
    fn = load_hook(reference)
    try:
        if kind == "train":
            model = fn(inputs.X_new, inputs.y_new, inputs.spec)
        else:
            model = fn(inputs.champion, inputs.X_new, inputs.y_new, inputs.reference, inputs.history, inputs.spec)
    except Exception as exc:
        raise HookFailed(f"{kind} hook {reference} raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(model, "predict"):
        raise HookFailed(f"{kind} hook {reference} returned {type(model).__name__}, not a fitted estimator")
    return TrainingResult(model, inputs.X_new, inputs.y_new, f"hook:{kind}", {"rows": len(inputs.X_new), "hook": reference})


def train_challenger(mode: str, spec: PipelineSpec, feature_types: dict[str, str],
                     reference: pd.DataFrame | None, X_new: pd.DataFrame, y_new: pd.Series, *,
                     champion: Any = None, history: list[tuple[str, pd.DataFrame]] | None = None,
                     task: str = "classification") -> TrainingResult:
    """The challenger for ``mode`` (a mode name, or ``hook:retrain`` / ``hook:fallback``)."""
    inputs = RetrainInputs(spec, feature_types, X_new, y_new, task, champion, reference, history or [])
    if mode.startswith("hook:"):
        kind = mode.removeprefix("hook:")
        return _rows_told(run_hook(kind, getattr(spec.hooks, kind), inputs), len(X_new))
    if mode == "auto":
        raise RetrainModeUnavailable("mode 'auto' chooses among recipes on the holdout: use retrain_auto")
    if mode not in MODES:
        raise RetrainModeUnavailable(f"unknown retrain mode {mode!r}; choose one of: {', '.join(MODES)}")
    return _rows_told(MODES[mode](inputs), len(X_new))


def _rows_told(result: TrainingResult, new: int) -> TrainingResult:
    """Every mode's record says its training rows the same way: ``rows`` = ``rows_new`` (the batch's) +
    ``rows_reference`` (kept from earlier files: the reference, the history, a window, a replay)."""
    rows = int(result.info.get("rows", len(result.X)))
    result.info = {**result.info, "rows": rows, "rows_new": min(new, rows),
                   "rows_reference": rows - min(new, rows)}
    return result


def recipe_label(mode: str, trained: TrainingResult) -> str:
    """How a decision's reason names what ``mode`` fitted: ``auto: stacking`` for the recipe ``auto`` chose,
    ``incremental, fitted in full`` when the mode could not apply (the training record says why)."""
    name = f"{mode}: {trained.info['auto']['chosen']}" if mode == "auto" and "auto" in trained.info else mode
    return f"{name}, fitted in {trained.info['fallback']}" if trained.info.get("fallback") else name


def modes_to_try(spec: PipelineSpec) -> list[str]:
    """The primary mode (or retrain hook), then the fallback (hook first) once."""
    first = "hook:retrain" if spec.hooks.retrain else spec.retrain.mode
    fallback = "hook:fallback" if spec.hooks.fallback else spec.retrain.fallback_mode
    return [first] + ([fallback] if fallback and fallback != first else [])


def best_of(candidates: dict[str, TrainingResult], X_hold: pd.DataFrame, y_hold: pd.Series, task: str,
            metric: str, spec: PipelineSpec, seed: int = 0,
            default: str = AUTO_DEFAULT) -> tuple[TrainingResult, dict[str, Any]]:
    """The candidate ``auto`` keeps, and why. ``default`` (:func:`auto_default`) is kept unless another candidate
    beats it on the holdout by the paired test promotion uses, Bonferroni-corrected for the alternatives tried
    (``promotion_alpha`` / their number) and by at least ``promotion_min_effect``: picking the raw best of three on
    a small holdout would often pick a model that only won by chance, so the recipe the evidence favours beforehand
    stays unless the holdout shows otherwise. Of the candidates that beat it, the best score wins. Without a
    paired test for ``metric`` (e.g. roc_auc), the raw best score wins."""
    if default not in candidates:
        raise ValueError(f"auto's default {default!r} is not one of its candidates: {', '.join(candidates)}")
    scored = {m: score(r.model, X_hold, y_hold, task).get(metric) for m, r in candidates.items()}
    sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
    valid = [m for m, v in scored.items() if v is not None]
    unscored = {}
    if default not in valid and AUTO_DEFAULT in valid:  # the cautious default stands in, and the record says so
        default, unscored = AUTO_DEFAULT, {"default_not_scored": default}

    def keep(m: str, rule: str, **more) -> tuple[TrainingResult, dict[str, Any]]:
        return candidates[m], {"candidates": scored, "chosen": m, "default": default, **unscored, "rule": rule,
                               **more}

    if not valid:
        return keep(next(iter(candidates)), "no candidate could be scored")
    raw_best = max(valid, key=lambda m: sign * scored[m])
    alternatives = [m for m in valid if m != default]
    if default not in valid or not alternatives:
        return keep(raw_best, "best holdout score")
    ev = spec.evaluation
    alpha = ev.promotion_alpha / len(alternatives)
    default_pred = candidates[default].model.predict(X_hold)  # predicted once for every alternative's test
    tests = {m: compare_on_holdout(metric, candidates[m].model, candidates[default].model, X_hold, y_hold, task,
                                   seed, default_pred)
             for m in alternatives}
    if any(t is None for t in tests.values()):
        return keep(raw_best, f"best holdout score ({metric} has no paired test)")
    beat = [m for m, t in tests.items() if t.shows_gain(alpha, ev.promotion_min_effect)]
    rule = (f"{default} unless beaten by the paired test at {ev.promotion_alpha}/{len(alternatives)} = "
            f"{alpha:.3g} with a gain of at least {ev.promotion_min_effect}")
    return keep(max(beat, key=lambda m: sign * scored[m]) if beat else default, rule,
                p_values={m: t.p_value for m, t in tests.items()})


@step("retrain")
def retrain_auto(spec: PipelineSpec, feature_types: dict[str, str], reference: pd.DataFrame | None,
                 X_new: pd.DataFrame, y_new: pd.Series, X_hold: pd.DataFrame, y_hold: pd.Series, metric: str, *,
                 champion: Any = None, history: list[tuple[str, pd.DataFrame]] | None = None,
                 task: str = "classification", seed: int = 0, default: str = AUTO_DEFAULT) -> TrainingResult:
    """``mode: auto``: a bounded set of recipes (:data:`AUTO_CANDIDATES`) fitted on the training rows; the one
    :func:`best_of` keeps (``default`` unless beaten) is the challenger (its ``mode`` names the recipe;
    ``info.auto`` keeps every candidate's score, the default, the rule and its p-values)."""
    candidates = {m: train_challenger(m, spec, feature_types, reference, X_new, y_new, champion=champion,
                                      history=history, task=task) for m in AUTO_CANDIDATES}
    best, why = best_of(candidates, X_hold, y_hold, task, metric, spec, seed, default)
    best.info = {**best.info, "auto": why}
    return best


@step("retrain")
def retrain(mode: str, spec: PipelineSpec, feature_types: dict[str, str], reference: pd.DataFrame | None,
            X_new: pd.DataFrame, y_new: pd.Series, *, champion: Any = None,
            history: list[tuple[str, pd.DataFrame]] | None = None, task: str = "classification") -> TrainingResult:
    return train_challenger(mode, spec, feature_types, reference, X_new, y_new, champion=champion,
                            history=history, task=task)


@step("train")
def train_first(spec: PipelineSpec, feature_types: dict[str, str], X: pd.DataFrame, y: pd.Series) -> TrainingResult:
    if spec.hooks.train:
        return run_hook("train", spec.hooks.train, RetrainInputs(spec, feature_types, X, y))
    return fit_new(spec, feature_types, X, y)


@step("refit")
def refit(trained: TrainingResult, recipe: str, spec: PipelineSpec, feature_types: dict[str, str],
          reference: pd.DataFrame | None, X: pd.DataFrame, y: pd.Series, *, champion: Any = None,
          history: list[tuple[str, pd.DataFrame]] | None = None, task: str = "classification") -> TrainingResult:
    """The winner's recipe fitted again on the whole batch (its holdout rows too) and the same training window:
    the holdout chose the recipe; the model that serves has seen every labelled row. ``recipe`` is the mode that
    won (``train`` / ``hook:train`` for a first model). The result's info keeps the selection fit's size."""
    if recipe in ("train", "hook:train"):
        inputs = RetrainInputs(spec, feature_types, X, y, task)
        result = run_hook("train", spec.hooks.train, inputs) if recipe == "hook:train" else fit_new(spec, feature_types, X, y)
    else:
        result = train_challenger(recipe, spec, feature_types, reference, X, y, champion=champion, history=history,
                                  task=task)
    chosen = {"auto": trained.info["auto"]} if "auto" in trained.info else {}  # how auto chose the recipe
    # a mode that fell back to full on the selection rows is refit as full: the record keeps why
    fell_back = {k: trained.info[k] for k in ("fallback", "fallback_reason") if k in trained.info}
    result.info = {**fell_back, **result.info, **chosen, "refit": {"rows": len(result.X), "batch_rows": len(X)},
                   "selection": {"rows": len(trained.X), "mode": trained.mode}}
    return result
