"""Every supported format is read by its real type, whatever the file is called."""

import json
import re

import arff
import pandas as pd
import pytest

from calmops.core.spec import parse_spec
from calmops.tasks.ingest import RejectedInput, detect_format, parse_and_validate, read_table

SPEC = parse_spec({"name": "fmt", "target": "y"})
FRAME = pd.DataFrame({"a": [1.5, 2.5, 3.5], "b": ["x", "y", "x"], "y": [0, 1, 0]})


def _write(fmt, path):
    if fmt == "csv":
        FRAME.to_csv(path, index=False)
    elif fmt == "semicolon":
        FRAME.to_csv(path, index=False, sep=";")
    elif fmt == "tsv":
        FRAME.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        FRAME.to_parquet(path, index=False)
    elif fmt == "json":
        path.write_text(json.dumps(FRAME.to_dict(orient="records")))
    elif fmt == "jsonl":
        FRAME.to_json(path, orient="records", lines=True)
    elif fmt == "xlsx":
        FRAME.to_excel(path, index=False)
    elif fmt == "arff":
        path.write_text(arff.dumps({"relation": "t", "attributes": [("a", "REAL"), ("b", ["x", "y"]), ("y", "INTEGER")],
                                    "data": FRAME.values.tolist()}))
    return path


@pytest.mark.parametrize("fmt,expected", [("csv", "csv"), ("semicolon", "csv"), ("tsv", "tsv"),
                                          ("parquet", "parquet"), ("json", "json"), ("jsonl", "jsonl"),
                                          ("xlsx", "xlsx"), ("arff", "arff")])
def test_formats_by_content_not_name(tmp_path, fmt, expected):
    # a misleading name: the parser must follow the bytes
    path = _write(fmt, tmp_path / ("data.tsv" if fmt == "tsv" else "data.dat"))
    assert detect_format(path) == expected
    batch = parse_and_validate(path, "0" * 64, SPEC, None)
    assert batch.X["a"].tolist() == [1.5, 2.5, 3.5]
    assert batch.X["b"].tolist() == ["x", "y", "x"]
    assert batch.y.astype(int).tolist() == [0, 1, 0]
    assert batch.feature_types == {"a": "numeric", "b": "categorical"}


def test_parquet_named_csv_is_read_as_parquet(tmp_path):
    path = tmp_path / "looks-like.csv"
    FRAME.to_parquet(path, index=False)
    assert parse_and_validate(path, "0" * 64, SPEC, None).format == "parquet"


def test_row_limit(tmp_path):
    spec = parse_spec({"name": "fmt", "target": "y", "limits": {"max_rows": 2}})
    path = _write("csv", tmp_path / "d.csv")
    with pytest.raises(RejectedInput, match="3 rows is over the limit of 2") as refused:
        parse_and_validate(path, "0" * 64, spec, None)
    # the setting that refused it, and what to do: split the file or raise the setting
    assert "(limits.max_rows in the spec)" in str(refused.value) and "split the file" in str(refused.value)
    assert "raise limits.max_rows in the spec ('calmops update fmt SPEC.yaml')" in str(refused.value)


def test_byte_limit_names_its_setting(tmp_path):
    path = _write("csv", tmp_path / "d.csv")
    size = path.stat().st_size
    spec = parse_spec({"name": "fmt", "target": "y", "limits": {"max_bytes": size - 1}})
    with pytest.raises(RejectedInput, match=f"d.csv: {size} bytes is over the limit of {size - 1} ") as refused:
        parse_and_validate(path, "0" * 64, spec, None)
    assert "(limits.max_bytes in the spec)" in str(refused.value) and "split the file" in str(refused.value)
    assert "raise limits.max_bytes in the spec ('calmops update fmt SPEC.yaml')" in str(refused.value)


def test_missing_target_values_named(tmp_path):
    path = tmp_path / "d.csv"
    FRAME.assign(y=[0, None, 1]).to_csv(path, index=False)
    with pytest.raises(RejectedInput, match=r"target column 'y' has a missing value in 1 row\(s\): data row 2;"):
        parse_and_validate(path, "0" * 64, SPEC, None)


