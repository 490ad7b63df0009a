"""How long a pipeline waits for a worker while two others burst: turns that give way after a budget
(``CALMOPS_TURN_BUDGET``) against turns that last until their pipeline's queue is empty (budget 0), in one run.

For each setting, from nothing: a temporary CALMOPS_HOME and ``calmops up`` with ``CALMOPS_WORKER_LIMIT=2``
(two runs at once, whatever the cores), four stream pipelines each trained on a first file. Then the two
*bursting* pipelines get ``--burst`` files each (1,000 rows, renamed in 0.02 s apart, alternating), and
``--after`` seconds after the first rename each *light* pipeline gets one file. A file's latency is from its
rename to the moment its ledger entry reads ``done`` (all ledgers polled every 0.2 s). Reported per setting:
the light files' latencies, p50/p95 over every file, and the time from the first rename to the last decision
(what giving way costs: more runs start).

With ``--found-by-scan`` the bursts wait in their folders when the watcher starts (written while it is stopped,
as after a stop of the stack): a scan announces only each pipeline's oldest file, so a turn that gives way
announces the next file itself. Their latency is then counted from the watcher's start, and the light files
come ``--after`` seconds after it.

    .venv/bin/python bench/fair_turns.py [--burst 40] [--after 5] [--budget 15] [--found-by-scan] [--keep]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_keep, parser
from stack_latency import CALMOPS, _sha, drop, frame, pct, spec, stack_up, wait_done

BURSTING = ("burst-a", "burst-b")
LIGHT = ("light-c", "light-d")


def one_setting(budget: float, burst: int, after: float, scan: bool = False, keep: bool = False) -> dict:
    """One turn budget from nothing (a new home and stack, stopped and removed at the end); its latencies."""
    settings = {"CALMOPS_TURN_BUDGET": str(budget), "CALMOPS_WORKER_LIMIT": "2"}
    with stack_up("calmops-fair-", keep, **settings) as (home, env):
        from calmops.core.store import ledger, pipeline_paths, read_spec

        for name in (*BURSTING, *LIGHT):
            path = home / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec(name)))
            subprocess.run([CALMOPS, "create", str(path)], check=True, env=env, capture_output=True)
        books = {n: ledger(pipeline_paths(read_spec(n)).ensure()) for n in (*BURSTING, *LIGHT)}
        incoming = {n: pipeline_paths(read_spec(n)).incoming for n in books}
        for seed, name in enumerate(books, start=1):  # each pipeline's first model (and warm caches)
            df = frame(1000, seed)
            drop(df, incoming[name], "first.csv")
            wait_done(books[name], _sha(df))
        files = [(BURSTING[i % 2], frame(1000, 100 + i), f"b{i:03d}.csv") for i in range(2 * burst)]
        files += [(name, frame(1000, 900 + i), "light.csv") for i, name in enumerate(LIGHT)]
        shas = [_sha(df) for _, df, _ in files]  # once: the polling below must not load the machine it measures
        dropped: dict[str, float] = {}
        if scan:
            from calmops.deployments import stack

            stack.stop("watcher")
        start = time.time()
        for (name, df, fname), sha in zip(files[:-len(LIGHT)], shas[:-len(LIGHT)], strict=True):
            dropped[sha] = drop(df, incoming[name], fname)
            time.sleep(0.02)
        if scan:  # the files wait for the watcher: their time counts from its start
            start = time.time()
            stack.start("watcher")
            dropped.update(dict.fromkeys(shas[:-len(LIGHT)], start))
        time.sleep(max(0.0, start + after - time.time()))
        for (name, df, fname), sha in zip(files[-len(LIGHT):], shas[-len(LIGHT):], strict=True):
            dropped[sha] = drop(df, incoming[name], fname)
        done: dict[str, float] = {}
        deadline = time.monotonic() + 3600
        while len(done) < len(files) and time.monotonic() < deadline:
            for (name, _, _), sha in zip(files, shas, strict=True):
                if sha not in done and books[name].status(sha) == "done":
                    done[sha] = time.time()
            time.sleep(0.2)
        latency = {sha: done[sha] - dropped[sha] for sha in shas}
        light = [round(latency[sha], 1) for sha in shas[-len(LIGHT):]]
        every = list(latency.values())
        gave_way = sum(p.read_text(errors="replace").count("giving the pipeline's turn up")
                       for n in BURSTING for p in pipeline_paths(read_spec(n)).logs.glob("pipeline.log*"))
        announced = sum(p.read_text(errors="replace").count("is announced (no file left had a run")
                        for n in BURSTING for p in pipeline_paths(read_spec(n)).logs.glob("pipeline.log*"))
        return {"budget_s": budget, "found_by_scan": scan, "files": len(files), "light_latency_s": light,
                "p50_s": round(pct(every, 50), 1), "p95_s": round(pct(every, 95), 1),
                "first_rename_to_last_decision_s": round(max(done.values()) - start, 1), "turns_given_up": gave_way,
                "by_announcing": announced}


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--burst", type=int, default=40, help="files per bursting pipeline")
    cli.add_argument("--after", type=float, default=5.0, help="seconds before the light files arrive")
    cli.add_argument("--budget", type=float, default=15.0, help="the turn budget compared with 0")
    cli.add_argument("--found-by-scan", action="store_true",
                     help="the bursts wait in their folders when the watcher starts")
    add_keep(cli)
    args = cli.parse_args()
    saved = dict(os.environ)
    results = {}
    try:
        for budget in (0.0, args.budget):
            results[f"budget_{budget:g}"] = one_setting(budget, args.burst, args.after, args.found_by_scan,
                                                        args.keep)
            print(json.dumps(results[f"budget_{budget:g}"]), file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = Path(__file__).parent / "results" / f"fair_turns{'_scan' if args.found_by_scan else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
