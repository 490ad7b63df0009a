"""A labels file read as the model learnt its classes, its ids as written: labels of another type refused with the
reason, zero-padded ids joined, repeated ids counted once, and single-column ids shown as plain values."""

import json

import numpy as np
import pandas as pd
import pytest

from calmops.core.awaiting import Awaiting, keys_of
from calmops.core.spec import parse_spec
from calmops.tasks.ingest import RejectedInput
from calmops.tasks.labels import keep_for_labels, labelled_rows, read_labels

SPEC = parse_spec({"name": "late", "kind": "stream", "target": "y", "labels": {"join_on": ["id"]}})
TWO = parse_spec({"name": "late2", "kind": "stream", "target": "y", "labels": {"join_on": ["shop", "id"]}})


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def kept(tmp_path, frame: pd.DataFrame, spec=SPEC) -> tuple[Awaiting, dict]:
    awaiting = Awaiting(tmp_path, tmp_path / "state")
    kept = keep_for_labels(awaiting, spec, frame, frame[["x"]], [0] * len(frame), 1, "a" * 64, "f.parquet", "parquet")
    return awaiting, kept


def join(awaiting: Awaiting, labels: pd.DataFrame, spec=SPEC):
    return awaiting.match(labels, keys_of(labels, spec.labels.join_on), spec.target, "L" * 64, 30)


# -- 1. the labels' type against the model's classes ------------------------------------------------


def test_labels_written_as_whole_floats_are_the_integer_classes_and_the_batch_keeps_their_dtype(tmp_path):
    path = write(tmp_path, "l.csv", "id,y\n1,1.0\n2,0.0\n3,1.0\n")
    frame, _ = read_labels(path, SPEC, [0, 1])
    assert frame["y"].dtype == np.int64 and frame["y"].tolist() == [1, 0, 1]
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]}))
    batch = labelled_rows(join(awaiting, frame), SPEC)
    assert batch["y"].dtype == np.int64 and batch["y"].tolist() == [1, 0, 1]


@pytest.mark.parametrize(("text", "holds", "values"), [
    ("id,y\n1,True\n2,False\n", "holds booleans", "'True', 'False'"),
    ("id,y\n1,0.5\n2,1.0\n3,0.25\n", "holds numbers that are not whole", "'0.5', '0.25'"),
    ("id,y\n1,yes\n2,no\n", "holds text", "'yes', 'no'"),
])
def test_labels_of_another_kind_than_integer_classes_are_refused_naming_file_column_values_and_classes(
        tmp_path, text, holds, values):
    with pytest.raises(RejectedInput) as refused:
        read_labels(write(tmp_path, "l.csv", text), SPEC, [0, 1])
    reason = refused.value.reason
    assert reason.startswith(f"l.csv: target column 'y' {holds} ({values})"), reason
    assert "classes are" in reason and "('0', '1')" in reason and "\n" not in reason


