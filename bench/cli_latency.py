"""Wall time of each `calmops` command as a user types it (median of N), with the local stack down and up.

    .venv/bin/python bench/cli_latency.py [--repeat 5] [--no-stack-up]

Everything happens in a temporary CALMOPS_HOME with one stream pipeline; the stack (when measured) runs on free
ports and is stopped at the end. `calmops run` is split into the import of the flow code, and the whole command
on a 1,000-row file without drift (the champion exists already, so no model is logged).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).with_name("calmops")
TARGETS = {"--help": 0.5, "list": 1.5, "status": 1.5, "status sea": 1.5, "show sea": 1.5, "run (no drift)": 3.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_of(n: int, fn) -> float:
    return statistics.median(fn() for _ in range(n))


def measure(env: dict[str, str], repeat: int, files: list[Path]) -> dict[str, float]:
    out = {}
    for label, args in (("--help", ["--help"]), ("list", ["list"]), ("status", ["status"]),
                        ("status sea", ["status", "sea"]), ("show sea", ["show", "sea"])):
        out[label] = median_of(repeat, lambda a=args: timed(a, env))
    out["import flows"] = median_of(repeat, lambda: _python(["-c", "import calmops.flows.stream"], env))
    runs = iter(files)
    out["run (no drift)"] = median_of(repeat, lambda: timed(["run", "sea", str(next(runs))], env))
    return out


def _python(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-stack-up", action="store_true", help="Measure with the stack down only.")
    args = parser.parse_args()
    from tests.conftest import STREAM_SPEC, sea_frame, write_csv

    home = Path(tempfile.mkdtemp(prefix="calmops-cli-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env.update(CALMOPS_HOME=str(home / "home"), COLUMNS="100")
    for service in ("PREFECT", "MLFLOW", "VIEWER", "API"):
        env[f"CALMOPS_{service}_PORT"] = str(_free_port())
    spec = home / "spec.yaml"
    spec.write_text(yaml.safe_dump(STREAM_SPEC))
    subprocess.run([str(BIN), "create", str(spec)], env=env, check=True, stdout=subprocess.DEVNULL)
    data = home / "data"
    subprocess.run([str(BIN), "run", "sea", str(write_csv(sea_frame(1000, 8, seed=0), data, "first.csv"))],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = [write_csv(sea_frame(1000, 8, seed=i), data, f"f{i}.csv") for i in range(1, 2 * args.repeat + 1)]

    results = {"down": measure(env, args.repeat, files[:args.repeat])}
    if not args.no_stack_up:
        subprocess.run([str(BIN), "up", "--no-watcher"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            results["up"] = measure(env, args.repeat, files[args.repeat:])
        finally:
            subprocess.run([str(BIN), "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    print(f"| command | target | {' | '.join(f'stack {k}' for k in results)} |")
    print(f"|---|---|{'---|' * len(results)}")
    for label in results["down"]:
        target = f"≤ {TARGETS[label]} s" if label in TARGETS else "-"
        print(f"| `{label}` | {target} | " + " | ".join(f"{r[label]:.2f} s" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
