"""Fair turns on the real stack: two pipelines in a long burst hold both worker slots, a third pipeline's file
arrives, and it is decided while the bursts go on, not after one of them ends; each burst is still decided
once, in arrival order. The bursts arrive as events (each file has a run of its own) or are found by a scan (only
the oldest file has one).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import sea_frame
from tests.e2e.ordered.conftest import WORKER_LIMIT
from tests.e2e.ordered.test_arrival_order import (
    assert_decided_once_in_arrival_order,
    create,
    decisions,
    done_in_claim_order,
    paths_of,
    rename_in,
)
from tests.e2e.stack import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

PER_BURST = 15  # files, each held SLOW seconds or more: a burst outlasts the turn budget by far on any machine
SLOW = 2.0  # seconds the bursts' preprocess step sleeps per call: a fast machine must not end a burst too soon

SLOW_STEP = f'''
import time


def preprocess(df):
    time.sleep({SLOW})
    return df
'''


def burst_names() -> list[str]:
    """The burst's file names, in arrival order (not name order)."""
    return [f"{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}{i:02d}.csv" for i in range(PER_BURST)]


def create_pipelines(bursting: list[str], light: str, tmp_path) -> None:
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    for name in bursting:
        create(name, tmp_path, preprocess=str(tmp_path / "slow_step.py"))
    create(light, tmp_path)


def a_late_file_goes_first(bursting: dict[str, list[str]], light: str) -> list[str]:
    """Once both bursts hold a worker slot, a file arrives for ``light``: it must be decided while both bursts
    go on, and each burst once, in arrival order. Returns the pipelines' log lines about giving the turn up."""
    until(lambda: all(done_in_claim_order(n) for n in bursting), 300, "both bursts to have a decision (a turn each)",
          interval=1)
    rename_in(paths_of(light).incoming, "late.csv", sea_frame(400, 8, seed=2999), gap=0)
    until(lambda: done_in_claim_order(light) == ["late.csv"], 600, "the third pipeline's file to be decided",
          interval=1)
    until(lambda: all(len(done_in_claim_order(n)) == PER_BURST for n in bursting), 900, "both bursts to be decided",
          interval=2)

    # without fair turns the third pipeline waits until a burst is over: both decide files after it
    late = decisions(light)[0]["start"]
    for name, files in bursting.items():
        assert decisions(name)[-1]["start"] > late, name
        assert_decided_once_in_arrival_order(name, files)  # a turn that gave way kept arrival order
    return [line for n in bursting for log in paths_of(n).logs.glob("*.log")
            for line in log.read_text(errors="replace").splitlines() if "giving the pipeline's turn up" in line]


def test_a_pipeline_waiting_for_a_worker_is_decided_while_two_bursts_hold_the_slots(live, tmp_path):
    assert WORKER_LIMIT == 2, "the bursts must take every worker slot"
    bursting = {"fair-a": burst_names(), "fair-b": burst_names()}
    create_pipelines(list(bursting), "fair-c", tmp_path)
    # each file of the bursts must arrive as an event and get a run of its own (the turn gives way to such a run):
    # files a scan finds are announced one at a time (the test below), so the bursts wait until the watcher
    # watches the new folders
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    watching = [f"watching {paths_of(n).incoming} for pipeline {n}" for n in [*bursting, "fair-c"]]
    until(lambda: all(w in stack.log_file(get_settings(), "watcher").read_text() for w in watching), 120,
          "the watcher to watch the three new folders", interval=0.5)
    for i in range(PER_BURST):
        for p, (name, files) in enumerate(bursting.items()):
            rename_in(paths_of(name).incoming, files[i], sea_frame(400, 8, seed=2000 + 100 * p + i), gap=0.05)

    said = a_late_file_goes_first(bursting, "fair-c")
    # the run says why it ended its turn, and for whom (the bursts may give way to each other too, afterwards)
    assert any("fair-c" in line and "takes the turn after them" in line for line in said), said[:3]


def test_files_found_by_a_scan_give_way_too_by_announcing_the_next_file(live, tmp_path):
    """The bursts wait in their folders when the watcher starts (as after a stop of the stack): a scan announces
    only each pipeline's oldest file, so no file left has a run to hand the turn to. The turn announces the
    oldest file left itself, and that run decides the rest once the waiting pipeline had its turn."""
    assert WORKER_LIMIT == 2, "the bursts must take every worker slot"
    from calmops.deployments import stack

    bursting = {"scan-a": burst_names(), "scan-b": burst_names()}
    stack.stop("watcher")
    try:
        create_pipelines(list(bursting), "scan-c", tmp_path)
        t0 = time.time() - 600
        for p, (name, files) in enumerate(bursting.items()):
            for i, f in enumerate(files):
                sea_frame(400, 8, seed=3000 + 100 * p + i).to_csv(paths_of(name).incoming / f, index=False)
                os.utime(paths_of(name).incoming / f, (t0 + i, t0 + i))
    finally:
        stack.start("watcher")

    said = a_late_file_goes_first(bursting, "scan-c")
    assert any("scan-c" in line and "is announced (no file left had a run of its own)" in line for line in said), said
