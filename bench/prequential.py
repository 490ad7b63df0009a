"""Prequential quality of the retraining modes under the default drift policy.

Streams cut into files of 1,000 rows: SEA with abrupt concept changes, Agrawal with gradual changes,
Hyperplane with incremental drift. Each file is first scored by the current champion (prequential
accuracy), then handed to the same decision code the flows use (drift verdict → retrain with the mode →
champion/challenger on the same holdout → promote or not). Baselines in the same run: never retrain,
retrain on every file (full), and river's ARF and Hoeffding Adaptive Tree learning row by row.
MLflow and Prefect are left out on purpose: this measures decisions, not plumbing.

    .venv/bin/python bench/prequential.py --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from calmops.core.registry import Champion, InputSchema
from calmops.core.spec import RetrainSpec, parse_spec
from calmops.generators import DriftSpec, synthetic
from calmops.tasks.drift import DriftInput, check_drift
from calmops.tasks.drift.data import build_profile
from calmops.tasks.evaluate import holdout_split, score, seed_from
from calmops.tasks.promote import decide
from calmops.tasks.retrain import fit_new, train_challenger

N_FILES, ROWS = 20, 1000
STREAMS = {
    "sea-abrupt": ("sea", DriftSpec(kind="abrupt", position=[5000, 10000, 15000], concepts=[0, 1, 2, 3])),
    "agrawal-gradual": ("agrawal", DriftSpec(kind="gradual", position=[7000, 14000], width=2000, concepts=[0, 2, 4])),
    "hyperplane-incremental": ("hyperplane", DriftSpec(kind="incremental", position=2000, width=16000)),
}
MODES = ["full", "incremental", "window", "stacking", "replay", "recalibration"]


def base_spec(mode: str, retrain_on: str = "drift") -> dict:
    return {"name": "bench", "target": "y",
            "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                      "params": {"max_iter": 60, "random_state": 0}},
            "evaluation": {"primary_metric": "accuracy"},
            "retrain": {"mode": mode, "retrain_on": retrain_on, "window_batches": 3}}


def make_files(stream: str, seed: int) -> list[pd.DataFrame]:
    generator, drift = STREAMS[stream]
    try:
        df = synthetic(generator, N_FILES * ROWS, drift=drift, seed=seed)
    except (TypeError, ValueError):  # a generator may take a single position only
        drift = DriftSpec(kind=drift.kind, position=drift.position[0] if isinstance(drift.position, list) else drift.position,
                          width=drift.width, concepts=drift.concepts[:2] if drift.concepts else None)
        df = synthetic(generator, N_FILES * ROWS, drift=drift, seed=seed)
    return [df.iloc[i * ROWS:(i + 1) * ROWS].reset_index(drop=True) for i in range(N_FILES)]


def calmops_run(files, mode: str, retrain_on: str, never: bool, state_dir: Path) -> dict:
    spec = parse_spec(base_spec(mode, retrain_on))
    cols = [c for c in files[0].columns if c != "y"]
    types = {c: ("categorical" if files[0][c].dtype == object else "numeric") for c in cols}
    from calmops.core.features import coerce_features

    def xy(f):
        return coerce_features(f[cols], types), f["y"]

    X0, y0 = xy(files[0])
    trained = fit_new(spec, types, X0, y0)
    champion = None
    version, accs, retrained = 0, [], []
    history: list[tuple[str, pd.DataFrame]] = []

    def crown(result, scores):
        nonlocal version
        version += 1
        schema = InputSchema(cols, {}, types, "y", "classification")
        profile = build_profile(result.X, types, spec, result.model)
        return Champion("bench", version, result.model, schema, profile, "",
                        {"calmops.scores": json.dumps(scores)}), result.X.assign(y=result.y.to_numpy())

    champion, reference = crown(trained, score(trained.model, X0, y0, "classification"))
    history.append(("f0", reference))
    for i, f in enumerate(files[1:], start=1):
        X, y = xy(f)
        now = score(champion.model, X, y, "classification")
        accs.append(now["accuracy"])
        if never:
            continue
        verdict = check_drift.fn(DriftInput(champion, X, y, spec, "classification", "accuracy", now, state_dir,
                                           batch_id=f"f{i}"))
        if verdict.drift_detected or retrain_on == "always":
            retrained.append(i)
            split = holdout_split(y, spec, "classification", seed_from(str(i)))
            result = train_challenger(mode, spec, types, reference, X.iloc[split.train], y.iloc[split.train],
                                      champion=champion.model, history=history, task="classification")
            hold = score(champion.model, X.iloc[split.holdout], y.iloc[split.holdout], "classification")
            new = score(result.model, X.iloc[split.holdout], y.iloc[split.holdout], "classification")
            if decide(new, hold, spec, "accuracy").promote:
                champion, reference = crown(result, new)
                (state_dir / "concept.json").unlink(missing_ok=True)
        history.append((f"f{i}", X.assign(y=y.to_numpy())))
        history = history[-50:]
    return {"accuracy": float(np.mean(accs)), "retrain_share": len(retrained) / (len(files) - 1), "curve": accs,
            "retrained": retrained}


def river_run(files, model_name: str) -> dict:
    from river import forest, tree

    model = forest.ARFClassifier(seed=0) if model_name == "arf" else tree.HoeffdingAdaptiveTreeClassifier(seed=0)
    accs = []
    for i, f in enumerate(files):
        X = f.drop(columns=["y"]).to_dict(orient="records")
        y = f["y"].tolist()
        if i:
            preds = [model.predict_one(x) for x in X]
            accs.append(float(np.mean([p == t for p, t in zip(preds, y)])))
        for x, t in zip(X, y):
            model.learn_one(x, t)
    return {"accuracy": float(np.mean(accs)), "retrain_share": None, "curve": accs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--streams", default=",".join(STREAMS))
    args = parser.parse_args()
    configs = ["never", "every_file"] + [f"calmops:{m}" for m in MODES] + ["river:hat", "river:arf"]
    default_mode = RetrainSpec().mode  # the spec's default, marked in the table
    results: dict = {}
    t0 = time.time()
    for stream in args.streams.split(","):
        per = {c: [] for c in configs}
        for seed in range(args.seeds):
            files = make_files(stream, seed)
            for config in configs:
                with tempfile.TemporaryDirectory() as tmp:
                    if config == "never":
                        r = calmops_run(files, "full", "drift", True, Path(tmp))
                    elif config == "every_file":
                        r = calmops_run(files, "full", "always", False, Path(tmp))
                    elif config.startswith("calmops:"):
                        r = calmops_run(files, config.split(":")[1], "drift", False, Path(tmp))
                    else:
                        r = river_run(files, config.split(":")[1])
                per[config].append(r)
                brief = {k: v for k, v in r.items() if k in ("accuracy", "retrain_share")}
                print(f"{time.time() - t0:7.0f}s {stream} seed {seed} {config}: {brief}", file=sys.stderr)
        results[stream] = {c: {"accuracy_mean": round(statistics.mean(r["accuracy"] for r in rs), 4),
                               "accuracy_sd": round(statistics.pstdev([r["accuracy"] for r in rs]), 4),
                               "retrain_share": None if rs[0]["retrain_share"] is None else
                               round(statistics.mean(r["retrain_share"] for r in rs), 3)}
                           for c, rs in per.items()}
        for c, rs in per.items():  # per file, mean over seeds: the curves of the plot
            results[stream][c]["curve"] = [round(float(v), 4) for v in np.mean([r["curve"] for r in rs], axis=0)]
            if rs[0]["retrain_share"] is not None:
                results[stream][c]["retrain_rate"] = [round(float(np.mean([i in r["retrained"] for r in rs])), 3)
                                                      for i in range(1, N_FILES)]
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    previous = out / "prequential.json"
    if previous.exists():  # a run over some streams keeps the others' results (same seeds only)
        old = json.loads(previous.read_text())
        if old.get("seeds") == args.seeds:
            results = {**old["results"], **results}
    (out / "prequential.json").write_text(json.dumps({"seeds": args.seeds, "files": N_FILES, "rows": ROWS,
                                                      "results": results}, indent=2))
    lines = [(f"Prequential accuracy, {N_FILES} files × {ROWS} rows, mean over {args.seeds} seeds "
              "(share of files that triggered a retrain in brackets)"), ""]
    lines.append("| configuration | " + " | ".join(results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for c in configs:
        cells = []
        for stream in results:
            r = results[stream][c]
            share = "" if r["retrain_share"] is None else f" ({r['retrain_share']:.0%})"
            cells.append(f"{r['accuracy_mean']:.3f} ± {r['accuracy_sd']:.3f}{share}")
        label = f"{c} (default)" if c == f"calmops:{default_mode}" else c
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (out / "prequential.md").write_text("\n".join(lines) + "\n")
    plot(results, f"calmops:{default_mode}", args.seeds, Path(__file__).parents[1] / "docs" / "images" / "prequential.png")
    print("\n".join(lines))


def _mark_drift(ax, stream: str) -> None:
    """Shade where the stream's concept changes (x in files: row / ROWS)."""
    drift = STREAMS[stream][1]
    positions = drift.position if isinstance(drift.position, list) else [drift.position]
    for p in positions:
        if drift.kind == "abrupt":
            ax.axvline(p / ROWS, color="0.6", lw=1, ls=":")
        elif drift.kind == "gradual":
            ax.axvspan((p - drift.width / 2) / ROWS, (p + drift.width / 2) / ROWS, color="0.9")
        else:  # incremental: the concept moves from the position on, over `width` rows
            ax.axvspan(p / ROWS, (p + drift.width) / ROWS, color="0.95")


