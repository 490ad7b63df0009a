"""Where CalmOps keeps its own shared state: each pipeline's ledger, its rows awaiting labels and its turn.

Two homes, chosen by the ``state_database_url`` setting:

- unset (the embedded default): SQLite files in the pipeline's folder (``ledger.sqlite``, ``labels.sqlite``)
  and an ``order.lock`` file for the turn, locked with ``flock``. Right for one host.
- ``postgresql://…``: one PostgreSQL database for every host. Each pipeline's table is ``calmops_ledger."<name>"``
  (and ``calmops_labels."<name>"``), exclusive write transactions take a transaction-level advisory lock of the
  table, and the turn is a session-level advisory lock, released by the server when its holder's connection
  ends (the process died, the host went away). Nothing shared lives in a file on a network share.

The stores write their SQL once, with ``?`` placeholders and ``{table}`` for the table; :class:`Table` and
:class:`Connection` make it run on either engine.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calmops.core.errors import CalmOpsError
from calmops.core.settings import ConfigError, Settings, get_settings

SCHEMAS = {"ledger": "calmops_ledger", "labels": "calmops_labels"}
SQLITE_TABLES = {"ledger": "files", "labels": "awaiting"}  # each kind's table inside its SQLite file
CONNECT_PATIENCE = 60.0  # seconds a PostgreSQL connection is retried (a restart of the server takes a few)
_patience: ContextVar[float] = ContextVar("patience", default=CONNECT_PATIENCE)


class StateDatabaseError(CalmOpsError):
    """The state database named by ``state_database_url`` cannot be used."""


def errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store's call raises when its database is busy or unreachable."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the PostgreSQL state database could not be reached (down, or another address)."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)


#: in ``$CALMOPS_HOME``: where its state is, written when a PostgreSQL state database is set up for the home
HOME_MARK = "state-database"


def state_database_url() -> str | None:
    settings = get_settings()
    url = settings.state_database_url
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise StateDatabaseError(f"state_database_url {url.split('@')[-1]!r} is not a postgresql:// URL; "
                                 "leave it unset for SQLite files in each pipeline's folder")
    if not url:
        _refuse_without_url(settings)
    return url


def _refuse_without_url(settings: Settings) -> None:
    """A command (or a service) run without the stack's configuration (another folder than calmops.toml's) in a
    home that keeps its state in PostgreSQL is refused: it would keep a ledger of its own beside the shared one
    and decide files the stack decided already; a server would start on empty SQLite stores."""
    if (mark := settings.home / HOME_MARK).is_file():
        raise ConfigError(f"{settings.home} keeps its state in PostgreSQL ({mark.read_text().strip()}), but "
                          "this command has no state_database_url",
                          "run it in the folder of the stack's calmops.toml, or set CALMOPS_CONFIG to that file "
                          f"(if the home no longer uses PostgreSQL, delete {mark})")


def shown_url(url: str) -> str:
    """A database URL as CalmOps writes it down or says it: without a password, in the user part or the query."""
    shown = re.sub(r"//([^:@/]*)(:[^@/]*)?@", r"//\1@", url)
    return re.sub(r"([?&])password=[^&]*&?", r"\1", shown).rstrip("?&")


def mark_home(settings: Settings) -> None:
    """Record in the home that its state is in PostgreSQL (by ``calmops db upgrade`` and every service started
    with the setting), so a command run without that setting is refused instead of using SQLite files. Without
    the setting: refused (:class:`ConfigError`) when the home has that record, before anything starts."""
    if not settings.state_database_url:
        _refuse_without_url(settings)
        return
    mark = settings.home / HOME_MARK
    shown = shown_url(settings.state_database_url)
    if not mark.is_file() or mark.read_text().strip() != shown:
        settings.home.mkdir(parents=True, exist_ok=True)
        part = mark.with_name(f".{HOME_MARK}.part")
        part.write_text(shown + "\n")
        part.replace(mark)


class DamagedFile(sqlite3.DatabaseError):
    """A SQLite state file that is not a database, or a damaged one: said with the file and the way out."""


#: what SQLite says of a file that is not (or no longer) a database it can read
_DAMAGED = ("file is not a database", "database disk image is malformed")


class CannotWrite(sqlite3.OperationalError):
    """A state database that cannot take a write: its disk is full or failing, its file or folder (or, in
    PostgreSQL, the database) is read-only. Said with the SQLite file, or the PostgreSQL database without its
    password, and the way out; the transaction it was part of is rolled back (:meth:`Table.write`), so nothing
    of it is kept. An ``OperationalError`` on either engine, so the stores' callers catch it (:func:`errors`)."""


