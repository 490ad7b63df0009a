"""Rows predicted before their labels came: kept until a labels file names their ids (spec ``labels``).

Each file of features without a target leaves its parsed rows, the prediction of each row and the model version
that made it in ``state/awaiting/<sha256>.parquet``, and one line per row in a table of the pipeline's state
(:mod:`calmops.core.statedb`: ``labels.sqlite`` in its folder, or PostgreSQL; the row's ids as a key, when it
was predicted, and which labels file labelled it). A labels file is matched on the keys; the rows it labels are
marked with its sha256 in one transaction, so a labels file run again after a crash finds its own rows again,
and rows labelled by another file count as labelled before. Once every row of a features file is labelled by
labels files whose runs have ended, its parquet file is deleted (:meth:`Awaiting.prune`); the table keeps its
lines.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from calmops.core.statedb import Connection, Table

if TYPE_CHECKING:  # pandas loads when rows are kept or matched, not for 'calmops status'
    import pandas as pd

PREDICTION = "__calmops_prediction"
VERSION = "__calmops_model_version"
_COLUMNS = {"key": "TEXT NOT NULL", "sha256": "TEXT NOT NULL", "file": "TEXT NOT NULL", "row": "INTEGER NOT NULL",
            "version": "INTEGER NOT NULL", "predicted_at": "REAL NOT NULL", "labelled_by": "TEXT"}


def _plain(value) -> str:
    """One id value as text, so that 7, 7.0 and "7" read from different formats are the same id."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def keys_of(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The join key of every row: its id columns' values, as one JSON text."""
    values = frame[columns].astype(object).to_numpy().tolist()
    return [json.dumps([_plain(v) for v in row]) for row in values]


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def whole_number(value: str) -> str | None:
    """An id written as a whole number ("000001", "1.0", "1e3", or 23 digits: exactly) as an integer's text ("1",
    "1000"); None for any other id ("1.50", "A7").

    >>> whole_number("000001"), whole_number("1.0"), whole_number("12345678901234567890123"), whole_number("1.50")
    ('1', '1', '12345678901234567890123', None)
    """
    try:
        if _INTEGER.fullmatch(value):
            return str(int(value))
        if _NUMBER.fullmatch(value):
            number = float(value)
            if math.isfinite(number) and number.is_integer() and abs(number) < 2 ** 53:
                return str(int(number))
    except ValueError:  # more digits than int() reads
        pass
    return None


def _as_integer(value: str) -> str:
    """An id written as a whole number as an integer column keeps it (:func:`whole_number`); any other id
    unchanged."""
    return whole_number(value) or value


def integer_key(key: str) -> str:
    """A key with its ids written as whole numbers read as integers: how a labels file's "000001" (read as
    written) finds the row of a features file whose id column was read as the integer 1."""
    return json.dumps([_as_integer(v) for v in json.loads(key)])


def shown(key: str):
    """A key as the record shows it: the id itself for a single join column, the list of ids for several."""
    values = json.loads(key)
    return values[0] if len(values) == 1 else values


def _mixed_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A column of mixed Python objects (numbers and text) as text, its missing values still missing."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(
                lambda v: v if isinstance(v, str) or (pd.api.types.is_scalar(v) and pd.isna(v)) else str(v))
    return out


@dataclass
class Match:
    """What one labels file matched: the rows it labels (features, prediction, version) and what it did not."""

    rows: pd.DataFrame                      # the kept rows, in the order the labels file names them
    labels: pd.Series                       # the label of each kept row (same index)
    counts: dict[str, int] = field(default_factory=dict)
    unmatched_ids: list = field(default_factory=list)      # a sample (ids as written), for the reason and record
    duplicate_ids: list = field(default_factory=list)       # ids the file names twice
    labelled_before_ids: list = field(default_factory=list)  # ids whose rows another labels file labelled
    unmatched_rows: list[int] = field(default_factory=list)  # every unmatched id's row (position) in the labels file


