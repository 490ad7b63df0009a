"""Writing generated data as files a folder watcher can pick up, and reading them back.

Every file is written under a hidden temporary name (``.<name>.part``) in the target folder and then
renamed into place with :func:`os.replace`, which is atomic on one file system. A watcher that ignores
dot-files therefore never sees a partial file.

>>> import tempfile, pandas as pd
>>> df = pd.DataFrame({"a": range(10), "b": list("abcdefghij")})
>>> with tempfile.TemporaryDirectory() as d:
...     paths = write_files(df, d, n_files=3, fmt="csv", prefix="batch")
...     [p.name for p in paths], len(read_table(paths[0]))
(['batch_0001.csv', 'batch_0002.csv', 'batch_0003.csv'], 3)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FORMATS", "check_prefix", "read_table", "write_files", "write_table"]

#: Output formats and their file extensions.
FORMATS: dict[str, str] = {
    "csv": "csv",
    "tsv": "tsv",
    "parquet": "parquet",
    "json": "json",
    "jsonl": "jsonl",
    "arff": "arff",
    "xlsx": "xlsx",
}

_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arff": "arff",
    ".xlsx": "xlsx",
}


def _check_format(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return fmt


def check_prefix(prefix: str) -> str:
    """A file name prefix: not empty, no path separator (the files stay in their folder), no leading dot (a
    hidden file, which a folder watcher skips; ``.`` and ``..`` included)."""
    if not prefix or prefix.startswith(".") or "/" in prefix or "\\" in prefix:
        raise ValueError(f"prefix must be a plain file name (not empty, no / or \\, not starting with '.'), "
                         f"got {prefix!r}")
    return prefix


def _arff_type(s: pd.Series):
    if pd.api.types.is_bool_dtype(s):
        return ["False", "True"]
    if pd.api.types.is_integer_dtype(s):  # read back as integers (NUMERIC reads back as floats)
        return "INTEGER"
    if pd.api.types.is_numeric_dtype(s):
        return "NUMERIC"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "STRING"
    values = sorted({str(v) for v in s.dropna().unique()})
    return values if values else "STRING"


def _arff_value(v, kind):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if kind == "INTEGER":
        return int(v)
    if kind == "NUMERIC":
        return float(v) if isinstance(v, (float, np.floating)) else int(v)
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def _write_arff(df: pd.DataFrame, path: Path, relation: str) -> None:
    import arff

    kinds = [_arff_type(df[c]) for c in df.columns]
    data = [
        [_arff_value(v, k) for v, k in zip(row, kinds, strict=True)]
        for row in df.itertuples(index=False, name=None)
    ]
    obj = {
        "relation": relation,
        "attributes": [(str(c), k) for c, k in zip(df.columns, kinds, strict=True)],
        "data": data,
    }
    path.write_text(arff.dumps(obj), encoding="utf-8")


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write one DataFrame to ``path`` atomically (temporary ``.name.part`` then rename)."""
    path = Path(path)
    fmt = _check_format(fmt or _EXTENSIONS.get(path.suffix.lower(), path.suffix))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        if fmt == "csv":
            df.to_csv(part, index=False)
        elif fmt == "tsv":
            df.to_csv(part, index=False, sep="\t")
        elif fmt == "parquet":
            df.to_parquet(part, index=False)
        elif fmt == "json":
            df.to_json(part, orient="records", date_format="iso", indent=None)
        elif fmt == "jsonl":
            df.to_json(part, orient="records", lines=True, date_format="iso")
        elif fmt == "arff":
            _write_arff(df, part, relation=path.stem)
        elif fmt == "xlsx":
            df.to_excel(part, index=False, engine="openpyxl")
        # Flush the bytes to disk before the rename makes the file visible.
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def write_files(
    df: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    n_files: int | None = None,
    rows_per_file: int | None = None,
    fmt: str = "csv",
    prefix: str = "batch",
    pace_seconds: float = 0.0,
    on_file: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Split ``df`` in order into files ``<prefix>_0001.<ext>``, … in ``out_dir``.

    Give ``n_files`` (rows split as evenly as possible) or ``rows_per_file`` (the last file may be
    shorter); with neither, one file is written. ``pace_seconds`` waits between files, to simulate
    data arriving over time. ``on_file`` is called with each path once it is in place.
    """
    fmt, prefix = _check_format(fmt), check_prefix(prefix)
    if n_files is not None and rows_per_file is not None:
        raise ValueError("give n_files or rows_per_file, not both")
    n = len(df)
    if n == 0:
        raise ValueError("nothing to write: the DataFrame is empty")
    if rows_per_file is not None:
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
        bounds = list(range(0, n, rows_per_file)) + [n]
    else:
        n_files = 1 if n_files is None else n_files
        if n_files < 1 or n_files > n:
            raise ValueError(f"n_files must be between 1 and the number of rows ({n}), got {n_files}")
        bounds = [round(i * n / n_files) for i in range(n_files + 1)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(bounds) - 1)))
    paths = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        if i and pace_seconds > 0:
            time.sleep(pace_seconds)
        path = write_table(df.iloc[a:b], out / f"{prefix}_{i + 1:0{width}d}.{FORMATS[fmt]}", fmt)
        paths.append(path)
        if on_file is not None:
            on_file(path)
    return paths


def read_table(path: str | os.PathLike, fmt: str | None = None) -> pd.DataFrame:
    """Read a file written by :func:`write_files` (or any file in one of :data:`FORMATS`)."""
    path = Path(path)
    fmt = _check_format(fmt or _EXTENSIONS.get(path.suffix.lower(), path.suffix or "?"))
    # round_trip: pandas' default float parser can be off by one unit in the last place, which would change
    # the last digit of columns that are only read and written back (e.g. by ``calmops generate inject``).
    if fmt == "csv":
        if path.suffix == ".txt":
            return pd.read_csv(path, sep=None, engine="python")
        return pd.read_csv(path, float_precision="round_trip")
    if fmt == "tsv":
        return pd.read_csv(path, sep="\t", float_precision="round_trip")
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8-sig")))
    if fmt == "jsonl":  # as json: values as written (pandas' reader would turn text that looks like a date into one)
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return pd.DataFrame([json.loads(line) for line in lines if line.strip()])
    if fmt == "xlsx":
        return pd.read_excel(path, engine="openpyxl")
    import arff

    obj = arff.loads(path.read_text(encoding="utf-8"))
    df = pd.DataFrame(obj["data"], columns=[a[0] for a in obj["attributes"]])
    for name, kind in obj["attributes"]:
        if kind == ["False", "True"]:
            df[name] = df[name].map({"True": True, "False": False})
    return df
