"""Where a batch's predictions are written: the name its input is kept under in processed/, + .predictions.csv."""

import hashlib

import pandas as pd

from calmops.core.store import MAX_NAME_BYTES, PipelinePaths, move_to_processed
from calmops.tasks.predict import predictions_path, write_predictions


def _paths(tmp_path) -> PipelinePaths:
    return PipelinePaths(root=tmp_path, incoming=tmp_path / "incoming", predictions=tmp_path / "predictions").ensure()


def _drop(paths: PipelinePaths, name: str, text: str) -> tuple:
    file = paths.incoming / name
    file.write_text(text)
    return file, hashlib.sha256(text.encode()).hexdigest()


def test_predictions_follow_the_name_the_input_gets_in_processed(tmp_path):
    paths = _paths(tmp_path)
    for text, rows in (("x\n1\n", 1), ("x\n1\n2\n", 2), ("x\n3\n4\n5\n", 3)):
        file, sha = _drop(paths, "export.csv", text)
        target = predictions_path(paths.predictions, file.name, sha, paths.processed)
        assert predictions_path(paths.predictions, file.name, sha, paths.processed) == target  # a retry: same name
        write_predictions(pd.DataFrame({"prediction": range(rows)}), target)
        write_predictions(pd.DataFrame({"prediction": range(rows)}), target)  # written again: no second copy
        moved = move_to_processed(paths, file, sha)
        assert target.name == f"{moved.name}.predictions.csv"
    names = sorted(p.name for p in paths.predictions.iterdir())
    assert len(names) == 3 and "export.csv.predictions.csv" in names  # three contents, three files
    assert sorted(len(pd.read_csv(paths.predictions / n)) for n in names) == [1, 2, 3]  # none written over


def test_a_long_name_stays_bounded_and_two_contents_stay_apart(tmp_path):
    paths = _paths(tmp_path)
    name = "é" * 120 + ".csv"
    file, sha = _drop(paths, name, "x\n1\n")
    first = predictions_path(paths.predictions, name, sha, paths.processed)
    move_to_processed(paths, file, sha)
    _, other = _drop(paths, name, "x\n2\n")
    second = predictions_path(paths.predictions, name, other, paths.processed)
    assert first != second
    assert all(len(p.name.encode()) <= MAX_NAME_BYTES for p in (first, second))
    assert first.name.endswith(".predictions.csv") and second.name.endswith(".predictions.csv")
