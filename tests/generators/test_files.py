"""write_files: every format reads back, and no partial file is ever visible under its final name."""

import os

import numpy as np
import pandas as pd
import pytest

from calmops.generators import files
from calmops.generators.files import FORMATS, read_table, write_files


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "num": rng.normal(size=20).round(6),
        "count": rng.integers(0, 100, 20),
        "cat": rng.choice(["a", "b", "c"], 20),
        "flag": rng.random(20) < 0.5,
    })


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_reads_back(tmp_path, frame, fmt):
    paths = write_files(frame, tmp_path, n_files=3, fmt=fmt, prefix="part")
    assert [p.name for p in paths] == [f"part_000{i}.{FORMATS[fmt]}" for i in (1, 2, 3)]
    back = pd.concat([read_table(p) for p in paths], ignore_index=True)
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_allclose(back["num"].astype(float), frame["num"])
    assert back["count"].astype(int).tolist() == frame["count"].tolist()
    assert back["cat"].tolist() == frame["cat"].tolist()
    assert back["flag"].astype(bool).tolist() == frame["flag"].tolist()
    assert sorted(os.listdir(tmp_path)) == [p.name for p in paths]  # no temporary file left


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "arff"])
def test_text_formats_read_text_back_as_text(tmp_path, fmt):
    """A column of text that looks like dates (or codes with leading zeros) stays the text it was in every text
    format, so a command that reads a file and writes it back (inject) leaves it as it was."""
    frame = pd.DataFrame({"date": ["2024-01-01", "2024-02-01"], "site": ["east", "west"], "x": [1.5, 2.5]})
    back = read_table(write_files(frame, tmp_path, fmt=fmt)[0])
    assert back["date"].tolist() == ["2024-01-01", "2024-02-01"] and back["x"].tolist() == [1.5, 2.5]


def test_rows_per_file_and_bad_arguments(tmp_path, frame):
    paths = write_files(frame, tmp_path, rows_per_file=8)
    assert [len(read_table(p)) for p in paths] == [8, 8, 4]
    with pytest.raises(ValueError, match="valid formats"):
        write_files(frame, tmp_path, fmt="xls")
    with pytest.raises(ValueError, match="not both"):
        write_files(frame, tmp_path, n_files=2, rows_per_file=3)
    with pytest.raises(ValueError, match="n_files"):
        write_files(frame, tmp_path, n_files=50)


def test_a_failed_write_leaves_no_file(tmp_path, frame, monkeypatch):
    def broken(self, path, *args, **kwargs):
        with open(path, "w") as fh:
            fh.write("num,count\n1,")  # half a file, then the disk "fails"
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_files(frame, tmp_path, n_files=2, fmt="csv")
    assert os.listdir(tmp_path) == []


def test_the_final_name_appears_only_complete(tmp_path, frame, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        # at the moment of the rename the final name does not exist yet and the temporary file is whole
        seen.append((os.path.basename(src), os.path.exists(dst), len(read_table(src, "csv"))))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", spy)
    write_files(frame, tmp_path, n_files=2, fmt="csv", prefix="b")
    assert seen == [(".b_0001.csv.part", False, 10), (".b_0002.csv.part", False, 10)]


@pytest.mark.parametrize("prefix", ["../escape", "", ".", "..", "sub/batch", "sub\\batch", ".hidden"])
def test_a_prefix_is_a_plain_file_name(tmp_path, frame, prefix):
    with pytest.raises(ValueError, match="prefix must be a plain file name"):
        write_files(frame, tmp_path / "out", prefix=prefix)
    assert list(tmp_path.iterdir()) == []
