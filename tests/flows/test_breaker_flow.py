"""The circuit breaker in real runs, and its Block under concurrent updates."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from calmops.core.breaker import read_breaker, update_breaker
from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec, versions

pytestmark = pytest.mark.integration


BROKEN_HOOK = """
def broken(champion, X, y, reference, history, spec):
    raise ValueError("the feature store is down")
"""


def _end_cooldown(pipeline: str) -> None:
    """Move the retry time to now (the backoff arithmetic is unit-tested in tests/core)."""
    update_breaker(pipeline, lambda s: setattr(s, "next_retry_at", time.time()))


def test_stays_closed_when_challengers_lose_to_a_healthy_champion(prefect_server, stream_spec):
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    # every challenger loses (a margin it cannot beat): the champion keeps serving, nothing is broken
    update_spec("sea", retrain={"retrain_on": "always"}, evaluation={"promotion_margin": 0.9})
    for i in range(4):
        out = run("sea", write_csv(sea_frame(600, 8, seed=2 + i), folder, f"b{i}.csv"))
        assert out["decision"] == "retrain_rejected" and out["breaker_state"] == "closed", out["reason"]
    state = read_breaker("sea")
    assert state.state == "closed" and state.consecutive_failures == 0 and state.history == []


def test_opens_on_repeated_exceptions_checks_and_predicts_while_open_then_reruns_pending(
        prefect_server, stream_spec, tmp_path):
    module = tmp_path / "hooks.py"
    module.write_text(BROKEN_HOOK)
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    # order: none, so each run decides its own file (with arrival order a failed file would hold the next ones,
    # tests/flows/test_arrival_order.py); here the breaker alone decides what runs
    update_spec("sea", retrain={"retrain_on": "always"}, hooks={"retrain": f"{module}:broken"},
                breaker={"cooldown_seconds": 3600.0, "max_cooldown_seconds": 7200.0}, order="none")
    b = run("sea", write_csv(sea_frame(600, 8, seed=2), folder, "b.csv"))
    assert b["decision"] == "failed" and read_breaker("sea").state == "closed"
    c = run("sea", write_csv(sea_frame(600, 8, seed=3), folder, "c.csv"))
    assert c["decision"] == "failed" and read_breaker("sea").state == "open"
    assert "feature store is down" in read_breaker("sea").history[-1]["reason"]
    n_versions = len(versions("sea"))

    # open: a file with nothing to retrain is checked, predicted and done
    update_spec("sea", retrain={"retrain_on": "drift"})
    e = run("sea", write_csv(sea_frame(600, 8, seed=5), folder, "e.csv"))
    assert e["decision"] == "no_drift" and e["drift_detected"] is False
    assert ledger(pipeline_paths(read_spec("sea"))).status(e["sha256"]) == "done"
    # a drifted file is still checked (with the champion's score) and predicted, and stays pending
    drifted = write_csv(sea_frame(600, 4, seed=4), folder, "d.csv")
    d = run("sea", drifted)
    assert d["decision"] == "skipped_breaker_open"
    assert d["drift_detected"] is True and "performance drift" in d["reason"], d["reason"]
    assert d["metrics"]["champion"]["accuracy"] < 0.8
    assert len(versions("sea")) == n_versions  # no training while open
    assert len(pd.read_csv(d["predictions_file"])) == 600  # predictions keep flowing
    paths = pipeline_paths(read_spec("sea"))
    assert drifted.exists() and ledger(paths).status(d["sha256"]) == "pending"
    # status and relaunch see the same pending files: the two failed runs' and the drifted one
    from calmops.deployments.cli import _summaries
    from calmops.deployments.watcher import waiting_files

    pending = {folder / "b.csv", folder / "c.csv", drifted}
    assert _summaries(["sea"])[0]["files_pending"] == 3 and set(waiting_files("sea")) == pending

    _end_cooldown("sea")
    update_spec("sea", hooks={"retrain": None})
    # the next file runs half-open; its success closes the breaker and the pending file is re-run by itself
    f = run("sea", write_csv(sea_frame(600, 8, seed=6), folder, "f.csv"))
    assert f["breaker_state"] == "closed", f["reason"]
    assert [h["to"] for h in read_breaker("sea").history] == ["open", "half_open", "closed"]
    assert ledger(paths).status(d["sha256"]) == "done" and not any(p.exists() for p in pending)
    assert ledger(paths).decision(d["sha256"]) in ("retrain_promoted", "retrain_rejected")
    assert ledger(paths).decision(b["sha256"]) != "failed"
    assert _summaries(["sea"])[0]["files_pending"] == 0 and waiting_files("sea") == []


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
    assert read_breaker("sea").state == "closed" and "no file waiting in incoming" in result.output
    # the files held meanwhile are announced at once, not at the watcher's next scan
    held = write_csv(sea_frame(200, 8, seed=4), incoming("sea"), "held.csv")
    os.utime(held, (time.time() - 60, time.time() - 60))  # complete: written a minute ago
    result = CliRunner().invoke(app, ["breaker", "reset", "sea"])
    assert result.exit_code == 0 and "sea · held.csv: announced" in result.output, result.output
    assert result.output.count("held.csv") == 1, result.output  # said once: not also by the watcher's log line


def test_breaker_show_says_a_trial_is_due_once_the_cooldown_is_over(prefect_server, stream_spec):
    """The breaker moves to half-open when the next file's run reads it; until then `breaker show` said "open"
    with a next retry in the past, which read as stuck."""
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    for offset, due in ((600, False), (-5, True)):
        def opened(s, offset=offset):
            s.state, s.next_retry_at = "open", time.time() + offset

        update_breaker("sea", opened)
        shown = CliRunner().invoke(app, ["breaker", "show", "sea"])
        said = " ".join(shown.output.split())  # as wide as the console is: a line may wrap
        assert shown.exit_code == 0 and said.startswith("sea: open"), shown.output
        assert ("(due: the next file is the trial)" in said) is due, shown.output


def test_a_failed_run_takes_its_batch_back_from_the_training_history(prefect_server, stream_spec, tmp_path):
    """A run that fails after its batch joined the history took it back: else the rows of a file that was never
    decided (here: a file whose retrain broke) trained the challengers of every later file, and a batch that
    breaks training broke every later retrain with it, so the pipeline could never retrain again."""
    from calmops.core.store import read_history

    module = tmp_path / "hooks.py"
    module.write_text(BROKEN_HOOK)
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    paths = pipeline_paths(read_spec("sea"))
    before = [sha for sha, _ in read_history(paths)]
    update_spec("sea", retrain={"retrain_on": "always"}, hooks={"retrain": f"{module}:broken"}, order="none")
    b = run("sea", write_csv(sea_frame(600, 8, seed=2), folder, "b.csv"))
    assert b["decision"] == "failed"
    assert b["champion_version"] == 1  # the run broke; the first model still serves, and the outcome says so
    assert [sha for sha, _ in read_history(paths)] == before  # b's rows are not accepted rows
    update_spec("sea", hooks={"retrain": None})
    c = run("sea", write_csv(sea_frame(600, 8, seed=3), folder, "c.csv"))
    assert c["decision"] in ("retrain_promoted", "retrain_rejected"), c
    assert b["sha256"][:16] not in {sha for sha, _ in read_history(paths)}
    assert c["sha256"].startswith([sha for sha, _ in read_history(paths)][-1])


BROKEN_TRAIN_HOOK = """
def broken(X, y, spec):
    raise ValueError("the feature store is down")
