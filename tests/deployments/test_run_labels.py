"""`calmops run NAME FILE` of a labels file (spec ``labels``): put where labels go and decided as a labels file,
with --labels or recognised by its columns; refused for a pipeline that takes no labels files."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from calmops.core.store import pipeline_paths, read_spec
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv

runner = CliRunner()
pytestmark = pytest.mark.integration


def batch(n: int, seed: int, first_id: int):
    return sea_frame(n, 8.0, seed).assign(id=np.arange(first_id, first_id + n))


def run_json(*args: str) -> dict:
    result = runner.invoke(app, ["run", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_takes_a_labels_file_with_the_option_or_by_its_columns_and_refuses_it_without_a_labels_section(
        prefect_server, calmops_home, tmp_path):
    spec_file = tmp_path / "late.yaml"
    spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, "name": "late", "labels": {"join_on": ["id"]}}))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    paths = pipeline_paths(read_spec("late"))
    mine = tmp_path / "mine"  # the user's own files, outside the pipeline's folders
    f0, f1, f2 = batch(600, 1, 0), batch(600, 2, 1000), batch(600, 3, 2000)
    assert run_json("late", str(write_csv(f0, mine, "f0.csv")))["decision"] == "train"
    assert run_json("late", str(write_csv(f1.drop(columns="y"), mine, "f1.csv")))["decision"] == "predict_only"
    assert run_json("late", str(write_csv(f2.drop(columns="y"), mine, "f2.csv")))["decision"] == "predict_only"

    # --labels: copied into the labels folder (the user's file stays) and joined to the rows of f1
    l1 = write_csv(f1[["id", "y"]], mine, "l1.csv")
    before = l1.read_bytes()
    out = run_json("late", str(l1), "--labels")
    assert out["details"]["folder"] == "labels" and out["details"]["labels"]["matched"] == 600, out["reason"]
    assert out["decision"] != "quarantined" and l1.read_bytes() == before
    assert [p.read_bytes() for p in paths.processed.glob("l1.csv")] == [before]
    assert not list(paths.incoming.iterdir()) and not list(paths.quarantine.glob("l1*"))

    # no option: a file of the ids and the target only is recognised as a labels file, and the output says so
    told = runner.invoke(app, ["run", "late", str(write_csv(f2[["y", "id"]], mine, "l2.csv"))])
    assert told.exit_code == 0, told.output
    assert "l2.csv holds the id column(s) id and the target 'y' and no feature column: taken as a labels file" in \
        told.stderr, told.stderr
    assert "labels/l2.csv → " in told.stdout, told.stdout
    assert "labels: 600 row(s): 600 matched" in told.stdout, told.stdout  # what the join found, in words
    # a features file is still a features file
    f3 = batch(600, 4, 3000)
    assert run_json("late", str(write_csv(f3.drop(columns="y"), mine, "f3.csv")))["decision"] == "predict_only"
    # recognised in any format: a Parquet file as pandas writes it (its index kept as a description)
    f3[["id", "y"]].to_parquet(mine / "l3.parquet")
    out = run_json("late", str(mine / "l3.parquet"))
    assert out["details"]["folder"] == "labels" and out["details"]["labels"]["matched"] == 600, out["reason"]

    # a pipeline whose labels come in its files takes no labels file: refused, nothing copied or run
    (tmp_path / "sea.yaml").write_text(yaml.safe_dump(STREAM_SPEC))
    assert runner.invoke(app, ["create", str(tmp_path / "sea.yaml")]).exit_code == 0
    refused = runner.invoke(app, ["run", "sea", str(l1), "--labels"])
    assert refused.exit_code != 0
    assert "pipeline 'sea' takes no labels files" in refused.stderr and "labels:" in refused.stderr, refused.stderr
    sea = pipeline_paths(read_spec("sea"))
    assert not list(sea.incoming.iterdir()) and not list(sea.processed.iterdir())
    # --labels for a file already in the incoming folder (taken there as features) is refused too
    inside = write_csv(f1[["id", "y"]], paths.incoming, "inside.csv")
    refused = runner.invoke(app, ["run", "late", str(inside), "--labels"])
    assert refused.exit_code != 0 and f"{paths.labels}" in refused.stderr, refused.stderr
    assert inside.exists()


def test_a_labels_copy_of_bytes_waiting_in_the_labels_folder_under_another_name_is_their_duplicate(
        prefect_server, calmops_home, tmp_path):
    """The same labels announced in the labels folder as x.csv (the watcher recorded their arrival) and then given
    to `calmops run --labels` under another name: the file waiting is decided first, in its place, and the copy is
    its duplicate (as for a features copy of a file waiting in incoming)."""
    from calmops.core.store import arrival_time, ledger, sha256_of

    spec_file = tmp_path / "late.yaml"
    spec_file.write_text(yaml.safe_dump({**STREAM_SPEC, "name": "late", "labels": {"join_on": ["id"]}}))
    assert runner.invoke(app, ["create", str(spec_file)]).exit_code == 0
    paths = pipeline_paths(read_spec("late"))
    mine = tmp_path / "mine"
    f0, f1 = batch(600, 1, 0), batch(600, 2, 1000)
    assert run_json("late", str(write_csv(f0, mine, "f0.csv")))["decision"] == "train"
    assert run_json("late", str(write_csv(f1.drop(columns="y"), mine, "f1.csv")))["decision"] == "predict_only"
    waiting = write_csv(f1[["id", "y"]], paths.labels, "x.csv")
    sha = sha256_of(waiting)
    ledger(paths).arrive(sha, "labels/x.csv", arrival_time(waiting.stat().st_mtime_ns), at=waiting)  # as the watcher

    out = run_json("late", str(write_csv(f1[["id", "y"]], mine, "l1.csv")), "--labels")
    assert out["decision"] == "duplicate", out
    [row] = [e for e in ledger(paths).entries() if e["sha256"] == sha]
    assert row["file"] == "labels/x.csv" and row["decision"] != "duplicate", row
