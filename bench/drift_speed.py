"""Drift detection speed: CalmOps (default suite) vs a bare numpy KS floor vs Evidently 0.7.23.

Frames: 100k x 101 (100 numeric + 1 categorical) and 300k x 51 (50 numeric + 1 categorical),
reference vs batch of the same size, seeded. Reports the median of repeats, peak Python memory
(tracemalloc) relative to the two frames' size, and a cost curve over rows and columns. Evidently
runs in its own virtualenv (bench/.venv-evidently) on the same frames written to Parquet. The published
figures used Evidently 0.7.23; it does not import under pandas 3, hence the pins:

    python3.11 -m venv bench/.venv-evidently
    bench/.venv-evidently/bin/pip install evidently==0.7.23 pandas==2.3.3 pyarrow==25.0.1
    .venv/bin/python bench/drift_speed.py
    .venv/bin/python bench/drift_speed.py --quick    # small sizes, a smoke run

Results: bench/results/drift_speed.json and bench/results/drift_speed.md, only from a full run that timed
Evidently on every case (the published figures). A --quick run, or one without Evidently (its virtualenv
missing, ``--no-evidently``, or Evidently failing), writes to bench/out/ (git-ignored) instead and says so.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import parser, results_folder

from calmops.detectors import DriftConfig, ReferenceProfile, compare

HERE = Path(__file__).resolve().parent
EVIDENTLY_PY = HERE / ".venv-evidently" / "bin" / "python"
EVIDENTLY_SETUP = "\n".join(line.strip() for line in __doc__.splitlines()  # the docstring's setup commands
                            if line.startswith("    ") and ".venv-evidently" in line)

EVIDENTLY_SCRIPT = r"""
import sys, time, json
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2]); repeats = int(sys.argv[3])
times = []
for _ in range(repeats):
    t = time.perf_counter()
    Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur)
    times.append(time.perf_counter() - t)