#: SQLite's primary result codes (``sqlite_errorcode & 0xff``) of a write the disk or the file refused, with
#: what SQLite says for each (the test when an error carries no code)
_FULL, _IOERR, _READONLY, _CANTOPEN = 13, 10, 8, 14
_REFUSED = {_FULL: "database or disk is full", _IOERR: "disk I/O error", _READONLY: "readonly database",
            _CANTOPEN: "unable to open database file"}
#: PostgreSQL's SQLSTATEs for the same: disk full, I/O error, a read-only transaction (a standby, or
#: default_transaction_read_only), no privilege
_PG_REFUSED = {"53100": _FULL, "58030": _IOERR, "25006": _READONLY, "42501": _CANTOPEN}


def _refused(exc: BaseException) -> int | None:
    """Which of :data:`_REFUSED` a SQLite (or PostgreSQL) error is, or None."""
    if (state := getattr(exc, "sqlstate", None)) is not None:
        return _PG_REFUSED.get(state)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF if code & 0xFF in _REFUSED else None
    return next((c for c, words in _REFUSED.items() if words in str(exc)), None)


def _cannot_write(exc: BaseException, where: str, folder: Path | None) -> CannotWrite | None:
    """``exc`` as :class:`CannotWrite` naming ``where`` (the file, or the database) when the disk or the file
    refused the write, else None. ``folder``: the SQLite file's, whose permissions matter too."""
    cause = _refused(exc)
    if cause is None:
        return None
    said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kept = "nothing of this write was kept"
    if cause == _FULL:
        todo = f"free space on the disk {'it is on' if folder else 'of the database server'} (or raise the quota)"
    elif cause == _IOERR:
        todo = ("check the disk it is on (the kernel log, `dmesg`, says what failed), that it is mounted read-write "
                "and has free space" if folder else "see the database server's log: its disk failed a read or write")
    elif folder is not None:
        todo = (f"let the user CalmOps runs as (uid {os.geteuid()}) write the file and its folder {folder}: SQLite "
                "also writes a -wal and a -shm file beside it")
    elif cause == _READONLY:
        todo = "it takes no writes (a standby, or default_transaction_read_only): point state_database_url at the primary"
    else:
        todo = "grant the user state_database_url names the right to write the calmops_* schemas"
    return CannotWrite(f"{where}: {said}; {todo}, then run again ({kept})")


def _damaged(exc: sqlite3.DatabaseError, file: Path | None) -> sqlite3.DatabaseError:
    """``exc`` as :class:`DamagedFile` when SQLite says the file is not a database it can read, as
    :class:`CannotWrite` when its disk or permissions refused a write, else itself."""
    if file is not None and not isinstance(exc, CannotWrite) and (said := _cannot_write(exc, str(file), file.parent)):
        return said
    if type(exc) is not sqlite3.DatabaseError or str(exc) not in _DAMAGED:
        return exc
    lost = ("the rows awaiting labels are forgotten, and their labels files are quarantined as labelling nothing"
            if file is not None and file.stem == "labels" else
            "the files still in incoming are decided again; processed/ and MLflow keep what was decided")
    return DamagedFile(f"{file}: {exc}; restore it from a backup, or move it aside (a new one starts empty: {lost})")


