"""The file watcher with a real watchdog observer; the Prefect event is replaced by a recording emit."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from calmops.core.names import EVENT
from calmops.deployments.watcher import Watcher, open_for_writing
from tests.conftest import STREAM_SPEC

SETTLE = 0.3


class Recorder:
    """The emit seam: records every event the watcher sends."""

    def __init__(self, fail_first: int = 0):
        self.events: list[dict] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, *, event: str, resource: dict[str, str]):
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("server down")
            self.events.append({"event": event, **resource})

    def names(self) -> list[str]:
        with self.lock:
            return [e["calmops.file.name"] for e in self.events]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} event(s), got {self.names()}")


def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def stream_spec(tmp_path, monkeypatch):
    """A stream pipeline in a private CALMOPS_HOME (no MLflow or Prefect needed here)."""
    from calmops.core.store import save_spec, spec_from_dict

    monkeypatch.setenv("CALMOPS_HOME", str(tmp_path / "calmops"))
    spec = spec_from_dict(dict(STREAM_SPEC))
    save_spec(spec, create=True)
    return spec


@pytest.fixture
def unordered_spec(stream_spec):
    """The same pipeline with ``order: none``: each waiting file is announced for itself."""
    from calmops.core.store import save_spec

    spec = stream_spec.model_copy(update={"order": "none"})
    save_spec(spec, create=False)
    return spec


def make_watcher(recorder, **kw) -> Watcher:
    options = {"settle": SETTLE, "scan_interval": 3600, "refresh_interval": 0.5, "reemit_after": 3600,
               "min_age": 0.5}
    options.update(kw)
    return Watcher(emit=recorder, **options)


def incoming(spec) -> Path:
    from calmops.core.store import pipeline_paths

    return pipeline_paths(spec).ensure().incoming


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age(path: Path, seconds: float = 60) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def claimed(spec, name: str, data: bytes, seconds: float = 60):
    """A complete file in the pipeline's incoming folder, aged, and claimed in its ledger; returns the ledger."""
    from calmops.core.store import ledger, pipeline_paths

    path = incoming(spec) / name
    path.write_bytes(data)
    age(path, seconds)
    book = ledger(pipeline_paths(spec))
    assert book.claim(sha(data), name, "run")
    return book


def test_complete_file_is_announced_once_with_pipeline_path_size_hash(stream_spec):
    rec = Recorder()
    folder = incoming(stream_spec)
    with make_watcher(rec):
        data = b"x1,x2,x3,y\n1,2,3,0\n"
        (folder / "a.csv").write_bytes(data)
        [event] = rec.wait_for(1)
        (folder / "b.csv").write_bytes(b"x1,x2,x3,y\n4,5,6,1\n")  # a later file marks the end of a's events
        rec.wait_for(2)
    assert event["event"] == EVENT
    assert event["prefect.resource.id"] == "calmops.pipeline.sea"
    assert event["calmops.pipeline"] == "sea" and event["calmops.pipeline.kind"] == "stream"
    assert event["calmops.file.path"] == str(folder / "a.csv")
    assert event["calmops.file.size"] == str(len(data)) and event["calmops.file.sha256"] == sha(data)
    assert rec.names() == ["a.csv", "b.csv"]


def test_temporary_names_are_ignored(stream_spec):
    rec = Recorder()
    folder = incoming(stream_spec)
    with make_watcher(rec):
        for name in (".hidden.csv", "a.csv.part", "b.tmp", "c.csv.crdownload", "d.csv.swp", "e.csv~"):
            (folder / name).write_text("x1,y\n1,0\n")
        (folder / "real.csv").write_text("x1,y\n1,0\n")
        rec.wait_for(1)
    assert rec.names() == ["real.csv"]


def test_slow_writer_is_never_read_before_it_closes(stream_spec):
    rec = Recorder()
    folder = incoming(stream_spec)
    first, rest = b"x1,x2,x3,y\n" + b"1,2,3,0\n" * 500, b"4,5,6,1\n" * 500
    with make_watcher(rec):
        with open(folder / "slow.csv", "wb") as fh:
            fh.write(first)
            fh.flush()
            time.sleep(SETTLE * 6)  # deliberate: a writer pausing much longer than the settle time
            assert rec.names() == []  # size was stable, but the file is still open for writing
            fh.write(rest)
        [event] = rec.wait_for(1)
        (folder / "after.csv").write_text("x1,y\n1,0\n")
        rec.wait_for(2)
    assert event["calmops.file.sha256"] == sha(first + rest)
    assert event["calmops.file.size"] == str(len(first + rest))
    assert rec.names() == ["slow.csv", "after.csv"]


