"""The no-drift refresh in the stream flow (real Prefect test harness and MLflow): once the rows kept so far have
doubled since the champion was trained, a quiet file gets a challenger on all data so far; and a run that fails
in the middle of that refresh leaves it due, so the file's next run tries it again instead of calling the file
quiet."""

import pytest

from calmops.flows import stream as stream_flow
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec, versions

pytestmark = pytest.mark.integration


def test_a_quiet_file_gets_a_refresh_once_the_rows_doubled(prefect_server, stream_spec):
    update_spec("sea", retrain={"refresh_growth": 2.0})
    folder = incoming("sea")
    first = run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    assert first["decision"] == "train"
    same = run("sea", write_csv(sea_frame(1000, 8, seed=2), folder, "b.csv"))  # 2,000 rows kept: 2× the 1,000
    assert not same["drift_detected"], same["reason"]
    assert same["reason"].startswith("no drift signal; refresh: 2000 rows kept so far, 2.0× the 1000"), same["reason"]
    [tried] = same["details"]["training"]
    assert tried["mode"] == "history"
    later = run("sea", write_csv(sea_frame(1000, 8, seed=3), folder, "c.csv"))  # 3,000: 1.5× the base, not due
    assert later["decision"] == "no_drift" and "refresh" not in later["reason"], later["reason"]


def test_a_champion_without_an_error_waits_for_its_refresh_until_a_file_it_errs_on(prefect_server, stream_spec):
    update_spec("sea", retrain={"refresh_growth": 2.0})
    folder = incoming("sea")

    def axis(seed: int, flipped: int = 0):  # the label is x1 > 5: one split, learnt without an error
        frame = sea_frame(1000, 8, seed=seed)
        frame["y"] = (frame["x1"] > 5).astype(int)
        frame.loc[frame.index[:flipped], "y"] = 1 - frame["y"].iloc[:flipped]  # a few wrong labels
        return frame

    assert run("sea", write_csv(axis(1), folder, "a.csv"))["decision"] == "train"
    perfect = run("sea", write_csv(axis(2), folder, "b.csv"))  # 2,000 rows kept, but nothing to correct
    assert perfect["decision"] == "no_drift" and perfect["metrics"]["champion"]["accuracy"] == 1.0
    assert "refresh" not in perfect["reason"] and versions("sea") == [1], perfect["reason"]
    errs = run("sea", write_csv(axis(3, flipped=5), folder, "c.csv"))  # 3,000 rows, 5 rows it gets wrong
    assert not errs["drift_detected"] and errs["metrics"]["champion"]["accuracy"] == 0.995, errs["reason"]
    assert errs["reason"].startswith("no drift signal; refresh: 3000 rows kept so far, 3.0× the 1000"), errs["reason"]


def test_a_refresh_that_crashed_is_tried_again_on_the_files_next_run(prefect_server, stream_spec, monkeypatch):
    update_spec("sea", retrain={"refresh_growth": 2.0})
    folder = incoming("sea")
    run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))
    crashes = []
    real = stream_flow.retrain

    def crash_once(*args, **kwargs):
        if not crashes:
            crashes.append(args[0])
            raise RuntimeError("the worker lost its connection in the middle of the refresh")
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_flow, "retrain", crash_once)
    path = write_csv(sea_frame(1000, 8, seed=2), folder, "b.csv")
    failed = run("sea", path)
    assert failed["decision"] == "failed" and crashes == ["history"], failed["reason"]
    assert path.exists() and versions("sea") == [1]  # kept for a retry; no challenger registered

    again = run("sea", path)
    assert again["reason"].startswith("no drift signal; refresh: 2000 rows kept so far"), again["reason"]
    assert [t["mode"] for t in again["details"]["training"]] == ["history"]
    assert versions("sea") == [1, 2]  # the refresh's challenger, registered once


def test_a_champion_rolled_back_to_is_not_refreshed_away_by_the_next_quiet_file(prefect_server, stream_spec):
    """``calmops rollback`` serves the previous champion again because the user chose it. Its refresh used to
    count from when it was trained: with the rows kept since, the next quiet file refreshed it at once and
    promoted a model on all data so far, undoing the rollback. It counts from the rollback now."""
    from typer.testing import CliRunner

    from calmops.core import registry
    from calmops.deployments.cli import app

    update_spec("sea", retrain={"refresh_growth": 2.0})
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    refreshed = run("sea", write_csv(sea_frame(1000, 8, seed=2), folder, "b.csv"))  # 2× the rows: v2 on both files
    assert refreshed["decision"] == "retrain_promoted", refreshed["reason"]
    assert registry.alias_version("sea", "champion") == 2

    result = CliRunner().invoke(app, ["rollback", "sea"])
    assert result.exit_code == 0, result.output
    assert registry.alias_version("sea", "champion") == 1  # trained on 1,000 rows; 2,000 are kept now

    quiet = run("sea", write_csv(sea_frame(1000, 8, seed=3), folder, "c.csv"))  # 3,000: 1.5× the 2,000 at rollback
    assert quiet["decision"] == "no_drift" and "refresh" not in quiet["reason"], quiet["reason"]
    assert registry.alias_version("sea", "champion") == 1 and versions("sea") == [1, 2]
    later = run("sea", write_csv(sea_frame(1000, 8, seed=4), folder, "d.csv"))  # 4,000: 2× the rows at rollback
    assert later["reason"].startswith("no drift signal; refresh: 4000 rows kept so far, 2.0× the 2000"), later["reason"]
