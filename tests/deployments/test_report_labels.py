"""``calmops report NAME labels/<file>`` names a labels file, the bare name a features file
(docs/late-labels.md): for a duplicate and for a quarantined file too."""

import pytest
from typer.testing import CliRunner

from calmops.core.store import pipeline_paths
from calmops.deployments.cli import app
from tests.conftest import write_csv
from tests.flows.helpers import incoming, run
from tests.flows.test_late_labels import batch, features, labels, late_spec  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _said(result) -> str:
    return " ".join(result.stderr.split())


def test_report_finds_a_labels_files_duplicate_and_quarantine_under_labels_prefix_only(
        prefect_server, late_spec, tmp_path, monkeypatch):  # noqa: F811
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(2)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    assert run("late", write_csv(features(frames[1]), folder, "f1.csv"))["decision"] == "predict_only"
    assert run("late", write_csv(labels(frames[1]), labels_folder, "la.csv"))["decision"] != "rejected_input"
    assert run("late", write_csv(labels(frames[1]), labels_folder, "la_copy.csv"))["decision"] == "duplicate"
    bad = labels(frames[1]).rename(columns={"y": "label"})
    assert run("late", write_csv(bad, labels_folder, "lb.csv"))["decision"] == "rejected_input"
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    copy = runner.invoke(app, ["report", "late", "labels/la_copy.csv"])
    assert copy.exit_code == 1
    assert "'labels/la_copy.csv' has the same content as 'labels/la.csv'" in _said(copy), _said(copy)
    assert "calmops report late labels/la.csv" in _said(copy)
    as_features = runner.invoke(app, ["report", "late", "la_copy.csv"])  # no features file has that name
    assert as_features.exit_code == 1 and "same content" not in _said(as_features), _said(as_features)

    held = runner.invoke(app, ["report", "late", "labels/lb.csv"])
    assert held.exit_code == 1
    assert "'labels/lb.csv' was quarantined before any drift check" in _said(held), _said(held)
    assert "drop it into the labels folder again" in _said(held) and "incoming" not in _said(held)
    as_features = runner.invoke(app, ["report", "late", "lb.csv"])
    assert as_features.exit_code == 1 and "quarantined" not in _said(as_features), _said(as_features)
