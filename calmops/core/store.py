"""The one place that knows a pipeline's files: folders, ledger, quarantine, batch history, spec history.

Layout under ``$CALMOPS_HOME/pipelines/<name>/``::

    spec.yaml            the current spec
    spec_history/        every version of the spec, with a changes.jsonl of diffs
    incoming/            files waiting (unless the spec names another folder)
    processed/           files done, byte for byte as they arrived
    quarantine/          files refused, each with a <file>.reason.json sidecar
    predictions/         predictions written by the champion
    history/             accepted batches as Parquet (bounded by the retention policy)
    ledger.sqlite        content hash -> status, the exactly-once record
    logs/                the pipeline's rotating log file
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calmops.core import statedb
from calmops.core.logs import RunLog, printable
from calmops.core.pids import running, start_time
from calmops.core.settings import Settings, get_settings
from calmops.core.spec import (
    NAME_PATTERN,
    PipelineSpec,
    SpecError,
    check_spec,
    load_spec,
    parse_spec,
    resolve_paths,
)
from calmops.core.statedb import Connection, Table

if TYPE_CHECKING:  # pandas loads on use: the CLI's quick commands never need it
    import pandas as pd

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def not_a_regular_file(path: str | Path) -> str | None:
    """Why an entry of an incoming folder is refused without being read, or None for a regular file.

    Judged on the entry itself (``lstat``): a symbolic link is never followed, a pipe or a device never
    opened, so nothing outside the folder is read and nothing blocks.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # gone: the caller's own check says so
    if stat.S_ISREG(mode):
        return None
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return (f"{path.name}: {kind}, refused without being followed or read; "
            "put the file itself (a regular file) in the incoming folder")


def is_temporary_name(path: str | Path) -> bool:
    """Names writers use while a file is incomplete; never taken as input."""
    name = Path(path).name
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def incoming_files(folder: Path) -> list[Path]:
    """The entries of an incoming folder a run may take, by name: regular files whose name is not temporary
    (:func:`is_temporary_name`, :func:`not_a_regular_file`: the rules the watcher applies). A link, pipe or
    folder is not one (the watcher quarantines the link, the pipe and the like unread)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not is_temporary_name(p) and not_a_regular_file(p) is None
                  and p.exists())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stamp_seconds(stamp: str | None) -> float | None:
    """A ledger time (as :func:`_now` writes it, e.g. ``updated``) in epoch seconds; None when unset or unreadable."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


@dataclass(frozen=True)
class PipelinePaths:
    root: Path
    incoming: Path
    predictions: Path
    labels: Path | None = None  # the labels folder of a pipeline whose labels arrive later

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def spec_history(self) -> Path:
        return self.root / "spec_history"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def history(self) -> Path:
        return self.root / "history"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        """Small JSON state files (e.g. concept-drift detectors between files)."""
        return self.root / "state"

    def ensure(self) -> PipelinePaths:
        for d in (self.root, self.incoming, self.predictions, self.spec_history, self.processed,
                  self.quarantine, self.history, self.logs, self.state, *([self.labels] if self.labels else [])):
            d.mkdir(parents=True, exist_ok=True)
        return self


def pipeline_paths(spec: PipelineSpec, settings: Settings | None = None) -> PipelinePaths:
    settings = settings or get_settings()
    root = settings.pipeline_dir(spec.name)
    return PipelinePaths(
        root=root,
        incoming=Path(spec.incoming).expanduser().resolve() if spec.incoming else root / "incoming",
        predictions=Path(spec.predictions).expanduser().resolve() if spec.predictions else root / "predictions",
        labels=None if spec.labels is None else
        Path(spec.labels.incoming).expanduser().resolve() if spec.labels.incoming else root / "labels",
    )


# -- pipelines and their specs ------------------------------------------------------------


class PipelineNotFound(LookupError):
    pass


class PipelineExists(FileExistsError):
    pass


def list_pipelines(settings: Settings | None = None) -> list[str]:
    settings = settings or get_settings()
    if not settings.pipelines_dir.exists():
        return []
    return sorted(p.name for p in settings.pipelines_dir.iterdir() if (p / "spec.yaml").exists())


def read_spec(name: str, settings: Settings | None = None) -> PipelineSpec:
    settings = settings or get_settings()
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):  # never a path: '../x', 'a/b'
        raise PipelineNotFound(f"{str(name)[:80]!r} is not a valid pipeline name (lowercase letters, digits "
                               "and '-', starting with a letter)")
    path = settings.pipeline_dir(name) / "spec.yaml"
    if not path.exists():
        known = ", ".join(list_pipelines(settings)) or "none yet"
        raise PipelineNotFound(f"no pipeline named {name!r} (known: {known})")
    return load_spec(path)


def write_atomic(path: Path, text: str) -> None:
    """Write a file so a crash leaves the old content or the new, never half of it; of writers at the same
    moment, the last one's whole content stays."""
    tmp = _written_aside(path, text)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_new(path: Path, text: str) -> bool:
    """Write a file that does not exist yet, whole; False, writing nothing, when it exists (also when another
    writer made it a moment before)."""
    tmp = _written_aside(path, text)
    try:
        os.link(tmp, path)  # fails when the name is taken: no check-then-write gap
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links (an object-store mount, some SMB shares)
        return _create_exclusive(path, text)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _create_exclusive(path: Path, text: str) -> bool:
    """:func:`write_new` where hard links are not to be had: created exclusively, then written (a reader may
    see it empty for that moment)."""
    try:
        with path.open("x") as out:
            out.write(text)
    except FileExistsError:
        return False
    return True


