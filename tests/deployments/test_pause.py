"""`calmops pause` and `calmops resume` as a user types them: what they say, their JSON, what `status` shows,
and a pause that survives a damaged pause file (the watcher's and the flows' side: tests/deployments/
test_watcher.py, tests/flows/test_arrival_order.py, tests/e2e/ordered/test_arrival_order.py)."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC

runner = CliRunner()


@pytest.fixture
def sea(calmops_home, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    spec = tmp_path / "sea.yaml"
    spec.write_text(yaml.safe_dump(dict(STREAM_SPEC)))
    assert runner.invoke(app, ["create", str(spec)]).exit_code == 0
    return "sea"


def _said(result) -> str:
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def test_pause_then_resume_say_what_happens_to_the_files_and_status_shows_the_pause(sea):
    text = _said(runner.invoke(app, ["pause", sea, "--reason", "upstream export under review"]))
    assert text.startswith("paused pipeline sea: its files wait where they arrived (its incoming folder) until "
                           "'calmops resume sea'")  # no labels folder to speak of: its labels come with its rows
    again = _said(runner.invoke(app, ["pause", sea, "--reason", "another"]))
    assert "(upstream export under review)" in again and again.endswith("(nothing changed)")  # the first pause kept

    row = json.loads(runner.invoke(app, ["status", sea, "--json"]).stdout)
    assert row["paused"]["reason"] == "upstream export under review" and row["paused"]["since"]
    shown = _said(runner.invoke(app, ["status", sea]))
    assert (f"paused: pipeline sea has been paused since {row['paused']['since']} (upstream export under review); its "
            "files wait where they arrived (its incoming folder) until 'calmops resume sea'") in shown
    listed = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert [p["paused"] is not None for p in listed["pipelines"]] == [True]

    resumed = json.loads(runner.invoke(app, ["resume", sea, "--json"]).stdout)
    assert resumed["resumed"] is True and resumed["paused"] == row["paused"] and resumed["watcher_running"] is False
    assert json.loads(runner.invoke(app, ["status", sea, "--json"]).stdout)["paused"] is None
    text = _said(runner.invoke(app, ["resume", sea]))
    assert text == "pipeline sea was not paused (nothing changed)"


def test_a_pipeline_whose_labels_come_later_is_said_to_keep_its_labels_files_waiting_too(sea, tmp_path):
    spec = tmp_path / "late.yaml"
    spec.write_text(yaml.safe_dump({**STREAM_SPEC, "name": "late", "labels": {"join_on": ["id"]}}))
    assert runner.invoke(app, ["create", str(spec)]).exit_code == 0
    text = _said(runner.invoke(app, ["pause", "late"]))
    assert text.startswith("paused pipeline late: its files wait where they arrived (its incoming folder, labels "
                           "files its labels folder) until 'calmops resume late'"), text
    assert "labels folder" in _said(runner.invoke(app, ["status", "late"]))


def test_resume_without_a_watcher_says_how_the_waiting_files_get_announced(sea):
    runner.invoke(app, ["pause", sea])
    text = _said(runner.invoke(app, ["resume", sea]))
    assert "no watcher runs on this host: 'calmops up' starts one, or 'calmops relaunch sea' announces" in text


def test_an_unknown_pipeline_is_refused_by_name(calmops_home):
    result = runner.invoke(app, ["pause", "nope"])
    assert result.exit_code == 1 and "no pipeline named 'nope'" in result.output


def test_a_pause_file_that_does_not_read_still_pauses_and_says_how_to_end_it(sea):
    from calmops.core.pause import pause_file, paused

    pause_file(sea).write_text("{not json")
    found = paused(sea)
    assert found is not None and "does not read as a pause; delete it to resume" in found.reason
    assert _said(runner.invoke(app, ["resume", sea])).startswith("resumed pipeline sea")
    assert paused(sea) is None and not pause_file(sea).exists()


def test_relaunch_takes_no_file_of_a_paused_pipeline_and_says_why(sea):
    from calmops.core.store import pipeline_paths, read_spec
    from tests.conftest import sea_frame, write_csv

    write_csv(sea_frame(50, 8, seed=1), pipeline_paths(read_spec(sea)).ensure().incoming, "a.csv")
    runner.invoke(app, ["pause", sea])
    text = _said(runner.invoke(app, ["relaunch", sea, "--local"]))
    assert "sea: no file processed: pipeline sea has been paused since" in text and "0 file(s) processed" in text, text
    assert (pipeline_paths(read_spec(sea)).incoming / "a.csv").exists()


def test_a_pipeline_whose_spec_does_not_read_can_be_resumed_and_status_shows_its_pause(sea):
    from calmops.core.store import pipeline_paths, read_spec

    spec_file = pipeline_paths(read_spec(sea)).spec_file
    runner.invoke(app, ["pause", sea, "--reason", "model under review"])
    spec_file.write_text("name: sea\ntarget: [unclosed\n")  # broken in place meanwhile
    row = json.loads(runner.invoke(app, ["status", sea, "--json"]).stdout)
    assert row["spec_unreadable"] and row["paused"]["reason"] == "model under review", row
    assert "paused: pipeline sea has been paused since" in _said(runner.invoke(app, ["status", sea]))
    assert _said(runner.invoke(app, ["resume", sea])).startswith("resumed pipeline sea")


@pytest.mark.integration
def test_breaker_reset_of_a_paused_pipeline_does_not_say_no_file_waits(prefect_server, sea):
    from calmops.core.store import pipeline_paths, read_spec
    from tests.conftest import sea_frame, write_csv

    write_csv(sea_frame(50, 8, seed=1), pipeline_paths(read_spec(sea)).ensure().incoming, "a.csv")
    runner.invoke(app, ["pause", sea])
    text = _said(runner.invoke(app, ["breaker", "reset", sea]))
    assert "sea: no file announced: pipeline sea has been paused since" in text, text
    assert "no file waiting in incoming" not in text, text
