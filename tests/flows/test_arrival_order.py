"""Arrival order in real flow runs (Prefect test server, MLflow in SQLite): a run decides the files that arrived
before its own first, oldest first; a failing file holds the files behind it unless the spec says ``order: none``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calmops.core.store import ledger, pipeline_paths, read_spec
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run, runs_for_sha, update_spec

pytestmark = pytest.mark.integration

POISON = '''
def preprocess(df):
    if (df["x1"] < 0).any():
        raise RuntimeError("poisoned file")
    return df
'''


def arrive(folder, names_in_arrival_order, seed=0):
    """Files written into incoming and announced (ledger ``waiting``) in the given order."""
    book = ledger(pipeline_paths(read_spec("sea")))
    files = {}
    for i, name in enumerate(names_in_arrival_order):
        frame = sea_frame(400, 8, seed=seed + i)
        if name.startswith("bad"):
            frame.loc[0, "x1"] = -1.0
        path = write_csv(frame, folder, name)
        book.arrive(digest(path), name, 1000.0 + i)
        files[name] = path
    return book, files


def claim_order(book) -> list[str]:
    return [e["file"] for e in sorted(book.entries(), key=lambda e: e["claimed_at"] or 0) if e["status"] == "done"]


def test_the_run_of_the_last_file_decides_the_earlier_ones_first_oldest_first(prefect_server, stream_spec):
    folder = incoming("sea")
    order = ["c.csv", "a.csv", "d.csv", "b.csv"]  # arrival order, not name order
    book, files = arrive(folder, order)
    sha = {n: digest(p) for n, p in files.items()}
    last = run("sea", files["b.csv"])  # Prefect started the last file's run first
    assert last["file"] == "b.csv" and last["decision"] == "no_drift"
    assert claim_order(book) == order
    starts = [runs_for_sha("sea", sha[n])[0].info.start_time for n in order]
    assert starts == sorted(starts)
    for name in ("c.csv", "a.csv", "d.csv"):  # their own runs come later and find them done
        assert run("sea", files[name])["details"]["duplicate"] is True
        assert len(runs_for_sha("sea", sha[name])) == 1
    # the Prefect UI's message of the run that held the turn says what it decided besides its own file
    assert last["decided_in_turn"] == ["c.csv", "a.csv", "d.csv"]
    from calmops.flows.common import ended

    message = ended(last).message
    assert message.startswith(f"no_drift: {last['reason']}"), message
    assert message.endswith("(this run also decided 3 other file(s) in the pipeline's turn: c.csv, a.csv, d.csv)")
    long = ended({**last, "reason": "x" * 400, "decided_in_turn": [f"f{i}.csv" for i in range(9)]}).message
    assert len(long) <= 300 and "x…" in long, long  # the reason is cut, not the files of the turn
    assert long.endswith("(this run also decided 9 other file(s) in the pipeline's turn: f0.csv, f1.csv … f8.csv)")


def test_a_file_whose_arrival_is_recorded_late_still_takes_its_place(prefect_server, stream_spec, monkeypatch):
    """Under load the watcher may record a file's arrival while the run in turn is already deciding the files
    before it (a file found by a scan waits to settle; one renamed in is recorded at once): the run reads the
    queue again before each file, so the late-recorded file is decided by its arrival time, not after."""
    from calmops.flows import stream as stream_flow

    folder = incoming("sea")
    book, files = arrive(folder, ["a.csv", "c.csv"])  # arrived at 1000 and 1001
    late = write_csv(sea_frame(400, 8, seed=7), folder, "b.csv")
    real = stream_flow.process_stream_file

    def record_b_meanwhile(ctx, champion, batch):
        if batch.file == "a.csv":  # while a.csv is decided, b.csv's arrival (1000.5) is recorded
            book.arrive(digest(late), "b.csv", 1000.5)
        return real(ctx, champion, batch)

    monkeypatch.setattr(stream_flow, "process_stream_file", record_b_meanwhile)
    run("sea", files["a.csv"])
    assert claim_order(book) == ["a.csv", "b.csv", "c.csv"]


def test_a_failing_file_holds_the_files_behind_it_until_it_succeeds(prefect_server, stream_spec, tmp_path):
    module = tmp_path / "poison.py"
    module.write_text(POISON)
    update_spec("sea", preprocess=str(module), breaker={"max_failures": 10})
    folder = incoming("sea")
    book, files = arrive(folder, ["a.csv", "bad.csv", "c.csv"])
    held = run("sea", files["c.csv"])
    assert held["decision"] == "held" and held["details"]["held_behind"] == "bad.csv", held
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the Prefect UI says it too, not a bare Completed
        ended = client.read_flow_run(held["flow_run_id"]).state
    assert ended.is_completed() and ended.name == "Held" and ended.message.startswith("held: waiting behind bad.csv")
    states = {e["file"]: e["status"] for e in book.entries()}
    assert states == {"a.csv": "done", "bad.csv": "pending", "c.csv": "waiting"}
    assert book.held_behind() == "bad.csv" and files["c.csv"].exists()

    module.write_text("def preprocess(df):\n    return df\n")  # the cause is fixed
    assert run("sea", files["c.csv"])["decision"] == "no_drift"
    assert claim_order(book) == ["a.csv", "bad.csv", "c.csv"]
    assert book.held_behind() is None


def test_with_order_none_a_failing_file_does_not_hold_the_others(prefect_server, stream_spec, tmp_path):
    module = tmp_path / "poison.py"
    module.write_text(POISON)
    update_spec("sea", preprocess=str(module), order="none", breaker={"max_failures": 10})
    folder = incoming("sea")
    book, files = arrive(folder, ["a.csv", "bad.csv", "c.csv"])
    assert run("sea", files["a.csv"])["decision"] == "train"
    assert run("sea", files["bad.csv"])["decision"] == "failed"
    assert run("sea", files["c.csv"])["decision"] == "no_drift"
    assert {e["file"]: e["status"] for e in book.entries()} == {"a.csv": "done", "bad.csv": "pending",
                                                                "c.csv": "done"}


def test_a_file_copied_over_before_its_run_does_not_jump_the_queue(prefect_server, stream_spec):
    """data.csv arrives (recorded at 1000), is copied over by other bytes before its run (those arrive at 1002,
    after a.csv at 1001): the first content is gone, and the file now in incoming is decided in ITS place,
    after a.csv, not in the slot of the bytes it replaced."""
    folder = incoming("sea")
    book = ledger(pipeline_paths(read_spec("sea")))
    first = write_csv(sea_frame(400, 8, seed=1), folder, "data.csv")
    book.arrive(digest(first), "data.csv", 1000.0)
    a = write_csv(sea_frame(400, 8, seed=2), folder, "a.csv")
    book.arrive(digest(a), "a.csv", 1001.0)
    second = write_csv(sea_frame(400, 8, seed=3), folder, "data.csv")  # copied over: other bytes, same name
    book.arrive(digest(second), "data.csv", 1002.0)
    assert [name for _, name, _ in book.queue(folder)] == ["a.csv", "data.csv"]
    run("sea", second)
    assert claim_order(book) == ["a.csv", "data.csv"]


def test_of_two_copies_of_one_content_the_first_is_decided_and_the_later_is_the_duplicate(prefect_server, stream_spec):
    folder = incoming("sea")
    book = ledger(pipeline_paths(read_spec("sea")))
    frame = sea_frame(400, 8, seed=5)
    m5 = write_csv(frame, folder, "m_0005.csv")
    book.arrive(digest(m5), "m_0005.csv", 1000.0, folder)
    copy = write_csv(frame, folder, "dup_of_0005.csv")
    book.arrive(digest(copy), "dup_of_0005.csv", 1001.0, folder)  # the watcher announces the copy
    assert [name for _, name, _ in book.queue(folder)] == ["m_0005.csv"]
    later = run("sea", copy)  # the copy's run starts first: it decides the queue, then finds its bytes done
    assert later["decision"] == "duplicate" and later["file"] == "dup_of_0005.csv", later
    assert claim_order(book) == ["m_0005.csv"]


def test_a_file_moved_away_between_the_check_and_the_read_is_not_a_failed_run(prefect_server, stream_spec,
                                                                              monkeypatch):
    """In a burst another run of the pipeline's turn decides a file and moves it to processed/ while this file's
    own run starts: the file was there when checked and is gone when read. That is a duplicate event, not a
    FileNotFoundError (which showed as a red Failed run in Prefect)."""
    from calmops.flows import common

    folder = incoming("sea")
    path = write_csv(sea_frame(400, 8, seed=11), folder, "a.csv")
    first = run("sea", path)  # decided and moved to processed/
    assert first["decision"] == "train"
    write_csv(sea_frame(400, 8, seed=11), folder, "a.csv")  # the same bytes again, as the event's view of it
    real = common.sha256_of

    def moved_meanwhile(p, *args, **kwargs):
        if Path(p) == path and path.exists():
            path.unlink()  # another run took it between the check and the read
        return real(p, *args, **kwargs)

    monkeypatch.setattr(common, "sha256_of", moved_meanwhile)
    again = run("sea", path)
    assert again["decision"] == "duplicate", again


def test_a_second_copy_waits_behind_a_first_copy_that_is_left_pending(prefect_server, stream_spec, tmp_path):
    """Two copies of one content, the first left pending (its run failed; the open breaker does the same): the
    second copy's run must not decide the same bytes again under its own name; it is held behind the first."""
    module = tmp_path / "poison.py"
    module.write_text(POISON)
    update_spec("sea", preprocess=str(module), breaker={"max_failures": 10})
    folder = incoming("sea")
    book = ledger(pipeline_paths(read_spec("sea")))
    frame = sea_frame(400, 8, seed=21)
    frame.loc[0, "x1"] = -1.0  # the poison: its run fails
    first = write_csv(frame, folder, "bad.csv")
    book.arrive(digest(first), "bad.csv", 1000.0, folder)
    copy = write_csv(frame, folder, "bad_copy.csv")
    book.arrive(digest(copy), "bad_copy.csv", 1001.0, folder)
    held = run("sea", copy)
    assert held["decision"] == "held" and held["details"]["held_behind"] == "bad.csv", held
    assert {e["file"]: e["status"] for e in book.entries()} == {"bad.csv": "pending"}
    assert first.exists() and copy.exists()


