"""A file name that comes back (a daily ``export.csv``): `calmops report NAME FILE` writes the latest run's
report and lists the earlier runs of that name, each reachable with ``--run``."""

import pytest
from typer.testing import CliRunner

from calmops.core.names import shown_decision
from calmops.deployments.cli import app
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run

pytestmark = pytest.mark.integration


def test_each_run_of_a_name_that_came_back_has_its_report(prefect_server, stream_spec, tmp_path, monkeypatch):
    decided = [run("sea", write_csv(sea_frame(400, 8, seed=seed), incoming("sea"), "export.csv"))
               for seed in range(3)]
    assert decided[0]["decision"] == "train"  # the first model: no drift check, no report
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    latest = runner.invoke(app, ["report", "sea", "export.csv"])
    assert latest.exit_code == 0, latest.output
    lines = latest.stdout.splitlines()
    assert "export.csv was checked 2 times; this report is of the latest. The earlier ones:" in lines, lines
    [earlier] = [line.strip() for line in lines if "--run" in line]  # the second run's, not the first model's
    command, comment = earlier.split("   # ")
    command = command.split()
    assert command == ["calmops", "report", "sea", "export.csv", "--run", decided[1]["mlflow_run_id"]], earlier
    assert comment.endswith(f", {shown_decision(decided[1]['decision'])}"), earlier

    page = tmp_path / "earlier.html"
    older = runner.invoke(app, ["report", "sea", "export.csv", "--run", command[5], "-o", str(page)])
    assert older.exit_code == 0, older.output
    assert page.exists() and "earlier ones" not in older.stdout  # that run's page, nothing listed again
    newest = (tmp_path / next(p.name for p in tmp_path.glob("*.html") if p != page)).read_text()
    assert page.read_text() != newest  # another file's verdict, not the latest again

    unknown = runner.invoke(app, ["report", "sea", "export.csv", "--run", "0" * 32])
    assert unknown.exit_code == 1 and "MLflow has no run" in unknown.stderr, unknown.output
