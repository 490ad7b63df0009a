"""Label-free signals on files that did not change: how often is an unchanged file called drift?

A model version's label-free reference (its predictions and confidences, compared with each file without labels)
can be taken two ways: the outputs of the model that serves on the rows it was fit on (how CalmOps took it before),
or the outputs of the fit the holdout judged on those holdout rows, rows it never learnt, each file then read
through that fit (how CalmOps takes it now). For each model and seed: SEA concept 0 (x1 + x2 <= 8) with 10 % label
noise, a first labelled file split as a pipeline splits it (``evaluation.holdout``), then unchanged files and one
file whose x1 is scaled by 0.6 (its predictions move). Reported per model: unchanged files called drift, and moved
files called drift, under each reference.

    .venv/bin/python bench/label_free.py [--seeds 10] [--files 5] [--rows 1000]

Results: bench/results/label_free.json and bench/results/label_free.md (other options write to bench/out/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import changed, parser, results_folder

from calmops.core.spec import parse_spec
from calmops.tasks.drift.data import build_profile, label_free_drift
from calmops.tasks.evaluate import holdout_split
from calmops.tasks.retrain import fit_new

MODELS = {
    "gradient boosting (default)": None,
    "random forest": {"class": "sklearn.ensemble.RandomForestClassifier",
                      "params": {"n_estimators": 30, "random_state": 0}},
    "decision tree": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"random_state": 0}},
    "logistic regression": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
}
FEATURES = {"x1": "numeric", "x2": "numeric", "x3": "numeric"}


def sea(n: int, seed: int, noise: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, size=(n, 3))
    y = (X[:, 0] + X[:, 1] <= 8).astype(int)
    y = np.where(rng.random(n) < noise, 1 - y, y)
    return pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y": y})


def measure(model: dict | None, seeds: int, files: int, rows: int) -> dict[str, int]:
    spec = parse_spec({"name": "bench", "target": "y", **({"model": model} if model else {})})
    counts = dict.fromkeys(("unchanged", "training_rows", "holdout", "moved", "moved_training_rows",
                            "moved_holdout"), 0)
    for seed in range(seeds):
        first = sea(rows, 1000 * seed)
        X, y = first[list(FEATURES)], first["y"]
        split = holdout_split(y, spec, "classification", seed)
        selected = fit_new(spec, FEATURES, X.iloc[split.train], y.iloc[split.train]).model
        served = fit_new(spec, FEATURES, X, y).model
        before = build_profile(X, FEATURES, spec, served)  # the refit model's outputs on its training rows
        now = build_profile(X, FEATURES, spec, selected, X.iloc[split.holdout])
        for k in range(1, files + 2):
            batch = sea(rows, 1000 * seed + k)[list(FEATURES)]
            moved = k == files + 1
            if moved:
                batch = batch.assign(x1=batch["x1"] * 0.6)
            counts["moved" if moved else "unchanged"] += 1
            prefix = "moved_" if moved else ""
            counts[f"{prefix}training_rows"] += label_free_drift(before, served, batch, spec).drift
            counts[f"{prefix}holdout"] += label_free_drift(now, selected, batch, spec).drift
    return counts


def markdown(results: dict[str, dict[str, int]]) -> str:
    lines = [("| model | unchanged files | drift: training-rows reference | drift: holdout reference | moved files "
              "| drift: training-rows | drift: holdout |"), "|---|---|---|---|---|---|---|"]
    for name, c in results.items():
        lines.append(f"| {name} | {c['unchanged']} | {c['training_rows']} | {c['holdout']} | {c['moved']} | "
                     f"{c['moved_training_rows']} | {c['moved_holdout']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seeds", type=int, default=10, help="first files (each with its own split)")
    cli.add_argument("--files", type=int, default=5, help="unchanged files after each first file")
    cli.add_argument("--rows", type=int, default=1000, help="rows per file")
    args = cli.parse_args()
    out = results_folder(changed(cli, args, "seeds", "files", "rows"))
    results = {}
    for name, model in MODELS.items():
        results[name] = measure(model, args.seeds, args.files, args.rows)
        print(name, results[name], flush=True)
    (out / "label_free.json").write_text(json.dumps({"seeds": args.seeds, "files": args.files, "rows": args.rows,
                                                     "results": results}, indent=1))
    (out / "label_free.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