class Awaiting:
    """The rows of one pipeline that wait for labels."""

    def __init__(self, root: Path, state: Path, url: str | None = None):
        self.table = Table.of("labels", root, url)
        self.t = self.table.name
        self.folder = state / "awaiting"

    def create(self) -> None:
        """Create the table (once; the state database's upgrade does it up front)."""
        self.table.create(_COLUMNS, key="sha256, row", indexes=("key",))

    def _connect(self) -> Connection:
        self.create()
        return self.table.connect(sqlite_timeout=60)

    def _waiting_elsewhere(self, con: Connection, keys: list[str], sha256: str) -> dict[str, str]:
        """Of ``keys``, those whose rows of another features file still wait for a label, each with that file's
        name: a labels file naming one of them labels the rows of both (an id should name one row)."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, file in con.execute(f"SELECT key, file FROM {self.t} WHERE key IN ({marks}) AND sha256 <> ? "
                                         "AND labelled_by IS NULL", [*chunk, sha256]).fetchall():
                found.setdefault(key, file)
        return found

    def keep(self, frame: pd.DataFrame, keys: list[str], predictions: Iterable, version: int, sha256: str,
             file: str) -> dict[str, str]:
        """Keep a predicted batch until its labels come (again for the same bytes: replaced, not doubled); returns
        the ids whose rows of another features file wait for labels too, each with that file's name (a labels
        file naming one labels the rows of both: an id should name one row)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = frame.reset_index(drop=True).copy()
        rows[PREDICTION] = list(predictions)
        rows[VERSION] = version
        target = self.folder / f"{sha256}.parquet"
        tmp = self.folder / f".{sha256}.parquet.part"
        try:
            rows.to_parquet(tmp, index=False)
        except (TypeError, ValueError, ArithmeticError):  # pyarrow's errors derive from these
            _mixed_as_text(rows).to_parquet(tmp, index=False)
        os.replace(tmp, target)
        now = time.time()
        self.create()
        with self.table.write() as con:
            elsewhere = self._waiting_elsewhere(con, keys, sha256)
            con.execute(f"DELETE FROM {self.t} WHERE sha256 = ? AND labelled_by IS NULL", (sha256,))
            con.executemany(f"INSERT INTO {self.t} (key, sha256, file, row, version, predicted_at, labelled_by) "
                            "VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
                            [(k, sha256, file, i, version, now) for i, k in enumerate(keys)])
        return elsewhere

    def match(self, labels: pd.DataFrame, keys: list[str], target: str, labels_sha256: str,
              max_wait_days: float, now: float | None = None) -> Match:
        """Match a labels file's rows to the rows waiting for them and mark those rows as labelled by it.

        Ids are compared as written; an id no row has as written, written as a whole number ("000001",
        "1.0"), matches the row whose id is that integer (an id column read as integers kept 1, not "000001").
        A key named twice in the file (as written or as that integer) counts as a duplicate (its first label
        is used); a key with no predicted row is unmatched; a key whose row another labels file labelled
        before counts as labelled before; a row predicted more than ``max_wait_days`` ago is joined and
        counted late. The ids listed (unmatched, duplicate, labelled before) are those of the labels file.
        """
        now = time.time() if now is None else now
        integers = [integer_key(k) for k in keys]
        self.create()
        with self.table.write() as con:
            found: dict[str, list[tuple]] = {}
            unique = list(dict.fromkeys([*keys, *integers]))
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in con.execute(f"SELECT key, sha256, row, version, predicted_at, labelled_by FROM {self.t} "
                                       f"WHERE key IN ({marks})", chunk).fetchall():
                    found.setdefault(row[0], []).append(row)
            first: dict[str, int] = {}
            duplicates: list[str] = []
            for i, (written, integer) in enumerate(zip(keys, integers, strict=True)):
                key = written if written in found or integer not in found else integer
                if key in first:
                    duplicates.append(written)
                else:
                    first[key] = i
            taken: list[tuple[str, str, int, int]] = []  # (key, sha256, row, position in the labels file)
            before: list[str] = []
            late = 0
            for key, position in first.items():
                rows = found.get(key, [])
                open_rows = [r for r in rows if r[5] is None or r[5] == labels_sha256]
                if not open_rows:
                    if rows:
                        before.append(keys[position])
                    continue
                for _, sha, row, _, predicted_at, _ in open_rows:
                    taken.append((key, sha, row, position))
                    late += predicted_at < now - max_wait_days * 86400
            con.executemany(f"UPDATE {self.t} SET labelled_by = ? WHERE sha256 = ? AND row = ?",
                            [(labels_sha256, sha, row) for _, sha, row, _ in taken])
        unmatched_rows = [position for k, position in first.items() if k not in found]
        unmatched = [keys[position] for position in unmatched_rows]
        rows = self._rows(taken)
        # the labels as read (their dtype: the model's classes), in the order of the rows
        y = labels[target].iloc[[pos for *_, pos in taken]].reset_index(drop=True).rename(target)
        counts = {"label_rows": len(keys), "matched": len(taken), "unmatched": len(unmatched),
                  "duplicate": len(duplicates), "labelled_before": len(before), "late": int(late)}
        named_again = list(dict.fromkeys(duplicates))  # an id named three times is one id listed, two rows counted
        return Match(rows, y, counts, [shown(k) for k in unmatched[:20]], [shown(k) for k in named_again[:20]],
                     [shown(k) for k in before[:20]], unmatched_rows)

    def _rows(self, taken: list[tuple[str, str, int, int]]) -> pd.DataFrame:
        """The kept rows of ``taken`` (key, sha256, row, position), in the order of ``taken``."""
        import pandas as pd

        if not taken:
            return pd.DataFrame()
        by_file: dict[str, list[tuple[int, int]]] = {}
        for order, (_, sha, row, _) in enumerate(taken):
            by_file.setdefault(sha, []).append((order, row))
        parts = []
        for sha, picks in by_file.items():
            part = pd.read_parquet(self.folder / f"{sha}.parquet").iloc[[row for _, row in picks]]
            parts.append(part.set_axis([order for order, _ in picks]))
        return pd.concat(parts).sort_index().reset_index(drop=True)

    def prune(self, decided: set[str]) -> list[str]:
        """Delete the kept rows (``<sha256>.parquet``) of every features file whose rows were all labelled by
        labels files in ``decided`` (their runs ended: none of them reads its rows again); returns their sha256.
        Each row's line in the table stays, so its ids still count as labelled before. A file with a row still
        waiting, or labelled by a labels file whose run has not ended (it finds its own rows again when it is
        run again), keeps them."""
        kept = {p.stem: p for p in self.folder.glob("*.parquet")} if self.folder.is_dir() else {}
        if not kept or not self.table.exists():
            return []
        con = self._connect()
        pairs: list[tuple] = []
        try:  # only the files still kept: the table keeps a line for every row ever predicted
            shas = list(kept)
            for start in range(0, len(shas), 500):
                chunk = shas[start:start + 500]
                pairs += con.execute(f"SELECT DISTINCT sha256, labelled_by FROM {self.t} "
                                     f"WHERE sha256 IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        finally:
            con.close()
        by_file: dict[str, set[str | None]] = {}
        for sha, labelled_by in pairs:
            by_file.setdefault(sha, set()).add(labelled_by)
        gone = [sha for sha, by in by_file.items() if None not in by and by <= decided]
        for sha in gone:
            kept[sha].unlink(missing_ok=True)
        return gone

    def release(self, labels_sha256: str) -> None:
        """Give back the rows a labels file matched (it was quarantined): they wait for labels again."""
        if not self.table.exists():
            return
        con = self._connect()
        try:
            con.execute(f"UPDATE {self.t} SET labelled_by = NULL WHERE labelled_by = ?", (labels_sha256,))
        finally:
            con.close()

    def waiting_ids(self, limit: int = 3) -> tuple[int, list]:
        """How many rows wait for labels, and the ids (as the record shows them) of up to ``limit`` of the latest:
        what a labels file that matched nothing is shown, so a difference in how ids are written is seen."""
        if not self.table.exists():
            return 0, []
        con = self._connect()
        try:
            count = con.execute(f"SELECT COUNT(*) FROM {self.t} WHERE labelled_by IS NULL").fetchone()[0]
            keys = [k for (k,) in con.execute(f"SELECT key FROM {self.t} WHERE labelled_by IS NULL "
                                              "ORDER BY predicted_at DESC, row LIMIT ?", (limit,)).fetchall()]
        finally:
            con.close()
        return int(count), [shown(k) for k in keys]

    def waiting(self, max_wait_days: float, now: float | None = None) -> dict[str, int]:
        """Rows still waiting for labels, and how many of them were predicted longer ago than ``max_wait_days``."""
        if not self.table.exists():
            return {"waiting": 0, "overdue": 0}
        now = time.time() if now is None else now
        con = self._connect()
        try:
            waiting, overdue = con.execute(
                f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN predicted_at < ? THEN 1 ELSE 0 END), 0) FROM {self.t} "
                "WHERE labelled_by IS NULL", (now - max_wait_days * 86400,)).fetchone()
        finally:
            con.close()
        return {"waiting": int(waiting), "overdue": int(overdue)}