def test_numbers_for_text_classes_are_refused_and_text_classes_that_look_like_numbers_are_read_as_written(
        tmp_path):
    pd.DataFrame({"id": [1, 2], "y": [1, 0]}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(RejectedInput, match=r"l\.parquet: target column 'y' holds numbers \('1', '0'\) but the "
                                            r"champion's classes are text \('no', 'yes'\)"):
        read_labels(tmp_path / "l.parquet", SPEC, ["no", "yes"])
    # a model that learnt the classes "01" and "02" (text) is labelled by a CSV that writes them as they are
    frame, _ = read_labels(write(tmp_path, "m.csv", "id,y\n1,01\n2,02\n"), SPEC, ["01", "02"])
    assert frame["y"].tolist() == ["01", "02"]


def test_boolean_classes_take_boolean_labels_and_refuse_numbers(tmp_path):
    frame, _ = read_labels(write(tmp_path, "l.csv", "id,y\n1,True\n2,False\n"), SPEC, [False, True])
    assert frame["y"].dtype == bool
    with pytest.raises(RejectedInput, match=r"holds numbers \('1', '0'\) but the champion's classes are booleans"):
        read_labels(write(tmp_path, "m.csv", "id,y\n1,1\n2,0\n"), SPEC, [False, True])


# -- 2. repeated ids ----------------------------------------------------------------------------------------


def test_repeated_ids_counts_the_ids_named_more_than_once_not_the_extra_rows(tmp_path):
    frame = pd.DataFrame({"id": [9001, 9001, 9001, 7, 8, 8], "x": range(6)})
    assert kept(tmp_path, frame)[1]["repeated_ids"] == 2  # 9001 (three times) and 8 (twice)


# -- 3. the ids listed --------------------------------------------------------------------------------------


def test_ids_already_waiting_in_another_features_file_are_said_when_the_second_file_is_kept(tmp_path, calmops_home):
    """An id should name one prediction: a labels file naming an id whose rows wait in two features files labels
    both. That is said when the second file is kept (counted, its first file named, and logged), not found out
    when wrong labels have been learnt; a file kept again (its own rows) is not another file."""
    awaiting = Awaiting(tmp_path, tmp_path / "state")
    first = pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]})
    told = keep_for_labels(awaiting, SPEC, first, first[["x"]], [0] * 3, 1, "a" * 64, "a.parquet", "parquet")
    assert "ids_waiting_elsewhere" not in told
    again = keep_for_labels(awaiting, SPEC, first, first[["x"]], [0] * 3, 1, "a" * 64, "a.parquet", "parquet")
    assert "ids_waiting_elsewhere" not in again  # its own rows, kept again
    second = pd.DataFrame({"id": [3, 4, 2], "x": [0.5, 0.6, 0.7]})
    told = keep_for_labels(awaiting, SPEC, second, second[["x"]], [0] * 3, 1, "b" * 64, "b.parquet", "parquet")
    assert told["ids_waiting_elsewhere"] == 2 and told["ids_waiting_elsewhere_in"] == ["a.parquet"]
    log = list(calmops_home.rglob("*.log"))
    assert any("2 id(s) of its rows (e.g. " in f.read_text() and ") already wait for labels in a.parquet" in f.read_text()
               for f in log), [f.read_text() for f in log]
    join(awaiting, pd.DataFrame({"id": [1, 2, 3], "y": [1, 1, 1]}))  # a's rows labelled: no longer waiting
    third = pd.DataFrame({"id": [1], "x": [0.9]})
    assert "ids_waiting_elsewhere" not in keep_for_labels(awaiting, SPEC, third, third[["x"]], [0], 1, "c" * 64,
                                                          "c.parquet", "parquet")


def test_unmatched_and_duplicate_ids_of_one_join_column_are_plain_values_and_lists_for_several(tmp_path):
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": [1, 2], "x": [0.1, 0.2]}))
    frame, _ = read_labels(write(tmp_path, "l.csv", "id,y\n1,1\n1,0\n1001,1\n1002,0\n"), SPEC, [0, 1])
    match = join(awaiting, frame)
    assert match.unmatched_ids == ["1001", "1002"] and match.duplicate_ids == ["1"]
    two, _ = kept(tmp_path / "two", pd.DataFrame({"shop": ["a"], "id": [1], "x": [0.1]}), TWO)
    frame, _ = read_labels(write(tmp_path, "m.csv", "shop,id,y\na,1,1\nb,1,0\n"), TWO, [0, 1])
    assert join(two, frame, TWO).unmatched_ids == [["b", "1"]]


def test_ids_another_labels_file_labelled_are_listed_as_such_not_as_duplicates(tmp_path):
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]}))
    first, _ = read_labels(write(tmp_path, "a.csv", "id,y\n1,1\n2,0\n"), SPEC, [0, 1])
    awaiting.match(first, keys_of(first, ["id"]), "y", "A" * 64, 30)
    frame, _ = read_labels(write(tmp_path, "b.csv", "id,y\n1,1\n2,0\n3,1\n3,0\n"), SPEC, [0, 1])
    match = join(awaiting, frame)
    assert (match.counts["labelled_before"], match.labelled_before_ids) == (2, ["1", "2"])
    assert (match.counts["duplicate"], match.duplicate_ids) == (1, ["3"]) and match.counts["matched"] == 1


def test_an_id_named_three_times_counts_two_duplicate_rows_and_is_listed_once(tmp_path):
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": [1, 2], "x": [0.1, 0.2]}))
    frame, _ = read_labels(write(tmp_path, "l.csv", "id,y\n1,1\n1,0\n2,0\n1,1\n"), SPEC, [0, 1])
    match = join(awaiting, frame)
    assert (match.counts["duplicate"], match.duplicate_ids, match.counts["matched"]) == (2, ["1"], 2)


# -- 4. ids as written ----------------------------------------------------------------------------------------


