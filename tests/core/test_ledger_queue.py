"""What the ledger reports as held or queued when a file has been moved out of the incoming folder, and which
entries of an incoming folder or quarantine count as files."""

import json
import os
import time
from pathlib import Path

from calmops.core.store import (
    Ledger,
    PipelinePaths,
    arrival_time,
    incoming_files,
    quarantined_files,
    sha256_of,
)


def _tried_and_failed(book: Ledger, sha: str, name: str, arrived: float) -> None:
    book.arrive(sha, name, arrived)
    assert book.claim(sha, name, run_id="r1")
    book.release(sha)  # the run failed: pending


def test_a_file_moved_out_of_incoming_holds_nothing_back_and_its_row_stays(tmp_path):
    """docs/operations.md: held files go once the file they wait for is moved out of the incoming folder. A run
    of the pipeline's turn passes over such a file (calmops.flows.common.run_in_order), so it is neither the file
    others are held behind nor queued, while its ledger row is kept as it was."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    (incoming / "bad.csv").write_text("x\n1\n")
    (incoming / "c.csv").write_text("x\n2\n")
    bad, c = sha256_of(incoming / "bad.csv"), sha256_of(incoming / "c.csv")
    _tried_and_failed(book, bad, "bad.csv", 100.0)
    book.arrive(c, "c.csv", 101.0)
    assert book.held_behind(incoming) == "bad.csv"

    (incoming / "bad.csv").rename(tmp_path / "bad.csv")  # the remedy the docs give
    assert book.held_behind(incoming) is None
    assert [name for _, name, _ in book.queue(incoming)] == ["c.csv"]
    assert book.status(bad) == "pending"  # not deleted, not rewritten
    assert [name for _, name, _ in book.queue()] == ["bad.csv", "c.csv"]  # the ledger alone still has it


def test_a_file_is_not_held_behind_a_file_when_nothing_behind_it_is_left(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    (incoming / "bad.csv").write_text("x\n1\n")  # c.csv was moved away meanwhile
    _tried_and_failed(book, sha256_of(incoming / "bad.csv"), "bad.csv", 100.0)
    book.arrive("s-c", "c.csv", 101.0)
    assert book.held_behind(incoming) is None


def test_a_pending_file_copied_over_by_other_bytes_holds_nothing_back(tmp_path):
    """The pending content under bad.csv was replaced (copied over) by other bytes of the same name: the
    pending bytes are not in incoming any more, so they hold nothing back and are not queued; the new bytes
    have their own row, at their own arrival."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    (incoming / "bad.csv").write_text("x\n1\n")
    old = sha256_of(incoming / "bad.csv")
    _tried_and_failed(book, old, "bad.csv", 100.0)
    (incoming / "c.csv").write_text("x\n2\n")
    book.arrive(sha256_of(incoming / "c.csv"), "c.csv", 101.0)
    (incoming / "bad.csv").write_text("x\n3\n")
    book.arrive(sha256_of(incoming / "bad.csv"), "bad.csv", 102.0)
    assert book.held_behind(incoming) is None
    assert [(sha == old, name) for sha, name, _ in book.queue(incoming)] == [(False, "c.csv"), (False, "bad.csv")]
    assert book.status(old) == "pending"  # its row is kept as it was


