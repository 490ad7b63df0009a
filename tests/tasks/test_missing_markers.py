"""Which cells of a text table are missing values: the markers docs/security.md lists, exactly as written, whatever
pandas' own defaults are; any other text where a number is expected is refused, naming the column and row."""

import re
from pathlib import Path

import pytest

from calmops.core.spec import parse_spec
from calmops.tasks.ingest import MISSING_MARKERS, RejectedInput, parse_and_validate

SPEC = parse_spec({"name": "markers", "target": "y", "feature_types": {"a": "numeric"}})
DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _csv(tmp_path, cell: str) -> Path:
    path = tmp_path / "batch.csv"
    quoted = '"' + cell.replace('"', '""') + '"'
    path.write_text(f"a,b,y\n1.5,x,0\n{quoted},y,1\n3.5,x,0\n")
    return path


def test_the_documented_markers_are_the_ones_read_as_missing():
    text = DOCS.read_text()
    section = text[text.index("### Missing values"):]
    listed = section[section.index("in any column:"):section.index(".\n")]  # the first sentence lists them
    assert "an empty cell" in listed
    assert set(re.findall(r"`([^`]+)`", listed)) == set(MISSING_MARKERS) - {""}


@pytest.mark.parametrize("cell", [*MISSING_MARKERS, "   "])
def test_each_marker_in_a_numeric_column_is_a_missing_value(tmp_path, cell):
    batch = parse_and_validate(_csv(tmp_path, cell), "0" * 64, SPEC, None)
    assert batch.X["a"].isna().tolist() == [False, True, False]
    assert batch.X["a"].dtype.kind == "f"


@pytest.mark.parametrize("cell", ["n/a2", "na", "NONE", " NA", "N A", "abc"])
def test_a_near_miss_is_text_and_refused_naming_column_value_and_row(tmp_path, cell):
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(_csv(tmp_path, cell), "0" * 64, SPEC, None)
    assert f"column 'a' should be numeric but holds 1 non-numeric value(s), e.g. {cell!r} in data row 2" in \
        refused.value.reason


def test_a_pandas_with_other_default_markers_reads_a_file_the_same(tmp_path):
    """pandas' default list has changed between versions ('None' came in pandas 2.0): the list is CalmOps' own."""
    from pandas._libs.parsers import STR_NA_VALUES  # what read_csv uses unless told otherwise

    saved = set(STR_NA_VALUES)
    STR_NA_VALUES.discard("n/a")
    STR_NA_VALUES.add("abc")
    try:
        assert parse_and_validate(_csv(tmp_path, "n/a"), "0" * 64, SPEC, None).X["a"].isna().sum() == 1
        with pytest.raises(RejectedInput, match="e.g. 'abc' in data row 2"):
            parse_and_validate(_csv(tmp_path, "abc"), "0" * 64, SPEC, None)
    finally:
        STR_NA_VALUES.clear()
        STR_NA_VALUES.update(saved)