"""


def test_with_no_first_model_an_open_breaker_keeps_the_file_pending_and_says_so(prefect_server, stream_spec,
                                                                               tmp_path):
    """The first model failed until the breaker opened (a spec mistake): the next file was answered "failed: no
    champion to predict with; train one first (a labelled file …)", although it was one. It waits pending,
    saying the breaker is open, why, and how to go on; after the cause is mended and the breaker reset, the
    file trains the first model."""
    module = tmp_path / "hooks.py"
    module.write_text(BROKEN_TRAIN_HOOK)
    folder = incoming("sea")
    update_spec("sea", hooks={"train": f"{module}:broken"}, order="none",
                breaker={"cooldown_seconds": 3600.0, "max_cooldown_seconds": 7200.0})
    for name in ("a.csv", "b.csv"):
        assert run("sea", write_csv(sea_frame(600, 8, seed=len(name)), folder, name))["decision"] == "failed"
    assert read_breaker("sea").state == "open"
    path = write_csv(sea_frame(600, 8, seed=7), folder, "c.csv")
    c = run("sea", path)
    assert c["decision"] == "skipped_breaker_open", c["reason"]
    assert c["reason"].startswith("circuit breaker is open (failed: ") and "the feature store is down" in c["reason"]
    assert c["reason"].endswith("no first model is trained while it is; the file waits, pending, and is taken when "
                                "the breaker half-opens, or at once after you mend the cause and run 'calmops "
                                "breaker reset sea'")
    assert ledger(pipeline_paths(read_spec("sea"))).status(c["sha256"]) == "pending" and path.exists()
    after = read_breaker("sea")  # nothing was tried: the breaker is as it was
    assert after.state == "open" and after.consecutive_failures == 2

    update_spec("sea", hooks={"train": None})
    update_breaker("sea", lambda s: s.reset())
    assert run("sea", path)["decision"] == "train"