def _written_aside(path: Path, text: str) -> Path:
    """``text`` in a hidden file of its own beside ``path`` (no two writers share it; made as ``open`` makes
    files, the umask deciding who may read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside(path, "part")
    try:
        with tmp.open("x") as out:
            out.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def aside(path: Path, suffix: str) -> Path:
    """A hidden name beside ``path`` that no other writer, on any host sharing the folder, takes."""
    import uuid

    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.{suffix}")


def read_champion_state(path: Path, champion_version: int, **match: Any) -> dict | None:
    """A pipeline state file (``state/*.json``) when it belongs to ``champion_version`` and its other keys equal
    ``match``, else None: state kept for one champion (a score trail, detector state) starts afresh with the
    next one."""
    saved = read_state(path)
    if saved is None:
        return None
    wanted = {"champion_version": champion_version, **match}
    return saved if all(saved.get(k) == v for k, v in wanted.items()) else None


def read_state(path: Path) -> dict | None:
    """A pipeline state file (``state/*.json``, a JSON object), None when there is none. Written atomically, one
    that cannot be read was changed from outside: it is set aside (see :func:`_set_aside_unreadable`) and
    None returned, so its state starts afresh instead of failing every run."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise TypeError(f"a JSON {type(saved).__name__} where an object belongs")
    except (ValueError, TypeError) as exc:
        _set_aside_unreadable(path, exc)
        return None
    return saved


def _set_aside_unreadable(path: Path, exc: Exception) -> None:
    """Rename a state file that cannot be read to ``<name>.unreadable-<time>`` (kept to look at, never deleted)
    and say so in the pipeline's log: the state it held starts afresh, as with a new champion."""
    target = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
    os.replace(path, target)
    root = path.parent.parent  # <pipeline>/state/<file>
    RunLog(root.name, root / "logs").warning(
        "state file %s could not be read (%s: %s); it was set aside as %s and its state starts afresh",
        path, type(exc).__name__, str(exc)[:200], target.name)


def write_champion_state(path: Path, champion_version: int, **fields: Any) -> None:
    """Write a state file of ``champion_version`` atomically (see :func:`read_champion_state`)."""
    write_atomic(path, json.dumps({"champion_version": champion_version, **fields}))


def save_spec(spec: PipelineSpec, *, create: bool, settings: Settings | None = None,
              base: str | Path | None = None) -> PipelinePaths:
    """Check the spec, write it with absolute paths, and record the change (time and diff) in its history.

    Relative paths resolve against ``base`` (the spec file's folder; the current one when not given).
    Model classes, params, hooks and the preprocess module are checked first (:func:`check_spec`).
    """
    spec = resolve_paths(spec, base if base is not None else Path.cwd())
    paths = pipeline_paths(spec, settings)
    exists = paths.spec_file.exists()
    if create and exists:
        raise PipelineExists(f"pipeline {spec.name!r} exists already")
    if not create and not exists:
        raise PipelineNotFound(f"no pipeline named {spec.name!r}; use 'calmops create'")
    check_spec(spec)
    paths.ensure()
    old = paths.spec_file.read_text() if exists else ""
    new = spec.to_yaml()
    if old == new:
        return paths
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    (paths.spec_history / f"{stamp}.yaml").write_text(new)
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "before", "after"))
    with open(paths.spec_history / "changes.jsonl", "a") as fh:
        fh.write(json.dumps({"time": _now(), "version": stamp, "diff": diff}) + "\n")
    write_atomic(paths.spec_file, new)
    return paths


def spec_history(name: str, settings: Settings | None = None) -> list[dict]:
    paths = pipeline_paths(read_spec(name, settings), settings)
    log = paths.spec_history / "changes.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def last_saved_spec(name: str, settings: Settings | None = None) -> PipelineSpec | None:
    """The newest version of the pipeline's spec in its ``spec_history`` folder that reads (every save writes one),
    None when none does: what the pipeline ran under before its spec.yaml was broken in place."""
    folder = (settings or get_settings()).pipeline_dir(name) / "spec_history"
    for version in sorted(folder.glob("*.yaml"), reverse=True) if folder.is_dir() else []:
        try:
            return load_spec(version)
        except SpecError:
            continue
    return None


def spec_from_dict(data: dict) -> PipelineSpec:
    return parse_spec(data)


# -- the ledger: exactly-once effect per content hash --------------------------------------

CLAIM_LEASE = 120.0  # seconds a claim lives without its owner's heartbeat
_COLUMNS = {"owner_host": "TEXT", "owner_pid": "INTEGER", "owner_start": "TEXT", "heartbeat": "REAL",
            "mlflow_run_id": "TEXT", "arrived": "REAL", "reason": "TEXT"}
WAITING = ("waiting", "pending")  # statuses of files still to be decided


def _host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Claim:
    """Who holds a file's claim: the process (host, pid, its start time) and the flow run."""

    status: str
    owner_host: str | None
    owner_pid: int | None
    owner_start: str | None
    heartbeat: float | None
    run_id: str | None
    mlflow_run_id: str | None = None  # the MLflow run it opened, closed as KILLED when the claim is orphaned

    def orphaned(self, lease: float, now: float | None = None) -> bool:
        """An ``in_progress`` claim whose owner is gone: on this host its process has ended; on any host its
        heartbeat is older than ``lease`` seconds."""
        if self.status != "in_progress":
            return False
        now = time.time() if now is None else now
        if now - (self.heartbeat or 0) > lease:
            return True
        return self.owner_ended() is True

    def owner_ended(self) -> bool | None:
        """Whether the process that held the claim has ended: known on its own host only (None elsewhere)."""
        if self.owner_host != _host():
            return None
        return not (self.owner_pid and running(self.owner_pid, self.owner_start))

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Claim:
        """The claim an entry of :meth:`Ledger.entries` records."""
        return cls(entry["status"], entry["owner_host"], entry["owner_pid"], entry["owner_start"],
                   entry["heartbeat"], entry["run_id"], entry["mlflow_run_id"])


@dataclass(frozen=True)
class Abandoned:
    """What a run that died while deciding a file left open: its Prefect flow run (none for a run outside
    Prefect) and its MLflow run (none when it died before starting one)."""

    flow_run_id: str | None
    mlflow_run_id: str | None


def holds(path: Path, sha256: str, arrived: float | None = None) -> bool:
    """Whether ``path`` is there and holds the content ``sha256``: at once when its modification time is
    still ``arrived`` (as the ledger recorded it), else by reading it (a file copied over under the same name)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if arrived is not None and arrival_time(st.st_mtime_ns) == arrived:
        return True
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)  # the queue is read before each file of a burst:
    if (known := _HASHED.get(key)) is None:  # a file that was touched or copied is read once, not each time
        try:
            known = sha256_of(path)
        except OSError:
            return False
        if len(_HASHED) >= 4096:
            _HASHED.clear()
        _HASHED[key] = known
    return known == sha256


#: (path, mtime_ns, size, inode) -> sha256 of the files :func:`holds` had to read, in this process
_HASHED: dict[tuple[str, int, int, int], str] = {}

#: the contents this process reserved for a run it is about to start (:meth:`Ledger.reserve`), with the status
#: each goes back to when no run takes it over
_RESERVED: dict[str, str] = {}


def _back_at(arrived: float, first: float | None) -> float:
    """When a set-aside content arrived again: its file's own time (:func:`arrival_time`) when that is later than
    its first arrival (a new copy, written in a burst with other files, keeps its place among them); else now
    (a file moved back from quarantine keeps the time it was first written, which would put it before every file
    since)."""
    return arrived if first is not None and arrived > first else max(arrived, time.time())


def arrival_time(mtime_ns: int) -> float:
    """A file's arrival as the ledger orders it: its modification time. The watcher's events and scans and the
    run itself all record this one clock (files with the same time go in the order they were recorded), so a
    file whose event is handled late under load keeps its place behind the files written before it."""
    return mtime_ns / 1e9


class Ledger:
    """Which file contents a pipeline has processed, keyed by SHA-256.

    Its table (:mod:`calmops.core.statedb`: a SQLite file in the pipeline's folder, or PostgreSQL for several
    hosts) gives atomic claims across processes: two runs for the same bytes cannot both win.
    Status: ``waiting`` (announced, not yet claimed), ``in_progress`` (claimed), ``done``, ``pending`` (to be run
    again: deferred while the breaker is open, or released by a run that failed). ``arrived`` is when the
    complete file appeared (its modification time, see :func:`arrival_time`; files with the same time go in
    the order they were recorded): :meth:`queue` gives the files still to be decided in that order. A claim
    records its owner (host, pid and the pid's start time, flow run id) and a heartbeat the owner renews
    (:meth:`keep_alive`); a claim whose owner is gone is *orphaned* and is taken again at once: on the same
    host as soon as the process has ended, from anywhere once the heartbeat is older than ``lease`` seconds.
    ``gone``: set aside, not processed: the file was quarantined, or deleted while its run was in progress
    (closed; the same bytes dropped again are taken as new, see :meth:`arrive`).
    """

    def __init__(self, where: Path | Table, lease: float = CLAIM_LEASE):
        self.table = where if isinstance(where, Table) else Table("ledger", where.parent.name, where, statedb.SQLITE_TABLES["ledger"])
        self.lease = lease
        self._beats: dict[str, threading.Event] = {}
        # one transaction: processes opening a new ledger at the same moment create and upgrade it once
        self.table.create({"sha256": "TEXT", "file": "TEXT", "status": "TEXT", "decision": "TEXT",
                           "claimed_at": "REAL", "updated": "TEXT", "run_id": "TEXT", **_COLUMNS}, key="sha256")
        self.t = self.table.name

    @property
    def path(self) -> Path:
        return self.table.sqlite_file

    def _connect(self) -> Connection:
        return self.table.connect()

    def _claim_of(self, con: Connection, sha256: str) -> Claim | None:
        row = con.execute("SELECT status, owner_host, owner_pid, owner_start, COALESCE(heartbeat, claimed_at), "
                          f"run_id, mlflow_run_id FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        return Claim(*row) if row else None

    def claim(self, sha256: str, file: str, run_id: str = "", arrived: float | None = None) -> bool:
        """Take the file for processing; False when it is done or being processed by a live run elsewhere.
        ``arrived`` (see :func:`arrival_time`) is kept only if the file's arrival was not recorded before."""
        now = time.time()
        pid = os.getpid()
        with self.table.write() as con:
            held = self._claim_of(con, sha256)
            if held is not None:
                mine = (bool(run_id) and held.run_id == run_id) or self._reserved_here(sha256, held, pid)
                retake = held.status in (*WAITING, "gone") or (
                    held.status == "in_progress" and (mine or held.orphaned(self.lease, now)))
                if not retake:
                    return False
            con.execute(
                f"INSERT INTO {self.t} AS files (sha256, file, status, decision, claimed_at, updated, run_id, "
                "owner_host, owner_pid, owner_start, heartbeat, mlflow_run_id, arrived) "
                "VALUES (?, ?, 'in_progress', NULL, ?, ?, ?, ?, ?, ?, ?, NULL, ?) "
                "ON CONFLICT(sha256) DO UPDATE SET file=excluded.file, status='in_progress', decision=NULL, "
                "claimed_at=excluded.claimed_at, updated=excluded.updated, run_id=excluded.run_id, "
                "owner_host=excluded.owner_host, owner_pid=excluded.owner_pid, owner_start=excluded.owner_start, "
                "heartbeat=excluded.heartbeat, mlflow_run_id=NULL, arrived=CASE WHEN files.status='gone' "
                "THEN excluded.arrived ELSE COALESCE(files.arrived, excluded.arrived) END",
                (sha256, file, now, _now(), run_id, _host(), pid, start_time(pid), now,
                 now if arrived is None else arrived),
            )
            _RESERVED.pop(sha256, None)  # a reservation of this process is taken over by its run
            return True

    def reserve(self, sha256: str, file: str, arrived: float, folder: Path | None = None) -> bool:
        """Claim a content for a run this process is about to start on it: ``calmops run`` reserves its copy
        before the copy appears in incoming, so the watcher leaves the file to that run (no second flow run
        ends *Duplicate* beside it). The run's own :meth:`claim` in this process takes the reservation over;
        one it never takes is given back by :meth:`unreserve`, or found orphaned once this process has ended.
        Its heartbeat is kept while it waits (:meth:`keep_alive`: a run may wait minutes for its turn).
        False, as for :meth:`claim`, when the content is done or a live run has it; when a run that died holds
        it (the run itself takes that claim over, closing the runs it left open: :meth:`abandoned`); and when a
        first copy of it waits in ``folder`` under another name (that one is decided first, in its place: this
        copy is its duplicate). ``folder`` is the one ``file`` goes into: the incoming folder, or the labels folder
        for a labels file (``file`` is ``labels/<name>``, see :func:`ledger_name`)."""
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT file, status, arrived FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        if row is not None and row[1] == "in_progress":
            return False  # a live run has it, or a run that died did: the run takes that over, closing what it left
        if row is not None and row[1] in WAITING and _first_copy_waits(folder, row, file, sha256):
            return False
        if not self.claim(sha256, file, "", arrived):
            return False
        _RESERVED[sha256] = "pending" if row is not None and row[1] == "pending" else "waiting"
        self.keep_alive(sha256)
        return True

    def unreserve(self, sha256: str) -> None:
        """Give back a reservation that no run of this process took over: the content waits again (``pending``
        if it was pending before)."""
        if (before := _RESERVED.pop(sha256, None)) is None:
            return
        self._stop_beat(sha256)
        pid = os.getpid()
        with self.table.write() as con:
            con.execute(f"UPDATE {self.t} SET status=?, updated=?, owner_host=NULL, owner_pid=NULL, "
                        "owner_start=NULL, heartbeat=NULL WHERE sha256=? AND status='in_progress' AND run_id='' "
                        "AND owner_pid=? AND owner_host=?", (before, _now(), sha256, pid, _host()))

    @staticmethod
    def _reserved_here(sha256: str, held: Claim, pid: int) -> bool:
        """Whether ``held`` is this process's own reservation (:meth:`reserve`)."""
        return (sha256 in _RESERVED and held.status == "in_progress" and not held.run_id
                and held.owner_pid == pid and held.owner_host == _host())

    def live_claim(self, sha256: str) -> str | None:
        """The file name under which a live run holds the content (``in_progress``, owner alive), else None."""
        with closing(self._connect()) as con:
            held = self._claim_of(con, sha256)
            row = con.execute(f"SELECT file FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        if held is None or held.status != "in_progress" or held.orphaned(self.lease):
            return None
        return row[0]

    def arrive(self, sha256: str, file: str, arrived: float, incoming: Path | None = None,
               at: Path | None = None) -> None:
        """Record that a complete file appeared (``waiting``) at ``arrived`` (see :func:`arrival_time`); the
        first arrival of a content counts. A content not yet decided takes the new file's name (a file renamed
        in incoming is followed), unless ``incoming`` (the folder ``file`` is in: the labels folder for a labels
        file, ``labels/<name>``) still holds it under its first name: of two copies of one
        content, the first is decided and the later one is its duplicate. A content set aside (``gone``:
        quarantined, or deleted during its run) arrives anew, ``waiting`` (from the time :func:`_back_at` gives),
        when ``at`` (where the file arrived) still holds it: an arrival recorded late, after its file was set aside, changes nothing."""
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT file, status, arrived FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        # outside the connection: holds() may read the first copy's bytes
        if row is not None and row[1] not in ("done", "gone") and _first_copy_waits(incoming, row, file, sha256):
            file = row[0]
        anew = bool(row is not None and row[1] == "gone" and at is not None and holds(at, sha256, arrived))
        with closing(self._connect()) as con:
            con.execute(f"INSERT INTO {self.t} AS files (sha256, file, status, updated, arrived) "
                        "VALUES (?, ?, 'waiting', ?, ?) "
                        "ON CONFLICT(sha256) DO UPDATE SET "
                        "arrived=CASE WHEN ? AND files.status='gone' THEN ? "
                        "ELSE COALESCE(files.arrived, excluded.arrived) END, "
                        "decision=CASE WHEN ? AND files.status='gone' THEN NULL ELSE files.decision END, "
                        "file=CASE WHEN files.status='done' OR (files.status='gone' AND NOT ?) THEN files.file "
                        "ELSE excluded.file END, "
                        "status=CASE WHEN ? AND files.status='gone' THEN 'waiting' ELSE files.status END",
                        (sha256, file, _now(), arrived, anew, _back_at(arrived, row[2] if row else None), anew,
                         anew, anew))

    def next_in_queue(self, skip: set[str], incoming: Path | None = None) -> tuple[str, str, str] | None:
        """The first entry of :meth:`queue` (``incoming``: of the files still there), read afresh, whose sha256
        is not in ``skip``."""
        return next((entry for entry in self.queue(incoming) if entry[0] not in skip), None)

    def queue(self, incoming: Path | None = None) -> list[tuple[str, str, str]]:
        """(sha256, file, status) of every content still to be decided, in arrival order (then file name):
        ``waiting``, ``pending`` and orphaned claims; labels files (decided when they come) are not queued.
        With ``incoming`` (the pipeline's incoming folder), only the contents still in it (:func:`holds`): a run
        of the pipeline's turn passes over a file that was moved out (:func:`calmops.flows.common.run_in_order`),
        or replaced by other bytes under the same name (those have a row of their own, at their own arrival);
        the row stays in the ledger as it was (the same bytes dropped again take their place anew)."""
        return [(sha, file, status) for sha, file, _arrived, status in self.queue_before(None, incoming)]

    def queue_before(self, before: float | None, incoming: Path | None = None,
                     inclusive: bool = False) -> list[tuple[str, str, float, str]]:
        """(sha256, file, arrival, status) of the entries of :meth:`queue` that arrived before ``before`` (or at
        that moment too, ``inclusive``; all of them with None): what a labels run decides before its own file."""
        now = time.time()
        since, args = ("", ()) if before is None else (
            f" AND COALESCE(arrived, claimed_at) {'<=' if inclusive else '<'} ?", (before,))
        with closing(self._connect()) as con:
            rows = con.execute("SELECT sha256, file, arrived, COALESCE(arrived, claimed_at), status, owner_host, "
                               f"owner_pid, owner_start, COALESCE(heartbeat, claimed_at), run_id FROM {self.t} "
                               f"WHERE status IN ('waiting', 'pending', 'in_progress') AND file NOT LIKE ?{since} "
                               f"ORDER BY COALESCE(arrived, claimed_at), {self.table.order_column}",
                               (f"{LABELS_ENTRY}%", *args)).fetchall()
        return [(sha, file, at, "orphaned" if Claim(status, *rest).orphaned(self.lease, now) else status)
                for sha, file, arrived, at, status, *rest in rows
                if incoming is None or holds(incoming / file, sha, arrived)]

    def labels_waiting(self, before: float) -> list[tuple[str, str, float]]:
        """(sha256, ledger name, arrival) of the labels files announced and not yet taken (``waiting``), or taken by
        a run that ended without deciding them (an orphaned claim), that arrived before ``before``, oldest first:
        what a labels run decides before its own file."""
        now = time.time()
        with closing(self._connect()) as con:
            rows = con.execute(f"SELECT sha256, file, arrived, status, owner_host, owner_pid, owner_start, "
                               f"COALESCE(heartbeat, claimed_at), run_id FROM {self.t} "
                               "WHERE status IN ('waiting', 'in_progress') AND file LIKE ? AND arrived < ? "
                               f"ORDER BY arrived, {self.table.order_column}", (f"{LABELS_ENTRY}%", before)).fetchall()
        return [(sha, file, arrived) for sha, file, arrived, status, *rest in rows
                if status == "waiting" or Claim(status, *rest).orphaned(self.lease, now)]

    def held_behind(self, incoming: Path | None = None) -> str | None:
        """The file that holds others back: the oldest one still to be decided that has been tried (it is
        ``pending`` after a failure or a breaker wait, or its run crashed) with files behind it; a file a live run
        is deciding (a first try or a retry) holds nothing back: the files behind it simply wait their turn.
        With ``incoming``, files moved out of that folder count neither as the one holding others back nor as
        held (see :meth:`queue`): what ``calmops status`` shows, since a run goes on past them."""
        queue = self.queue(incoming)
        for i, (_sha, file, status) in enumerate(queue):  # a file a live run decides holds nothing back
            if status not in ("waiting", "in_progress") and i + 1 < len(queue):
                return file
        return None

    def keep_alive(self, sha256: str) -> None:
        """Renew this process's claim every ``lease / 4`` seconds (a daemon thread) until it is finished or
        released, so a long run on another host is not taken for a crashed one."""
        if sha256 in self._beats:
            return
        stop = self._beats[sha256] = threading.Event()
        pid = os.getpid()

        def beat() -> None:
            while not stop.wait(self.lease / 4):
                try:
                    with closing(self._connect()) as con:
                        renewed = con.execute(
                            f"UPDATE {self.t} SET heartbeat=? WHERE sha256=? AND status='in_progress' "
                            "AND owner_pid=? AND owner_host=?", (time.time(), sha256, pid, _host())).rowcount
                except statedb.errors():
                    continue  # busy or unreachable: the next beat renews it
                if not renewed:
                    return  # finished, released, or taken over

        threading.Thread(target=beat, name=f"calmops-claim-{sha256[:8]}", daemon=True).start()

    def _stop_beat(self, sha256: str) -> None:
        stop = self._beats.pop(sha256, None)
        if stop is not None:
            stop.set()

    def attach_run(self, sha256: str, mlflow_run_id: str) -> None:
        """Record the MLflow run of the claim (so a run that takes over an orphaned claim can close it)."""
        with closing(self._connect()) as con:
            con.execute(f"UPDATE {self.t} SET mlflow_run_id=? WHERE sha256=? AND status='in_progress'",
                        (mlflow_run_id, sha256))

    def left_open(self, sha256: str) -> tuple[Abandoned | None, str | None]:
        """What earlier runs on this content left open, read (once) before the next claim clears it: what a
        crashed run left (None when the claim is live, finished or absent), and the MLflow run of the last claim
        given up (``pending``: its run failed or was stopped; None otherwise). A run that failed while the
        tracking server was out of reach could not end its MLflow run, which the next run ends
        (:func:`calmops.core.registry.end_if_running`)."""
        with closing(self._connect()) as con:
            held = self._claim_of(con, sha256)
        if held is None:
            return None, None
        crashed = Abandoned(held.run_id or None, held.mlflow_run_id) if held.orphaned(self.lease) else None
        return crashed, held.mlflow_run_id if held.status == "pending" else None

    def finish(self, sha256: str, decision: str, status: str = "done", reason: str | None = None) -> None:
        """Record the decision; ``reason``: why a run failed, kept where MLflow could not record it."""
        self._stop_beat(sha256)
        with closing(self._connect()) as con:
            con.execute(f"UPDATE {self.t} SET status=?, decision=?, reason=?, updated=? WHERE sha256=?",
                        (status, decision, reason, _now(), sha256))

    def release(self, sha256: str, decision: str = "failed", reason: str | None = None) -> None:
        """Give a claim up (the run failed or was stopped): ``pending``, so the file is run again. ``reason``:
        why, in the ledger itself (a run that failed because the MLflow server did not answer has no record
        there: ``calmops history`` reads it here)."""
        self._stop_beat(sha256)
        with closing(self._connect()) as con:
            con.execute(f"UPDATE {self.t} SET status='pending', decision=?, reason=?, updated=? "
                        "WHERE sha256=? AND status='in_progress'", (decision, reason, _now(), sha256))

    def status(self, sha256: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT status FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def states(self) -> dict[str, str]:
        """sha256 -> ``done``, ``gone``, ``waiting``, ``pending``, ``in_progress`` (a live run holds it) or
        ``orphaned``."""
        now = time.time()
        with closing(self._connect()) as con:
            rows = con.execute("SELECT sha256, status, owner_host, owner_pid, owner_start, "
                               f"COALESCE(heartbeat, claimed_at), run_id FROM {self.t}").fetchall()
        return {sha: ("orphaned" if Claim(*rest).orphaned(self.lease, now) else rest[0]) for sha, *rest in rows}

    def counts(self) -> dict[str, int]:
        """How many contents are ``done``, ``gone``, ``waiting``, ``pending``, ``in_progress`` and ``orphaned``."""
        out = dict.fromkeys(("done", "gone", "waiting", "pending", "in_progress", "orphaned"), 0)
        for state in self.states().values():
            out[state] = out.get(state, 0) + 1
        return out

    def left_behind(self, sha256: str, file: str, after: float) -> bool:
        """Whether a file ``file`` (its ledger name) holding this ``done`` content, found in its folder, was left
        there for a run to answer: a copy under another name, or the file itself decided more than ``after``
        seconds ago (its run moves it to processed as it decides it: one still there was not moved, or its bytes
        were dropped again). A run answers it a duplicate and moves it to processed."""
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT file, updated FROM {self.t} WHERE sha256=? AND status='done'",
                              (sha256,)).fetchone()
        if row is None:
            return False
        if row[0] != file:
            return True
        decided = stamp_seconds(row[1])
        return decided is None or time.time() - decided > after

    def arrival(self, sha256: str) -> float | None:
        """When the content's file arrived, as recorded (its latest arrival, see :meth:`arrive`); None when unknown."""
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT arrived FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def decision(self, sha256: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute(f"SELECT decision FROM {self.t} WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def entries(self) -> list[dict]:
        """Every row, oldest claim first (files only announced, never claimed, come first, in the order they
        were recorded)."""
        with closing(self._connect()) as con:
            return con.dicts("SELECT sha256, file, status, decision, claimed_at, updated, run_id, "
                             + ", ".join(_COLUMNS) + f" FROM {self.t} ORDER BY COALESCE(claimed_at, 0), {self.table.order_column}")


def ledger_table(paths: PipelinePaths) -> Table:
    """Where the pipeline's ledger lives (see :mod:`calmops.core.statedb`)."""
    return Table.of("ledger", paths.root)


def read_ledger_states(table: Table) -> dict[str, str]:
    """:meth:`Ledger.states` of a pipeline's ledger (:func:`ledger_table`), {} when nothing was recorded yet or
    it cannot be read."""
    try:
        return Ledger(table).states() if table.exists() else {}
    except statedb.errors():
        return {}


def ledger(paths: PipelinePaths) -> Ledger:
    return Ledger(ledger_table(paths))


def has_ledger(paths: PipelinePaths) -> bool:
    """Whether the pipeline's ledger has been written (without creating it)."""
    return ledger_table(paths).exists()


LABELS_ENTRY = "labels/"  # the ledger names a labels file "labels/<name>": never in the incoming folder's queue


def _first_copy_waits(folder: Path | None, row: tuple, file: str, sha256: str) -> bool:
    """Whether the ledger's ``row`` (file, status, arrived) of a content names another file of the same kind as
    ``file`` (a labels file, ``labels/<name>``, or a features file) that ``folder`` (where ``file`` is) still holds
    with that content: a first copy, decided in place of the later one."""
    first, _, at = row
    if folder is None or first == file or first.startswith(LABELS_ENTRY) != file.startswith(LABELS_ENTRY):
        return False
    return holds(folder / first.removeprefix(LABELS_ENTRY), sha256, at)


def entry_name(name: str, labels: bool) -> str:
    """The name the ledger (and ``status``, ``history``, the viewer) gives a file called ``name``: the name, or
    ``labels/<name>`` for a file of the labels folder.

    >>> entry_name("y_0001.csv", labels=True), entry_name("x_0001.csv", labels=False)
    ('labels/y_0001.csv', 'x_0001.csv')
    """
    return f"{LABELS_ENTRY}{name}" if labels else name


def ledger_name(paths: PipelinePaths, path: Path) -> str:
    """The name the ledger keeps for the file at ``path`` (:func:`entry_name`)."""
    return entry_name(path.name, paths.labels is not None and path.parent.resolve() == paths.labels.resolve())


def pending_files(paths: PipelinePaths) -> list[Path]:
    """Files in incoming (and the labels folder) that the ledger marks ``pending`` (deferred while the breaker
    was open, or left by a failed run), oldest claim first: what ``calmops status`` counts and ``calmops
    relaunch`` processes."""
    folders = [paths.incoming, *([paths.labels] if paths.labels is not None else [])]
    by_name = {ledger_name(paths, p): p for folder in folders if folder.exists() for p in folder.glob("*")
               if p.is_file()}
    if not by_name or not has_ledger(paths):
        return []
    return [by_name[e["file"]] for e in ledger(paths).entries()
            if e["status"] == "pending" and e["file"] in by_name and sha256_of(by_name[e["file"]]) == e["sha256"]]


# -- moving files: never delete, never overwrite -------------------------------------------


REASON_SUFFIX = ".reason.json"  # a quarantined file's sidecar: <file>.reason.json
MAX_NAME_BYTES = 180  # room left under the usual 255-byte limit for a ".part" or ".reason.json" around it


def bounded_name(name: str, suffix: str = "", limit: int = MAX_NAME_BYTES) -> str:
    """``name + suffix``, shortened to ``limit`` bytes when it is longer: the start of the name, ``~``, a short
    hash of the whole name (two long names stay apart) and the extension, e.g. ``aaaa…aaa~3f2a9c41d0.csv``."""
    full = name + suffix
    if len(full.encode()) <= limit:
        return full
    digest = hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()[:10]
    stem, dot, ext = name.rpartition(".")
    ext = f".{ext}" if dot and stem and len(ext.encode()) <= 10 else ""
    stem = stem if ext else name
    tail = f"~{digest}{ext}{suffix}"
    room = max(1, limit - len(tail.encode()))
    head = stem.encode(errors="surrogateescape")[:room].decode(errors="ignore")
    return head + tail


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value):
    """A text cell a spreadsheet would run as a formula, made inert (OWASP CSV injection guidance): text that
    starts with ``= + - @``, a tab or a carriage return gets a leading ``'``. Numbers, and text that reads as
    a plain number such as ``-1.5``, are left as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def as_written(text: object) -> str | None:
    """Text kept by :func:`formula_safe` (a sidecar's name or reason), as it was before it was made inert."""
    if text is None:
        return None
    text = str(text)
    return text[1:] if text.startswith("'") and formula_safe(text[1:]) == text else text


def _formula_safe_tree(data):
    if isinstance(data, dict):
        return {k: _formula_safe_tree(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_formula_safe_tree(v) for v in data]
    return formula_safe(data)


def free_name(folder: Path, name: str, sha256: str) -> str:
    """The name a file called ``name`` whose content hashes to ``sha256`` is kept under in ``folder``: ``name``
    while no file there has it, else ``<sha256[:12]>-<name>``, so another content never lands on a name taken
    and the same content always lands on the same one. A name whose quarantine sidecar (``<name>.reason.json``,
    see :func:`quarantine`) is there is taken too, also once its file was moved out: the sidecar is the record
    of that refusal. Not shortened yet (:func:`bounded_name` does that): what is derived from it
    (``predictions/<name>.predictions.csv``) shortens the whole name once."""
    taken = folder / bounded_name(name)
    sidecar = taken.with_name(taken.name + REASON_SUFFIX)
    return f"{sha256[:12]}-{name}" if os.path.lexists(taken) or os.path.lexists(sidecar) else name


def _free_name(folder: Path, name: str, sha256: str) -> Path:
    return folder / bounded_name(free_name(folder, name, sha256))


def copy_atomic(source: Path, target: Path) -> None:
    """Copy a file so that ``target`` appears only complete (a watcher never sees half of it)."""
    part = target.with_name(f".{target.name}.part")
    try:
        shutil.copy2(source, part)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)


def move_to_processed(paths: PipelinePaths, file: Path, sha256: str, *, copy: bool = False) -> Path:
    """Move ``file`` into the processed folder under a free name; ``copy`` leaves it where it is (a user's own
    file given to ``calmops run``) and puts a copy there."""
    paths.processed.mkdir(parents=True, exist_ok=True)
    target = _free_name(paths.processed, file.name, sha256)
    if copy:
        copy_atomic(file, target)
    else:
        shutil.move(str(file), target)
    return target


def quarantine(paths: PipelinePaths, file: Path, sha256: str | None, reason: str, details: dict | None = None, *,
               labels: bool | None = None, arrived: float | None = None) -> Path:
    """Move a refused file aside with a JSON sidecar saying why, in plain words (:func:`printable`: a reason
    naming the file carries no line break or terminal escape of its name into the sidecar).

    The sidecar also keeps the folder the file belongs to (``folder``: ``labels`` for a labels file, which
    ``labels`` says, by default whether the file is in the labels folder; ``incoming`` otherwise), so that its
    name reads as the ledger's (:func:`entry_name`) once the same bytes have been decided since, and when the
    file arrived (``arrived``, as the ledger records it, see :func:`arrival_time`; by default its modification
    time). A symbolic link is moved as the link itself (never what it points to).
    """
    if labels is None:
        labels = ledger_name(paths, file).startswith(LABELS_ENTRY)
    if arrived is None:
        try:
            arrived = arrival_time(os.lstat(file).st_mtime_ns)
        except OSError:
            arrived = None
    paths.quarantine.mkdir(parents=True, exist_ok=True)
    target = _free_name(paths.quarantine, file.name, sha256 or "nohash")
    n = 1
    while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + REASON_SUFFIX)):
        n += 1  # the same bytes refused again under that name (moved back and refused anew): each keeps its record
        target = paths.quarantine / bounded_name(f"{(sha256 or 'nohash')[:12]}-{n}-{file.name}")
    shutil.move(str(file), target)
    sidecar = target.with_name(target.name + REASON_SUFFIX)
    write_atomic(sidecar, json.dumps(
        _formula_safe_tree({"file": file.name, "folder": "labels" if labels else "incoming", "sha256": sha256,
                            "reason": printable(reason), "details": details or {}, "time": _now(),
                            "arrived": arrived}),
        indent=2,
    ))
    return target


def quarantined_files(paths: PipelinePaths) -> list[Path]:
    """The files in quarantine (each has a ``<file>.reason.json`` sidecar, see :func:`quarantine`): a sidecar
    whose file was moved away (e.g. dropped into incoming again) does not count, and stays as a record."""
    if not paths.quarantine.is_dir():
        return []
    suffix = REASON_SUFFIX
    return sorted(file for sidecar in paths.quarantine.glob(f"*{suffix}")
                  if os.path.lexists(file := sidecar.with_name(sidecar.name[:-len(suffix)])))


def quarantine_records(paths: PipelinePaths, *, moved_out: bool = False) -> list[tuple[Path, dict]]:
    """The sidecar (path and content) of every file in quarantine; with ``moved_out`` also the sidecars of files
    moved out of quarantine since (e.g. back into incoming), each the record of a time a file was set aside. An
    unreadable sidecar is left out."""
    suffix = REASON_SUFFIX
    if moved_out:
        sidecars = sorted(paths.quarantine.glob(f"*{suffix}")) if paths.quarantine.is_dir() else []
    else:
        sidecars = [file.with_name(file.name + suffix) for file in quarantined_files(paths)]
    out = []
    for sidecar in sidecars:
        try:
            out.append((sidecar, json.loads(sidecar.read_text())))
        except (OSError, ValueError):
            continue
    return out


def quarantine_record(paths: PipelinePaths, name: str) -> tuple[Path, dict] | None:
    """The sidecar (path and content) of the latest quarantined file that arrived as ``name``, None when no
    file of that name is in quarantine."""
    found = [(str(record.get("time", "")), sidecar, record) for sidecar, record in quarantine_records(paths)
             # the sidecar keeps a name such as "=x.csv" inert
             if record.get("file") in (name, formula_safe(name))]
    return max(found, key=lambda item: item[0])[1:] if found else None


# -- batch history (accepted batches, for retraining modes) --------------------------------


def append_history(paths: PipelinePaths, batch: pd.DataFrame, sha256: str, max_batches: int) -> Path:
    paths.history.mkdir(parents=True, exist_ok=True)
    existing = sorted(paths.history.glob("*.parquet"))
    if any(p.stem.endswith(sha256[:16]) for p in existing):
        return next(p for p in existing if p.stem.endswith(sha256[:16]))
    seq = int(existing[-1].stem.split("-")[0]) + 1 if existing else 1
    target = paths.history / f"{seq:06d}-{sha256[:16]}.parquet"
    tmp = target.with_name("." + target.name + ".part")
    batch.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    for old in sorted(paths.history.glob("*.parquet"))[:-max_batches]:
        old.unlink()  # retention of derived copies; the original file stays in processed/
    return target


def drop_history(paths: PipelinePaths, sha256: str) -> None:
    """Take back the batch a run added to the history (:func:`append_history`) when the run is not decided (it
    failed, or was stopped): its rows are not accepted, and they must not train the challengers of later files
    (its retry adds them again)."""
    if paths.history.exists():
        for path in paths.history.glob(f"*-{sha256[:16]}.parquet"):
            path.unlink(missing_ok=True)


def kept_rows(paths: PipelinePaths) -> int:
    """Rows of the accepted batches the pipeline keeps (``history_max_batches``), read from the files' metadata."""
    import pyarrow.parquet as pq

    files = sorted(paths.history.glob("*.parquet")) if paths.history.exists() else []
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def read_history(paths: PipelinePaths, exclude_sha256: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Accepted batches, oldest first, as (sha-256 prefix, frame); ``exclude_sha256`` leaves one out."""
    files = sorted(paths.history.glob("*.parquet")) if paths.history.exists() else []
    out = []
    for f in files:
        prefix = f.stem.split("-", 1)[1]
        if exclude_sha256 and exclude_sha256.startswith(prefix):
            continue
        import pandas as pd

        out.append((prefix, pd.read_parquet(f)))
    return out
