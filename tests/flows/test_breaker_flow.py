"""The circuit breaker in real runs, and its Block under concurrent updates."""

import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from calmops.core.breaker import read_breaker, update_breaker
from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec, versions

pytestmark = pytest.mark.integration


def test_opens_skips_training_but_predicts_then_half_opens_and_closes(prefect_server, stream_spec):
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    # every challenger is now rejected (margin impossible to beat): each run is a failure
    update_spec("sea", retrain={"retrain_on": "always"}, evaluation={"promotion_margin": 0.9},
                breaker={"cooldown_seconds": 6.0})
    b = run("sea", write_csv(sea_frame(600, 8, seed=2), folder, "b.csv"))
    assert b["decision"] == "retrain_rejected" and read_breaker("sea").state == "closed"
    c = run("sea", write_csv(sea_frame(600, 8, seed=3), folder, "c.csv"))
    assert c["decision"] == "retrain_rejected" and c["breaker_state"] == "open"
    n_versions = len(versions("sea"))

    pending = write_csv(sea_frame(600, 8, seed=4), folder, "d.csv")
    d = run("sea", pending)
    assert d["decision"] == "skipped_breaker_open"
    assert len(versions("sea")) == n_versions  # no training while open
    assert len(pd.read_csv(d["predictions_file"])) == 600  # predictions keep flowing
    assert pending.exists()  # the file stays pending
    paths = pipeline_paths(read_spec("sea"))
    assert ledger(paths).status(d["sha256"]) == "pending"

    state = read_breaker("sea")
    deadline = time.monotonic() + 30
    while time.time() < state.next_retry_at and time.monotonic() < deadline:
        time.sleep(0.05)  # the cooldown is the behaviour under test: wait for it to pass
    update_spec("sea", retrain={"retrain_on": "drift"}, evaluation={"promotion_margin": 0.0})
    # the pending file is processed once the breaker half-opens, and a success closes it
    d2 = run("sea", pending)
    assert d2["decision"] == "no_drift", d2["reason"]
    assert read_breaker("sea").state == "closed"
    assert [h["to"] for h in read_breaker("sea").history] == ["open", "half_open", "closed"]
    assert ledger(paths).status(d["sha256"]) == "done" and not pending.exists()


def test_concurrent_updates_lose_nothing(prefect_server, calmops_home):
    def bump(_):
        update_breaker("race", lambda s: setattr(s, "consecutive_failures", s.consecutive_failures + 1))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(bump, range(20)))
    assert read_breaker("race").consecutive_failures == 20


def test_operator_reset_from_the_cli(prefect_server, stream_spec):
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    update_breaker("sea", lambda s: setattr(s, "state", "open"))
    result = CliRunner().invoke(app, ["breaker", "reset", "sea"])
    assert result.exit_code == 0, result.output
    assert read_breaker("sea").state == "closed"
