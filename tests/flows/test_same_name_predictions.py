"""Files of one name arriving one after the other: each keeps its own predictions, and its decision points at them.

processed/ keeps both files (the second as ``<sha256[:12]>-<name>``); predictions/ follows the same rule, so the
predictions of ``processed/<name>`` are ``predictions/<name>.predictions.csv`` and none is written over.
"""

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from calmops.core.errors import UserCodeFailed
from calmops.core.store import pipeline_paths, read_spec
from calmops.flows import common
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run

pytestmark = pytest.mark.integration


def _recorded(outcome: dict) -> dict:
    """The outcome as the MLflow run keeps it (``outcome.json``)."""
    return mlflow.artifacts.load_dict(f"runs:/{outcome['mlflow_run_id']}/outcome.json")


def test_two_contents_under_one_name_keep_their_own_predictions(prefect_server, stream_spec):
    paths = pipeline_paths(read_spec("sea"))
    first = run("sea", write_csv(sea_frame(600, 8, seed=1), incoming("sea"), "export.csv"))
    second = run("sea", write_csv(sea_frame(400, 8, seed=2), incoming("sea"), "export.csv"))
    assert first["decision"] == "train", first["reason"]
    assert second["decision"] not in ("failed", "duplicate", "rejected_input"), second["reason"]
    assert first["sha256"] != second["sha256"]

    # processed/ keeps both; each file's predictions sit next to its name there, none written over
    kept = {digest(p): p.name for p in paths.processed.iterdir()}
    assert kept == {first["sha256"]: "export.csv", second["sha256"]: f"{second['sha256'][:12]}-export.csv"}
    assert sorted(p.name for p in paths.predictions.iterdir()) == sorted(
        f"{name}.predictions.csv" for name in kept.values())
    for outcome, rows in ((first, 600), (second, 400)):
        written = Path(outcome["predictions_file"])
        assert written == paths.predictions / f"{kept[outcome['sha256']]}.predictions.csv"
        preds = pd.read_csv(written)
        assert len(preds) == rows and set(preds["model_version"]) == {outcome["champion_version"]}
        # the decision recorded in MLflow points at the same file
        assert _recorded(outcome)["predictions_file"] == outcome["predictions_file"]
    assert first["predictions_file"] != second["predictions_file"]


def test_a_rerun_of_the_same_content_writes_the_same_predictions_file(prefect_server, stream_spec, monkeypatch):
    """A run that failed after writing its predictions, run again: one predictions file, under the same name; and
    the same bytes dropped again under that name are a duplicate whose log says where it went."""
    paths = pipeline_paths(read_spec("sea"))
    run("sea", write_csv(sea_frame(600, 8, seed=1), incoming("sea"), "export.csv"))
    frame = sea_frame(400, 8, seed=2)
    path = write_csv(frame, incoming("sea"), "export.csv")
    sha = digest(path)
    real, calls = common.breaker_update, []

    def fails_once(spec, outcome):  # the last write of the run's record breaks once: the run fails
        calls.append(outcome.decision)
        if len(calls) == 1:
            raise UserCodeFailed("breaker store unavailable (test)")
        return real(spec, outcome)

    monkeypatch.setattr(common, "breaker_update", fails_once)
    failed = run("sea", path)
    assert failed["decision"] == "failed" and path.exists(), failed["reason"]
    ours = paths.predictions / f"{sha[:12]}-export.csv.predictions.csv"
    assert ours.exists()  # written before the failure, under the name the file will get in processed/

    again = run("sea", path)
    assert again["decision"] not in ("failed", "duplicate"), again["reason"]
    assert again["predictions_file"] == str(ours)
    assert sorted(p.name for p in paths.predictions.iterdir()) == sorted(["export.csv.predictions.csv", ours.name])
    assert len(pd.read_csv(ours)) == 400

    duplicate = run("sea", write_csv(frame, incoming("sea"), "export.csv"))
    assert duplicate["decision"] == "duplicate"
    assert f"moved to processed/{sha[:12]}-export.csv" in (paths.logs / "pipeline.log").read_text()
    assert len(list(paths.predictions.iterdir())) == 2