def test_preprocess_module_is_applied(tmp_path):
    module = tmp_path / "prep.py"
    module.write_text("def preprocess(df):\n    df['a'] = df['a'] * 2\n    return df\n")
    spec = parse_spec({"name": "fmt", "target": "y", "preprocess": str(module)})
    path = _write("csv", tmp_path / "d.csv")
    assert parse_and_validate(path, "0" * 64, spec, None).X["a"].tolist() == [3.0, 5.0, 7.0]


def test_a_latin1_text_file_is_refused_as_text_that_is_not_utf8_naming_the_byte_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,y\n1,2,0\n3,caf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(RejectedInput, match=r"text, but not UTF-8: byte 0xE9 on line 3 .*save the file as UTF-8"):
        parse_and_validate(path, "0" * 64, SPEC, None)
    for ending in ("caf\u00e9\r\n", "caf\u00e9"):  # the byte among the file's last three: it is the file's end,
        path.write_bytes(f"a,b,y\n1,2,0\n3,4,{ending}".encode("latin-1"))  # not a character cut by the window
        with pytest.raises(RejectedInput, match=r"text, but not UTF-8: byte 0xE9 on line 3 "):
            parse_and_validate(path, "0" * 64, SPEC, None)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(RejectedInput, match="unknown format"):
        parse_and_validate(binary, "0" * 64, SPEC, None)