print(json.dumps({"version": evidently.__version__, "times": times}))
"""


def make_frames(n: int, n_numeric: int, seed: int, shift_cols: int = 5):
    rng = np.random.default_rng(seed)
    cols = {f"n{i}": rng.standard_normal(n) for i in range(n_numeric)}
    ref = pd.DataFrame(cols)
    ref["cat"] = rng.choice(list("abcdefgh"), n)
    batch = pd.DataFrame(
        {f"n{i}": rng.standard_normal(n) + (0.3 if i < shift_cols else 0.0) for i in range(n_numeric)}
    )
    batch["cat"] = rng.choice(list("abcdefgh"), n)
    return ref, batch


def frame_bytes(*frames) -> int:
    return int(sum(f.memory_usage(deep=True).sum() for f in frames))


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def numpy_ks_floor(ref: pd.DataFrame, batch: pd.DataFrame) -> None:
    """The bare statistic: sort both sides, evaluate both ECDFs on the pooled points, take the max gap."""
    for c in ref.columns:
        if c == "cat":
            continue
        a, b = np.sort(ref[c].to_numpy()), np.sort(batch[c].to_numpy())
        allv = np.concatenate([a, b])
        np.max(
            np.abs(np.searchsorted(a, allv, "right") / a.size - np.searchsorted(b, allv, "right") / b.size)
        )


def calmops_run(ref, batch, cfg, types):
    profile = ReferenceProfile.build(ref, types, cfg)
    return compare(profile, batch, cfg)


def measure_case(name, n, n_numeric, repeats, evidently: bool):
    ref, batch = make_frames(n, n_numeric, seed=n + n_numeric)
    cfg = DriftConfig()
    types = {c: ("categorical" if c == "cat" else "numeric") for c in ref.columns}
    profile = ReferenceProfile.build(ref, types, cfg)
    t_build, _ = median_time(lambda: ReferenceProfile.build(ref, types, cfg), repeats)
    t_compare, _ = median_time(lambda: compare(profile, batch, cfg), repeats)
    t_floor, _ = median_time(lambda: numpy_ks_floor(ref, batch), repeats)
    tracemalloc.start()
    rep = calmops_run(ref, batch, cfg, types)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "case": name,
        "rows": n,
        "columns": n_numeric + 1,
        "frames_mb": frame_bytes(ref, batch) / 1e6,
        "calmops_profile_s": t_build,
        "calmops_compare_s": t_compare,
        "calmops_total_s": t_build + t_compare,
        "numpy_ks_floor_s": t_floor,
        "peak_mb": peak / 1e6,
        "peak_vs_frames": peak / frame_bytes(ref, batch),
        "drifted_features": len(rep.drifted_features),
        "expected_drifted": 5,
    }
    out["ratio_total_vs_floor"] = out["calmops_total_s"] / t_floor
    out["ratio_compare_vs_floor"] = t_compare / t_floor
    if evidently and EVIDENTLY_PY.exists():
        with tempfile.TemporaryDirectory() as tmp:
            rp, bp = Path(tmp, "ref.parquet"), Path(tmp, "cur.parquet")
            ref.to_parquet(rp)
            batch.to_parquet(bp)
            r = subprocess.run(
                [str(EVIDENTLY_PY), "-c", EVIDENTLY_SCRIPT, str(rp), str(bp), str(max(1, repeats // 2))],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            if r.returncode == 0:
                timed = json.loads(r.stdout.strip().splitlines()[-1])
                out["evidently_version"] = timed["version"]
                out["evidently_s"] = statistics.median(timed["times"])
                out["ratio_evidently_vs_calmops"] = out["evidently_s"] / out["calmops_total_s"]
            else:
                out["evidently_error"] = r.stderr[-500:]
    return out


def cost_curve(rows_list, cols_list, repeats):
    cfg = DriftConfig()
    curve = []
    for n in rows_list:
        ref, batch = make_frames(n, 10, seed=n)
        types = {c: ("categorical" if c == "cat" else "numeric") for c in ref.columns}
        prof = ReferenceProfile.build(ref, types, cfg)
        t, _ = median_time(partial(compare, prof, batch, cfg), repeats)
        tb, _ = median_time(partial(ReferenceProfile.build, ref, types, cfg), repeats)
        curve.append({"axis": "rows", "rows": n, "columns": 11, "compare_s": t, "profile_s": tb})
    for k in cols_list:
        ref, batch = make_frames(10_000, k, seed=k)
        types = {c: ("categorical" if c == "cat" else "numeric") for c in ref.columns}
        prof = ReferenceProfile.build(ref, types, cfg)
        t, _ = median_time(partial(compare, prof, batch, cfg), repeats)
        tb, _ = median_time(partial(ReferenceProfile.build, ref, types, cfg), repeats)
        curve.append({"axis": "columns", "rows": 10_000, "columns": k + 1, "compare_s": t, "profile_s": tb})
    return curve


def _or_dash(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def to_markdown(res: dict) -> str:
    lines = [
        "# Drift detection speed",
        "",
        (
            f"Machine: {res['machine']}. Default suite (KS per numeric column, chi2 for the categorical, Holm). "
            f"Median of {res['repeats']} repeats. Reference and batch of the same size; 5 numeric columns shifted by 0.3 sd."
        ),
        "",
        "| case | frames MB | profile s | compare s | total s | numpy KS floor s | total / floor | peak MB (tracemalloc) | peak / frames | Evidently s | Evidently / CalmOps | drifted (expected 5) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cases"]:
        lines.append(
            f"| {c['rows']:,} x {c['columns']} | {c['frames_mb']:.0f} | {c['calmops_profile_s']:.2f} | {c['calmops_compare_s']:.2f} | "
            f"{c['calmops_total_s']:.2f} | {c['numpy_ks_floor_s']:.2f} | {c['ratio_total_vs_floor']:.1f} | {c['peak_mb']:.0f} | "
            f"{c['peak_vs_frames']:.2f} | {_or_dash(c.get('evidently_s'))} | "
            f"{_or_dash(c.get('ratio_evidently_vs_calmops'))} | "
            f"{c['drifted_features']} |"
        )
    lines += [
        "",
        "## Cost curve (profile built once; compare per batch)",
        "",
        "| axis | rows | columns | profile s | compare s |",
        "|---|---|---|---|---|",
    ]
    for p in res["curve"]:
        lines.append(
            f"| {p['axis']} | {p['rows']:,} | {p['columns']} | {p['profile_s']:.3f} | {p['compare_s']:.3f} |"
        )
    if res.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def without_evidently(res: dict, asked: bool) -> str:
    """Why the run has no Evidently figures (empty when every case has them)."""
    if not asked:
        return "--no-evidently"
    if not EVIDENTLY_PY.exists():
        return f"{EVIDENTLY_PY} is missing"
    failed = [c["case"] for c in res["cases"] if "evidently_s" not in c]
    return f"Evidently failed on {', '.join(failed)} (see evidently_error in the JSON)" if failed else ""


def main():
    cli = parser(__doc__)
    cli.add_argument("--quick", action="store_true", help="small sizes, a smoke run (results in bench/out/)")
    cli.add_argument("--repeats", type=int, default=3, help="repeats per timing (Evidently: half); medians")
    cli.add_argument("--no-evidently", action="store_true",
                     help="CalmOps and the numpy floor only (results go to bench/out/)")
    args = cli.parse_args()
    if not args.no_evidently and not EVIDENTLY_PY.exists():
        print(f"{EVIDENTLY_PY} is missing: no Evidently figures in this run. Create it with:\n"
              f"{EVIDENTLY_SETUP}", file=sys.stderr)
    if args.quick:
        cases = [("small-a", 10_000, 100), ("small-b", 30_000, 50)]
        rows, cols = [1_000, 10_000, 100_000], [10, 100]
    else:
        cases = [("100k x 101", 100_000, 100), ("300k x 51", 300_000, 50)]
        rows, cols = [1_000, 10_000, 100_000, 1_000_000], [10, 50, 100, 500]
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "repeats": args.repeats,
        "cases": [measure_case(n, r, c, args.repeats, not args.no_evidently) for n, r, c in cases],
        "curve": cost_curve(rows, cols, args.repeats),
        "notes": (
            ["quick run: smaller sizes than the target 100k x 101 and 300k x 51"] if args.quick else []
        ),
    }
    missing = without_evidently(res, not args.no_evidently)
    if missing:
        res["notes"].append(f"no Evidently figures: {missing}")
    out = results_folder("--quick" if args.quick else "", missing)
    (out / "drift_speed.json").write_text(json.dumps(res, indent=1))
    (out / "drift_speed.md").write_text(to_markdown(res))
    print(to_markdown(res))


if __name__ == "__main__":
    main()
