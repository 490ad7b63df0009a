"""Ingest: read a file by its real type, apply the user's preprocessing, validate it.

A file that fails raises :class:`RejectedInput` with a plain-words reason; the flow moves it
to quarantine with that reason. Nothing here changes the file.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from calmops.core.errors import UserCodeFailed
from calmops.core.features import (
    CoercionError,
    coerce_features,
    feature_columns,
    is_labels_table,
    resolve_feature_types,
)
from calmops.core.kinds import KINDS
from calmops.core.metrics import infer_task
from calmops.core.registry import InputSchema
from calmops.core.spec import TEXT_FORMATS, PipelineSpec, SpecError, build_estimator
from calmops.core.store import pipeline_paths, sha256_of, write_atomic
from calmops.tasks import BadInput, step
from calmops.tasks import validate as V

SNIFF_BYTES = 64 * 1024
#: a tag, declaration or processing instruction opening a document (a header such as "<30d,30-60d" is not one)
MARKUP = re.compile(r"<(?:[A-Za-z][\w:.-]*[\s/>]|!|\?)")
MAX_COLUMNS_NAMED = 50  # column names a refusal lists in its details (a page read as a table has thousands)
#: The cells of a text table (CSV, TSV, TXT) or a spreadsheet read as a missing value, in any column, matched as
#: written (case included; with a space around it a cell is text): pandas 2's default markers, given explicitly
#: so that a pandas upgrade cannot change what a file means (docs/security.md, "Missing values").
MISSING_MARKERS = ("", "NA", "N/A", "n/a", "#N/A", "#N/A N/A", "#NA", "<NA>", "NULL", "null", "NaN", "-NaN", "nan",
                   "-nan", "None", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN")
MISSING = {"keep_default_na": False, "na_values": list(MISSING_MARKERS)}  # for pandas' read_csv / read_excel


class RejectedInput(BadInput):
    """Bad input: the file is quarantined with this reason and nothing else changes."""

    def __init__(self, reason: str, **details):
        super().__init__(reason)
        self.reason = reason
        self.details = details


@dataclass
class Batch:
    """The validated rows of one file, ready for drift checks, evaluation and training."""

    file: str
    sha256: str
    format: str
    frame: pd.DataFrame                      # the parsed table after preprocessing
    X: pd.DataFrame                          # features, coerced to their types
    y: pd.Series | None
    feature_types: dict[str, str]
    signals: list[str] = field(default_factory=list)   # schema drift noticed on the way (not errors)
    labels: V.Labels = field(default_factory=V.Labels)  # classes in the file, and those new to the champion
    cannot_train: str | None = None   # why this file can be scored and predicted but not train a model
    new_columns: tuple[str, ...] = ()  # columns of the file the model does not know (ignored; said as signals)

    @property
    def n_rows(self) -> int:
        return len(self.X)


# -- reading by real type ------------------------------------------------------------------


def _utf8_head(head: bytes, *, whole: bool) -> str:
    """The first bytes of a file as UTF-8 text; a multi-byte character cut by the end of the window (not of
    the ``whole`` file) is left out. Raises UnicodeDecodeError at the first byte that is not UTF-8."""
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if whole or exc.reason != "unexpected end of data":
            raise
        return head[:exc.start].decode("utf-8")


def detect_format(path: Path) -> str:
    """The file's real type from its bytes; the extension is only a hint for text tables."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        raise RejectedInput(f"{path.name}: the file is empty (0 bytes): {WRITE_WHOLE}")
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        if _is_workbook(path):
            return "xlsx"
        kind = ("an OpenDocument spreadsheet (.ods): save it as .xlsx or CSV" if _zip_mimetype(path).startswith(
            "application/vnd.oasis.opendocument") else "a zip archive, not an Excel workbook (extract the table first)")
        raise RejectedInput(f"{path.name}: unknown format: {kind}; {CONVERT}")
    for magic, kind in _COMPRESSED.items():
        if re.match(magic, head):
            raise RejectedInput(f"{path.name}: unknown format: {kind}; {CONVERT}")
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise RejectedInput(f"{path.name}: legacy .xls workbooks are not supported; save it as .xlsx")
    try:
        text = _utf8_head(head, whole=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        if b"\x00" not in head and _looks_like_text(head):
            raise _not_utf8(path.name, head[exc.start], head[:exc.start].count(b"\n") + 1) from None
        raise RejectedInput(f"{path.name}: unknown format: the bytes are neither text nor Parquet/Excel; "
                            f"{CONVERT}") from None
    if "\x00" in text:
        raise RejectedInput(f"{path.name}: unknown format: binary content; {CONVERT}")
    stripped = text.lstrip("\ufeff \t\r\n")
    first_code = next((ln.strip() for ln in stripped.splitlines() if ln.strip() and not ln.startswith("%")), "")
    if first_code.lower().startswith("@relation"):
        return "arff"
    if MARKUP.match(stripped):  # read as a table, a page's markup would be one header of thousands of "columns"
        page = re.match(r"<(!doctype html|html|head|body)\b", stripped, re.IGNORECASE)
        raise RejectedInput(f"{path.name}: {'an HTML page' if page else 'markup (XML or HTML)'}, not a table; only "
                            "data files (a table in one of the spec's formats) belong in the incoming folder",
                            format="markup")
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        lines = [ln for ln in stripped.splitlines() if ln.strip()]
        if len(lines) > 1 and lines[0].rstrip().endswith("}"):
            return "jsonl"
        return "json"
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("tsv", "txt"):
        return suffix
    return "csv"


#: What to do with a file that holds no rows (often one taken before it was written).
WRITE_WHOLE = ("nothing to read; if it was written in place, write it under another name (x.csv.part) and rename "
               "it when complete; drop it in again once it holds its rows")

#: The C parser's error for a row with more fields than the header's.
RAGGED = re.compile(r"Expected (?P<expected>\d+) fields in line (?P<line>\d+), saw (?P<saw>\d+)")

#: What to do with a file whose bytes are no table CalmOps reads.
CONVERT = ("save the table as CSV, Parquet, JSON, JSON Lines, ARFF or Excel (.xlsx), in a format the spec's "
           "formats accept, and drop it in again")

#: Containers a table is often shipped in, by their first bytes: said by name, they say what to do.
#: (bzip2's magic is checked with its first block's, as a text header may begin with "BZh".)
_COMPRESSED = {rb"\x1f\x8b": "gzip-compressed (decompress it first, e.g. gunzip)",
               rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)": "bzip2-compressed (decompress it first, e.g. bunzip2)",
               rb"\xfd7zXZ\x00": "xz-compressed (decompress it first, e.g. unxz)",
               rb"\x28\xb5\x2f\xfd": "zstd-compressed (decompress it first, e.g. unzstd)",
               rb"7z\xbc\xaf\x27\x1c": "a 7-Zip archive (extract the table first)"}