class Connection:
    """One connection to a store's database: ``execute`` takes SQL with ``?`` placeholders on either engine."""

    def __init__(self, raw: Any, postgres: bool, file: Path | None = None, url: str | None = None):
        self.raw = raw
        self.postgres = postgres
        self.file = file  # the SQLite file
        self.url = url  # the PostgreSQL database

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextmanager
    def _said(self) -> Iterator[None]:
        """A database error said with the file or database at fault, when it is one CalmOps can explain."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise _damaged(exc, self.file) from None
        except Exception as exc:
            if self.postgres and (said := _cannot_write(exc, f"the state database {shown_url(self.url or '')}",
                                                        None)) is not None:
                raise said from exc
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._said():
            return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._said():
            if self.postgres:
                with self.raw.cursor() as cur:
                    cur.executemany(self._sql(sql), [tuple(r) for r in rows])
            else:
                self.raw.executemany(sql, rows)

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @property
    def in_transaction(self) -> bool:
        if self.postgres:
            from psycopg.pq import TransactionStatus

            return self.raw.info.transaction_status != TransactionStatus.IDLE
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()


def _lock_key(text: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, the same on every host."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


_created: set[tuple[str, str]] = set()  # (url, table) this process has created already


@dataclass(frozen=True)
class Table:
    """One table of one pipeline's state: in a SQLite file of its folder, or in the PostgreSQL state database."""

    kind: str            # "ledger" or "labels"
    pipeline: str
    sqlite_file: Path
    sqlite_name: str     # the table's name inside the SQLite file
    url: str | None = None

    @classmethod
    def of(cls, kind: str, root: Path, url: str | None = None) -> Table:
        """The ``kind`` table of the pipeline whose folder is ``root``; PostgreSQL when ``url`` is given, else
        when the setting names one."""
        file = root / f"{kind}.sqlite"
        return cls(kind, root.name, file, SQLITE_TABLES[kind], url if url is not None else state_database_url())

    @property
    def postgres(self) -> bool:
        return bool(self.url)

    @property
    def name(self) -> str:
        """The table as SQL names it."""
        if not self.postgres:
            return self.sqlite_name
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", self.pipeline):
            raise StateDatabaseError(f"{self.pipeline!r} is not a pipeline name")
        return f'{SCHEMAS[self.kind]}."{self.pipeline}"'

    @property
    def order_column(self) -> str:
        """The column that keeps insertion order (SQLite's rowid; a serial column in PostgreSQL)."""
        return "seq" if self.postgres else "rowid"

    def exists(self) -> bool:
        """Whether anything was ever recorded (a cheap check: the SQLite file, or the PostgreSQL table)."""
        if not self.postgres:
            return self.sqlite_file.exists()
        with closing(self.connect()) as con:
            return con.execute("SELECT to_regclass(?)", (self.name,)).fetchone()[0] is not None

    def connect(self, sqlite_timeout: float = 30.0) -> Connection:
        if not self.postgres:
            return Connection(_sqlite(self.sqlite_file, sqlite_timeout), postgres=False, file=self.sqlite_file)
        return Connection(_postgres(self.url), postgres=True, url=self.url)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """An exclusive write transaction on this table (SQLite's ``BEGIN IMMEDIATE``; in PostgreSQL an advisory
        lock of the table for the transaction): committed when the block ends, rolled back on any error."""
        con = self.connect()
        try:
            con.execute("BEGIN IMMEDIATE" if not self.postgres else "BEGIN")
            if self.postgres:
                con.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(self.name),))
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                # the error to tell is the one that ended the transaction; closing the connection (below) rolls
                with suppress(Exception):  # back what a failing ROLLBACK could not
                    con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _sqlite_has(self, columns: dict[str, str], indexes: Sequence[str]) -> bool:
        """Whether the SQLite file has this table with every column and index already (a read)."""
        if not self.sqlite_file.exists():
            return False
        with closing(self.connect()) as con:
            have = {row[1] for row in con.execute(f"PRAGMA table_info({self.name})")}
            made = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        return set(columns) <= have and {f"{self.name}_{column}" for column in indexes} <= made

    def create(self, columns: dict[str, str], key: str, indexes: Sequence[str] = ()) -> None:
        """Create the table once (``columns``: name → SQLite type, e.g. ``REAL`` or ``TEXT NOT NULL``) with an
        index on each of ``indexes``; add the columns an older version lacked."""
        if not self.postgres:
            if self._sqlite_has(columns, indexes):  # read first: no write lock for a table made before (every
                return                              # ledger the watcher opens, while runs write to it)
            with self.write() as con:
                con.execute(f"CREATE TABLE IF NOT EXISTS {self.name} ("
                            + ", ".join(f"{c} {t}" for c, t in columns.items()) + f", PRIMARY KEY ({key}))")
                have = {row[1] for row in con.execute(f"PRAGMA table_info({self.name})")}
                for column, kind in columns.items():
                    if column not in have:  # written by an older CalmOps
                        con.execute(f"ALTER TABLE {self.name} ADD COLUMN {column} {kind.split()[0]}")
                for column in indexes:
                    con.execute(f"CREATE INDEX IF NOT EXISTS {self.name}_{column} ON {self.name} ({column})")
            return
        if (self.url, self.name) in _created and self.exists():  # a read: the table may have been retired by
            return  # `calmops delete` in another process (the watcher's) since, and the name created again
        types = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "TEXT": "TEXT"}  # REAL is 4 bytes in PostgreSQL

        def pg(kind: str) -> str:
            first, *rest = kind.split()
            return " ".join([types[first], *rest])

        with self.write() as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMAS[self.kind]}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {self.name} ("
                        + ", ".join(f"{c} {pg(t)}" for c, t in columns.items())
                        + f", seq BIGSERIAL, PRIMARY KEY ({key}))")
            for column, kind in columns.items():
                con.execute(f"ALTER TABLE {self.name} ADD COLUMN IF NOT EXISTS {column} {pg(kind).split()[0]}")
            for column in indexes:  # index names are per schema: one from the table and column, bounded
                index = "i_" + hashlib.sha256(f"{self.name}.{column}".encode()).hexdigest()[:24]
                con.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {self.name} ({column})")
        _created.add((self.url, self.name))

    def retire(self, stamp: str) -> None:
        """Keep the table of a deleted pipeline aside (schema ``calmops_deleted``), so a pipeline created again
        under the name starts afresh, as it does with a new folder. SQLite files move with the folder."""
        if not self.postgres or not self.exists():
            return
        aside = f"{self.kind}-{stamp}-{self.pipeline}"[:63]
        tag = hashlib.sha256(aside.encode()).hexdigest()[:24]  # the table's indexes and sequence follow it into
        schema = SCHEMAS[self.kind]  # the one schema of deleted tables: each takes a name of its own there
        with self.write() as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS calmops_deleted")
            indexes = con.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                  "WHERE i.indrelid = to_regclass(?) ORDER BY c.relname", (self.name,)).fetchall()
            for n, (index,) in enumerate(indexes):
                con.execute(f'ALTER INDEX {schema}."{index}" RENAME TO "d_{tag}_{n}"')
            sequence = con.execute("SELECT pg_get_serial_sequence(?, 'seq')", (self.name,)).fetchone()[0]
            if sequence:
                con.execute(f'ALTER SEQUENCE {sequence} RENAME TO "d_{tag}_seq"')
            con.execute(f'ALTER TABLE {self.name} RENAME TO "{aside}"')
            con.execute(f'ALTER TABLE {SCHEMAS[self.kind]}."{aside}" SET SCHEMA calmops_deleted')
        _created.discard((self.url, self.name))


