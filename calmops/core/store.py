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
import sqlite3
import stat
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from calmops.core.settings import Settings, get_settings
from calmops.core.spec import NAME_PATTERN, PipelineSpec, load_spec, parse_spec

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PipelinePaths:
    root: Path
    incoming: Path
    predictions: Path

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
    def ledger_file(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def state(self) -> Path:
        """Small JSON state files (e.g. concept-drift detectors between files)."""
        return self.root / "state"

    def ensure(self) -> PipelinePaths:
        for d in (self.root, self.incoming, self.predictions, self.spec_history, self.processed,
                  self.quarantine, self.history, self.logs, self.state):
            d.mkdir(parents=True, exist_ok=True)
        return self


def pipeline_paths(spec: PipelineSpec, settings: Settings | None = None) -> PipelinePaths:
    settings = settings or get_settings()
    root = settings.pipeline_dir(spec.name)
    return PipelinePaths(
        root=root,
        incoming=Path(spec.incoming).expanduser().resolve() if spec.incoming else root / "incoming",
        predictions=Path(spec.predictions).expanduser().resolve() if spec.predictions else root / "predictions",
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
    """Write a file so a crash leaves the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_spec(spec: PipelineSpec, *, create: bool, settings: Settings | None = None) -> PipelinePaths:
    """Write the spec and record the change (time and diff) in its history."""
    paths = pipeline_paths(spec, settings)
    exists = paths.spec_file.exists()
    if create and exists:
        raise PipelineExists(f"pipeline {spec.name!r} exists already; use 'calmops update'")
    if not create and not exists:
        raise PipelineNotFound(f"no pipeline named {spec.name!r}; use 'calmops create'")
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


def spec_from_dict(data: dict) -> PipelineSpec:
    return parse_spec(data)


# -- the ledger: exactly-once effect per content hash --------------------------------------


class Ledger:
    """Which file contents a pipeline has processed, keyed by SHA-256.

    SQLite gives atomic claims across processes: two runs for the same bytes cannot both win.
    Status: ``in_progress`` (claimed), ``done``, ``pending`` (deferred, e.g. breaker open), ``gone`` (the file
    was deleted while its run was in progress: closed; the same bytes dropped again are taken as new).
    A claim older than ``stale_after`` seconds belongs to a crashed run and may be taken again.
    """

    def __init__(self, path: Path, stale_after: float = 3600.0):
        self.path = path
        self.stale_after = stale_after
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS files (sha256 TEXT PRIMARY KEY, file TEXT, status TEXT, "
                "decision TEXT, claimed_at REAL, updated TEXT, run_id TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def claim(self, sha256: str, file: str, run_id: str = "") -> bool:
        """Take the file for processing; False when it is done or being processed elsewhere."""
        now = time.time()
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT status, claimed_at, run_id FROM files WHERE sha256=?", (sha256,)).fetchone()
            if row is not None:
                status, claimed_at, owner = row
                mine = bool(run_id) and owner == run_id   # a retry of the same flow run
                stale = now - (claimed_at or 0) > self.stale_after  # a crashed run's claim
                retake = status in ("pending", "gone") or (status == "in_progress" and (mine or stale))
                if not retake:
                    con.execute("COMMIT")
                    return False
            con.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, 'in_progress', NULL, ?, ?, ?)",
                (sha256, file, now, _now(), run_id),
            )
            con.execute("COMMIT")
            return True

    def finish(self, sha256: str, decision: str, status: str = "done") -> None:
        with closing(self._connect()) as con:
            con.execute(
                "UPDATE files SET status=?, decision=?, updated=? WHERE sha256=?",
                (status, decision, _now(), sha256),
            )

    def release(self, sha256: str) -> None:
        """Forget a claim (the run failed before it changed anything); the file can be retried."""
        with closing(self._connect()) as con:
            con.execute("DELETE FROM files WHERE sha256=? AND status='in_progress'", (sha256,))

    def status(self, sha256: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT status FROM files WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def decision(self, sha256: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT decision FROM files WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def entries(self) -> list[dict]:
        with closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM files ORDER BY claimed_at")]


def ledger(paths: PipelinePaths) -> Ledger:
    return Ledger(paths.ledger_file)


# -- moving files: never delete, never overwrite -------------------------------------------


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


def _formula_safe_tree(data):
    if isinstance(data, dict):
        return {k: _formula_safe_tree(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_formula_safe_tree(v) for v in data]
    return formula_safe(data)


def _free_name(folder: Path, name: str, sha256: str) -> Path:
    target = folder / bounded_name(name)
    if target.exists() or target.is_symlink():
        target = folder / bounded_name(f"{sha256[:12]}-{name}")
    return target


def move_to_processed(paths: PipelinePaths, file: Path, sha256: str) -> Path:
    paths.processed.mkdir(parents=True, exist_ok=True)
    target = _free_name(paths.processed, file.name, sha256)
    shutil.move(str(file), target)
    return target


def quarantine(paths: PipelinePaths, file: Path, sha256: str | None, reason: str, details: dict | None = None) -> Path:
    """Move a refused file aside with a JSON sidecar saying why, in plain words.

    A symbolic link is moved as the link itself (never what it points to).
    """
    paths.quarantine.mkdir(parents=True, exist_ok=True)
    target = _free_name(paths.quarantine, file.name, sha256 or "nohash")
    shutil.move(str(file), target)
    sidecar = target.with_name(target.name + ".reason.json")
    write_atomic(sidecar, json.dumps(
        _formula_safe_tree({"file": file.name, "sha256": sha256, "reason": reason, "details": details or {},
                            "time": _now()}),
        indent=2,
    ))
    return target


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


def read_history(paths: PipelinePaths, exclude_sha256: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Accepted batches, oldest first, as (sha-256 prefix, frame); ``exclude_sha256`` leaves one out."""
    files = sorted(paths.history.glob("*.parquet")) if paths.history.exists() else []
    out = []
    for f in files:
        prefix = f.stem.split("-", 1)[1]
        if exclude_sha256 and exclude_sha256.startswith(prefix):
            continue
        out.append((prefix, pd.read_parquet(f)))
    return out
