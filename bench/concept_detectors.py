"""Concept detectors on a champion's 0/1 errors: false alarms on a stable error rate, detection of a rise.

    .venv/bin/python bench/concept_detectors.py [--trials 50]

Each trial warm-starts a detector the way a pipeline does (``ConceptDriftMonitor.warm_started`` on the
champion's errors on a 400-row holdout), then feeds one 1,000-row file. *Stable*: the file's error rate is the
holdout's; *rise*: 15 points higher. A near-perfect champion (0.3 % errors) is where DDM's reference error
rate and deviation start at 0, so its first error after 30 clean rows alarms. Reports each detector's share of
stable files that alarm and of risen files that do, and the median rows into the file before the alarm.
Results: bench/results/concept_detectors.json and bench/results/concept_detectors.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import parser

from calmops.detectors.concept import ConceptDriftMonitor
from calmops.detectors.config import DriftConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DETECTORS = ("adwin", "ddm", "eddm", "hddm_a", "hddm_w", "page_hinkley")
RATES = (0.003, 0.02, 0.1)
WARM, FILE, RISE = 400, 1000, 0.15


def alarms(name: str, rate: float, after: float, trials: int, seed: int) -> tuple[float, float | None]:
    """(share of files that alarm, median rows into the file at the first alarm)."""
    rng = np.random.default_rng(seed)
    fired, at = 0, []
    for _ in range(trials):
        monitor = ConceptDriftMonitor.warm_started(DriftConfig(concept=[name]), (rng.random(WARM) < rate).tolist())
        result = monitor.update((rng.random(FILE) < after).astype(float).tolist())
        if result.alarm:
            fired += 1
            at.append(result.detectors[name]["first_alarm_index"] - WARM)
    return fired / trials, (statistics.median(at) if at else None)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--trials", type=int, default=50, help="trials per detector, error rate and case")
    args = cli.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    for name in DETECTORS:
        for i, rate in enumerate(RATES):
            stable, _ = alarms(name, rate, rate, args.trials, seed=i)
            rise, delay = alarms(name, rate, rate + RISE, args.trials, seed=100 + i)
            rows.append({"detector": name, "error_rate": rate, "false_alarms": stable,
                         "detected": rise, "median_rows_to_alarm": delay})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "concept_detectors.json").write_text(json.dumps({"trials": args.trials, "rows": rows}, indent=1))
    lines = [(f"Concept detectors, {args.trials} trials each: {WARM}-row warm start, one {FILE}-row file; "
             f"'rise' adds {RISE:.0%} to the error rate."), "",
             "| detector | error rate | stable files alarming | risen files alarming | median rows to alarm |",
             "|---|---|---|---|---|"]
    for r in rows:
        delay = "—" if r["median_rows_to_alarm"] is None else f"{r['median_rows_to_alarm']:.0f}"
        lines.append(f"| {r['detector']} | {r['error_rate']:.1%} | {r['false_alarms']:.0%} | {r['detected']:.0%} "
                     f"| {delay} |")
    (RESULTS / "concept_detectors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
