"""Which files `calmops run` takes for a labels file without --labels (calmops.flows.looks_like_labels): the id
columns and the target and no feature column, judged on columns the file's features cannot come from otherwise."""

from __future__ import annotations

import pandas as pd

from calmops.core.features import is_labels_table
from calmops.core.store import spec_from_dict
from calmops.flows import looks_like_labels
from tests.conftest import STREAM_SPEC

LATE = {**STREAM_SPEC, "name": "late", "labels": {"join_on": ["id"]}, "drop_columns": ["packed"]}


def test_a_spec_with_a_preprocess_never_guesses_a_labels_file(calmops_home, tmp_path):
    """The preprocess unpacks x1..x3 from the raw column 'packed', which the spec drops afterwards: the raw header
    (id, packed, y) holds no feature column, yet the file is a features file with its labels. Only --labels says
    a file is a labels file then; without a preprocess the same header is one."""
    module = tmp_path / "unpack.py"
    module.write_text("def preprocess(df):\n"
                      "    parts = df['packed'].str.split(';', expand=True).astype(float)\n"
                      "    return df.assign(x1=parts[0], x2=parts[1], x3=parts[2])\n")
    data = tmp_path / "f1.csv"
    pd.DataFrame({"id": [1, 2], "packed": ["1;2;3", "4;5;6"], "y": [0, 1]}).to_csv(data, index=False)
    assert not looks_like_labels(spec_from_dict({**LATE, "preprocess": str(module)}), data)
    assert looks_like_labels(spec_from_dict(LATE), data)  # no preprocess, no champion: the columns say so


def test_a_column_the_champion_takes_makes_a_file_a_features_file():
    """A champion trained on x1 (say before the spec began to drop it) reads x1: a file holding it is no labels
    file, whatever the spec excludes now."""
    spec = spec_from_dict({**LATE, "drop_columns": ["x1"]})
    assert is_labels_table(spec, ["id", "x1", "y"])
    assert not is_labels_table(spec, ["id", "x1", "y"], ["x1", "x2", "x3"])
    assert is_labels_table(spec, ["id", "y"], ["x1", "x2", "x3"])
