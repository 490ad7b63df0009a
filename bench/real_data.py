"""Prequential quality on real datasets that ship inside installed packages (no download).

Datasets (river bundles them as files): Phishing (1,250 web pages, binary), Bananas (5,300 points, binary),
ImageSegments (2,310 image regions, 7 classes), TrumpApproval (1,001 days of approval polls, regression).
Time is the order the rows ship in (TrumpApproval is chronological; for the others it is the order of the
file, the usual stream order for these benchmarks). Each dataset is cut into equal files; every file is first
scored by the model serving at that point (prequential: accuracy, or RMSE over all scored rows for regression),
then learnt from.

Configurations, all with the same model class (scikit-learn HistGradientBoosting) except river's:
- ``calmops`` — the default spec through the same decision code the flows use: drift verdict → challenger
  with the default mode on the batch's training part → paired test on the holdout → refit of the winner on the
  whole batch → concept detectors warm-started from the winner's holdout errors;
- ``never`` — the model of the first file, never retrained;
- ``every_file_all`` — refit on all rows so far after every file;
- ``every_file_latest`` — refit on the latest file only;
- ``river:arf`` / ``river:hat`` — river's adaptive random forest and Hoeffding adaptive tree, row by row.
MLflow and Prefect are left out: this measures decisions, not plumbing.

    .venv/bin/python bench/real_data.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from calmops.core.features import coerce_features
from calmops.core.registry import Champion, InputSchema
from calmops.core.spec import parse_spec
from calmops.tasks.drift import DriftInput, check_drift
from calmops.tasks.drift.concept import warm_start_concept
from calmops.tasks.drift.data import build_profile
from calmops.tasks.evaluate import holdout_split, score, seed_from
from calmops.tasks.promote import compare_on_holdout, decide, decide_refresh, refresh_due
from calmops.tasks.retrain import fit_new, modes_to_try, refit, retrain_auto, train_challenger

# dataset -> (river class, task, files)
DATASETS = {
    "phishing": ("Phishing", "classification", 5),
    "bananas": ("Bananas", "classification", 10),
    "image-segments": ("ImageSegments", "classification", 7),
    "trump-approval": ("TrumpApproval", "regression", 10),
}
CONFIGS = ["calmops", "never", "every_file_all", "every_file_latest", "river:arf", "river:hat"]


def load(name: str) -> tuple[list[pd.DataFrame], str]:
    from river import datasets

    cls, task, n_files = DATASETS[name]
    rows = [{**x, "y": y} for x, y in getattr(datasets, cls)()]
    frame = pd.DataFrame(rows)
    frame.columns = [str(c) for c in frame.columns]
    if task == "classification":
        frame["y"] = frame["y"].astype(str)
    size = len(frame) // n_files
    return [frame.iloc[i * size:(i + 1) * size].reset_index(drop=True) for i in range(n_files)], task


def spec_for(task: str, **retrain):
    model = ("sklearn.ensemble.HistGradientBoostingClassifier" if task == "classification"
             else "sklearn.ensemble.HistGradientBoostingRegressor")
    return parse_spec({"name": "bench", "target": "y", "model": {"class": model,
                                                                 "params": {"max_iter": 60, "random_state": 0}},
                       **({"retrain": retrain} if retrain else {})})


class Scorer:
    """Prequential errors over every scored row: accuracy, or RMSE for regression."""

    def __init__(self, task: str):
        self.task, self.per_file, self.sq, self.hits, self.n = task, [], 0.0, 0.0, 0

    def add(self, y_true, y_pred) -> None:
        t, p = np.asarray(y_true), np.asarray(y_pred)
        if self.task == "classification":
            hits = float(np.sum(t == p))
            self.hits += hits
            self.per_file.append(hits / len(t))
        else:
            sq = float(np.sum((t.astype(float) - p.astype(float)) ** 2))
            self.sq += sq
            self.per_file.append(float(np.sqrt(sq / len(t))))
        self.n += len(t)

    def total(self) -> float:
        return self.hits / self.n if self.task == "classification" else float(np.sqrt(self.sq / self.n))


def calmops_run(files: list[pd.DataFrame], task: str, state_dir: Path, mode: str | None = None) -> dict:
    spec = spec_for(task, **({"mode": mode} if mode else {}))
    metric = "balanced_accuracy" if task == "classification" else "rmse"
    cols = [c for c in files[0].columns if c != "y"]
    types = dict.fromkeys(cols, "numeric")

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
    split = holdout_split(y0, spec, task, seed_from("f0"))
    first = fit_new(spec, types, X0.iloc[split.train], y0.iloc[split.train])
    sel = score(first.model, X0.iloc[split.holdout], y0.iloc[split.holdout], task)
    whole = refit.fn(first, "train", spec, types, None, X0, y0, task=task)
    champion, reference = crown(whole.model, sel, whole.X, whole.y)
    warm_start_concept(state_dir, version, first.model, X0.iloc[split.holdout], y0.iloc[split.holdout], task, spec,
                       sel.get("rmse"))
    history = [("f0", X0.assign(y=y0.to_numpy()))]
    scorer, retrained, promoted, modes_used, reasons = Scorer(task), [], [], [], {}
    rows_then = len(X0)  # rows kept when the champion was trained (or a refresh last tried)
    for i, f in enumerate(files[1:], start=1):
        X, y = xy(f)
        scorer.add(y, champion.model.predict(X))
        now = score(champion.model, X, y, task)
        verdict = check_drift.fn(DriftInput(champion, X, y, spec, task, metric, now, state_dir, batch_id=f"f{i}"))
        rows_now = sum(len(h) for _, h in history) + len(X)
        refresh = not verdict.drift_detected and refresh_due(rows_now, rows_then, spec.retrain.refresh_growth)
        if verdict.drift_detected or refresh:
            retrained.append(i)
            reasons[i] = verdict.reason if verdict.drift_detected else "refresh"
            rows_then = rows_now if refresh else rows_then
            seed = seed_from(f"f{i}")
            split = holdout_split(y, spec, task, seed)
            Xh, yh = X.iloc[split.holdout], y.iloc[split.holdout]
            won = False
            for recipe in ["history"] if refresh else modes_to_try(spec):
                Xt, yt = X.iloc[split.train], y.iloc[split.train]
                if recipe == "auto":
                    result = retrain_auto.fn(spec, types, reference, Xt, yt, Xh, yh, metric, champion=champion.model,
                                             history=history, task=task)
                else:
                    result = train_challenger(recipe, spec, types, reference, Xt, yt, champion=champion.model,
                                              history=history, task=task)
                modes_used.append(result.mode)
                new, old = score(result.model, Xh, yh, task), score(champion.model, Xh, yh, task)
                paired = compare_on_holdout(metric, result.model, champion.model, Xh, yh, task, seed)
                if (decide_refresh if refresh else decide)(new, old, spec, metric, paired).promote:
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
        history = [*history, (f"f{i}", X.assign(y=y.to_numpy()))][-spec.retrain.history_max_batches:]
    return {"score": scorer.total(), "curve": scorer.per_file, "retrained": retrained, "promoted": promoted,
            "modes": modes_used, "reasons": reasons, "retrain_share": len(retrained) / (len(files) - 1)}


def baseline_run(files: list[pd.DataFrame], task: str, how: str) -> dict:
    spec = spec_for(task)
    cols = [c for c in files[0].columns if c != "y"]
    types = dict.fromkeys(cols, "numeric")
    scorer = Scorer(task)
    seen = [files[0]]
    model = fit_new(spec, types, files[0][cols], files[0]["y"]).model
    for i, f in enumerate(files[1:], start=1):
        scorer.add(f["y"], model.predict(f[cols]))
        seen.append(f)
        if how == "never":
            continue
        data = pd.concat(seen, ignore_index=True) if how == "all" else f
        model = fit_new(spec, types, data[cols], data["y"]).model
    return {"score": scorer.total(), "curve": scorer.per_file, "retrain_share": None if how == "never" else 1.0}


def river_run(files: list[pd.DataFrame], task: str, name: str) -> dict:
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
    return {"score": scorer.total(), "curve": scorer.per_file, "retrain_share": None}


def run_dataset(name: str, configs: list[str]) -> dict:
    files, task = load(name)
    out = {"task": task, "files": len(files), "rows_per_file": len(files[0]),
           "metric": "accuracy" if task == "classification" else "rmse"}
    for config in configs:
        t = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            if config.startswith("calmops"):
                r = calmops_run(files, task, Path(tmp), config.partition(":")[2] or None)
            elif config.startswith("river:"):
                r = river_run(files, task, config.split(":")[1])
            else:
                r = baseline_run(files, task, {"never": "never", "every_file_all": "all",
                                               "every_file_latest": "latest"}[config])
        r["seconds"] = round(time.time() - t, 1)
        r["score"] = round(r["score"], 4)
        r["curve"] = [round(v, 4) for v in r["curve"]]
        out[config] = r
        print(f"{name} {config}: {r['score']:.4f} ({r['seconds']} s)"
              + (f", retrained {r['retrain_share']:.0%} {r['modes']}" if config.startswith("calmops") else ""),
              file=sys.stderr)
    return out


def table(results: dict, configs: list[str]) -> str:
    lines = ["| dataset (files × rows) | metric | " + " | ".join(configs) + " |", "|---|---|" + "---|" * len(configs)]
    for name, r in results.items():
        cells = []
        for c in configs:
            cell = f"{r[c]['score']:.3f}"
            if c.startswith("calmops"):
                cell += f" ({r[c]['retrain_share']:.0%} retrained)"
            cells.append(cell)
        lines.append(f"| {name} ({r['files']} × {r['rows_per_file']}) | {r['metric']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    styles = {"calmops": ("C0", "-"), "never": ("C7", ":"), "every_file_all": ("C1", "--"),
              "every_file_latest": ("C3", "--"), "river:arf": ("C4", ":"), "river:hat": ("C2", "-.")}
    for ax, (name, r) in zip(axes[0], results.items()):
        for c, (color, dash) in styles.items():
            files = range(1, len(r[c]["curve"]) + 1)
            ax.plot(files, r[c]["curve"], dash, color=color, label=f"{c} {r[c]['score']:.3f}")
        for i in r["calmops"].get("promoted", []):
            ax.axvline(i, color="C0", alpha=0.15, lw=4)
        ax.set_title(name)
        ax.set_xlabel("file")
        ax.set_ylabel(r["metric"] + " (per file)")
        ax.legend(fontsize=7)
    fig.suptitle("Real data, prequential per file (shaded: files where the default promoted a new model)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--also", default="", help="more retrain modes to run as calmops:<mode>, e.g. stacking")
    args = parser.parse_args()
    configs = CONFIGS[:1] + [f"calmops:{m}" for m in args.also.split(",") if m] + CONFIGS[1:]
    t0 = time.time()
    results = {name: run_dataset(name, configs) for name in args.datasets.split(",")}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "real_data.json").write_text(json.dumps(results, indent=2))
    text = table(results, configs)
    (out / "real_data.md").write_text(text + "\n")
    plot(results, Path(__file__).parents[1] / "docs" / "images" / "real_data.png")
    print(text)
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