def _reserve_and_hold(ledger_path, sha, name, arrived, incoming, ready, done):
    from calmops.core.store import Ledger

    assert Ledger(ledger_path).reserve(sha, name, arrived, incoming)
    ready.set()
    done.wait(120)


def test_a_file_reserved_by_a_hand_run_elsewhere_is_left_to_it_with_the_files_behind_it(prefect_server,
                                                                                       stream_spec):
    """`calmops run` in another process reserved a.csv before its turn came: the watcher's run for a.csv, taking
    the turn first, answers it as being processed elsewhere and decides nothing behind it (b.csv waits for the
    hand run's turn) rather than deciding b.csv before a.csv."""
    import multiprocessing

    folder = incoming("sea")
    book, files = arrive(folder, ["a.csv", "b.csv"])
    fork = multiprocessing.get_context("fork")
    ready, done = fork.Event(), fork.Event()
    holder = fork.Process(target=_reserve_and_hold, args=(book.path, digest(files["a.csv"]), "a.csv", 1000.0,
                                                          folder, ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        outcome = run("sea", files["a.csv"])
        assert outcome["decision"] == "duplicate" and "being processed by another run" in outcome["reason"]
        assert {e["file"]: e["status"] for e in book.entries()} == {"a.csv": "in_progress", "b.csv": "waiting"}
    finally:
        done.set()
        holder.join(60)


def test_a_paused_pipeline_s_queued_run_decides_no_file_and_the_turn_stops_at_a_pause(prefect_server, stream_spec,
                                                                                      monkeypatch):
    """A run queued before `calmops pause` starts during the pause: it decides nothing, ends Held with the pause
    said, and its file waits. A pause while a run holds the turn stops it after the file it is deciding. After
    `calmops resume` the files are decided in arrival order, each once."""
    from calmops.core import pause
    from calmops.flows import stream as stream_flow

    folder = incoming("sea")
    book, files = arrive(folder, ["a.csv", "b.csv", "c.csv"])
    pause.pause("sea", "checking the upstream export")
    held = run("sea", files["a.csv"])
    assert held["decision"] == "held" and "sea has been paused since" in held["reason"], held
    assert "(checking the upstream export)" in held["reason"] and held["details"]["paused_since"]
    assert {e["file"]: e["status"] for e in book.entries()} == {n: "waiting" for n in files}
    assert all(p.exists() for p in files.values())

    pause.resume("sea")
    real = stream_flow.process_stream_file

    def paused_while_a_is_decided(ctx, champion, batch):
        if batch.file == "a.csv":
            pause.pause("sea")
        return real(ctx, champion, batch)

    monkeypatch.setattr(stream_flow, "process_stream_file", paused_while_a_is_decided)
    stopped = run("sea", files["c.csv"])  # c's run takes the turn: a first, then the pause stops it
    assert stopped["decision"] == "held" and "paused" in stopped["reason"], stopped
    assert {e["file"]: e["status"] for e in book.entries()} == {"a.csv": "done", "b.csv": "waiting",
                                                                "c.csv": "waiting"}
    monkeypatch.setattr(stream_flow, "process_stream_file", real)
    pause.resume("sea")
    assert run("sea", files["c.csv"])["decision"] != "held"
    assert claim_order(book) == ["a.csv", "b.csv", "c.csv"]
