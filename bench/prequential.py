"""Prequential quality of the default and of each retraining mode on synthetic drifting streams.

Streams cut into files of 1,000 rows: SEA with abrupt concept changes, Agrawal with gradual changes,
Hyperplane with incremental drift. Each file is first scored by the model serving at that point (prequential
accuracy), then handed to the decision code the flows use (``harness.calmops_run``: drift verdict or refresh →
challenger → paired test on the holdout → refit → promote or not). Baselines in the same run, from the same
harness as ``real_data.py``: never retrain, retrain on every file on all data so far or on the latest file, and
river's ARF and Hoeffding Adaptive Tree learning row by row.

    .venv/bin/python bench/prequential.py --seeds 3
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import parser
from harness import run_config

from calmops.core.spec import parse_spec
from calmops.generators import DriftSpec, synthetic

N_FILES, ROWS = 20, 1000
STREAMS = {
    "sea-abrupt": ("sea", DriftSpec(kind="abrupt", position=[5000, 10000, 15000], concepts=[0, 1, 2, 3])),
    "agrawal-gradual": ("agrawal", DriftSpec(kind="gradual", position=[7000, 14000], width=2000, concepts=[0, 2, 4])),
    "hyperplane-incremental": ("hyperplane", DriftSpec(kind="incremental", position=2000, width=16000)),
}
MODES = ["full", "incremental", "window", "stacking", "replay", "recalibration"]


def spec_for(mode: str | None = None):
    """The default spec (HistGradientBoosting, 60 iterations), with ``retrain.mode`` set for a mode's row."""
    return parse_spec({"name": "bench", "target": "y",
                       "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                 "params": {"max_iter": 60, "random_state": 0}},
                       **({"retrain": {"mode": mode}} if mode else {})})


def make_files(stream: str, seed: int) -> list[pd.DataFrame]:
    generator, drift = STREAMS[stream]
    try:
        df = synthetic(generator, N_FILES * ROWS, drift=drift, seed=seed)
    except (TypeError, ValueError):  # a generator may take a single position only
        drift = DriftSpec(kind=drift.kind, position=drift.position[0] if isinstance(drift.position, list) else drift.position,
                          width=drift.width, concepts=drift.concepts[:2] if drift.concepts else None)
        df = synthetic(generator, N_FILES * ROWS, drift=drift, seed=seed)
    return [df.iloc[i * ROWS:(i + 1) * ROWS].reset_index(drop=True) for i in range(N_FILES)]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seeds", type=int, default=3, help="seeds per stream (the published figures: 10)")
    cli.add_argument("--streams", default=",".join(STREAMS), help="streams, comma-separated")
    cli.add_argument("--configs", default="", help="a subset of the configurations, comma-separated (default %(default)r: all)")
    args = cli.parse_args()
    every = (["calmops", "never", "every_file_all", "every_file_latest"] + [f"calmops:{m}" for m in MODES]
             + ["river:hat", "river:arf"])
    configs = [c for c in every if c in args.configs.split(",")] if args.configs else every
    results: dict = {}
    t0 = time.time()
    for stream in args.streams.split(","):
        per = {c: [] for c in configs}
        for seed in range(args.seeds):
            files = make_files(stream, seed)
            for config in configs:
                mode = config.partition(":")[2] if config.startswith("calmops:") else None
                with tempfile.TemporaryDirectory() as tmp:
                    r = run_config(config, files, spec_for(mode), "classification", Path(tmp))
                r["accuracy"] = r.pop("score")
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
            if "retrained" in rs[0]:
                results[stream][c]["retrain_rate"] = [round(float(np.mean([i in r["retrained"] for r in rs])), 3)
                                                      for i in range(1, N_FILES)]
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    previous = out / "prequential.json"
    if previous.exists():  # a run over some streams or configurations keeps the others' (same seeds only)
        old = json.loads(previous.read_text())
        if old.get("seeds") == args.seeds:
            results = {stream: {**old["results"].get(stream, {}), **results.get(stream, {})}
                       for stream in {**old["results"], **results}}
    (out / "prequential.json").write_text(json.dumps({"seeds": args.seeds, "files": N_FILES, "rows": ROWS,
                                                      "results": results}, indent=2))
    lines = [(f"Prequential accuracy, {N_FILES} files × {ROWS} rows, mean over {args.seeds} seeds "
              "(share of files that triggered a retrain in brackets)"), ""]
    lines.append("| configuration | " + " | ".join(results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for c in [c for c in every if all(c in r for r in results.values())]:
        cells = []
        for stream in results:
            r = results[stream][c]
            share = "" if r["retrain_share"] is None else f" ({r['retrain_share']:.0%})"
            cells.append(f"{r['accuracy_mean']:.3f} ± {r['accuracy_sd']:.3f}{share}")
        label = "calmops (default: auto)" if c == "calmops" else c
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (out / "prequential.md").write_text("\n".join(lines) + "\n")
    plot(results, "calmops", args.seeds, Path(__file__).parents[1] / "docs" / "images" / "prequential.png")
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
    styles = {default: ("default", "C0", "-"), "every_file_all": ("every file, all so far", "C1", "--"),
              "every_file_latest": ("every file, latest", "C3", "--"),
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
