"""What a flow run pays to log a model in a child of the warm runner, with and without the runner's primed caches.

Two warm runners in the same run: the default one, and one with the same preloaded imports but nothing primed
(``prime=()``) and without the imports added for model logging (``mlflow.pyfunc``): the runner as it was. Each
serves ``--runs`` runs, alternating, of a child that logs one small scikit-learn model with MLflow (explicit pip
requirements, a signature and an input example, as CalmOps' registry does; MLflow on SQLite in a temporary
folder). The child reports how long ``mlflow.sklearn.log_model`` took; the script prints the medians and their
ratio.

    .venv/bin/python bench/warm_prime.py [--runs 8]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parser

from calmops.deployments.warm import answers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET = "warm_prime_target"  # the module each child runs (bench/warm_prime_target.py)
RUNNER = ("import sys; from pathlib import Path; from calmops.deployments import warm; "
          "preload = tuple(m for m in warm.PRELOAD if sys.argv[2] == 'primed' or m != 'mlflow.pyfunc'); "
          "prime = warm.PRIME if sys.argv[2] == 'primed' else (); "
          f"runner = warm.Runner(Path(sys.argv[1]), preload=preload, prime=prime, module={TARGET!r}); "
          "runner.warm(); runner.serve()")


def start(kind: str, folder: Path) -> tuple[subprocess.Popen, Path]:
    sock = folder / kind / "runner.sock"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(sock), kind], cwd=HERE,
                            env={**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{REPO}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not answers(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the {kind} runner did not start")
        time.sleep(0.2)
    return proc, sock


def one_run(sock: Path, store: Path) -> float:
    store.mkdir(exist_ok=True)
    env = {**os.environ, "CALMOPS_RUNNER_SOCKET": str(sock), "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-m", "calmops.deployments.warm"], cwd=store, env=env, text=True,
                          capture_output=True, timeout=300, check=False)
    if done.returncode:
        raise SystemExit(f"the run failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["log_model_s"]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--runs", type=int, default=8, help="runs through each runner (the published figures: 10)")
    args = cli.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="calmops-warm-prime-") as tmp:
        folder = Path(tmp)
        runners = {kind: start(kind, folder) for kind in ("unprimed", "primed")}
        times: dict[str, list[float]] = {kind: [] for kind in runners}
        try:
            for i in range(args.runs):
                for kind, (_, sock) in runners.items():
                    times[kind].append(one_run(sock, folder / f"mlruns-{kind}"))
                print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                      flush=True)
        finally:
            for proc, _ in runners.values():
                proc.terminate()
                proc.wait(30)
    medians = {kind: statistics.median(v) for kind, v in times.items()}
    result = {"runs": args.runs, "cores": os.cpu_count(),
              **{f"{kind}_median_s": round(m, 3) for kind, m in medians.items()},
              "unprimed_over_primed": round(medians["unprimed"] / medians["primed"], 2)}
    print(json.dumps(result, indent=2))
    (HERE / "results" / "warm_prime.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