def test_incoming_files_leave_out_temporary_names_and_what_is_not_a_regular_file(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("a.csv", "b.csv", ".hidden.csv", "upload.csv.part", "notes.txt~", "x.tmp", "d.crdownload"):
        (folder / name).write_text("x\n1\n")
    (folder / "sub").mkdir()
    (folder / "link.csv").symlink_to(folder / "a.csv")
    os.mkfifo(folder / "pipe.csv")
    assert [p.name for p in incoming_files(folder)] == ["a.csv", "b.csv"]
    assert incoming_files(tmp_path / "missing") == []


def test_a_quarantined_file_counts_only_while_it_is_in_quarantine(tmp_path):
    paths = PipelinePaths(root=tmp_path, incoming=tmp_path / "incoming", predictions=tmp_path / "predictions")
    assert quarantined_files(paths) == []
    paths.quarantine.mkdir()
    for name in ("kept.csv", "moved-back.csv"):
        (paths.quarantine / name).write_text("x\n1\n")
        (paths.quarantine / f"{name}.reason.json").write_text(json.dumps({"file": name, "time": time.time()}))
    (paths.quarantine / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")  # a link is quarantined as itself
    (paths.quarantine / "dangling.csv.reason.json").write_text("{}")
    (paths.quarantine / "moved-back.csv").rename(tmp_path / "moved-back.csv")
    assert [p.name for p in quarantined_files(paths)] == ["dangling.csv", "kept.csv"]
    assert (paths.quarantine / "moved-back.csv.reason.json").exists()  # the record stays


def test_a_file_a_live_run_is_deciding_holds_nothing_back(tmp_path):
    """In a healthy burst the oldest file is being decided (a live claim) and the others wait their turn:
    nothing is *held* (docs/operations.md: held means behind a failed file or one waiting for the breaker)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    shas = {}
    for i, name in enumerate(("a.csv", "b.csv", "c.csv")):
        (incoming / name).write_text(f"x\n{i}\n")
        shas[name] = sha256_of(incoming / name)
        book.arrive(shas[name], name, 100.0 + i)
    assert book.claim(shas["a.csv"], "a.csv", run_id="r1")  # this process: a live claim
    assert book.held_behind(incoming) is None
    book.release(shas["a.csv"])  # its run failed: now it holds the others back
    assert book.held_behind(incoming) == "a.csv"


def test_the_queue_reads_a_file_only_when_its_time_changed_and_then_once(tmp_path, monkeypatch):
    """The queue is read before each file of a burst: a file whose modification time is the one recorded at its
    arrival is not read at all; one that was touched (same bytes, new time) is read once, not at every read."""
    from calmops.core import store

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    for name in ("a.csv", "b.csv"):
        (incoming / name).write_text(f"x\n{name}\n")
        path = incoming / name
        book.arrive(sha256_of(path), name, store.arrival_time(path.stat().st_mtime_ns))
    reads = []
    real = store.sha256_of
    monkeypatch.setattr(store, "sha256_of", lambda p, *a, **k: reads.append(Path(p).name) or real(p, *a, **k))
    for _ in range(3):
        assert [name for _, name, _ in book.queue(incoming)] == ["a.csv", "b.csv"]
    assert reads == []
    os.utime(incoming / "b.csv", (time.time() + 5, time.time() + 5))  # touched: same bytes, another time
    for _ in range(3):
        assert [name for _, name, _ in book.queue(incoming)] == ["a.csv", "b.csv"]
    assert reads == ["b.csv"]


def test_a_set_aside_file_arrives_anew_only_when_its_bytes_are_back(tmp_path):
    """A quarantined content (``gone``) is taken as new when the same bytes come back. An arrival recorded late,
    after its file was quarantined (a watcher or a duplicate run that hashed it just before), must not bring the
    row back to ``waiting``: nothing would ever decide it, and a duplicate run would find no file and no record
    that it was quarantined."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    path = incoming / "bad.csv"
    path.write_text("x\nnot a number\n")
    sha = sha256_of(path)
    book.arrive(sha, "bad.csv", 100.0, incoming, at=path)
    assert book.claim(sha, "bad.csv", run_id="r1")
    path.rename(tmp_path / "quarantined.csv")  # what the run does with it, then:
    book.finish(sha, "rejected_input", status="gone")

    book.arrive(sha, "bad.csv", 100.0, incoming, at=path)  # late: the file is not there any more
    assert (book.status(sha), book.decision(sha)) == ("gone", "rejected_input")
    assert book.queue() == [] and book.counts()["waiting"] == 0

    (tmp_path / "quarantined.csv").rename(path)  # the user drops the same bytes in again (the move keeps mtime)
    before = time.time()
    book.arrive(sha, "bad.csv", 100.0, incoming, at=path)
    [row] = book.entries()
    assert (row["status"], row["decision"]) == ("waiting", None) and row["arrived"] >= before
    assert [name for _, name, _ in book.queue(incoming)] == ["bad.csv"]


def _claimed_in_another_process(book: Ledger, sha: str, name: str) -> bool:
    """Whether a run in another process (a worker's) can claim the content: a forked child tries."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_claim, (book.path, sha, name))


def _claim(path: Path, sha: str, name: str) -> bool:
    return Ledger(path).claim(sha, name, run_id="a-worker-run")


def test_a_reservation_is_taken_over_by_this_process_run_and_kept_from_every_other(tmp_path):
    """`calmops run` reserves its copy before the copy appears in incoming: the watcher sees a live claim under
    the file's name and leaves it to that run; another run's claim is refused as for any live claim; the hand
    run's own claim (same process) takes it over; a reservation no run took goes back to waiting, in its place."""
    book = Ledger(tmp_path / "ledger.sqlite")
    book.arrive("older", "a.csv", 100.0)
    assert book.reserve("mine", "b.csv", 101.0)
    assert book.live_claim("mine") == "b.csv" and book.live_claim("older") is None
    assert not _claimed_in_another_process(book, "mine", "b.csv")  # a live run has it
    assert book.claim("mine", "b.csv", run_id="the-hand-run")  # the run this process started on it
    book.unreserve("mine")  # after the run: nothing left to give back
    assert book.status("mine") == "in_progress" and book.live_claim("mine") == "b.csv"
    book.finish("mine", "train")
    assert book.live_claim("mine") is None

    assert book.reserve("again", "c.csv", 102.0)
    book.unreserve("again")  # the run ended before its claim (e.g. held behind a.csv): it waits in its place
    assert [(name, status) for _, name, status in book.queue()] == [("a.csv", "waiting"), ("c.csv", "waiting")]
    assert book.claim("again", "c.csv", run_id="a-later-run")


def test_a_new_copy_of_set_aside_bytes_keeps_its_own_time_among_the_files_copied_with_it(tmp_path):
    """A quarantined content written again (a copy under another name, in a burst with other files: its own,
    later modification time) takes its place by that time, like every file, not by the moment its arrival was
    recorded (after every file of the burst). Moved back from quarantine (the first write's time kept), it
    arrives now (test above)."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite")
    wrong = incoming / "wrong_cols.csv"
    wrong.write_text("a,b\n1,2\n")
    sha = sha256_of(wrong)
    book.arrive(sha, wrong.name, 100.0, incoming, at=wrong)
    assert book.claim(sha, wrong.name, run_id="r1")
    wrong.rename(tmp_path / "quarantined.csv")
    book.finish(sha, "rejected_input", status="gone")

    burst = time.time() - 30  # cp a1.csv b2_copy.csv c3.csv incoming/: written one after the other
    files = {"a1.csv": "x\n1\n", "b2_copy.csv": "a,b\n1,2\n", "c3.csv": "x\n3\n"}
    for i, (name, text) in enumerate(files.items()):
        (incoming / name).write_text(text)
        os.utime(incoming / name, (burst + i / 1000, burst + i / 1000))
    for name in ("a1.csv", "c3.csv", "b2_copy.csv"):  # the copy's arrival recorded last
        path = incoming / name
        book.arrive(sha256_of(path), name, arrival_time(path.stat().st_mtime_ns), incoming, at=path)
    assert [name for _, name, _ in book.queue(incoming)] == ["a1.csv", "b2_copy.csv", "c3.csv"]
    [row] = [e for e in book.entries() if e["sha256"] == sha]
    assert row["status"] == "waiting" and row["arrived"] == arrival_time((incoming / "b2_copy.csv").stat().st_mtime_ns)


def test_a_reservation_stays_live_while_its_run_waits_and_leaves_a_first_copy_its_place(tmp_path):
    """A hand run may wait minutes for its turn: its reservation's heartbeat is kept, so no scan or other run
    takes it for a crashed run's. A first copy of the same bytes waiting in incoming under another name is not
    reserved away (it is decided first, in its place; the copy is its duplicate). A pending content given back
    stays pending."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = Ledger(tmp_path / "ledger.sqlite", lease=0.8)
    assert book.reserve("a" * 64, "a.csv", 1.0, incoming)
    time.sleep(1.6)  # two leases
    assert book.states()["a" * 64] == "in_progress"  # not orphaned
    book.unreserve("a" * 64)

    (incoming / "first.csv").write_text("x\n1\n")
    sha = sha256_of(incoming / "first.csv")
    book.arrive(sha, "first.csv", 5.0, incoming, at=incoming / "first.csv")
    assert not book.reserve(sha, "copy.csv", 6.0, incoming)
    assert [(e["file"], e["status"]) for e in book.entries() if e["sha256"] == sha] == [("first.csv", "waiting")]

    book.arrive("c" * 64, "c.csv", 7.0)
    assert book.claim("c" * 64, "c.csv", run_id="r")
    book.release("c" * 64)  # a failed run: pending
    assert book.reserve("c" * 64, "c.csv", 7.0, incoming)
    book.unreserve("c" * 64)
    assert book.status("c" * 64) == "pending"


def test_a_claim_left_by_a_run_that_died_is_not_reserved_away_from_the_run_that_closes_it(tmp_path):
    """kill -9 of `calmops run`, then `calmops run` of the same file again: the new run must see what the dead one
    left open (its MLflow and flow runs, closed as KILLED and Crashed), so the new command's reservation leaves
    that claim alone and the run takes it over itself."""
    import multiprocessing

    book = Ledger(tmp_path / "ledger.sqlite")
    book.arrive("d" * 64, "a.csv", 1.0)
    with multiprocessing.get_context("fork").Pool(1) as pool:  # a process that claims and is gone
        assert pool.apply(_claim, (book.path, "d" * 64, "a.csv"))
    book.attach_run("d" * 64, "mlflow-run-of-the-dead")
    assert book.states()["d" * 64] == "orphaned"
    assert not book.reserve("d" * 64, "a.csv", 1.0)
    assert book.left_open("d" * 64)[0].mlflow_run_id == "mlflow-run-of-the-dead"


def test_each_refusal_keeps_its_sidecar_when_a_name_comes_back_to_quarantine(tmp_path):
    """A refused file moved back out of quarantine leaves its sidecar as the record of that refusal: a later file of
    that name, other bytes or the same ones refused anew, is set aside under a name of its own, and no sidecar is
    overwritten (calmops history lists each refusal)."""
    from calmops.core.store import quarantine, quarantine_records

    paths = PipelinePaths(root=tmp_path, incoming=tmp_path / "incoming", predictions=tmp_path / "predictions")
    paths.incoming.mkdir()
    refusals = []
    for text, why in (("x\n1\n", "first"), ("x\n2\n", "other bytes"), ("x\n1\n", "same bytes again"),
                      ("x\n1\n", "and once more")):
        (paths.incoming / "a.csv").write_text(text)
        sha = sha256_of(paths.incoming / "a.csv")
        kept = quarantine(paths, paths.incoming / "a.csv", sha, why)
        kept.rename(paths.incoming / "moved-back.csv")  # decided elsewhere; the sidecar stays
        (paths.incoming / "moved-back.csv").unlink()
        refusals.append((sha, why))
    records = quarantine_records(paths, moved_out=True)
    assert sorted((r["sha256"], r["reason"]) for _, r in records) == sorted(refusals)
    assert len({sidecar for sidecar, _ in records}) == 4