def test_a_utf8_character_cut_by_the_end_of_the_sniffed_bytes_is_still_utf8(tmp_path):
    from calmops.tasks.ingest import SNIFF_BYTES

    path = tmp_path / "d.csv"
    head = "a,b,y\n" + "1,x,0\n" * ((SNIFF_BYTES - 20) // 6)
    pad = SNIFF_BYTES - len(head.encode()) - 3  # "\u00e9" (two bytes) straddles the end of the window
    path.write_text(head + "2," + "x" * pad + "\u00e9,1\n" + "3,y,0\n", encoding="utf-8")
    assert path.read_bytes()[SNIFF_BYTES - 1:SNIFF_BYTES + 1] == "\u00e9".encode()
    assert detect_format(path) == "csv"


@pytest.mark.parametrize("text, refused", [
    ("<!DOCTYPE html>\n<html><body><p>a,b</p></body></html>\n", "an HTML page, not a table"),
    ("<?xml version='1.0'?>\n<rows><row a='1'/></rows>\n", "markup (XML or HTML), not a table"),
    ("<30d,30-60d,y\n1,2,0\n", None),  # a header that starts with '<' is still a table
])
def test_markup_is_refused_and_a_header_starting_with_a_bracket_is_not(tmp_path, text, refused):
    path = tmp_path / "page.csv"
    path.write_text(text)
    if refused is None:
        assert detect_format(path) == "csv"
        return
    with pytest.raises(RejectedInput, match=re.escape(refused)):
        detect_format(path)


def test_a_preprocess_error_names_a_number_column_with_a_few_text_cells_only(tmp_path):
    """The hint blames columns of numbers with some text cells; text Python reads as a number, blanks and
    columns of text are not blamed."""
    from calmops.tasks import validate as V

    frame = pd.DataFrame({"a": ["1", "2", "lots", "4"], "b": ["1e400", "1_000", " 3 ", ""],
                          "c": ["x", "y", "z", "1"], "d": [1.0, 2.0, None, 4.0],
                          "e": pd.Series([10**400, 1, 2, 3], dtype=object)})  # too large: coercion says so
    said = V.text_where_numbers(frame, dict.fromkeys("abcde", "numeric"))
    assert said == ["column 'a' holds text where the champion was trained on numbers: 'lots' in 1 row(s): data row 3"]


def test_coercion_names_a_number_too_large_for_a_float_and_reads_what_python_reads():
    from calmops.core.features import CoercionError, coerce_features

    with pytest.raises(CoercionError, match="column 'e' holds a number too large to represent"):
        coerce_features(pd.DataFrame({"e": pd.Series([10**400, 1], dtype=object)}), {"e": "numeric"})
    out = coerce_features(pd.DataFrame({"b": ["1e400", "1_000", " 3 ", ""], "t": [True, False, True, None]}),
                          {"b": "numeric", "t": "numeric"})
    assert out["b"].tolist()[:3] == [float("inf"), 1000.0, 3.0] and pd.isna(out["b"].iloc[3])
    assert out["t"].tolist()[:3] == [1.0, 0.0, 1.0]


def test_a_few_text_labels_among_numbers_are_named_with_their_rows():
    """One bad label in 500 is a bad row, said with its value and row; a column of text labels is the
    column written the wrong way, said as such."""
    from calmops.tasks import validate as V

    y = pd.Series(["0", "1"] * 250, dtype=object)
    y.iloc[48] = "abc"
    said = V.label_type_mismatch(y, [0, 1], "y")
    assert said == ("target column 'y' holds 1 label(s) that are not numbers, while the champion's classes are "
                    "('0', '1'): 'abc' in 1 row(s): data row 49; correct or remove these rows"), said
    words = V.label_type_mismatch(pd.Series(["no", "yes"] * 5, dtype=object), [0, 1], "y")
    assert "holds text ('no', 'yes') but the champion's classes are numbers" in words, words
    # True/False classes (river's Phishing, Bananas): a label of a third kind is the bad row, not "numbers"
    flags = pd.Series(["True", "False"] * 150, dtype=object)
    flags.iloc[7] = "maybe"
    said = V.label_type_mismatch(flags, [False, True], "label")
    assert said == ("target column 'label' holds 1 label(s) that are neither True nor False, the champion's "
                    "classes: 'maybe' in 1 row(s): data row 8; correct or remove these rows"), said


def test_json_lines_are_read_as_json_records_are_each_value_as_written(tmp_path):
    """The same records as JSON and as JSON Lines make the same batch: a code with a leading zero stays that text
    (it became the number 1234, a numeric feature the API's "01234" would not match), and text that looks like a
    date or a number stays text."""
    spec = parse_spec({"name": "fmt", "target": "y", "feature_types": {"zip": "categorical", "code": "categorical"}})
    records = [{"zip": "01234", "code": "7", "when": "2024-01-01", "a": 1.5, "y": 0},
               {"zip": "05678", "code": "8", "when": "2024-02-01", "a": 2.5, "y": 1}] * 5
    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps(records))
    as_lines = tmp_path / "d.jsonl"
    as_lines.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")  # a blank last line is skipped
    batches = [parse_and_validate(path, "0" * 64, spec, None) for path in (as_json, as_lines)]
    assert batches[1].X["zip"].tolist()[:2] == ["01234", "05678"]
    pd.testing.assert_frame_equal(batches[0].X, batches[1].X)
    assert batches[0].feature_types == batches[1].feature_types