def test_zero_padded_text_ids_join_when_the_labels_csv_writes_them_as_they_are(tmp_path):
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": ["000001", "000002", "000010"], "x": [0.1, 0.2, 0.3]}))
    frame, _ = read_labels(write(tmp_path, "l.csv", "id,y\n000010,1\n000001,0\n"), SPEC, [0, 1])
    match = join(awaiting, frame)
    assert match.counts["matched"] == 2 and match.rows["id"].tolist() == ["000010", "000001"]
    jsonl = write(tmp_path, "l.jsonl", '{"id": "000002", "y": 1}\n')
    assert join(awaiting, read_labels(jsonl, SPEC, [0, 1])[0]).counts["matched"] == 1


def test_ids_kept_as_integers_match_labels_written_with_leading_zeros_or_as_floats_each_row_once(tmp_path):
    awaiting, _ = kept(tmp_path, pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]}))
    frame, _ = read_labels(write(tmp_path, "l.csv", "id,y\n000001,1\n2.0,0\n1,0\n0003x,1\n"), SPEC, [0, 1])
    match = join(awaiting, frame)
    assert match.rows["id"].tolist() == [1, 2] and match.labels.tolist() == [1, 0]
    assert (match.counts["duplicate"], match.duplicate_ids) == (1, ["1"])  # 000001 and 1 are the same row
    assert match.unmatched_ids == ["0003x"]
    assert json.loads(keys_of(frame, ["id"])[0]) == ["000001"]  # read as written


def test_a_labels_file_over_a_limit_is_refused_naming_the_setting(tmp_path):
    path = write(tmp_path, "l.csv", "id,y\n1,0\n2,1\n3,0\n")
    rows = parse_spec({"name": "late", "kind": "stream", "target": "y", "labels": {"join_on": ["id"]},
                       "limits": {"max_rows": 2}})
    with pytest.raises(RejectedInput, match=r"l.csv: 3 rows is over the limit of 2 \(limits.max_rows in the spec\)"):
        read_labels(path, rows, [0, 1])
    size = path.stat().st_size
    small = parse_spec({"name": "late", "kind": "stream", "target": "y", "labels": {"join_on": ["id"]},
                        "limits": {"max_bytes": size - 1}})
    with pytest.raises(RejectedInput, match=r"raise limits.max_bytes in the spec \('calmops update late SPEC.yaml'\)"):
        read_labels(path, small, [0, 1])


# -- 5. ids of a features CSV (read as written, joined as their column is) -------------------------------------


def kept_csv(tmp_path, text: str, spec=SPEC) -> tuple[Awaiting, dict]:
    """A features CSV kept for labels as a run keeps it: its ids read as written (they go to its predictions)."""
    from calmops.tasks.ingest import read_table

    frame = read_table(write(tmp_path, "f.csv", text), "csv", ",", as_text=spec.id_columns)
    awaiting = Awaiting(tmp_path, tmp_path / "state")
    return awaiting, keep_for_labels(awaiting, spec, frame, frame[["x"]], [0] * len(frame), 1, "a" * 64, "f.csv",
                                     "csv")


@pytest.mark.parametrize(("features", "labels", "matched"), [
    # ids longer than any integer type: each is itself, exactly (as floats two of them were one id)
    ("id,x\n12345678901234567890123,1\n12345678901234567890124,2\n",
     "id,y\n12345678901234567890123,0\n12345678901234567890124,1\n", 2),
    # not whole numbers: joined as written, as the predictions file shows them
    ("id,x\n1.50,1\n2.25,2\n", "id,y\n1.50,0\n2.25,1\n", 2),
    # whole numbers: joined written with or without their zeros
    ("id,x\n000001,1\n000002,2\n", "id,y\n1,0\n000002,1\n", 2),
    # a column that also holds text is text: 000001 is not 1 there
    ("id,x\n000001,1\nA7,2\n", "id,y\n000001,0\nA7,1\n1,1\n", 2),
])
def test_the_ids_of_a_features_csv_join_labels_as_written_or_as_whole_numbers(tmp_path, features, labels, matched):
    awaiting, told = kept_csv(tmp_path, features)
    assert told["repeated_ids"] == 0  # every id kept is its own
    frame, _ = read_labels(write(tmp_path, "l.csv", labels), SPEC, [0, 1])
    assert join(awaiting, frame).counts["matched"] == matched


def test_several_join_columns_of_a_features_csv_each_join_as_its_column_is(tmp_path):
    awaiting, _ = kept_csv(tmp_path, "shop,id,x\na,0001,1\nb,0001,2\n", TWO)
    frame, _ = read_labels(write(tmp_path, "l.csv", "shop,id,y\nb,1,0\na,0001,1\n"), TWO, [0, 1])
    match = join(awaiting, frame, TWO)
    assert match.counts["matched"] == 2 and match.labels.tolist() == [0, 1]
