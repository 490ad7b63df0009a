"""``calmops update`` with rows or labels files still waiting for a labels section the new spec removes."""

import pandas as pd
import yaml
from typer.testing import CliRunner

from calmops.core.awaiting import Awaiting, keys_of
from calmops.core.store import pipeline_paths, read_spec
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, write_csv

runner = CliRunner()


def _spec_file(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**STREAM_SPEC, **changes}))
    return path


def test_removing_the_labels_section_is_refused_while_rows_await_labels_or_labels_files_wait(
        calmops_home, tmp_path):
    """Without the labels section nothing would ever join the rows kept for labels or the labels files in the
    labels folder: the update is refused, saying how many of each wait; once they are joined it goes through."""
    with_labels = _spec_file(tmp_path / "late", labels={"join_on": ["id"]})
    without = _spec_file(tmp_path / "plain")
    assert runner.invoke(app, ["create", str(with_labels)]).exit_code == 0
    paths = pipeline_paths(read_spec("sea"))
    rows = pd.DataFrame({"x1": [1.0, 2.0, 3.0], "id": [1, 2, 3]})  # three rows predicted, their labels to come
    awaiting = Awaiting(paths.root, paths.state)
    awaiting.keep(rows, keys_of(rows, ["id"]), [0, 1, 0], 1, "a" * 64, "f1.csv")
    labels = write_csv(pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 1]}), paths.labels, "l1.csv")

    refused = runner.invoke(app, ["update", "sea", str(without)])
    assert refused.exit_code == 1, refused.output
    assert "3 row(s) awaiting labels and 1 labels file(s) waiting" in refused.stderr
    assert read_spec("sea").labels is not None  # the spec is unchanged

    awaiting.match(pd.read_csv(labels), keys_of(pd.read_csv(labels), ["id"]), "y", "b" * 64, 30)  # joined
    labels.unlink()  # and moved to processed
    assert runner.invoke(app, ["update", "sea", str(without)]).exit_code == 0
    assert read_spec("sea").labels is None


def _three_rows_await_labels():
    paths = pipeline_paths(read_spec("sea"))
    rows = pd.DataFrame({"x1": [1.0, 2.0, 3.0], "id": [1, 2, 3]})
    awaiting = Awaiting(paths.root, paths.state)
    awaiting.keep(rows, keys_of(rows, ["id"]), [0, 1, 0], 1, "a" * 64, "f1.csv")
    return awaiting, rows


def test_changing_join_on_or_the_labels_folder_is_refused_while_rows_await_labels(calmops_home, tmp_path):
    """Rows kept for labels are keyed on their join_on values, and their labels files come into the labels folder:
    joined on other columns no labels file would ever match them, and another folder leaves the one their labels
    are expected in unwatched. Both updates are refused with the rows counted and what to keep; a change that
    orphans nothing (max_wait_days) goes through, and so does the join_on change once the rows are labelled."""
    labelled = {"join_on": ["id"]}
    assert runner.invoke(app, ["create", str(_spec_file(tmp_path / "late", labels=labelled))]).exit_code == 0
    awaiting, rows = _three_rows_await_labels()

    other_key = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path / "key", labels={"join_on": ["x1"]}))])
    assert other_key.exit_code == 1, other_key.output
    said = " ".join(other_key.stderr.split())
    assert "3 row(s) awaiting labels" in said and "joined on ['x1'], none would ever match" in said, said
    assert "keep labels.join_on ['id']" in said, said

    moved = {**labelled, "incoming": str(tmp_path / "elsewhere")}
    other_folder = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path / "folder", labels=moved))])
    assert other_folder.exit_code == 1, other_folder.output
    said = " ".join(other_folder.stderr.split())
    folder = calmops_home / "pipelines" / "sea" / "labels"
    assert "3 row(s) awaiting labels" in said and f"{folder} (where their labels files wait" in said, said
    assert f"keep labels.incoming {folder}" in said, said
    assert read_spec("sea").labels.join_on == ["id"] and read_spec("sea").labels.incoming is None  # unchanged

    patient = {**labelled, "max_wait_days": 60}
    assert runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path / "wait", labels=patient))]).exit_code == 0

    awaiting.match(rows.assign(y=[0, 1, 1]), keys_of(rows, ["id"]), "y", "b" * 64, 30)  # their labels came
    assert runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path / "key", labels={"join_on": ["x1"]}))]) \
        .exit_code == 0
    assert read_spec("sea").labels.join_on == ["x1"]


def test_a_broken_spec_mended_by_update_is_still_refused_when_it_would_orphan_rows_awaiting_labels(
        calmops_home, tmp_path):
    """A spec.yaml broken in place cannot say which labels section the waiting rows were kept under: its last
    saved version does, so an update that would orphan them is refused all the same, and one that keeps the
    labels section mends the spec."""
    with_labels = _spec_file(tmp_path / "late", labels={"join_on": ["id"]})
    assert runner.invoke(app, ["create", str(with_labels)]).exit_code == 0
    _three_rows_await_labels()
    (calmops_home / "pipelines" / "sea" / "spec.yaml").write_text("name: sea\nkind: [stream\n")

    refused = runner.invoke(app, ["update", "sea", str(_spec_file(tmp_path / "plain"))])
    assert refused.exit_code == 1, refused.output
    assert "3 row(s) awaiting labels" in " ".join(refused.stderr.split()), refused.stderr

    mended = runner.invoke(app, ["update", "sea", str(with_labels)])
    assert mended.exit_code == 0, mended.output
    assert read_spec("sea").labels.join_on == ["id"]