def test_writer_that_reopens_to_append_is_taken_after_the_last_close(stream_spec):
    rec = Recorder()
    folder = incoming(stream_spec)
    with make_watcher(rec, settle=1.0):
        path = folder / "append.csv"
        path.write_bytes(b"x1,y\n")
        with open(path, "ab") as fh:  # reopened within the settle time
            fh.write(b"1,0\n")
        [event] = rec.wait_for(1)
    assert event["calmops.file.sha256"] == sha(b"x1,y\n1,0\n")


def test_file_renamed_into_place_is_taken(stream_spec, tmp_path):
    rec = Recorder()
    folder = incoming(stream_spec)
    with make_watcher(rec):
        part = folder / ".upload.csv.part"
        part.write_text("x1,y\n1,0\n")
        part.rename(folder / "upload.csv")
        rec.wait_for(1)
        outside = tmp_path / "staging.csv"  # moved in from a folder nobody watches
        outside.write_text("x1,y\n2,1\n")
        outside.rename(folder / "staged.csv")
        rec.wait_for(2)
    assert sorted(rec.names()) == ["staged.csv", "upload.csv"]


def test_a_rename_into_place_is_announced_without_waiting_for_the_settle_time(stream_spec):
    rec = Recorder()
    folder = incoming(stream_spec)
    with make_watcher(rec, settle=60.0):  # a closed file would wait a minute
        part = folder / ".quick.csv.part"
        part.write_text("x1,y\n1,0\n")
        part.rename(folder / "quick.csv")
        [event] = rec.wait_for(1, timeout=10)
        written = folder / "slow.csv"
        written.write_text("x1,y\n2,1\n")  # closed after writing: still settles
        time.sleep(3)
        assert rec.names() == ["quick.csv"]
    assert event["calmops.file.sha256"] == sha(b"x1,y\n1,0\n")


def test_pending_scan_on_start_skips_done_and_claimed_files(unordered_spec):
    from calmops.core.store import ledger, pipeline_paths

    folder = incoming(unordered_spec)
    book = ledger(pipeline_paths(unordered_spec))
    names = ["new.csv", "done.csv", "pending.csv", "busy.csv", "stale.csv", "killed.csv"]
    contents = {name: f"x1,y\n{i},0\n".encode() for i, name in enumerate(names)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
        age(folder / name)
    for name in names[1:]:
        assert book.claim(sha(contents[name]), name, "run")
    book.finish(sha(contents["done.csv"]), "no_drift")
    book.finish(sha(contents["pending.csv"]), "skipped_breaker_open", status="pending")
    import sqlite3
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(book.path) as con:
        # a claim from another host whose owner stopped renewing it longer than the lease ago
        con.execute("UPDATE files SET heartbeat=?, owner_host='elsewhere' WHERE sha256=?",
                    (time.time() - book.lease - 5, sha(contents["stale.csv"])))
        # a claim on this host whose process has ended (kill -9): orphaned at once, heartbeat still fresh
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE sha256=?",
                    (dead.pid, sha(contents["killed.csv"])))
    assert book.counts() == {"done": 1, "gone": 0, "waiting": 0, "pending": 1, "in_progress": 1, "orphaned": 2}

    rec = Recorder()
    watcher = make_watcher(rec)
    waiting = ["killed.csv", "new.csv", "pending.csv", "stale.csv"]
    with watcher:
        rec.wait_for(4)
        assert watcher.scan() == []  # announced already: not again before reemit_after
        assert sorted(p.name for p in watcher.scan(force=True)) == waiting
    assert sorted(rec.names()) == sorted(waiting * 2)


