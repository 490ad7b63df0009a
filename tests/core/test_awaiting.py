"""The rows that wait for labels: keys across formats, late and already-labelled ids, a crashed labels run."""

import pandas as pd

from calmops.core.awaiting import Awaiting, keys_of


def store(tmp_path) -> Awaiting:
    return Awaiting(tmp_path, tmp_path / "state")


def kept(tmp_path, ids, version=1, sha="a" * 64, at=None) -> Awaiting:
    frame = pd.DataFrame({"id": ids, "x": range(len(ids))})
    awaiting = store(tmp_path)
    awaiting.keep(frame, keys_of(frame, ["id"]), [i % 2 for i in range(len(ids))], version, sha, "f.csv")
    if at is not None:
        with awaiting.table.write() as con:
            con.execute(f"UPDATE {awaiting.t} SET predicted_at = ?", (at,))
    return awaiting


def labels(ids, y=None) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "y": y if y is not None else [1] * len(ids)})


def test_ids_read_as_numbers_or_text_are_the_same_id():
    a = keys_of(pd.DataFrame({"id": [7, 8]}), ["id"])
    assert a == keys_of(pd.DataFrame({"id": [7.0, 8.0]}), ["id"]) == keys_of(pd.DataFrame({"id": ["7", "8"]}), ["id"])


def test_a_match_takes_each_row_once_in_the_labels_files_order_and_counts_the_rest(tmp_path):
    awaiting = kept(tmp_path, [1, 2, 3, 4])
    frame = labels([3, 1, 99, 3], [0, 1, 1, 1])
    match = awaiting.match(frame, keys_of(frame, ["id"]), "y", "L" * 64, 30)
    assert match.rows["id"].tolist() == [3, 1] and match.labels.tolist() == [0, 1]  # the first label of id 3
    assert match.rows["x"].tolist() == [2, 0]
    assert match.counts == {"label_rows": 4, "matched": 2, "unmatched": 1, "duplicate": 1, "labelled_before": 0,
                            "late": 0}
    assert awaiting.waiting(30) == {"waiting": 2, "overdue": 0}
    # another labels file for id 1: its first label stands, the second counts as labelled before
    again = labels([1, 2])
    second = awaiting.match(again, keys_of(again, ["id"]), "y", "M" * 64, 30)
    assert second.counts["matched"] == 1 and second.counts["labelled_before"] == 1


def test_the_same_labels_file_run_again_finds_its_own_rows_and_a_quarantined_one_gives_them_back(tmp_path):
    awaiting = kept(tmp_path, [1, 2, 3])
    frame = labels([1, 2])
    assert awaiting.match(frame, keys_of(frame, ["id"]), "y", "L" * 64, 30).counts["matched"] == 2
    assert awaiting.match(frame, keys_of(frame, ["id"]), "y", "L" * 64, 30).counts["matched"] == 2  # after a crash
    awaiting.release("L" * 64)
    assert awaiting.waiting(30)["waiting"] == 3


def test_labels_for_rows_predicted_long_ago_are_joined_and_counted_late(tmp_path):
    import time

    awaiting = kept(tmp_path, [1, 2], at=time.time() - 40 * 86400)
    assert awaiting.waiting(30) == {"waiting": 2, "overdue": 2}
    frame = labels([1])
    match = awaiting.match(frame, keys_of(frame, ["id"]), "y", "L" * 64, 30)
    assert match.counts["matched"] == 1 and match.counts["late"] == 1


def test_a_column_of_numbers_and_text_is_kept_as_text_with_its_missing_values_missing(tmp_path):
    frame = pd.DataFrame({"id": [1, 2, 3], "colour": ["red", 7, None]})
    awaiting = store(tmp_path)
    awaiting.keep(frame, keys_of(frame, ["id"]), [0, 1, 0], 1, "a" * 64, "f.csv")
    asked = labels([3, 2])
    rows = awaiting.match(asked, keys_of(asked, ["id"]), "y", "L" * 64, 30).rows
    assert rows["colour"].iloc[1] == "7" and pd.isna(rows["colour"].iloc[0])


def test_kept_rows_are_deleted_once_every_row_is_labelled_by_labels_files_whose_runs_ended(tmp_path):
    awaiting = kept(tmp_path, [1, 2, 3], sha="a" * 64)
    other = pd.DataFrame({"id": [4], "x": [0]})
    awaiting.keep(other, keys_of(other, ["id"]), [1], 1, "b" * 64, "g.csv")
    folder = tmp_path / "state" / "awaiting"
    first = labels([1, 2])
    awaiting.match(first, keys_of(first, ["id"]), "y", "L" * 64, 30)
    assert awaiting.prune({"L" * 64}) == []  # row 3 of f.csv still waits; g.csv's row too
    rest = labels([3, 4])
    awaiting.match(rest, keys_of(rest, ["id"]), "y", "M" * 64, 30)
    # M's run has not ended (it may be run again after a crash and read its rows again): nothing goes
    assert awaiting.prune({"L" * 64}) == [] and len(list(folder.glob("*.parquet"))) == 2
    assert sorted(awaiting.prune({"L" * 64, "M" * 64})) == ["a" * 64, "b" * 64]
    assert not list(folder.glob("*.parquet"))
    # the ids stay known: a later labels file for them counts them as labelled before, and nothing waits
    again = labels([1, 4])
    assert awaiting.match(again, keys_of(again, ["id"]), "y", "N" * 64, 30).counts["labelled_before"] == 2
    assert awaiting.waiting(30) == {"waiting": 0, "overdue": 0}
