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

import pandas as pd
from common import parser
from harness import gap_test, run_config

from calmops.core.spec import parse_spec

# dataset -> (river class, task, files)
DATASETS = {
    "phishing": ("Phishing", "classification", 5),
    "bananas": ("Bananas", "classification", 10),
    "image-segments": ("ImageSegments", "classification", 7),
    "trump-approval": ("TrumpApproval", "regression", 10),
}
CONFIGS = ["calmops", "never", "every_file_all", "every_file_latest", "river:arf", "river:hat"]
SIMPLE = ["never", "every_file_all", "every_file_latest"]  # the simple baselines the default must match


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


def run_dataset(name: str, configs: list[str]) -> dict:
    files, task = load(name)
    out = {"task": task, "files": len(files), "rows_per_file": len(files[0]),
           "metric": "accuracy" if task == "classification" else "rmse"}
    for config in configs:
        t = time.time()
        mode = config.partition(":")[2] if config.startswith("calmops:") else None
        with tempfile.TemporaryDirectory() as tmp:
            r = run_config(config, files, spec_for(task, **({"mode": mode} if mode else {})), task, Path(tmp))
        r["seconds"] = round(time.time() - t, 1)
        r["score"] = round(r["score"], 4)
        r["curve"] = [round(v, 4) for v in r["curve"]]
        out[config] = r
        print(f"{name} {config}: {r['score']:.4f} ({r['seconds']} s)"
              + (f", retrained {r['retrain_share']:.0%} {r['modes']}" if config.startswith("calmops") else ""),
              file=sys.stderr)
    sign = 1 if task == "classification" else -1
    best = max(SIMPLE, key=lambda c: sign * out[c]["score"])
    out["against_best_simple"] = {"baseline": best, **gap_test(task, out["calmops"], out[best])}
    for r in (out[c] for c in configs):  # the rows were kept for the test only
        r.pop("y"), r.pop("pred")
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
    lines += ["", "| dataset | best simple baseline | default − baseline | test on the same scored rows | p (default worse) |",
              "|---|---|---|---|---|"]
    for name, r in results.items():
        g = r["against_best_simple"]
        lines.append(f"| {name} | {g['baseline']} {r[g['baseline']]['score']:.3f} | {g['gain']:+.4f} "
                     f"({'same' if abs(g['gain']) < 5e-5 else 'better' if g['gain'] > 0 else 'worse'}) | {g['test']}, {g['rows']} rows | {g['p_worse']:.3g} |")
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
    cli = parser(__doc__)
    cli.add_argument("--datasets", default=",".join(DATASETS), help="datasets, comma-separated")
    cli.add_argument("--also", default="", help="more retrain modes to run as calmops:<mode>, e.g. stacking (default %(default)r: none)")
    args = cli.parse_args()
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
