"""`calmops run` leaves the user's file where it is; `create` refuses to adopt an old registered model silently."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()
pytestmark = pytest.mark.integration


def test_run_copies_an_outside_file_and_recreate_refuses_the_old_champion(prefect_server, calmops_home, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    outside = write_csv(sea_frame(1000, 8, seed=1), tmp_path / "mine", "a.csv")
    before = outside.read_bytes()
    result = runner.invoke(app, ["run", "sea", str(outside), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"] == "train"
    assert outside.read_bytes() == before  # the user's copy is still there, unchanged
    from calmops.core.store import pipeline_paths, read_spec

    processed = pipeline_paths(read_spec("sea")).processed
    assert [p.read_bytes() for p in processed.iterdir()] == [before]  # the run worked on a copy

    # the pipeline's folder goes (as `calmops delete` moves it aside); MLflow keeps its registered model
    import shutil

    shutil.move(str(pipeline_paths(read_spec("sea")).root), str(tmp_path / "deleted-sea"))
    refused = runner.invoke(app, ["create", str(spec_file)])
    assert refused.exit_code != 0
    assert "registered model 'sea' with champion v1" in refused.stderr and "--adopt" in refused.stderr
    adopted = runner.invoke(app, ["create", str(spec_file), "--adopt"])
    assert adopted.exit_code == 0, adopted.output
    status = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert status["champion_version"] == 1
