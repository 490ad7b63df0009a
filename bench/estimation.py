"""Performance estimated without labels: CalmOps' CBPE against NannyML's CBPE on the same batches.

Data with *virtual* drift (the inputs move, the relation between inputs and label stays): river's SEA, Agrawal
and Hyperplane generators with a fixed concept, and river's Bananas (5,300 real points, bundled with river, no
download). A model (scikit-learn HistGradientBoosting) is fit on reference rows, both estimators are calibrated
on other reference rows, then each batch is drawn from unseen rows with a selection that leans harder and harder
on one feature (batch i keeps a row with probability sigmoid(s_i · z), z the feature standardized, s_i from 0
to 4): the batches move away from the reference while every row keeps its true label. For each batch: the
realized accuracy and balanced accuracy, CalmOps' estimate (``calmops.detectors.estimation``), NannyML's
(accuracy; balanced accuracy as the mean of its estimated recall and specificity), and whether CalmOps' band
holds the realized value. Reported: mean absolute error of each estimator per dataset, over batches and seeds.

NannyML 0.13.1 runs in its own virtualenv on the same numbers (written to Parquet):

    uv venv bench/.venv-nannyml --python 3.11
    VIRTUAL_ENV=bench/.venv-nannyml uv pip install nannyml==0.13.1 statsmodels
    .venv/bin/python bench/estimation.py [--quick]

Results: bench/results/estimation.json and bench/results/estimation.md, only from a full run with NannyML (the
published figures); a --quick run, other --seeds, or a run without NannyML's virtualenv writes to bench/out/.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import changed, parser, results_folder

from calmops.detectors.estimation import CalibratedEstimator

HERE = Path(__file__).resolve().parent
NANNYML_PY = HERE / ".venv-nannyml" / "bin" / "python"

NANNYML_SCRIPT = r"""
import json, sys, warnings
import pandas as pd
import nannyml as nml
warnings.filterwarnings("ignore")
reference, analysis, chunk = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2]), int(sys.argv[3])
cbpe = nml.CBPE(y_pred_proba="proba", y_pred="pred", y_true="y", problem_type="classification_binary",
                metrics=["accuracy", "recall", "specificity"], chunk_size=chunk)
