"""Fair turns on the real stack: two pipelines in a long burst hold both worker slots, a third pipeline's file
arrives, and it is decided while the bursts go on, not after one of them ends; each burst is still decided
once, in arrival order.
"""

from __future__ import annotations

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


def test_a_pipeline_waiting_for_a_worker_is_decided_while_two_bursts_hold_the_slots(live, tmp_path):
    assert WORKER_LIMIT == 2, "the bursts must take every worker slot"
    bursting = {"fair-a": [], "fair-b": []}
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    for name in bursting:
        create(name, tmp_path, preprocess=str(tmp_path / "slow_step.py"))
    create("fair-c", tmp_path)
    # each file of the bursts must arrive as an event and get a run of its own (the turn gives way to such a run):
    # files a scan finds are announced one at a time, the oldest only, so the bursts wait until the watcher
    # watches the new folders
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    watching = [f"watching {paths_of(n).incoming} for pipeline {n}" for n in [*bursting, "fair-c"]]
    until(lambda: all(w in stack.log_file(get_settings(), "watcher").read_text() for w in watching), 120,
          "the watcher to watch the three new folders", interval=0.5)
    for i in range(PER_BURST):
        for p, name in enumerate(bursting):
            bursting[name].append(f"{'zyxwvutsrqponmlkjihgfedcba'[i % 26]}{i:02d}.csv")
            rename_in(paths_of(name).incoming, bursting[name][-1], sea_frame(400, 8, seed=2000 + 100 * p + i),
                      gap=0.05)
    until(lambda: all(done_in_claim_order(n) for n in bursting), 300, "both bursts to have a decision (a turn each)",
          interval=1)
    rename_in(paths_of("fair-c").incoming, "late.csv", sea_frame(400, 8, seed=2999), gap=0)
    until(lambda: done_in_claim_order("fair-c") == ["late.csv"], 600, "the third pipeline's file to be decided",
          interval=1)
    until(lambda: all(len(done_in_claim_order(n)) == PER_BURST for n in bursting), 900, "both bursts to be decided",
          interval=2)

    # without fair turns the third pipeline waits until a burst is over: both decide files after it
    late = decisions("fair-c")[0]["start"]
    for name, files in bursting.items():
        assert decisions(name)[-1]["start"] > late, name
        assert_decided_once_in_arrival_order(name, files)  # a turn that gave way kept arrival order
    said = [line for n in bursting for log in paths_of(n).logs.glob("*.log")
            for line in log.read_text(errors="replace").splitlines() if "giving the pipeline's turn up" in line]
    assert said and "fair-c" in said[0], said[:3]  # the run says why it ended its turn, and for whom