def test_decided_bytes_left_in_incoming_are_announced_for_a_run_to_answer_them(stream_spec):
    """Bytes decided already that wait in incoming (a copy dropped while the watcher was down, or a file whose
    move to processed failed) are announced, so a run answers them a duplicate and moves them: they were never
    announced and waited for good. Not a file just decided (its own run moves it), and not the pipeline's turn:
    the oldest waiting file is announced beside them."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from calmops.core.store import ledger, pipeline_paths

    folder = incoming(stream_spec)
    book = ledger(pipeline_paths(stream_spec))
    first, stuck, fresh = (f"x1,y\n{i},0\n".encode() for i in range(3))
    for data, name in ((first, "first.csv"), (stuck, "stuck.csv"), (fresh, "fresh.csv")):
        assert book.claim(sha(data), name, "run")
        book.finish(sha(data), "no_drift")
    with sqlite3.connect(book.path) as con:  # stuck.csv was decided ten minutes ago and is still in incoming
        con.execute("UPDATE files SET updated=? WHERE sha256=?",
                    ((datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="seconds"), sha(stuck)))
    for name, data, seconds in (("copy.csv", first, 90), ("stuck.csv", stuck, 80), ("fresh.csv", fresh, 70),
                                ("new.csv", b"x1,y\n9,1\n", 60), ("later.csv", b"x1,y\n8,1\n", 50)):
        (folder / name).write_bytes(data)
        age(folder / name, seconds)
    rec = Recorder()
    with make_watcher(rec, reemit_after=120):
        rec.wait_for(3)
        time.sleep(0.5)
    assert rec.names() == ["copy.csv", "stuck.csv", "new.csv"]  # later.csv is decided in new.csv's turn

    # while a run for such a file is queued (behind the pipeline's turn, say), it is not announced again
    queued = {str(folder / "copy.csv"): True}
    rec = Recorder()
    with make_watcher(rec, reemit_after=120, live_paths=lambda name: queued):
        rec.wait_for(2)
        time.sleep(0.5)
    assert "copy.csv" not in rec.names() and "stuck.csv" in rec.names()


def test_pending_files_wait_for_the_breaker(stream_spec):

    data = b"x1,y\n1,0\n"
    book = claimed(stream_spec, "p.csv", data)
    book.finish(sha(data), "skipped_breaker_open", status="pending")
    ready = {"sea": False}
    rec = Recorder()
    watcher = make_watcher(rec, breaker_ready=lambda name: ready[name])
    with watcher:
        assert watcher.scan(force=True) == []
        ready["sea"] = True
        assert [p.name for p in watcher.scan(force=True)] == ["p.csv"]
    assert rec.names() == ["p.csv"]


def test_failed_emit_is_retried_by_the_next_scan(stream_spec):
    folder = incoming(stream_spec)
    rec = Recorder(fail_first=1)
    watcher = make_watcher(rec)
    with watcher:
        (folder / "a.csv").write_text("x1,y\n1,0\n")
        until(lambda: rec.fail_first == 0 and not watcher._emitted)  # tried, failed, forgotten
        assert rec.names() == []
        age(folder / "a.csv")
        assert [p.name for p in watcher.scan()] == ["a.csv"]
    assert rec.names() == ["a.csv"]


def test_a_new_pipeline_is_watched_without_restart(stream_spec):
    from calmops.core.store import save_spec, spec_from_dict

    rec = Recorder()
    with make_watcher(rec):
        other = spec_from_dict({**STREAM_SPEC, "name": "other"})
        save_spec(other, create=True)
        folder = incoming(other)
        (folder / "early.csv").write_text("x1,y\n1,0\n")  # may land before the folder is watched
        until(lambda: rec.events)
        (folder / "late.csv").write_text("x1,y\n2,0\n")
        events = rec.wait_for(2)
    assert {e["calmops.pipeline"] for e in events} == {"other"}
    assert sorted(rec.names()) == ["early.csv", "late.csv"]


class Said(logging.Handler):
    """What the watcher writes in its own log (caught on its logger: the watcher's log may not propagate)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.warnings: list[str] = []  # the lines at WARNING or above

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


@pytest.fixture
def said():
    handler = Said()
    logger = logging.getLogger("calmops.watcher")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_pipeline_whose_spec_cannot_be_read_is_said_once_per_reason_and_once_when_mended(stream_spec, said):
    """A refresh every few seconds meets the broken spec again: the watcher's log says so once (and again only
    when the reason changes), then once that the pipeline is watched again, and its waiting file is announced."""
    from calmops.core.store import pipeline_paths, save_spec, spec_from_dict, write_atomic

    other = spec_from_dict({**STREAM_SPEC, "name": "other"})
    save_spec(other, create=True)
    spec_file = pipeline_paths(other).spec_file
    good = spec_file.read_text()
    rec = Recorder()
    with make_watcher(rec, refresh_interval=0.05):
        write_atomic(spec_file, "name: other\nkind: [stream\n")  # invalid YAML: an unclosed list
        until(lambda: said.count("not watching other") == 1)
        time.sleep(1.0)  # some twenty refreshes meet the same broken spec
        assert said.count("not watching other") == 1, said.lines
        write_atomic(spec_file, "name: other\nkind: {stream\n")  # broken otherwise: said again, once
        until(lambda: said.count("not watching other") == 2)
        time.sleep(0.5)
        assert said.count("not watching other") == 2, said.lines
        (incoming(other) / "waiting.csv").write_bytes(b"x1,x2,x3,y\n1,2,3,0\n")  # arrives while unwatched
        age(incoming(other) / "waiting.csv")
        write_atomic(spec_file, good)
        until(lambda: "waiting.csv" in rec.names())  # watched again: the file that waited is announced
        time.sleep(0.5)
    assert said.count("watching other again") == 1, said.lines
    assert said.count("not watching other") == 2, said.lines
    assert said.count("not watching sea") == 0  # the pipeline with a sound spec is not concerned


def test_open_for_writing_detects_a_writer(tmp_path):
    path = tmp_path / "f.csv"
    with open(path, "w") as fh:
        fh.write("x")
        assert open_for_writing(path) in (True, None)
    assert open_for_writing(path) in (False, None)


@pytest.mark.parametrize("text,expected", [("300", {"interval": 300.0}), ("90s", {"interval": 90.0}),
                                           ("every 5m", {"interval": 300.0}), ("1h", {"interval": 3600.0}),
                                           ("*/10 * * * *", {"cron": "*/10 * * * *"}), (None, {})])
def test_schedule_parsing(text, expected):
    from calmops.core.spec import parse_schedule

    assert parse_schedule(text) == expected


def test_bad_schedule_is_refused():
    from calmops.core.spec import parse_schedule

    with pytest.raises(ValueError):
        parse_schedule("whenever")
    with pytest.raises(ValueError):
        parse_schedule("2s")


def test_trigger_is_scoped_to_its_pipeline_and_templates_the_path():
    from calmops.deployments.deploy import file_trigger

    trigger = file_trigger("sea")
    assert trigger.expect == {EVENT}
    assert trigger.match.model_dump() == {"prefect.resource.id": "calmops.pipeline.sea"}
    assert trigger.parameters == {"pipeline": "sea", "path": "{{ event.resource['calmops.file.path'] }}",
                                  "sha256": "{{ event.resource['calmops.file.sha256'] }}"}


def test_scan_does_not_announce_again_a_file_whose_run_is_queued(stream_spec):
    folder = incoming(stream_spec)
    (folder / "q.csv").write_text("x1,y\n1,0\n")
    age(folder / "q.csv")
    live: set[str] = set()
    rec = Recorder()
    watcher = make_watcher(rec, reemit_after=0.0, live_paths=lambda name: dict.fromkeys(live, False))
    with watcher:
        rec.wait_for(1)  # the start-up scan
        live.add(str(folder / "q.csv"))
        assert watcher.scan() == []  # its run is scheduled or running
        live.clear()
        assert [p.name for p in watcher.scan()] == ["q.csv"]  # no run any more and not done: again
    assert rec.names() == ["q.csv", "q.csv"]


def test_links_and_pipes_in_incoming_are_quarantined_without_being_read(stream_spec, tmp_path):
    import json

    from calmops.core.store import pipeline_paths

    rec = Recorder()
    folder = incoming(stream_spec)
    secret = tmp_path / "outside.txt"
    secret.write_text("root:$6$PASSWORD-HASH$:19000\n")
    (folder / "link.csv").symlink_to(secret)
    os.mkfifo(folder / "pipe.csv")  # opening it to hash it would block the watcher
    (folder / "real.csv").write_bytes(b"x1,x2,x3,y\n1,2,3,0\n")
    age(folder / "real.csv")
    with make_watcher(rec):
        rec.wait_for(1)
    assert rec.names() == ["real.csv"]  # only the regular file is announced
    quarantine = pipeline_paths(stream_spec).quarantine
    assert (quarantine / "link.csv").is_symlink() and (quarantine / "pipe.csv").exists()
    for name, words in (("link.csv", "symbolic link"), ("pipe.csv", "named pipe")):
        sidecar = json.loads((quarantine / f"{name}.reason.json").read_text())
        assert words in sidecar["reason"] and "PASSWORD-HASH" not in json.dumps(sidecar)
    assert secret.read_text().startswith("root:")  # what the link points to is untouched
    said = (pipeline_paths(stream_spec).logs / "pipeline.log").read_text()  # `calmops logs NAME` tells it too
    assert "refused link.csv: link.csv: a symbolic link" in said and "refused pipe.csv" in said, said


def test_a_folder_dropped_into_incoming_is_left_as_it_is_and_said_once_in_the_pipelines_log(stream_spec):
    from calmops.core.store import pipeline_paths

    rec = Recorder()
    folder = incoming(stream_spec)
    (folder / "batch").mkdir()
    (folder / "batch" / "inner.csv").write_bytes(b"x1,x2,x3,y\n1,2,3,0\n")
    age(folder / "batch" / "inner.csv")
    with make_watcher(rec) as watcher:
        watcher.scan(force=True)
        watcher.scan(force=True)
    assert rec.names() == [] and (folder / "batch" / "inner.csv").exists()  # nothing read, nothing moved
    said = (pipeline_paths(stream_spec).logs / "pipeline.log").read_text()
    assert said.count("batch/ is a folder in") == 1 and "move its files up into the incoming folder" in said, said


def test_in_arrival_order_a_scan_announces_only_the_oldest_waiting_file_and_queues_the_rest(stream_spec):
    from calmops.core.store import ledger, pipeline_paths

    folder = incoming(stream_spec)
    names = ["c.csv", "a.csv", "b.csv"]  # arrival order differs from name order
    for i, name in enumerate(names):
        (folder / name).write_text(f"x1,y\n{i},0\n")
        age(folder / name, 60 - i)
    live: set[str] = set()
    rec = Recorder()
    with make_watcher(rec, reemit_after=0.0, live_paths=lambda name: dict.fromkeys(live, False)) as watcher:
        rec.wait_for(1)  # the start-up scan
        # the run of the oldest decides the others in its turn: their arrival is recorded, in order
        until(lambda: [name for _, name, _ in ledger(pipeline_paths(stream_spec)).queue()] == names)
        live.add(str(folder / "c.csv"))
        assert watcher.scan() == []  # a run of the pipeline is queued: it takes the turn
        live.clear()
        assert [p.name for p in watcher.scan()] == ["c.csv"]  # no run any more: the oldest again, alone
    assert rec.names() == ["c.csv", "c.csv"]


def test_files_copied_in_while_the_watcher_was_down_take_their_place_behind_a_queued_run(stream_spec):
    """a.csv was announced before the watcher stopped, and its run is still queued; b.csv and c.csv were copied
    in meanwhile. The scan announces nothing (a.csv's run takes the turn) and records their arrival, so that
    run decides them in order, before files that come later (they were decided after those)."""
    from calmops.core.store import arrival_time, ledger, pipeline_paths

    folder = incoming(stream_spec)
    book = ledger(pipeline_paths(stream_spec))
    for i, name in enumerate(["a.csv", "b.csv", "c.csv"]):
        (folder / name).write_text(f"x1,y\n{i},0\n")
        age(folder / name, 120 - 30 * i)
    book.arrive(sha(b"x1,y\n0,0\n"), "a.csv", arrival_time((folder / "a.csv").stat().st_mtime_ns))
    # and g.csv, quarantined before, moved back meanwhile (the same bytes: decided anew)
    (folder / "g.csv").write_text("x1,y\n9,0\n")
    age(folder / "g.csv", 75)
    assert book.claim(sha(b"x1,y\n9,0\n"), "g.csv", "run")
    book.finish(sha(b"x1,y\n9,0\n"), "rejected_input", status="gone")
    live = {str(folder / "a.csv"): True}  # queued, not started
    rec = Recorder()
    with make_watcher(rec, live_paths=lambda name: dict(live)) as watcher:
        assert watcher.scan(force=True) == []
        until(lambda: [name for _, name, _ in book.queue()] == ["a.csv", "b.csv", "c.csv", "g.csv"])
    assert rec.names() == []


def test_in_arrival_order_files_behind_one_waiting_for_the_breaker_are_not_announced(stream_spec):

    folder = incoming(stream_spec)
    data = b"x1,y\n1,0\n"
    book = claimed(stream_spec, "p.csv", data, 60)
    (folder / "q.csv").write_text("x1,y\n2,0\n")
    age(folder / "q.csv", 30)
    book.finish(sha(data), "skipped_breaker_open", status="pending")
    ready = {"sea": False}
    rec = Recorder()
    with make_watcher(rec, breaker_ready=lambda name: ready[name]) as watcher:
        assert watcher.scan(force=True) == []  # q.csv would only be held behind p.csv
        ready["sea"] = True
        assert [p.name for p in watcher.scan(force=True)] == ["p.csv"]
    assert rec.names() == ["p.csv"]


def test_a_file_never_claimed_is_announced_again_less_and_less_often(stream_spec):
    watcher = make_watcher(Recorder(), reemit_after=10.0)
    assert [watcher._reemit_delay(n, "waiting") for n in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert [watcher._reemit_delay(n, None) for n in (0, 3)] == [10, 80]
    # a pending or orphaned file was claimed (its run came); the breaker paces its retries, not the watcher
    assert {watcher._reemit_delay(n, s) for n in (0, 5) for s in ("pending", "orphaned")} == {10}


def test_in_arrival_order_a_run_a_crash_left_running_does_not_hold_the_scan(stream_spec):
    import sqlite3
    import subprocess


    folder = incoming(stream_spec)
    data = b"x1,y\n1,0\n"
    book = claimed(stream_spec, "k.csv", data)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(book.path) as con:  # its process was killed: the claim is orphaned
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE sha256=?", (dead.pid, sha(data)))
    live = {str(folder / "k.csv"): False}  # while Prefect still shows its run as Running
    rec = Recorder()
    with make_watcher(rec, reemit_after=0.0, live_paths=lambda name: dict(live)) as watcher:
        rec.wait_for(1)
        # the run announced after the crash waits to start (a slow worker): it takes the turn, not another copy
        live[str(folder / "k.csv")] = True
        assert watcher.scan(force=True) == []
        live.clear()  # both runs ended and the file is still orphaned: announced again
        assert [p.name for p in watcher.scan(force=True)] == ["k.csv"]
    assert rec.names() == ["k.csv", "k.csv"]


@pytest.mark.timeout(120)
def test_new_pipelines_are_watched_while_files_keep_arriving_without_a_deadlock(stream_spec):
    """The observer calls the watcher while holding its own lock; watching a new folder must not wait for
    that lock while holding the watcher's (each file event would then deadlock the two threads)."""
    from calmops.core.store import save_spec, spec_from_dict

    folder = incoming(stream_spec)
    stop = threading.Event()

    def keep_writing():
        i = 0
        while not stop.is_set():
            (folder / f"busy-{i % 50}.csv").write_text(f"x1,y\n{i},0\n")
            i += 1

    rec = Recorder()
    names = [f"extra-{i}" for i in range(8)]
    with make_watcher(rec, refresh_interval=0.05) as watcher:
        writer = threading.Thread(target=keep_writing, daemon=True)
        writer.start()
        try:
            for name in names:
                save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)
                time.sleep(0.1)
            until(lambda: {w.pipeline for w in watcher._folders.values()} >= set(names), timeout=30)
        finally:
            stop.set()
            writer.join(5)


def test_a_file_whose_event_is_handled_late_keeps_its_place_before_files_written_after_it(stream_spec, tmp_path):
    """Under load the watcher may handle a file's event after a later file's arrival was recorded (by a scan, or
    by that file's own run). Every route records the same clock, the modification time, so the earlier file
    still comes first in the order the pipeline's runs follow."""
    from calmops.core.store import arrival_time, ledger, pipeline_paths

    folder = incoming(stream_spec)
    book = ledger(pipeline_paths(stream_spec))
    later = folder / "b.csv"
    later.write_bytes(b"x1,y\n2,1\n")
    age(later, 30)
    book.arrive(sha(later.read_bytes()), later.name, arrival_time(later.stat().st_mtime_ns))  # as its run does
    staged = tmp_path / "a.csv"
    staged.write_bytes(b"x1,y\n1,0\n")
    age(staged, 60)  # written before b.csv; its event comes only now
    rec = Recorder()
    with make_watcher(rec):
        staged.rename(folder / "a.csv")
        until(lambda: "a.csv" in rec.names())
    assert [name for _, name, _ in book.queue()] == ["a.csv", "b.csv"]


def test_a_deleted_pipelines_folder_is_not_made_again_by_the_watcher(tmp_path):
    """``calmops delete`` moves the pipeline's folder away while a refresh may still hold its spec: the watcher
    must not re-create ``pipelines/<name>/incoming`` (the folder would come back, empty). A watched folder
    outside the pipeline's folder (spec ``incoming``) is made with its parents."""
    from calmops.deployments.watcher import _make_folder

    root = tmp_path / "pipelines" / "gone"
    assert not _make_folder(root / "incoming", root)
    assert not root.exists()
    outside = tmp_path / "drop" / "zone"
    assert _make_folder(outside, root) and outside.is_dir()
    root.mkdir(parents=True)
    assert _make_folder(root / "incoming", root) and (root / "incoming").is_dir()


def test_a_scan_between_a_delete_and_the_next_refresh_skips_the_vanished_folder_quietly(stream_spec, said,
                                                                                         tmp_path):
    """``calmops delete`` moves the pipeline's folder away; the watcher still lists it until its next refresh (every
    few seconds). A scan meanwhile finds the incoming folder gone: skipped, said once, no error or traceback."""
    from calmops.core.store import pipeline_paths

    paths = pipeline_paths(stream_spec)
    (incoming(stream_spec) / "a.csv").write_text("x1,y\n1,0\n")
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.refresh()
    paths.root.rename(tmp_path / "deleted-sea")
    assert watcher.scan(force=True) == [] and watcher.scan(force=True) == []
    assert said.warnings == [] and said.count("failed") == 0
    assert said.count("is gone") == 1 and rec.names() == []


def test_the_prefect_api_health_check_answers_up_down_and_not_configured(monkeypatch):
    """What the watcher asks every two seconds to hold its announcements during an outage."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from calmops.deployments.watcher import prefect_api_healthy
    from tests.e2e.stack import free_port

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
        assert prefect_api_healthy() is True
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_address[1]}/elsewhere")
        assert prefect_api_healthy() is False  # something answers, but not a healthy API
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    assert prefect_api_healthy(timeout=1) is False  # nothing listens
    monkeypatch.delenv("PREFECT_API_URL")
    assert prefect_api_healthy() is None


def test_a_watcher_started_by_hand_shows_running_in_status_by_its_heartbeat(stream_spec, monkeypatch):
    """``calmops watch`` (the watcher of the ``prefect deploy --all`` route) has no pid file: `calmops status`
    showed it stopped while it ran. Its heartbeat tells: running, started outside `calmops up`, no pid; stopped once
    it has stopped."""
    from calmops.core.settings import get_settings
    from calmops.deployments import stack
    from calmops.deployments.cli import _stack_state

    for variable in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    beat = stack.heartbeat_file(settings)
    assert not _stack_state()["up"]
    with make_watcher(Recorder(), heartbeat_file=beat):
        until(beat.exists)
        state = _stack_state()
        watcher = state["services"]["watcher"]
        assert state["up"] and watcher["healthy"] and watcher["outside"] and watcher["pid"] is None, watcher
        assert not state["services"]["worker"]["healthy"]  # nothing else is taken for running
    watcher = stack.status()["watcher"]
    assert not watcher["healthy"] and not watcher.get("outside"), watcher


def test_a_second_copy_of_labels_bytes_waiting_in_the_labels_folder_leaves_the_first_copy_first(stream_spec):
    """Two copies of one labels file dropped into the labels folder: the first is decided and the second is its
    duplicate, as for data files in incoming. The second's arrival took the first copy's ledger row over (the
    labels folder was not looked in), so the second was decided and the first, still waiting, answered later."""
    from calmops.core.store import ledger, pipeline_paths, save_spec, spec_from_dict

    spec = spec_from_dict({**STREAM_SPEC, "labels": {"join_on": ["id"]}})
    save_spec(spec, create=False)
    paths = pipeline_paths(spec)
    paths.labels.mkdir(parents=True, exist_ok=True)
    data = b"id,y\n1,0\n2,1\n"
    rec = Recorder()
    with make_watcher(rec):
        (paths.labels / "a.csv").write_bytes(data)
        rec.wait_for(1)
        (paths.labels / "b.csv").write_bytes(data)
        deadline = time.monotonic() + 10
        while "b.csv" not in rec.names() and time.monotonic() < deadline:
            time.sleep(0.1)
    [row] = [e for e in ledger(paths).entries() if e["sha256"] == sha(data)]
    assert row["file"] == "labels/a.csv", row


def test_a_paused_pipeline_s_files_wait_unannounced_and_are_announced_in_order_once_it_is_resumed(stream_spec,
                                                                                                     said):
    """`calmops pause`: files keep arriving and wait in incoming, with nothing announced (the event path, a
    forced scan), their arrival kept in the ledger's queue; said once in the watcher's log. `calmops resume`: the
    next refresh announces the oldest at once, also one announced before the pause (whose run ended held), without
    waiting for the next scan or the delay before announcing a file again."""
    from calmops.core import pause
    from calmops.core.store import ledger, pipeline_paths

    folder = incoming(stream_spec)
    rec = Recorder()
    watcher = make_watcher(rec, pause_of=pause.paused)
    with watcher:
        (folder / "early.csv").write_text("x1,y\n9,0\n")
        rec.wait_for(1)  # announced; its run will find the pipeline paused and end held
        pause.pause("sea", "bad upstream batch")
        time.sleep(1.5)  # a refresh (every 0.5 s) sees the pause
        for i, name in enumerate(("first.csv", "second.csv")):
            (folder / name).write_text(f"x1,y\n{i},0\n")
            time.sleep(0.05)
        time.sleep(SETTLE + 1.0)  # settled and offered: an unpaused pipeline's would be announced by now
        assert watcher.scan(force=True) == []
        assert rec.names() == ["early.csv"]
        assert said.count("not announcing the files of pipeline sea: pipeline sea has been paused since") == 1
        assert said.count("(bad upstream batch)") == 1
        queue = [name for _, name, _ in ledger(pipeline_paths(stream_spec)).queue(folder)]
        assert queue == ["early.csv", "first.csv", "second.csv"]  # the arrival order the runs will follow
        assert pause.resume("sea") is not None
        rec.wait_for(2, timeout=5.0)  # refresh_interval 0.5 s; scans every hour and announces again after one
        assert rec.names() == ["early.csv", "early.csv"]  # the oldest: its run decides the others in its turn
    assert said.count("pipeline sea is no longer paused") == 1


def test_a_scan_reads_a_pipeline_s_pause_once_however_many_files_wait(unordered_spec):
    """A scan asks whether the pipeline is paused once for its folder, not once for each waiting file (a folder
    of thousands of files during a pause would read the pause file thousands of times a scan); every file's
    arrival is still kept for the resume."""
    from calmops.core import pause
    from calmops.core.store import ledger, pipeline_paths

    folder = incoming(unordered_spec)
    for i in range(5):
        (folder / f"f{i}.csv").write_text(f"x1,y\n{i},0\n")
    old = time.time() - 60  # settled and old enough to be announced by a scan
    for path in folder.iterdir():
        os.utime(path, (old, old))
    pause.pause("sea")
    asked: list[str] = []

    def counted(name, settings):
        asked.append(name)
        return pause.paused(name, settings)

    rec = Recorder()
    watcher = make_watcher(rec, pause_of=counted)
    watcher.refresh()  # learns the folders (and whether each pipeline is paused)
    asked.clear()
    assert watcher.scan(force=True) == []
    assert asked == ["sea"]
    assert rec.names() == []
    assert len(ledger(pipeline_paths(unordered_spec)).queue(folder)) == 5


def test_a_scan_that_lists_what_waits_still_lists_a_paused_pipeline_s_files(stream_spec, said):
    """`calmops delete` and `relaunch --local` count and take the waiting files by a listing scan: a paused
    pipeline's files are there to be listed (the pause only stops announcing)."""
    from calmops.core import pause
    from calmops.deployments.watcher import waiting_files

    (incoming(stream_spec) / "a.csv").write_text("x1,y\n1,0\n")
    pause.pause("sea")
    assert [p.name for p in waiting_files("sea")] == ["a.csv"]
    assert said.count("announced") == 0  # listed, not announced: the watcher's log does not say it was


def test_a_file_moved_out_and_back_again_is_announced_again_at_once(stream_spec):
    """A quarantined file that the user mends, or just puts back, is new to the folder: announced when it
    comes back, not after the back-off of a file whose announcement is still waiting for its run."""
    from calmops.core.store import pipeline_paths

    rec = Recorder()
    folder = incoming(stream_spec)
    aside = pipeline_paths(stream_spec).quarantine
    aside.mkdir(parents=True, exist_ok=True)
    with make_watcher(rec):  # no scan for an hour: only the folder's events can announce it
        (folder / "a.csv").write_bytes(b"x1,x2,x3,y\n1,2,3,0\n")
        rec.wait_for(1)
        (folder / "a.csv").rename(aside / "a.csv")  # what a run does to a file it quarantines
        time.sleep(1.0)
        (aside / "a.csv").rename(folder / "a.csv")  # the same bytes, put back
        rec.wait_for(2)
    assert rec.names() == ["a.csv", "a.csv"]