cbpe.fit(reference)
frame = cbpe.estimate(analysis).filter(period="analysis").to_df()
out = {m: [float(v) for v in frame[(m, "value")]] for m in ("accuracy", "recall", "specificity")}
print(json.dumps(out))
"""

# dataset -> (rows to generate, feature the selection leans on)
DATASETS = {
    "sea (river, virtual drift)": ("sea", "x1"),
    "agrawal (river, virtual drift)": ("agrawal", "salary"),
    "hyperplane (river, virtual drift)": ("hyperplane", "x0"),
    "bananas (river's real data, virtual drift)": ("bananas", "x0"),
}


def frame_of(kind: str, n: int, seed: int) -> pd.DataFrame:
    from river import datasets
    from river.datasets import synth

    if kind == "bananas":
        rows = [{"x0": x["1"], "x1": x["2"], "y": int(y)} for x, y in datasets.Bananas()]
        return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    stream = {"sea": lambda: synth.SEA(variant=0, noise=0.1, seed=seed),
              "agrawal": lambda: synth.Agrawal(classification_function=1, perturbation=0.1, seed=seed),
              "hyperplane": lambda: synth.Hyperplane(seed=seed, n_features=6, mag_change=0.0,
                                                     noise_percentage=0.1)}[kind]()
    rows = [{**({f"x{k}": v for k, v in x.items()} if kind != "agrawal" else x), "y": int(y)}
            for x, y in stream.take(n)]
    frame = pd.DataFrame(rows)
    if kind == "sea":
        frame = frame.rename(columns={"x0": "x1", "x1": "x2", "x2": "x3"})
    return frame.select_dtypes("number")


def batches(pool: pd.DataFrame, feature: str, n_batches: int, size: int, rng: np.random.Generator):
    z = (pool[feature] - pool[feature].mean()) / (pool[feature].std() or 1.0)
    for s in np.linspace(0.0, 4.0, n_batches):
        w = 1 / (1 + np.exp(-s * z.to_numpy()))
        yield pool.iloc[rng.choice(len(pool), size, replace=False, p=w / w.sum())]


def run_case(label: str, seed: int, quick: bool) -> dict:
    kind, feature = DATASETS[label]
    real = kind == "bananas"
    size = 500 if real else (2000 if quick else 5000)
    n_ref = 2000 if real else 10_000
    frame = frame_of(kind, n_ref + 20 * size, seed)
    X, y = frame.drop(columns=["y"]), frame["y"]
    half = n_ref // 2
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(X[:half], y[:half])
    proba_ref = model.predict_proba(X[half:n_ref])
    calmops = CalibratedEstimator.fit(proba_ref, y[half:n_ref], list(model.classes_), seed=seed)
    pool = frame.iloc[n_ref:].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rows, analysis = [], []
    for i, batch in enumerate(batches(pool, feature, 6 if quick else 10, size, rng)):
        Xb, yb = batch.drop(columns=["y"]), batch["y"]
        proba, pred = model.predict_proba(Xb), model.predict(Xb)
        t0 = time.perf_counter()
        est = calmops.estimate(proba, seed=seed)
        rows.append({"batch": i, "realized_accuracy": accuracy_score(yb, pred),
                     "realized_balanced_accuracy": balanced_accuracy_score(yb, pred),
                     "calmops_accuracy": est["accuracy"].value, "calmops_balanced_accuracy":
                         est["balanced_accuracy"].value,
                     "calmops_band_holds": bool(est["accuracy"].low <= accuracy_score(yb, pred) <= est["accuracy"].high),
                     "calmops_s": time.perf_counter() - t0})
        analysis.append(pd.DataFrame({"proba": proba[:, 1], "pred": pred}))
    nanny = nannyml(pd.DataFrame({"proba": proba_ref[:, 1], "pred": model.predict(X[half:n_ref]),
                                  "y": y[half:n_ref].to_numpy()}), pd.concat(analysis, ignore_index=True), size)
    if nanny:
        for r, acc, rec, spec in zip(rows, nanny["accuracy"], nanny["recall"], nanny["specificity"]):
            r.update(nannyml_accuracy=acc, nannyml_balanced_accuracy=(rec + spec) / 2)
    return {"dataset": label, "seed": seed, "batch_rows": size, "reference_rows": n_ref - half, "batches": rows}


def nannyml(reference: pd.DataFrame, analysis: pd.DataFrame, chunk: int) -> dict | None:
    if not NANNYML_PY.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        ref, ana, script = Path(tmp, "ref.parquet"), Path(tmp, "ana.parquet"), Path(tmp, "cbpe.py")
        reference.to_parquet(ref)
        analysis.to_parquet(ana)
        script.write_text(NANNYML_SCRIPT)
        done = subprocess.run([str(NANNYML_PY), str(script), str(ref), str(ana), str(chunk)], capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(cases: list[dict]) -> list[dict]:
    out = []
    for label in DATASETS:
        rows = [r for c in cases if c["dataset"] == label for r in c["batches"]]
        if not rows:
            continue
        summary = {"dataset": label, "batches": len(rows),
                   "realized_accuracy_range": [min(r["realized_accuracy"] for r in rows),
                                               max(r["realized_accuracy"] for r in rows)],
                   "calmops_band_coverage": float(np.mean([r["calmops_band_holds"] for r in rows]))}
        for who in ("calmops", "nannyml"):
            for metric in ("accuracy", "balanced_accuracy"):
                key = f"{who}_{metric}"
                if all(key in r for r in rows):
                    summary[f"{key}_mae"] = float(np.mean([abs(r[key] - r[f"realized_{metric}"]) for r in rows]))
        out.append(summary)
    return out


def markdown(summary: list[dict]) -> str:
    header = ("| dataset | batches | realized accuracy | CalmOps MAE acc. | NannyML MAE acc. | CalmOps MAE bal. acc. "
              "| NannyML MAE bal. acc. | CalmOps band holds |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]

    def f(v):
        return "–" if v is None else f"{v:.4f}"

    for s in summary:
        lo, hi = s["realized_accuracy_range"]
        lines.append(f"| {s['dataset']} | {s['batches']} | {lo:.3f}–{hi:.3f} | {f(s.get('calmops_accuracy_mae'))} | "
                     f"{f(s.get('nannyml_accuracy_mae'))} | {f(s.get('calmops_balanced_accuracy_mae'))} | "
                     f"{f(s.get('nannyml_balanced_accuracy_mae'))} | {s['calmops_band_coverage']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--quick", action="store_true",
                     help="fewer, smaller batches and one seed (results in bench/out/)")
    cli.add_argument("--seeds", type=int, default=3, help="seeds per dataset")
    args = cli.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    cases = [run_case(label, seed, args.quick) for label in DATASETS for seed in seeds]
    summary = summarize(cases)
    out = results_folder("--quick" if args.quick else "", changed(cli, args, "seeds"),
                         "" if NANNYML_PY.exists() else f"{NANNYML_PY} is missing")
    result = {"machine": platform.platform(), "python": platform.python_version(),
              "nannyml": NANNYML_PY.exists(), "summary": summary, "cases": cases}
    (out / "estimation.json").write_text(json.dumps(result, indent=1))
    (out / "estimation.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
