"""Model fits side by side: OpenMP threads per flow run.

The worker takes several flow runs at once (``CALMOPS_WORKER_LIMIT``, by default the cores and at least two).
Each fit of scikit-learn's histogram gradient boosting (the default model) starts one OpenMP thread per core
unless ``OMP_NUM_THREADS`` says otherwise, so runs side by side wait on each other's threads. This times the
same fits, run by as many processes at once as the worker's limit, with the threads OpenMP picks and with the
threads the stack gives each flow run (``calmops.deployments.stack._threads_per_run``): cores // limit. Both
settings in the same run; medians of each process's fit times, and their ratio.

    .venv/bin/python bench/threads.py
    .venv/bin/python bench/threads.py --quick    # fewer fits, a smoke run

Results: bench/results/threads.json (bench/out/ for a --quick run).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import parser, results_folder

FIT = r"""
import json, sys, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
rows, fits, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
X = rng.normal(size=(rows, 6)); y = X @ rng.normal(size=6) + rng.normal(size=rows)
times = []
for _ in range(fits):
    t = time.perf_counter(); HistGradientBoostingRegressor(random_state=0).fit(X, y); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def side_by_side(processes: int, rows: int, fits: int, threads: str | None) -> list[float]:
    """Fit times of ``processes`` processes fitting at once, each ``fits`` times."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    running = [subprocess.Popen([sys.executable, "-c", FIT, str(rows), str(fits), str(i)], env=env,
                                stdout=subprocess.PIPE, text=True) for i in range(processes)]
    return [t for p in running for t in json.loads(p.communicate()[0])]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rows", type=int, default=400, help="rows per fit (a small file's training rows)")
    cli.add_argument("--fits", type=int, default=20, help="fits per process")
    cli.add_argument("--quick", action="store_true", help="5 fits per process")
    args = cli.parse_args()
    fits = 5 if args.quick else args.fits
    from calmops.deployments.stack import _threads_per_run

    limit = max(2, os.cpu_count() or 2)  # the worker's default
    given = _threads_per_run({})["OMP_NUM_THREADS"]
    side_by_side(limit, args.rows, 1, given)  # warm the imports' caches
    default = side_by_side(limit, args.rows, fits, None)
    limited = side_by_side(limit, args.rows, fits, given)
    out = {"machine": platform.machine(), "cores": os.cpu_count(), "processes": limit, "rows": args.rows,
           "fits_per_process": fits, "omp_num_threads_given": given,
           "median_s_openmp_default": statistics.median(default), "median_s_threads_per_run": statistics.median(limited),
           "ratio_default_over_per_run": statistics.median(default) / statistics.median(limited),
           "p90_s_openmp_default": statistics.quantiles(default, n=10)[-1],
           "p90_s_threads_per_run": statistics.quantiles(limited, n=10)[-1]}
    folder = results_folder("--quick" if args.quick else "")
    (folder / "threads.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