def plot(results: dict, default: str, seeds: int, path: Path) -> None:
    """Per-file prequential accuracy (mean over seeds) of the default against the baselines, and how often
    the default retrained at each file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [s for s in results if "curve" in results[s].get(default, {})]
    if not streams:
        return
    fig, axes = plt.subplots(2, len(streams), figsize=(5 * len(streams), 5.5), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    styles = {default: ("default (" + default.split(":")[1] + ")", "C0", "-"), "every_file": ("every file", "C1", "--"),
              "river:hat": ("river HAT", "C2", "-."), "river:arf": ("river ARF", "C4", ":"), "never": ("never", "C7", ":")}
    for col, stream in enumerate(streams):
        top, bottom = axes[0][col], axes[1][col]
        for config, (label, color, dash) in styles.items():
            r = results[stream].get(config, {})
            if "curve" in r:
                files = range(1, len(r["curve"]) + 1)
                top.plot(files, r["curve"], dash, color=color, label=f"{label} {r['accuracy_mean']:.3f}")
        _mark_drift(top, stream)
        top.set_title(stream)
        top.set_ylabel("prequential accuracy")
        top.legend(fontsize=8, loc="lower left")
        rate = results[stream][default].get("retrain_rate", [])
        bottom.bar(range(1, len(rate) + 1), rate, color="C0")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("share retrained")
        bottom.set_xlabel("file")
    fig.suptitle(f"Each file scored by the champion before it is used; mean over {seeds} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
