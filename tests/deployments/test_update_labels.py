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
