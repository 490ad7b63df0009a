"""`calmops delete` says which files were still waiting, undecided, and where they are now."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()
pytestmark = pytest.mark.integration


@pytest.fixture
def prefect_api(prefect_server, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # delete asks the API (the test harness's)


def _create(tmp_path: Path, **spec) -> Path:
    spec_file = tmp_path / f"{spec['name']}.yaml"
    spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, **spec}))
    created = runner.invoke(app, ["create", str(spec_file)])
    assert created.exit_code == 0, created.output
    from calmops.core.store import pipeline_paths, read_spec

    return pipeline_paths(read_spec(spec["name"])).incoming


def test_files_waiting_in_incoming_are_counted_and_found_under_deleted(prefect_api, calmops_home, tmp_path):
    incoming = _create(tmp_path, name="sea")
    for i in range(10):
        write_csv(sea_frame(50, 8, seed=i), incoming, f"batch-{i}.csv")
    deleted = runner.invoke(app, ["delete", "sea", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    text = " ".join(deleted.stdout.split())  # rich wraps long lines
    moved = sorted((calmops_home / "deleted").glob("sea-*"))
    assert len(moved) == 1
    assert "10 file(s) were waiting and were not processed" in text, text
    assert f"they are now in {moved[0].resolve() / 'incoming'}" in text, text
    assert len(list((moved[0] / "incoming").glob("batch-*.csv"))) == 10


def test_files_waiting_in_an_incoming_folder_outside_the_pipeline_stay_there(prefect_api, calmops_home, tmp_path):
    drop = tmp_path / "drop"
    incoming = _create(tmp_path, name="outside", incoming=str(drop))
    for i in range(3):
        write_csv(sea_frame(50, 8, seed=i), incoming, f"batch-{i}.csv")
    deleted = runner.invoke(app, ["delete", "outside", "--yes", "--json"])
    assert deleted.exit_code == 0, deleted.output
    result = json.loads(deleted.stdout)
    assert result["files_not_processed"] == 3
    assert result["files_not_processed_in"] == {str(drop.resolve()): 3}
    assert len(list(drop.glob("batch-*.csv"))) == 3  # left where the user put them

    incoming = _create(tmp_path, name="outside", incoming=str(drop))  # the same folder, watched again
    deleted = runner.invoke(app, ["delete", "outside", "--yes"])
    text = " ".join(deleted.stdout.split())
    assert f"3 file(s) were waiting in {drop.resolve()} and were not processed; they stay there" in text, text
