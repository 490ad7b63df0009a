"""Opening a pipeline's ledger: processes that open a new (or an older) ledger at the same moment."""

import multiprocessing
import sqlite3
from pathlib import Path

from calmops.core.store import _COLUMNS, Ledger


def _open(path: str) -> bool:
    Ledger(Path(path))
    return True


def test_processes_opening_a_new_ledger_at_once_create_it_once(tmp_path):
    """The watcher, a flow run and ``calmops status`` may open a pipeline's first ledger together: none fails."""
    path = tmp_path / "ledger.sqlite"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        assert all(pool.map(_open, [str(path)] * 48))
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(files)")]
    assert set(_COLUMNS) <= set(columns) and len(columns) == len(set(columns))


def test_an_older_ledger_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE files (sha256 TEXT PRIMARY KEY, file TEXT, status TEXT, decision TEXT, "
                    "claimed_at REAL, updated TEXT, run_id TEXT)")
        con.execute("INSERT INTO files VALUES ('abc', 'a.csv', 'done', 'train', 1.0, 'x', 'r')")
    book = Ledger(path)
    assert set(_COLUMNS) <= {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(files)")}
    assert book.status("abc") == "done" and book.decision("abc") == "train"


def test_opening_a_ledger_made_before_waits_for_no_writer(tmp_path):
    """The watcher opens a pipeline's ledger for every file it announces, while runs write to it: opening one
    that has its table already reads, so it goes on while another process holds the write lock."""
    import threading

    path = tmp_path / "ledger.sqlite"
    Ledger(path).arrive("s1", "a.csv", 1.0)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a run's write transaction, held
    opened = threading.Event()
    threading.Thread(target=lambda: (Ledger(path).status("s1"), opened.set()), daemon=True).start()
    try:
        assert opened.wait(10), "opening the ledger waited for the writer"
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_files_with_the_same_time_are_queued_in_the_order_they_were_recorded_not_by_name(tmp_path):
    """File times advance in steps (a few ms on Linux, 2 s on FAT): a burst can give several files one time.
    They go in the order the watcher recorded them; a file recorded again keeps its place."""
    book = Ledger(tmp_path / "ledger.sqlite")
    for sha, name in (("s1", "batch-9.csv"), ("s2", "batch-10.csv"), ("s3", "a.csv")):
        book.arrive(sha, name, 100.0)
    book.arrive("s0", "z.csv", 99.0)
    book.arrive("s1", "batch-9.csv", 100.0)  # announced again: no new place
    assert [name for _, name, _ in book.queue()] == ["z.csv", "batch-9.csv", "batch-10.csv", "a.csv"]
