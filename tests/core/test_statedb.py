"""CalmOps' own shared state on both of its homes: SQLite files in the pipeline's folder, and PostgreSQL (a real
server, started for the session) for several workers on several hosts. The same behaviour on each: claims
taken once across processes, arrival order kept to the millisecond, crashed owners' claims taken over, rows
awaiting labels matched once, and one process at a time in a pipeline's turn, released when its holder dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from calmops.core import statedb
from calmops.core.awaiting import Awaiting, keys_of
from calmops.core.statedb import Table
from calmops.core.store import Ledger

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path, monkeypatch):
    """(the state database URL or None, a fresh pipeline folder); the setting is in the environment too."""
    root = tmp_path / f"p-{uuid.uuid4().hex[:12]}"  # a pipeline name: its own table in the shared server
    root.mkdir()
    if request.param == "sqlite":
        monkeypatch.delenv("CALMOPS_STATE_DATABASE_URL", raising=False)
        return None, root
    url = request.getfixturevalue("postgres").url("calmops")
    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", url)
    return url, root


def book(root: Path, url: str | None, lease: float = 120.0) -> Ledger:
    return Ledger(Table.of("ledger", root, url), lease=lease)


def _claim_all(args) -> list[str]:
    root, url, shas = args
    ledger = book(Path(root), url)
    return [sha for sha in shas if ledger.claim(sha, f"{sha}.csv", run_id=f"run-{os.getpid()}")]


def test_each_content_is_claimed_by_one_process_only(engine):
    url, root = engine
    shas = [f"{i:064x}" for i in range(40)]
    with FORK.Pool(4) as pool:
        won = pool.map(_claim_all, [(str(root), url, shas)] * 4)
    assert sorted(sha for got in won for sha in got) == shas  # every content once, by exactly one process
    counts = book(root, url).counts()  # the pool's processes have ended: their claims are orphaned now
    assert counts["in_progress"] + counts["orphaned"] == 40


def test_arrival_order_holds_to_the_millisecond_and_labels_files_are_not_queued(engine):
    url, root = engine
    ledger = book(root, url)
    base = 1_790_000_000.0  # a 2026 file time: a 4-byte float would make these three one instant
    for sha, name, at in (("c", "c.csv", base + 0.003), ("a", "a.csv", base + 0.001), ("b", "b.csv", base + 0.002),
                          ("l", "labels/l.csv", base), ("d", "d.csv", base + 0.003)):
        ledger.arrive(sha, name, at)
    ledger.arrive("a", "a.csv", base + 5)  # recorded again: the first arrival counts
    assert [name for _, name, _ in ledger.queue()] == ["a.csv", "b.csv", "c.csv", "d.csv"]
    assert ledger.claim("b", "b.csv", run_id="r1")
    ledger.finish("b", "train")
    assert [e["file"] for e in ledger.entries() if e["status"] == "done"] == ["b.csv"]
    assert ledger.states()["b"] == "done" and ledger.decision("b") == "train"


def _claim_and_die(args) -> None:
    root, url = args
    book(Path(root), url).claim("x" * 64, "x.csv", run_id="crashed")
    os._exit(0)  # the process ends with the claim held, as a killed worker would


def test_a_claim_whose_owner_died_is_taken_over_and_reported(engine):
    url, root = engine
    child = FORK.Process(target=_claim_and_die, args=((str(root), url),))
    child.start()
    child.join(30)
    ledger = book(root, url)
    assert ledger.states()["x" * 64] == "orphaned"
    assert ledger.left_open("x" * 64)[0].flow_run_id == "crashed"
    assert ledger.claim("x" * 64, "x.csv", run_id="next")
    assert ledger.states()["x" * 64] == "in_progress"
    # a claim held elsewhere (another host) is taken over once its heartbeat is older than the lease
    short = book(root, url, lease=0.3)
    assert short.claim("y" * 64, "y.csv", run_id="first")
    with short.table.write() as con:
        con.execute(f"UPDATE {short.t} SET owner_host = 'another-host' WHERE sha256 = ?", ("y" * 64,))
    assert not short.claim("y" * 64, "y.csv", run_id="second")
    time.sleep(0.4)
    assert short.claim("y" * 64, "y.csv", run_id="second")


def test_rows_awaiting_labels_are_matched_once(engine, tmp_path):
    url, root = engine
    awaiting = Awaiting(root, tmp_path / "state", url=url)
    frame = pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]})
    awaiting.keep(frame, keys_of(frame, ["id"]), [0, 1, 0], 4, "s" * 64, "f.csv")
    assert awaiting.waiting(30) == {"waiting": 3, "overdue": 0}
    labels = pd.DataFrame({"id": [3, 1, 9], "y": [1, 0, 1]})
    match = awaiting.match(labels, keys_of(labels, ["id"]), "y", "L" * 64, 30)
    assert match.rows["id"].tolist() == [3, 1] and match.labels.tolist() == [1, 0]
    assert match.counts["unmatched"] == 1 and awaiting.waiting(30)["waiting"] == 1
    again = awaiting.match(labels, keys_of(labels, ["id"]), "y", "M" * 64, 30)  # another file, same ids
    assert again.counts["matched"] == 0 and again.counts["labelled_before"] == 2
    awaiting.release("L" * 64)
    assert awaiting.waiting(30)["waiting"] == 3


def _hold_turn(args) -> None:
    root, started = args
    with statedb.turn(Path(root)):
        Path(started).write_text("held")
        time.sleep(600)


def test_one_process_at_a_time_holds_a_pipelines_turn_and_a_killed_holder_lets_go(engine, tmp_path):
    url, root = engine
    started = tmp_path / "started"
    holder = FORK.Process(target=_hold_turn, args=((str(root), str(started)),))
    holder.start()
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the holder never took the turn"
        time.sleep(0.05)
    waited = []
    killer = FORK.Process(target=lambda: (time.sleep(1.0), os.kill(holder.pid, signal.SIGKILL)))
    killer.start()
    t0 = time.monotonic()
    with statedb.turn(root, on_wait=lambda: waited.append(True)):
        took = time.monotonic() - t0
    killer.join(30)
    holder.join(30)
    assert waited == [True]  # the turn was held: this process said it waits
    assert 0.8 < took < 30  # and got it once the holder was killed, not before
    if url:  # nothing of the turn (or the ledger) is a file in the pipeline's folder on PostgreSQL
        book(root, url)
        assert not (root / "order.lock").exists() and not (root / "ledger.sqlite").exists()


def test_the_setting_puts_every_pipelines_ledger_in_postgres(engine):
    from calmops.core.store import PipelinePaths, has_ledger, ledger

    url, root = engine
    paths = PipelinePaths(root=root, incoming=root / "incoming", predictions=root / "predictions")
    assert not has_ledger(paths)
    ledger(paths).arrive("s" * 64, "a.csv", 1.0)
    assert has_ledger(paths)
    assert (root / "ledger.sqlite").exists() is (url is None)
    if url:
        assert ledger(paths).table.name == f'calmops_ledger."{root.name}"'


def test_a_state_database_that_is_not_postgres_is_refused(monkeypatch):
    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", "mysql://user:secret@db/calmops")
    with pytest.raises(statedb.StateDatabaseError, match="'db/calmops' is not a postgresql:// URL"):
        statedb.state_database_url()


def test_a_deleted_pipelines_tables_are_set_aside_each_time_and_its_name_starts_afresh(engine):
    """`calmops delete` sets a pipeline's ledger and labels tables aside; on PostgreSQL they share one schema of
    deleted tables, where the tables' own indexes and sequences must not clash: not those of the ledger and the
    labels table of one pipeline, nor those of a pipeline deleted, created again and deleted again."""
    url, root = engine
    for stamp in ("20261206T083336Z", "20261206T090000Z"):
        ledger = book(root, url)
        ledger.arrive("a" * 64, "a.csv", 1.0)
        Awaiting(root, root / "state", url=url).create()
        for kind in ("ledger", "labels"):
            Table.of(kind, root, url).retire(stamp)  # raised DuplicateTable on the second table before
        if url is None:  # SQLite files move with the pipeline's folder (calmops delete): nothing to set aside
            assert book(root, url).entries() != []
            return
        assert book(root, url).entries() == []  # the name starts afresh
    # retired by `calmops delete` in another process: this one (the watcher) still has the table in its cache of
    # tables it made, and must make it again rather than write into a table that is gone
    from calmops.core import statedb

    Table.of("ledger", root, url).retire("20261206T100000Z")
    statedb._created.add((url, Table.of("ledger", root, url).name))
    book(root, url).arrive("b" * 64, "b.csv", 2.0)
    assert [e["file"] for e in book(root, url).entries()] == ["b.csv"]
    con = Table.of("ledger", root, url).connect()
    try:
        kept = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname='calmops_deleted' "
                                           "AND tablename LIKE ?", (f"%{root.name}",)).fetchall()}
    finally:
        con.close()
    assert len(kept) == 5 and {k.split("-")[0] for k in kept} == {"ledger", "labels"}


def test_a_command_without_the_homes_postgresql_setting_is_refused_not_let_loose_on_sqlite(tmp_path, monkeypatch):
    """A home set up for PostgreSQL (`calmops db upgrade`, a service started with the setting) remembers it; a
    command run without that setting (from another folder than calmops.toml's) is refused with what to do,
    instead of keeping a SQLite ledger of its own and deciding again files the stack decided. No password is
    written into the home."""
    from typer.testing import CliRunner

    from calmops.core.settings import ConfigError, get_settings
    from calmops.deployments.cli import app

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("CALMOPS_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", "postgresql://calmops:s3cret@db.example:5432/calmops")
    statedb.mark_home(get_settings())
    mark = tmp_path / "home" / statedb.HOME_MARK
    assert mark.read_text().strip() == "postgresql://calmops@db.example:5432/calmops"
    assert statedb.state_database_url().startswith("postgresql://")  # with the setting: as before
    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", "postgresql://db.example/calmops?password=s3cret&sslmode=require")
    statedb.mark_home(get_settings())
    assert mark.read_text().strip() == "postgresql://db.example/calmops?sslmode=require"

    monkeypatch.delenv("CALMOPS_STATE_DATABASE_URL")
    with pytest.raises(ConfigError, match="keeps its state in PostgreSQL") as refused:
        statedb.state_database_url()
    assert "CALMOPS_CONFIG" in refused.value.hint  # said as the hint: what to do, not "fix the file"
    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    save_spec(spec_from_dict(dict(STREAM_SPEC)), create=True)
    told = CliRunner().invoke(app, ["status", "sea"])  # any command that opens a ledger
    assert told.exit_code in (1, 2) and "hint: run it in the folder of the stack's calmops.toml" in told.stderr
    ledger_file = tmp_path / "home" / "pipelines" / "sea" / "ledger.sqlite"
    with pytest.raises(ConfigError):
        Table.of("ledger", ledger_file.parent)
    assert not ledger_file.exists()

    # nor does the stack start on empty SQLite stores (a registry without the champion, a Prefect without the
    # deployments): `calmops up` and each `calmops service` are refused before anything starts
    _no_service_starts_without_the_state_database(tmp_path, mark)

    mark.unlink()  # the home no longer uses PostgreSQL, as the message says to do
    assert statedb.state_database_url() is None
    upgraded = CliRunner().invoke(app, ["db", "upgrade", "calmops"])
    assert upgraded.exit_code == 0, upgraded.output
    assert not mark.exists()  # a SQLite home is not marked


def _no_service_starts_without_the_state_database(tmp_path: Path, mark: Path) -> None:
    import subprocess
    import sys

    from tests.e2e.stack import free_port

    env = {**os.environ, **{f"CALMOPS_{s.upper()}_PORT": str(free_port()) for s in ("prefect", "mlflow", "viewer", "api")}}
    calmops = [sys.executable, "-m", "calmops.deployments.cli"]
    try:
        for args in (["up"], ["service", "prefect"], ["service", "mlflow"], ["service", "worker", "--wait", "1"]):
            said = subprocess.run([*calmops, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
            assert said.returncode != 0 and "keeps its state in PostgreSQL" in said.stderr, (args, said.stderr)
            assert "CALMOPS_CONFIG" in said.stderr
        home = mark.parent
        assert not (home / "mlflow").exists() and not (home / "prefect").exists(), sorted(home.rglob("*"))
        assert not list(home.rglob("*.pid"))
    finally:  # had one started, it would be stopped here (a service started by exec ends with its timeout)
        subprocess.run([*calmops, "down"], env=env, capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("kind, lost", [("ledger", "the files still in incoming are decided again"),
                                        ("labels", "the rows awaiting labels are forgotten")])
def test_a_damaged_sqlite_state_file_is_named_with_what_moving_it_aside_loses(tmp_path, kind, lost):
    from contextlib import closing

    from calmops.core.statedb import DamagedFile, Table

    (tmp_path / f"{kind}.sqlite").write_bytes(b"not a database " * 100)
    with pytest.raises(DamagedFile) as said, closing(Table.of(kind, tmp_path).connect()) as con:
        con.execute("SELECT 1")
    assert str(said.value).startswith(f"{tmp_path / f'{kind}.sqlite'}: file is not a database; restore it")
    assert lost in str(said.value)


def test_a_state_database_that_takes_no_writes_is_named_and_the_claim_is_not_taken(engine, monkeypatch):
    """A read-only ledger (the file or its folder read-only; in PostgreSQL a standby) said SQLite's or the server's
    words alone, naming no file. Now the file (the database, without its password) and what to do."""
    import sqlite3

    url, root = engine
    secret = url and f"{url}?password=hidden-{os.getpid()}"  # trusted on loopback: given, never needed or said
    ledger = book(root, secret)
    sha = "a" * 64
    ledger.arrive(sha, "a.csv", 1_790_000_000.0)
    if url is None:  # root writes any file: the ledger is opened read-only instead, as SQLite opens one it cannot write
        connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: connect(f"file:{path}?mode=ro", uri=True, **kw))
        restore = (sqlite3, "connect", connect)
        where, todo = f"{root / 'ledger.sqlite'}: attempt to write a readonly database", "write the file and its folder"
    else:  # a standby, or a database set default_transaction_read_only, answers so
        reach = statedb._postgres

        def read_only(*args, **kwargs):
            con = reach(*args, **kwargs)
            con.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            return con

        monkeypatch.setattr(statedb, "_postgres", read_only)
        restore = (statedb, "_postgres", reach)
        where, todo = f"the state database {url}: cannot execute", "point state_database_url at the primary"
    with pytest.raises(statedb.errors()) as said:
        ledger.claim(sha, "a.csv", run_id="r1")
    assert str(said.value).startswith(where), said.value
    assert todo in str(said.value) and "nothing of this write was kept" in str(said.value)
    assert "hidden" not in str(said.value) and isinstance(said.value, statedb.CannotWrite)
    monkeypatch.setattr(*restore)
    assert book(root, secret).status(sha) == "waiting"  # as it was: not claimed


def test_a_full_disk_under_the_labels_file_is_named_and_leaves_the_rows_as_they_were(tmp_path, monkeypatch):
    """Keeping a file's rows again replaces them in one transaction (delete, then insert). The disk fills up
    between the two: the deletion is rolled back with the inserts, and the error names the file."""
    import sqlite3

    from calmops.core.awaiting import Awaiting

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CALMOPS_STATE_DATABASE_URL", raising=False)
    root = tmp_path / "sea"
    root.mkdir()
    waiting = Awaiting(root, root / "state")
    waiting.keep(pd.DataFrame({"x": [1, 2, 3]}), ["a", "b", "c"], [0, 1, 0], 1, "s" * 64, "one.csv")

    opened = statedb._sqlite

    def full(path, timeout):  # SQLite's own limit: the file cannot grow, as on a full disk
        con = opened(path, timeout)
        con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
        return con

    monkeypatch.setattr(statedb, "_sqlite", full)
    many = [f"k{i}" for i in range(5000)]
    with pytest.raises(statedb.errors()) as said:
        waiting.keep(pd.DataFrame({"x": range(5000)}), many, [0] * 5000, 1, "s" * 64, "one.csv")
    file = root / "labels.sqlite"
    assert str(said.value).startswith(f"{file}: database or disk is full; free space on the disk"), said.value
    assert isinstance(said.value, statedb.CannotWrite)
    monkeypatch.setattr(statedb, "_sqlite", opened)
    with sqlite3.connect(file) as con:
        kept = con.execute("SELECT key FROM awaiting ORDER BY row").fetchall()
    assert kept == [("a",), ("b",), ("c",)]  # not deleted, and none of the 5000 half-inserted