def _zip_mimetype(path: Path) -> str:
    """The ``mimetype`` member of a zip (OpenDocument files name their kind there); "" without one."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("mimetype")[:100].decode("ascii", "replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        return ""


def _is_workbook(path: Path) -> bool:
    """Whether a zip file is an Excel workbook (it holds ``xl/workbook.xml``); a damaged one counts as one, and
    its reading says what is wrong."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.startswith("xl/workbook") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return True


def _not_utf8(name: str, byte: int, line: int) -> RejectedInput:
    return RejectedInput(f"{name}: text, but not UTF-8: byte 0x{byte:02X} on line {line} (e.g. Latin-1 or "
                         "Windows-1252); text tables are read as UTF-8: save the file as UTF-8 and drop it in again",
                         format="text")


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """The first byte of a file that is not UTF-8 and its line, read in blocks (the sniffed head was UTF-8: the
    byte is further on); None when the whole file is UTF-8."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:  # exc.object: the bytes the decoder held, then this block
                at = max(exc.start - (len(exc.object) - len(block)), 0)
                return exc.object[exc.start], lines + block[:at].count(b"\n")
            if not block:
                return None
            lines += block.count(b"\n")


_SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _first_sheet_part(archive) -> str:
    """The zip member of a workbook's first sheet (the one pandas reads), from the workbook's own index."""
    from xml.etree import ElementTree as ET

    book = ET.fromstring(archive.read("xl/workbook.xml"))
    first = book.find(f"{_SHEET_NS}sheets/{_SHEET_NS}sheet")
    rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    target = next(r.get("Target") for r in rels.iter(f"{_RELS_NS}Relationship") if r.get("Id") == first.get(_DOC_REL))
    return target.lstrip("/") if target.startswith("/") else f"xl/{target}"


def _uncomputed_formulas(path: Path, limit: int = 10_000) -> list[tuple[str, str]]:
    """(cell, formula) of the first sheet's formula cells saved with no result (no stored value, or an empty one in
    a cell that is not text: an empty text result is a value); [] when the sheet cannot be read this way (its
    reading says what is wrong)."""
    import zipfile
    from xml.etree import ElementTree as ET

    found: list[tuple[str, str]] = []
    try:
        with zipfile.ZipFile(path) as archive, archive.open(_first_sheet_part(archive)) as sheet:
            for _, element in ET.iterparse(sheet):
                if element.tag != f"{_SHEET_NS}c":
                    continue
                formula, value = element.find(f"{_SHEET_NS}f"), element.find(f"{_SHEET_NS}v")
                # no value, or an empty one where only a text result may be empty (t="str": "" is a result)
                missing = value is None or (not value.text and element.get("t") != "str")
                if formula is not None and missing and len(found) < limit:
                    found.append((element.get("r") or "?", f"={formula.text}" if formula.text else "a shared formula"))
                element.clear()
    except (KeyError, StopIteration, AttributeError, ET.ParseError, zipfile.BadZipFile, OSError):
        return []
    return found


def _refuse_uncomputed_formulas(path: Path) -> None:
    """RejectedInput when the workbook's first sheet (the one read) holds formulas saved without their result: a
    program that writes formulas without computing them (a script, a converter) leaves no value, and the cell
    would be read as missing, a whole column of them without a word."""
    empty = _uncomputed_formulas(path)
    if not empty:
        return
    from openpyxl import load_workbook
    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

    with open(path, "rb") as fh:  # a file object: openpyxl refuses a name without a workbook's extension
        book = load_workbook(fh, read_only=True)
        try:
            header = next(book.worksheets[0].iter_rows(min_row=1, max_row=1, values_only=True), ())
        finally:
            book.close()
    names = {i: str(v) for i, v in enumerate(header)}

    def column(cell: str) -> str:
        try:
            letters = coordinate_from_string(cell)[0]
        except ValueError:
            return "?"
        return V.excerpt(names.get(column_index_from_string(letters) - 1, letters), 30)

    shown = ", ".join(f"{cell} in column {column(cell)} ({V.excerpt(formula, 40)})" for cell, formula in empty[:3])
    raise RejectedInput(f"{path.name}: {len(empty)} formula cell(s) saved without their result, read as missing "
                        f"values: {shown}; the program that wrote the workbook stored the formulas, not what they "
                        "compute: open it in Excel or LibreOffice and save it (that stores the results), or export "
                        "the sheet as CSV, and drop it in again", format="xlsx")


def _looks_like_text(head: bytes) -> bool:
    """Mostly printable ASCII and line breaks: a text file in an 8-bit encoding, not binary content."""
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable >= 0.9 * len(head)


def _sniff_delimiter(path: Path) -> str:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        sample = fh.read(SNIFF_BYTES)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return "\t" if sample.count("\t") > sample.count(",") else ","


def text_delimiter(path: Path, fmt: str, delimiter: str | None = None) -> str | None:
    """The separator of a text table (the spec's, the tab of a .tsv, or sniffed); None for other formats."""
    if fmt not in TEXT_FORMATS:
        return None
    return delimiter or ("\t" if fmt == "tsv" else _sniff_delimiter(path))


def _json_lines(path: Path) -> list[dict]:
    """The records of a JSON Lines file (blank lines skipped); a line that is not a JSON object is named."""
    records = []
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise TypeError(f"line {number} is not a JSON object of column: value")
            records.append(record)
    return records


def read_table(path: Path, fmt: str, delimiter: str | None = None, as_text: list[str] | tuple = ()) -> pd.DataFrame:
    """The file's table. ``as_text``: columns a delimited text file keeps as written (ids: ``0200000`` is not the
    number 200000; an empty cell is still missing); the other formats keep the types they store."""
    try:
        if fmt in TEXT_FORMATS:
            return pd.read_csv(path, sep=text_delimiter(path, fmt, delimiter), dtype=dict.fromkeys(as_text, str),
                               **MISSING)
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(data, dict):
                data = data.get("records", data.get("data", [data]))
            return pd.json_normalize(data) if isinstance(data, list) else pd.DataFrame(data)
        if fmt == "jsonl":  # a record per line, read as json's records are: each value as written
            return pd.json_normalize(_json_lines(path))
        if fmt == "xlsx":
            frame = pd.read_excel(path, engine="openpyxl", **MISSING)
            _refuse_uncomputed_formulas(path)
            return frame
        if fmt == "arff":
            import arff

            with open(path) as fh:
                data = arff.load(fh)
            return pd.DataFrame(data["data"], columns=[a[0] for a in data["attributes"]])
    except pd.errors.EmptyDataError:
        raise RejectedInput(f"{path.name}: the file has no header and no rows: {WRITE_WHOLE}") from None
    except RejectedInput:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; the reason is what matters
        if isinstance(exc, UnicodeDecodeError) and (found := _first_non_utf8(path)):
            raise _not_utf8(path.name, *found) from None  # past the sniffed head
        if ragged := RAGGED.search(str(exc)):
            raise RejectedInput(f"{path.name}: line {ragged['line']} has {ragged['saw']} fields where the lines before "
                                f"it have {ragged['expected']} (a value holding the delimiter without quotes, or an "
                                "extra cell): quote that value or remove the cell, and drop the file in again",
                                format=fmt) from None
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise RejectedInput(f"{path.name}: cannot be parsed as {fmt}: {V.excerpt(first, 160)}",
                            format=fmt) from None
    raise RejectedInput(f"{path.name}: unknown format {fmt!r}")


def table_columns(path: Path, spec: PipelineSpec) -> list[str] | None:
    """The column names of a data file as the spec reads it, without its rows where the format allows (a text
    table's header, a Parquet file's schema); None when the file is over the size limit or cannot be read as
    one of the spec's formats (its run says why)."""
    try:
        fmt = accepted_format(path, spec)
        if fmt in TEXT_FORMATS:
            columns = pd.read_csv(path, sep=text_delimiter(path, fmt, spec.delimiter), nrows=0).columns
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            saved = (schema.pandas_metadata or {}).get("index_columns") or []  # pandas' index, read back as one
            index = {c for c in saved if isinstance(c, str)}  # (a range index is kept as a description, no column)
            columns = [c for c in schema.names if c not in index]
        else:
            columns = read_table(path, fmt, spec.delimiter).columns
    except Exception:  # noqa: BLE001 - RejectedInput or a parser's error: its run says why the file is unreadable
        return None
    return [str(c) for c in columns]


class PreprocessFailed(UserCodeFailed):
    """The pipeline's ``preprocess(df)`` raised or did not return a DataFrame."""


PREPROCESS_WORKED = "preprocess_worked.json"  # in the pipeline's state folder: the module that last ran on a file
#: what code raises on data that does not fit it: a missing column or key, text where numbers belong
DATA_ERRORS = (LookupError, TypeError, ValueError, ArithmeticError)


def run_preprocess(path: Path, frame: pd.DataFrame, file: str = "", state: Path | None = None,
                   spec: PipelineSpec | None = None, reference: InputSchema | None = None) -> pd.DataFrame:
    """The user's ``preprocess(df)`` on the parsed table of ``file``. When it raises, the suspect is the code,
    what the code depends on, or the file:

    * the file, when both hold: the same module (by content) ran on an earlier file of the pipeline (recorded
      in ``state``), and the error is one data that does not fit the code raises (:data:`DATA_ERRORS`: a
      column missing, a number written as text). The file is quarantined (:class:`RejectedInput`) with the
      module's error, and the files behind it go on;
    * otherwise the code (the pipeline's first file, or the module changed since it last worked) or what it
      depends on (a service down: ``OSError``, ``RuntimeError``, …): a :class:`PreprocessFailed` names the
      module, the run fails and the file stays pending (fix the cause and relaunch; the breaker counts it).

    A preprocess that raises :class:`BadInput` refuses the file on purpose: quarantined like any bad input.

    When the module raises one of :data:`DATA_ERRORS`, the reason leads with what the checks without a
    preprocess find wrong in the file as given, in the columns ``spec`` and the champion (``reference``) name
    (:func:`calmops.tasks.validate.before_preprocess`: a column missing, date-times or text where numbers belong,
    a number too large for a float, with the rows), followed by the module's error: the module's error is then
    the symptom (``unsupported operand type(s) for +``), the file's problem the cause."""
    module = sha256_of(path)
    given = frame.copy(deep=False)  # the columns as the file gave them, should the module replace some
    try:
        out = load_preprocess(path)(frame)
    except BadInput:
        raise
    except Exception as exc:
        error = f"preprocess {path.name} raised {type(exc).__name__}: {exc}"
        problems = _before_preprocess(given, exc, spec, reference) if isinstance(exc, DATA_ERRORS) else []
        if problems:
            error = f"{'; '.join(problems)} (found in the file before the preprocess, which failed on it: {error})"
        if isinstance(exc, DATA_ERRORS) and state is not None and _worked_on(state) == module:
            raise RejectedInput(f"{file}: {error}; the same preprocess ran on the pipeline's earlier files, so the "
                                "file is set aside (correct it, or the preprocess, and drop it in again)",
                                preprocess=path.name, error=type(exc).__name__) from exc
        raise PreprocessFailed(error) from exc
    if not isinstance(out, pd.DataFrame):
        raise PreprocessFailed(f"preprocess {path.name} must return a DataFrame, got {type(out).__name__}")
    if state is not None and _worked_on(state) != module:
        write_atomic(state / PREPROCESS_WORKED, json.dumps({"module": str(path), "sha256": module}))
    return out


def _before_preprocess(given: pd.DataFrame, exc: Exception, spec: PipelineSpec | None,
                       reference: InputSchema | None) -> list[str]:
    """:func:`calmops.tasks.validate.before_preprocess` on the table the preprocess was given: the features the
    champion takes (else those the spec types), the target when the file must hold it."""
    if spec is None:
        return []
    types = dict(spec.feature_types) | (reference.feature_types if reference is not None else {})
    target = spec.target if spec.target and spec.labels is None and not spec.prediction_only else None
    try:
        return V.before_preprocess(given, types, target, list(spec.feature_types), exc, reference is not None)
    except Exception:  # noqa: BLE001 - a hostile table the diagnosis trips over: the module's error still says it
        return []


def _worked_on(state: Path) -> str | None:
    """The content hash of the preprocess module that last ran on a file of the pipeline."""
    try:
        return json.loads((state / PREPROCESS_WORKED).read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def load_preprocess(path: Path):
    spec = importlib.util.spec_from_file_location(f"calmops_user_preprocess_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"preprocess module not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "preprocess", None)):
        raise AttributeError(f"{path} must define preprocess(df) -> df")  # noqa: TRY004 - a missing name
    return module.preprocess


# -- validation ----------------------------------------------------------------------------


def check_limit(name: str, count: int, unit: str, key: str, spec: PipelineSpec) -> None:
    """RejectedInput when ``count`` (of ``unit``: rows, bytes) is over the spec's ``limits.<key>``, naming that
    setting and what to do."""
    limit = getattr(spec.limits, key)
    if count > limit:
        raise RejectedInput(f"{name}: {count} {unit} is over the limit of {limit} (limits.{key} in the spec): split "
                            f"the file and drop the parts in, or raise limits.{key} in the spec ('calmops update "
                            f"{spec.name} SPEC.yaml') and drop the file in again", limit=f"limits.{key}")


def accepted_format(path: Path, spec: PipelineSpec) -> str:
    """The file's real format (:func:`detect_format`), within the spec's size limit and ``formats``; RejectedInput,
    saying what to do, otherwise."""
    check_limit(path.name, path.stat().st_size, "bytes", "max_bytes", spec)
    fmt = detect_format(path)
    if fmt not in spec.formats:
        others = " or another accepted format" if len(spec.formats) > 3 else ""
        raise RejectedInput(f"{path.name}: format {fmt!r} is not accepted by this pipeline "
                            f"(accepted: {', '.join(spec.formats)}): save the file as "
                            f"{' or '.join(spec.formats[:3])}{others}, or add {fmt!r} to formats in the spec "
                            f"('calmops update {spec.name} SPEC.yaml'), and drop the file in again", format=fmt)
    return fmt


def parse_and_validate(
    path: Path, sha256: str, spec: PipelineSpec, reference: InputSchema | None
) -> Batch:
    """Every check a file passes before its batch is used (docs/spec.md, keys `formats` and `limits`); raises RejectedInput otherwise."""
    fmt = accepted_format(path, spec)
    sep = text_delimiter(path, fmt, spec.delimiter)
    frame = read_table(path, fmt, sep, as_text=spec.id_columns)  # ids as written, into the predictions
    dupes = V.duplicated_header(path, fmt, sep) if len(frame.columns) > 1 else []
    if dupes:
        named = [d for d in dupes if d.strip()]
        said = []
        if named:
            said.append(f"duplicated column name(s) in the header: {', '.join(V.excerpt(d) for d in named[:10])} "
                        "(one name per column)")
        if len(named) < len(dupes):
            said.append("more than one column has no name in the header (empty header cells): give every column a "
                        "name, or remove the columns without one")
        raise RejectedInput(f"{path.name}: {'; '.join(said)}", duplicated=dupes[:10])
    if spec.preprocess:
        frame = run_preprocess(Path(spec.preprocess), frame, path.name, pipeline_paths(spec).state, spec, reference)
    return validate_frame(frame, path.name, fmt, sha256, spec, reference)


def validate_frame(frame: pd.DataFrame, name: str, fmt: str, sha256: str, spec: PipelineSpec,
                   reference: InputSchema | None) -> Batch:
    """The checks on a parsed (and preprocessed) table: rows, columns, target, types, values."""
    path = Path(name)
    if frame.shape[1] == 0 or (frame.shape[1] == 1 and frame.empty and fmt not in TEXT_FORMATS):
        raise RejectedInput(f"{path.name}: no columns found")
    if frame.empty:
        named = [str(c)[:100] for c in frame.columns[:MAX_COLUMNS_NAMED]]  # the sidecar stays small
        raise RejectedInput(f"{path.name}: header only, no rows: {WRITE_WHOLE}", columns=named,
                            n_columns=frame.shape[1])
    check_limit(path.name, len(frame), "rows", "max_rows", spec)
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        dupes = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise RejectedInput(f"{path.name}: duplicated column name(s) {', '.join(V.excerpt(d) for d in dupes[:10])} "
                            "(one name per column)", duplicated=dupes[:10])

    y = None
    if spec.labels is not None and spec.target in frame.columns and frame[spec.target].isna().all():
        frame = frame.drop(columns=spec.target)  # an export with a fixed schema: the column is there, its labels not
    later = spec.labels is not None and spec.target not in frame.columns  # its labels come in a labels file
    if later:
        missing = [c for c in spec.labels.join_on if c not in frame.columns]
        if missing:
            raise RejectedInput(f"{path.name}: no target column '{spec.target}' and id column(s) "
                                f"{', '.join(missing)} missing: a file whose labels come later needs the ids "
                                "its labels file will name (labels.join_on)", missing=missing)
    elif not spec.prediction_only:
        if spec.target not in frame.columns:
            raise RejectedInput(f"{path.name}: {V.missing_target(spec.target, list(frame.columns))}",
                                missing=[spec.target])
        y = frame[spec.target]
        if y.isna().any() and spec.labels is not None:
            raise partly_labelled(path.name, y, spec, first=reference is None)
        if y.isna().any():
            raise RejectedInput(f"{path.name}: target column '{spec.target}' has a missing value in "
                                f"{V.rows_phrase(np.flatnonzero(y.isna().to_numpy()))}; give every row its label, "
                                "or drop the rows without one")
    elif spec.target and spec.target in frame.columns:
        y = frame[spec.target]

    signals: list[str] = []
    needs_block = KINDS[spec.kind].block_column_needed(spec.prediction_only)
    if needs_block and spec.block_column not in frame.columns:
        raise RejectedInput(f"{path.name}: block column '{spec.block_column}' is missing")
    if needs_block and frame[spec.block_column].isna().any():
        raise RejectedInput(f"{path.name}: block column '{spec.block_column}' has a missing value in "
                            f"{V.rows_phrase(np.flatnonzero(frame[spec.block_column].isna().to_numpy()))}")
    new: list[str] = []  # columns the champion does not know
    if reference is None:
        columns = feature_columns(spec, list(frame.columns))
        if not columns:
            raise RejectedInput(f"{path.name}: no feature columns left after removing target, ids and drops")
        types = resolve_feature_types(spec, frame[columns])
    else:
        columns, types = reference.columns, reference.feature_types
        missing = [c for c in columns if c not in frame.columns]
        new = [c for c in feature_columns(spec, list(frame.columns)) if c not in columns]
        if missing:
            hint = (f"; it holds the ids and the target and no feature: a labels file goes into the pipeline's "
                    f"labels folder ({pipeline_paths(spec).labels})" if is_labels_table(spec, list(frame.columns))
                    else "")
            raise RejectedInput(f"{path.name}: {V.missing_features(missing, list(frame.columns), new)}{hint}",
                                missing=missing)
        if new:
            signals.append(f"new column(s) ignored by the model: {', '.join(V.excerpt(c, 30) for c in new[:20])}")
    mismatched = V.type_mismatches(frame, types)
    if mismatched:
        raise RejectedInput(f"{path.name}: {'; '.join(mismatched)}")
    try:
        X = coerce_features(frame[columns], types)
    except CoercionError as exc:
        raise RejectedInput(f"{path.name}: {exc}") from None
    if len(X) > 1 and (empty := [c for c in X.columns if X[c].isna().all()]):  # one row: one missing cell
        signals.append(f"feature column(s) empty in every row, read as missing and imputed (the model sees no value "
                       f"there): {', '.join(V.excerpt(c, 30) for c in empty[:20])}")
    if reference is None and (moving := V.index_like(X, types)):
        signals.append(f"column(s) {', '.join(V.excerpt(c, 30) for c in moving[:20])} look like a time index or a "
                       "running id (they move one way on every row): a later file would hold values the model never "
                       "saw, so they would drift on every file; if they are not features, list them in id_columns "
                       "or drop_columns ('calmops update')")
    infinite = V.infinite_values(X, types, frame) + ([] if y is None else [m for m in [V.infinite_target(y, spec.target)] if m])
    if infinite:
        raise RejectedInput(f"{path.name}: {'; '.join(infinite)} (numbers must be finite)")
    task = _task(spec, reference, y)
    labels = V.Labels.of(y, reference.classes if reference else None) if task == "classification" else V.Labels()
    mismatch = V.label_type_mismatch(y, reference.classes, spec.target) if reference and task == "classification" \
        else None
    if mismatch:
        raise RejectedInput(f"{path.name}: {mismatch}")
    if labels.new_classes:
        signals.append(f"new class(es) in target column '{spec.target}', never seen by the champion: "
                       f"{', '.join(V.excerpt(c) for c in labels.new_classes[:10])}")
    cannot_train = "no labels yet (they come in a labels file)" if later else \
        None if y is None or spec.prediction_only else V.training_blocker(len(X), labels, task, spec)
    return Batch(path.name, sha256, fmt, frame, X, y, types, signals, labels, cannot_train, tuple(new))


def partly_labelled(name: str, y: pd.Series, spec: PipelineSpec, *, first: bool) -> RejectedInput:
    """The refusal of a file of a pipeline whose labels come later (spec ``labels``) that has its target in some
    rows only: neither a labelled file nor one kept for its labels. It counts the rows without a label and says
    how to split the file so that every row is taken: all of them without the target column (predicted, kept),
    then the labelled rows' ids and labels as a labels file (joined to them). For the pipeline's ``first`` file
    (no champion yet: nothing can predict rows without a label, and a labels file has nothing to join) the
    labelled rows come first, as a file of their own that trains the first model."""
    assert spec.labels is not None
    empty = np.flatnonzero(y.isna().to_numpy())
    labelled = len(y) - len(empty)
    ids = ", ".join(spec.labels.join_on)
    folder = pipeline_paths(spec).labels
    where = V.rows_phrase(empty).split(": ", 1)[1]  # "data row 2, 6 and 3 more"
    said = (f"{name}: target column '{spec.target}' is empty in {len(empty)} of its {len(y)} row(s) ({where}); a "
            "file has a label in every row, or no target column when its labels come later. Split it: ")
    if first:
        how = (f"the pipeline has no model yet, so put the {labelled} labelled rows into the incoming folder first, "
               "as a file of their own (it trains the first model), then the "
               f"{len(empty)} others without the '{spec.target}' column (predicted, kept for their labels)")
    else:
        how = (f"put all its rows without the '{spec.target}' column into the incoming folder (predicted, kept for "
               f"their labels), then the {labelled} labelled rows' {ids} and {spec.target} as a labels file into "
               f"{folder} (joined to them); or the {labelled} labelled rows as a file of their own and the "
               f"{len(empty)} others without the '{spec.target}' column")
    return RejectedInput(said + how, unlabelled_rows=len(empty), labelled_rows=labelled)


def _task(spec: PipelineSpec, reference: InputSchema | None, y: pd.Series | None) -> str | None:
    if spec.evaluation.task or reference is not None:
        return spec.evaluation.task or reference.task
    if y is None:
        return None
    try:
        estimator = build_estimator(spec.model, spec.allow_modules)
    except SpecError:
        estimator = None
    return infer_task(estimator, y)


@step("ingest", retries=2)
def ingest(path: Path, sha256: str, spec: PipelineSpec, reference: InputSchema | None) -> Batch | RejectedInput:
    """The file's batch, or its refusal returned (not raised): a file that is only bad is a result the flow
    handles (quarantine, a warning in the run's log), so Prefect shows no failed task and logs no error for it."""
    try:
        return parse_and_validate(path, sha256, spec, reference)
    except RejectedInput as exc:
        return exc