def _sqlite(path: Path, timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.OperationalError as exc:  # a folder this user cannot write: said with the file
        raise _damaged(exc, path) from None
    # switching a new file to WAL can answer "locked" at once, or after the busy timeout: a few short tries
    # (about 10 s in all), never the whole timeout each
    con.execute("PRAGMA busy_timeout = 100")
    attempts = 60
    for attempt in range(attempts):
        try:
            con.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                con.close()
                raise _damaged(exc, path) from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise _damaged(exc, path) from None
    con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return con


@contextmanager
def patience(seconds: float) -> Iterator[None]:
    """Within the block, a PostgreSQL connection is tried for ``seconds`` only: a command that reads (``calmops
    status``) answers soon while the state database is down, where a run waits out the server's restart."""
    token = _patience.set(seconds)
    try:
        yield
    finally:
        _patience.reset(token)


def _postgres(url: str, patience: float | None = None) -> Any:
    """A connection in autocommit mode (transactions are explicit), retried while the server restarts (for
    ``patience`` seconds, by default :data:`CONNECT_PATIENCE` or what :func:`patience` sets)."""
    try:
        import psycopg
    except ImportError as exc:
        raise StateDatabaseError("state_database_url names PostgreSQL but the driver is not installed; "
                                 "install the 'production' extra (pip install 'calmops[production]')") from exc
    patience = _patience.get() if patience is None else patience
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=max(2, min(10, round(patience))),
                                   application_name="calmops")
        except psycopg.OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@contextmanager
def turn(root: Path, on_wait: Any = None) -> Iterator[None]:
    """Hold the pipeline's turn: one process on any host decides the pipeline's files at a time.

    SQLite layout: an exclusive ``flock`` on ``order.lock`` in the pipeline's folder. PostgreSQL: a session
    advisory lock on a connection held for the turn. Either is released when the holder ends, even by a crash.
    ``on_wait`` is called once if another process holds the turn (to say so in the log).
    """
    url = state_database_url()
    if url:
        con = _postgres(url)
        key = _lock_key(f"calmops-turn:{root.name}")
        try:
            if not con.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if on_wait:
                    on_wait()
                con.execute("SELECT pg_advisory_lock(%s)", (key,))
            yield
        finally:
            con.close()  # ends the session, and with it the lock
        return
    with open(root / "order.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