def test_a_json_lines_file_with_a_bad_line_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1, "b": "x", "y": 0}\n{"a": 2, oops\n')
    with pytest.raises(RejectedInput, match=r"d.jsonl: cannot be parsed as jsonl: 'line 2: Expecting property name"):
        parse_and_validate(path, "0" * 64, SPEC, None)
    path.write_text('{"a": 1, "b": "x", "y": 0}\n[2, "x", 1]\n')
    with pytest.raises(RejectedInput, match=r"line 2 is not a JSON object of column: value"):
        parse_and_validate(path, "0" * 64, SPEC, None)


@pytest.mark.parametrize("name, text", [("d.json", '[{"a": 1.5, "b": "x", "y": 0}, {"a": 2.5, "b": "y", "y": 1}]'),
                                        ("d.jsonl", '{"a": 1.5, "b": "x", "y": 0}\n{"a": 2.5, "b": "y", "y": 1}\n')])
def test_json_with_a_byte_order_mark_is_read(tmp_path, name, text):
    """A byte-order mark is fine for text tables (docs/spec.md); JSON and JSON Lines were refused for it."""
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    batch = parse_and_validate(path, "0" * 64, SPEC, None)
    assert batch.X["a"].tolist() == [1.5, 2.5] and batch.y.astype(int).tolist() == [0, 1]


def test_a_file_missing_a_feature_names_the_columns_it_has_instead(tmp_path):
    """Files written as x0, x1, x2 for a champion trained on x1, x2, x3: the refusal names x3 as missing and x0 as
    the column the model does not know, so the renumbering shows at once."""
    from calmops.core.registry import InputSchema

    spec = parse_spec({"name": "sea", "target": "y"})
    reference = InputSchema(columns=["x1", "x2", "x3"], dtypes=dict.fromkeys(["x1", "x2", "x3"], "float64"),
                            feature_types=dict.fromkeys(["x1", "x2", "x3"], "numeric"), target="y",
                            task="classification", classes=[0, 1])
    path = tmp_path / "sea_0001.csv"
    pd.DataFrame({"x0": [1.0, 2.0], "x1": [3.0, 4.0], "x2": [5.0, 6.0], "y": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(path, "1" * 64, spec, reference)
    assert ("sea_0001.csv: feature column(s) missing: x3; unexpected: 'x0' (columns: 'x0', 'x1', 'x2', 'y')"
            == refused.value.reason), refused.value.reason


def test_a_format_the_pipeline_does_not_accept_is_refused_saying_both_ways_out(tmp_path):
    """A Parquet file for a pipeline that takes CSV only: the refusal names the format found, the accepted ones,
    and what to do (convert the file, or accept the format with an update), as the limits' refusals do."""
    spec = parse_spec({"name": "fmt", "target": "y", "formats": ["csv"]})
    path = tmp_path / "data.csv"  # named .csv, Parquet inside: the bytes decide
    FRAME.to_parquet(path, index=False)
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(path, "0" * 64, spec, None)
    said = str(refused.value)
    assert "format 'parquet' is not accepted by this pipeline (accepted: csv)" in said
    assert "save the file as csv" in said and "add 'parquet' to formats" in said
    assert "calmops update fmt SPEC.yaml" in said


@pytest.mark.parametrize("pack, said", [
    ("gzip", "gzip-compressed (decompress it first, e.g. gunzip)"),
    ("bz2", "bzip2-compressed (decompress it first, e.g. bunzip2)"),
    ("xz", "xz-compressed (decompress it first, e.g. unxz)"),
    ("zip", "a zip archive, not an Excel workbook (extract the table first)"),
])
def test_a_compressed_table_is_refused_by_what_it_is_and_what_to_do(tmp_path, pack, said):
    """A CSV shipped compressed under a .csv name: the refusal says it is compressed, how, and to unpack it,
    not that its bytes are of no known kind."""
    import bz2
    import gzip
    import lzma
    import zipfile

    table = FRAME.to_csv(index=False).encode()
    path = tmp_path / "data.csv"
    if pack == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data.csv", table)
    else:
        path.write_bytes({"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[pack](table))
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(path, "0" * 64, SPEC, None)
    assert f"data.csv: unknown format: {said}; save the table as CSV" in str(refused.value)
    assert "and drop it in again" in str(refused.value)


def test_a_text_table_whose_header_begins_like_a_compressed_file_is_read(tmp_path):
    """Only the whole magic of a container refuses a file: a header that starts with 'BZh' is a table."""
    path = tmp_path / "bzh.csv"
    path.write_text("BZh9,b,y\n1,2,0\n3,4,1\n")
    assert detect_format(path) == "csv"
    assert parse_and_validate(path, "0" * 64, SPEC, None).X.columns.tolist() == ["BZh9", "b"]


def test_an_excel_workbook_is_still_read_after_the_zip_check(tmp_path):
    path = tmp_path / "book.xlsx"
    FRAME.to_excel(path, index=False)
    assert detect_format(path) == "xlsx"


def test_a_latin1_byte_past_the_sniffed_head_is_named_with_its_line_as_one_in_the_head_is(tmp_path):
    """The format is sniffed from the first 64 KiB; a Latin-1 byte further on is found when the table is read,
    and said the same way (the byte and its line), not as the parser's codec error."""
    from calmops.tasks.ingest import SNIFF_BYTES

    rows = ["a,b,y"] + [f"{i},x,{i % 2}" for i in range(SNIFF_BYTES // 6 + 2000)]
    late = len(rows) - 5  # a line past the head: its number counted from the header's line 1
    rows[late - 1] = f"{late},caf\u00e9,1"
    path = tmp_path / "late.csv"
    path.write_bytes("\n".join(rows).encode("latin-1") + b"\n")
    assert path.read_bytes().index(b"\xe9") > SNIFF_BYTES
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(path, "0" * 64, SPEC, None)
    assert f"late.csv: text, but not UTF-8: byte 0xE9 on line {late} " in str(refused.value)
    assert "save the file as UTF-8" in str(refused.value)


def test_a_header_with_several_empty_names_is_refused_saying_columns_lack_a_name(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text(",,,y\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(RejectedInput) as refused:
        parse_and_validate(path, "0" * 64, SPEC, None)
    assert "more than one column has no name in the header" in str(refused.value)
    assert "duplicated column name" not in str(refused.value)
    one = tmp_path / "index.csv"  # pandas' own export with its index: one unnamed column is a table
    FRAME.to_csv(one)
    assert parse_and_validate(one, "0" * 64, SPEC, None).X.shape[0] == 3


def test_a_labels_file_in_a_format_the_pipeline_does_not_accept_is_told_the_same_ways_out(tmp_path):
    from calmops.tasks.labels import read_labels

    spec = parse_spec({"name": "fmt", "target": "y", "formats": ["csv"], "labels": {"join_on": ["id"]}})
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": [1, 2], "y": [0, 1]}).to_parquet(path, index=False)
    with pytest.raises(RejectedInput) as refused:
        read_labels(path, spec)
    assert "format 'parquet' is not accepted by this pipeline (accepted: csv): save the file as csv" in \
        str(refused.value)


def test_formulas_saved_with_their_results_are_read_and_only_those_without_are_refused(tmp_path):
    """A workbook saved by a spreadsheet program stores each formula's result (an empty text result too: t="str"
    with an empty value): read as values. One written by a program that computes nothing stores none: refused,
    naming the cell, its column and formula."""
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["a", "b", "y"])
    for i in range(3):
        sheet.append([i, f"=A{i + 2}*2", i % 2])
    raw = tmp_path / "raw.xlsx"
    book.save(raw)
    with pytest.raises(RejectedInput, match=r"3 formula cell\(s\) saved without their result.*B2 in column 'b' "
                                             r"\('=A2\*2'\)"):
        read_table(raw, "xlsx")

    def saved_with_results(target, results):  # as a spreadsheet program saves it: each formula's result stored
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(target, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "xl/worksheets/sheet1.xml":
                    text = data.decode()
                    for row, result in enumerate(results, start=2):
                        text = text.replace(f"<c r=\"B{row}\"><f>A{row}*2</f><v />", result(row))
                    data = text.encode()
                dst.writestr(item, data)

    numbers = tmp_path / "numbers.xlsx"
    saved_with_results(numbers, [lambda r: f"<c r=\"B{r}\"><f>A{r}*2</f><v>{(r - 2) * 2}</v>"] * 3)
    assert read_table(numbers, "xlsx")["b"].tolist() == [0, 2, 4]
    texts = tmp_path / "texts.xlsx"  # =IF(…, "", …) whose result is the empty text: a value, read as missing
    saved_with_results(texts, [lambda r: f"<c r=\"B{r}\" t=\"str\"><f>A{r}*2</f><v></v>"] * 3)
    assert read_table(texts, "xlsx")["b"].isna().all()


def test_an_opendocument_spreadsheet_is_told_to_be_saved_as_xlsx_or_csv(tmp_path):
    import zipfile

    path = tmp_path / "sheet.ods"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    with pytest.raises(RejectedInput, match=r"sheet.ods: unknown format: an OpenDocument spreadsheet \(.ods\): save "
                                             r"it as .xlsx or CSV"):
        parse_and_validate(path, "0" * 64, SPEC, None)
