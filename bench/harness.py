"""The prequential harness shared by ``real_data.py`` and ``prequential.py``: one loop for CalmOps' decisions and
one for each baseline, every file scored by the model serving at that point before anything learns from it.

``calmops_run`` takes the flows' own decision steps in the flows' order (drift verdict, refresh or follow-up →
challenger → paired test on the holdout → refit of the winner on the whole batch → concept detectors warm-started
from the winner's holdout errors). MLflow and Prefect are left out on purpose: this measures decisions, not plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from calmops.core.features import coerce_features
from calmops.core.metrics import paired_test
from calmops.core.registry import Champion, InputSchema
from calmops.core.spec import PipelineSpec
from calmops.tasks.drift import DriftInput, check_drift
from calmops.tasks.drift.concept import warm_start_concept
from calmops.tasks.drift.data import build_profile
from calmops.tasks.evaluate import compare_on_holdout, holdout_split, primary_metric, score, seed_from
from calmops.tasks.promote import decide, decide_refresh, follow_up_due, refresh_due
from calmops.tasks.retrain import auto_default, fit_new, modes_to_try, refit, retrain_auto, train_challenger

BASELINES = {"never": "never", "every_file_all": "all", "every_file_latest": "latest"}


class Scorer:
    """Prequential errors over every scored row: accuracy, or RMSE for regression. Keeps the rows' labels and
    predictions so two runs can be compared row by row (:func:`gap_test`)."""

    def __init__(self, task: str):
        self.task, self.per_file, self.y, self.pred = task, [], [], []

    def add(self, y_true, y_pred) -> None:
        t, p = np.asarray(y_true), np.asarray(y_pred)
        if self.task == "classification":
            self.per_file.append(float(np.mean(t == p)))
        else:
            self.per_file.append(float(np.sqrt(np.mean((t.astype(float) - p.astype(float)) ** 2))))
        self.y.append(t)
        self.pred.append(p)

    def total(self) -> float:
        t, p = np.concatenate(self.y), np.concatenate(self.pred)
        if self.task == "classification":
            return float(np.mean(t == p))
        return float(np.sqrt(np.mean((t.astype(float) - p.astype(float)) ** 2)))

    def result(self, **extra) -> dict:
        return {"score": self.total(), "curve": self.per_file, "y": np.concatenate(self.y).tolist(),
                "pred": np.concatenate(self.pred).tolist(), **extra}


def gap_test(task: str, a: dict, b: dict) -> dict:
    """Is run ``a`` worse than run ``b`` on the same scored rows? McNemar's exact test on accuracy, a paired
    bootstrap on RMSE; ``p_worse`` is one-sided (H0: ``a`` is not worse)."""
    metric = "accuracy" if task == "classification" else "rmse"
    t = paired_test(metric, np.asarray(a["y"]), np.asarray(a["pred"]), np.asarray(b["pred"]))
    return {"test": t.test, "rows": t.rows, "gain": t.gain, "p_worse": t.p_worse}


def feature_types(files: list[pd.DataFrame], target: str = "y") -> dict[str, str]:
    return {c: ("categorical" if files[0][c].dtype == object else "numeric") for c in files[0].columns if c != target}


def calmops_run(files: list[pd.DataFrame], spec: PipelineSpec, task: str, state_dir: Path,
                keys: list[str] | None = None) -> dict:
    """The default (or ``spec``'s) decisions over ``files``: the first file trains the first model (selected on
    its holdout, refit on all its rows); every later file is scored, then checked and maybe retrained. ``keys``
    stand for the files' sha256, from which the flows derive each file's holdout split and seeds (default
    ``f0``, ``f1``, …); with the real digests the decisions are the stream flow's own
    (tests/flows/test_bench_harness.py)."""
    keys = keys or [f"f{i}" for i in range(len(files))]
    metric = primary_metric(spec, task)
    types = feature_types(files)
    cols = list(types)

    def xy(f):
        return coerce_features(f[cols], types), f["y"]

    version = 0

    def crown(model, scores, X, y):
        nonlocal version
        version += 1
        schema = InputSchema(cols, {}, types, "y", task)
        return (Champion("bench", version, model, schema, build_profile(X, types, spec, model), "",
                         {"calmops.scores": json.dumps(scores)}),
                X.assign(y=y.to_numpy()))

    X0, y0 = xy(files[0])
    split = holdout_split(y0, spec, task, seed_from(keys[0], spec.seed))
    first = fit_new(spec, types, X0.iloc[split.train], y0.iloc[split.train])
    sel = score(first.model, X0.iloc[split.holdout], y0.iloc[split.holdout], task)
    whole = refit.fn(first, "train", spec, types, None, X0, y0, task=task)
    champion, reference = crown(whole.model, sel, whole.X, whole.y)
    warm_start_concept(state_dir, version, first.model, X0.iloc[split.holdout], y0.iloc[split.holdout], task, spec,
                       sel.get("rmse"))
    history = [(keys[0], X0.assign(y=y0.to_numpy()))]
    scorer, retrained, promoted, modes_used, reasons = Scorer(task), [], [], [], {}
    rows_then = len(X0)  # rows kept when the champion was trained (or a refresh last tried)
    always = spec.retrain.retrain_on == "always"
    follow = False  # the champion was promoted during a change: one follow-up on the next file
    for i, f in enumerate(files[1:], start=1):
        X, y = xy(f)
        scorer.add(y, champion.model.predict(X))
        now = score(champion.model, X, y, task)
        verdict = check_drift.fn(DriftInput(champion, X, y, spec, task, metric, now, state_dir, batch_id=keys[i]))
        rows_now = sum(len(h) for _, h in history) + len(X)
        drift = verdict.drift_detected or always
        refresh = not drift and refresh_due(rows_now, rows_then, spec.retrain.refresh_growth, now, task)
        follow_up, follow = follow and not drift and not refresh, False
        if drift or refresh or follow_up:
            retrained.append(i)
            reasons[i] = (verdict.reason or "retrain_on: always") if drift else "refresh" if refresh else "follow-up"
            rows_then = rows_now if refresh else rows_then
            seed = seed_from(keys[i], spec.seed)
            split = holdout_split(y, spec, task, seed, changing=verdict.real_concept_drift)
            Xh, yh = X.iloc[split.holdout], y.iloc[split.holdout]
            Xt, yt = X.iloc[split.train], y.iloc[split.train]
            won = False
            for recipe in ["history"] if refresh else modes_to_try(spec):
                if recipe == "auto":
                    result = retrain_auto.fn(spec, types, reference, Xt, yt, Xh, yh, metric, champion=champion.model,
                                             history=history, task=task, seed=seed,
                                             default=auto_default(verdict.real_concept_drift))
                else:
                    result = train_challenger(recipe, spec, types, reference, Xt, yt, champion=champion.model,
                                              history=history, task=task)
                modes_used.append(result.mode)
                new, old = score(result.model, Xh, yh, task), score(champion.model, Xh, yh, task)
                paired = compare_on_holdout(metric, result.model, champion.model, Xh, yh, task, seed)
                if (decide_refresh if refresh else decide)(new, old, spec, metric, paired).promote:
                    follow = not (refresh or follow_up) and follow_up_due(new, champion.scores_at_promotion, spec,
                                                                          metric)
                    whole = refit.fn(result, result.mode if recipe == "auto" else recipe, spec, types, reference,
                                     X, y, champion=champion.model, history=history, task=task)
                    champion, reference = crown(whole.model, new, whole.X, whole.y)
                    warm_start_concept(state_dir, version, result.model, Xh, yh, task, spec, new.get("rmse"))
                    promoted.append(i)
                    rows_then = rows_now
                    won = True
                    break
            if not won and verdict.concept and verdict.concept.alarm:
                warm_start_concept(state_dir, champion.version, champion.model, X, y, task, spec,
                                   champion.scores_at_promotion.get("rmse"))
        history = [*history, (keys[i], X.assign(y=y.to_numpy()))][-spec.retrain.history_max_batches:]
    return scorer.result(retrained=retrained, promoted=promoted, modes=modes_used, reasons=reasons,
                         retrain_share=len(retrained) / (len(files) - 1))


def baseline_run(files: list[pd.DataFrame], spec: PipelineSpec, task: str, how: str) -> dict:
    """``never``: the first file's model; ``all``: refit on every row so far after each file; ``latest``: refit
    on the latest file only. Same model class and parameters as ``spec``."""
    types = feature_types(files)
    cols = list(types)

    def xy(f):
        return coerce_features(f[cols], types), f["y"]

    scorer = Scorer(task)
    seen = [files[0]]
    model = fit_new(spec, types, *xy(files[0])).model
    for f in files[1:]:
        X, y = xy(f)
        scorer.add(y, model.predict(X))
        seen.append(f)
        if how == "never":
            continue
        model = fit_new(spec, types, *xy(pd.concat(seen, ignore_index=True) if how == "all" else f)).model
    return scorer.result(retrain_share=None if how == "never" else 1.0)


def river_run(files: list[pd.DataFrame], task: str, name: str) -> dict:
    """river's adaptive random forest (``arf``) or Hoeffding adaptive tree (``hat``), learning row by row."""
    from river import forest, tree

    if task == "classification":
        model = forest.ARFClassifier(seed=0) if name == "arf" else tree.HoeffdingAdaptiveTreeClassifier(seed=0)
    else:
        model = forest.ARFRegressor(seed=0) if name == "arf" else tree.HoeffdingAdaptiveTreeRegressor(seed=0)
    scorer = Scorer(task)
    for i, f in enumerate(files):
        X = f.drop(columns=["y"]).to_dict(orient="records")
        y = f["y"].tolist()
        if i:
            preds = [model.predict_one(x) for x in X]
            scorer.add(y, [p if p is not None else (y[0] if task == "classification" else 0.0) for p in preds])
        for x, t in zip(X, y):
            model.learn_one(x, t)
    return scorer.result(retrain_share=None)


def run_config(config: str, files: list[pd.DataFrame], spec: PipelineSpec, task: str, state_dir: Path) -> dict:
    """One configuration by name: ``calmops`` (``spec``), a baseline of :data:`BASELINES`, or ``river:arf|hat``."""
    if config.startswith("calmops"):
        return calmops_run(files, spec, task, state_dir)
    if config.startswith("river:"):
        return river_run(files, task, config.split(":")[1])
    return baseline_run(files, spec, task, BASELINES[config])
