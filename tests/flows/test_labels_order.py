"""Labels files dropped in a burst are decided in the order they arrived, whatever order their runs start in,
and ``calmops status NAME`` counts the ones waiting (docs/late-labels.md)."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from mlflow import MlflowClient

from calmops.core import registry
from calmops.core.store import arrival_time, ledger, pipeline_paths, sha256_of
from tests.conftest import write_csv
from tests.flows.helpers import incoming, run
from tests.flows.test_late_labels import batch, features, labels, late_spec  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def test_a_burst_of_labels_files_is_decided_in_arrival_order_and_counted_while_it_waits(prefect_server, late_spec,  # noqa: F811
                                                                                       tmp_path, monkeypatch):
    from calmops.deployments.cli import _summaries

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(4)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    for i in (1, 2, 3):
        assert run("late", write_csv(features(frames[i]), folder, f"f{i}.csv"))["decision"] == "predict_only"
    # three labels files land together; their modification times say the order they came in
    now = os.stat(folder).st_mtime
    files = []
    for i in (1, 2, 3):
        path = write_csv(labels(frames[i]), labels_folder, f"l{i}.csv")
        os.utime(path, (now + i, now + i))
        files.append(path)
    book = ledger(paths)
    for path in files:  # announced, as the watcher does when each is complete
        book.arrive(sha256_of(path), f"labels/{path.name}", arrival_time(path.stat().st_mtime_ns))
    assert _summaries(["late"])[0]["labels_waiting"] == 3  # counted while they wait
    assert _summaries(["late"])[0]["labels_folder"] == str(labels_folder)

    last = run("late", files[2])  # the newest one's run starts first
    assert last["decision"] not in ("failed", "rejected_input"), last
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the Prefect UI names it as `calmops status` does
        assert client.read_flow_run(last["flow_run_id"]).name == "stream/late/labels/l3.csv"
    said = (paths.logs / "pipeline.log").read_text()  # and so does the pipeline's log
    assert "processing labels/l3.csv" in said and f"labels/l3.csv → {last['decision']}" in said
    shas = [sha256_of(paths.processed / p.name) for p in files]
    assert [book.status(sha) for sha in shas] == ["done"] * 3  # the two older ones were decided in its turn
    client = MlflowClient()
    started = {}
    for path in files:
        [mlrun] = client.search_runs([client.get_experiment_by_name(registry.experiment_name("late")).experiment_id],
                                     filter_string=f"tags.`calmops.file` = '{path.name}'")
        started[path.name] = mlrun.info.start_time
    assert sorted(started, key=started.get) == ["l1.csv", "l2.csv", "l3.csv"], started
    assert _summaries(["late"])[0]["labels_waiting"] == 0
    # the older files' own runs come later and find them decided
    assert run("late", files[0])["decision"] == "duplicate"
    # the report of a labels file, named as status names it
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    page = files[0].parent.parent / "l2.html"
    made = CliRunner().invoke(app, ["report", "late", "labels/l2.csv", "-o", str(page)])
    assert made.exit_code == 0, made.output
    shown = page.read_text()
    assert "<h1>late · labels/l2.csv" in shown
    # what it joined: all 500 of its ids, each to a row version 1 predicted (f2 came before any retrain)
    assert '<td>label rows in the file</td><td class="num">500</td>' in shown
    assert '<td>joined to a waiting prediction</td><td class="num">500</td>' in shown
    assert '<td>no prediction waiting for the id</td><td class="num">0</td>' in shown
    assert "Score of the predictions as made" in shown and '<tr><td class="num">1</td><td class="num">500</td>' in shown
    # without a file name: the latest file checked, l3.csv, is a labels file, and its page is named as one
    monkeypatch.chdir(tmp_path)
    latest = CliRunner().invoke(app, ["report", "late"])
    assert latest.exit_code == 0, latest.output
    assert "late · labels/l3.csv" in latest.stdout and (tmp_path / "late-labels-l3.report.html").exists()
    assert "<h1>late · labels/l3.csv" in (tmp_path / "late-labels-l3.report.html").read_text()  # the page says so


def test_a_labels_file_dropped_into_incoming_is_refused_with_where_it_belongs(prefect_server, late_spec):  # noqa: F811
    folder = incoming("late")
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(2)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    out = run("late", write_csv(labels(frames[1]), folder, "l1.csv"))
    assert out["decision"] == "rejected_input"
    assert "feature column(s) missing" in out["reason"] and "goes into the pipeline's labels folder" in out["reason"]


def test_a_features_file_with_an_empty_target_column_is_kept_for_its_labels(prefect_server, late_spec):  # noqa: F811
    """Exports with a fixed schema write the target column, empty until the labels are known: such a file is
    predicted and kept for its labels like a file without the column (it was quarantined for missing values)."""
    folder = incoming("late")
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(2)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    out = run("late", write_csv(frames[1].assign(y=None), folder, "f1.csv"))
    assert out["decision"] == "predict_only", out["reason"]
    assert out["details"]["awaiting_labels"]["rows"] == 500


def test_an_older_labels_file_quarantined_in_another_runs_turn_ends_its_own_run_quietly(prefect_server, late_spec):  # noqa: F811
    """l1 (labels for ids nothing predicted yet) and l2 come together; l2's run decides l1 first, which is
    quarantined (its bytes may come again). l1's own run, started later by its event, finds it decided, and it
    does not fail (it raised FileNotFoundError)."""
    from calmops.flows import flow_for

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(3)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    assert run("late", write_csv(features(frames[1]), folder, "f1.csv"))["decision"] == "predict_only"
    now = os.stat(folder).st_mtime
    early = write_csv(labels(frames[2]), labels_folder, "l1.csv")  # frames[2] was never predicted
    on_time = write_csv(labels(frames[1]), labels_folder, "l2.csv")
    for i, path in enumerate((early, on_time), start=1):
        os.utime(path, (now + i, now + i))
    book = ledger(paths)
    shas = {}
    for path in (early, on_time):
        shas[path.name] = sha256_of(path)
        book.arrive(shas[path.name], f"labels/{path.name}", arrival_time(path.stat().st_mtime_ns))
    assert run("late", on_time)["decision"] not in ("failed", "rejected_input")
    assert (paths.quarantine / "l1.csv").exists() and not early.exists()
    state = flow_for("stream")(pipeline="late", path=str(early), sha256=shas["l1.csv"], return_state=True)
    assert state.is_completed(), state
    out = state.result()
    assert out["decision"] == "duplicate" and "quarantined" in out["reason"], out


def test_report_tells_a_features_file_from_a_labels_file_of_the_same_name(prefect_server, late_spec, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(2)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    assert run("late", write_csv(features(frames[1]), folder, "same.csv"))["decision"] == "predict_only"
    assert run("late", write_csv(labels(frames[1]), labels_folder, "same.csv"))["decision"] != "predict_only"
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    as_features = runner.invoke(app, ["report", "late", "same.csv"])
    as_labels = runner.invoke(app, ["report", "late", "labels/same.csv"])
    assert as_features.exit_code == 0 and as_labels.exit_code == 0, (as_features.output, as_labels.output)
    assert "(predict_only)" in as_features.stdout and "(predict_only)" not in as_labels.stdout
    assert (tmp_path / "late-same.report.html").exists() and (tmp_path / "late-labels-same.report.html").exists()
    # a labels file named without its folder: the command says where it is
    extra = batch(300, 8.0, 7, 7000)
    assert run("late", write_csv(features(extra), folder, "f7.csv"))["decision"] == "predict_only"
    assert run("late", write_csv(labels(extra), labels_folder, "only.csv"))["decision"] != "rejected_input"
    asked = runner.invoke(app, ["report", "late", "only.csv"])
    said = " ".join(asked.stderr.split())
    assert asked.exit_code != 0 and "no features file 'only.csv' was checked for drift; a labels file of that name " \
        "was" in said, said
    assert "calmops report late labels/only.csv" in said, said


def test_a_labels_file_published_right_after_its_features_file_waits_for_it_whichever_run_starts_first(
        prefect_server, late_spec):  # noqa: F811
    """f1 and then l1 (its labels) are copied in, then f2: l1's run takes the turn first, decides f1 (which
    arrived before it) and joins all of l1's ids to f1's predictions; f2 came after l1 and is left to its own
    run. Before, l1 was quarantined ("none of its ids match") and its rows waited for someone to drop it again."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(3)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    now = os.stat(folder).st_mtime
    first = write_csv(features(frames[1]), folder, "f1.csv")
    its_labels = write_csv(labels(frames[1]), labels_folder, "l1.csv")
    after = write_csv(features(frames[2]), folder, "f2.csv")
    book = ledger(paths)
    for i, (path, name) in enumerate([(first, "f1.csv"), (its_labels, "labels/l1.csv"), (after, "f2.csv")], 1):
        os.utime(path, (now + i, now + i))
        book.arrive(sha256_of(path), name, arrival_time(path.stat().st_mtime_ns))  # as the watcher announces them
    shas = {path.name: sha256_of(path) for path in (first, its_labels, after)}

    out = run("late", its_labels)  # the labels file's run starts first
    assert out["decision"] not in ("failed", "rejected_input"), out["reason"]
    assert out["details"]["labels"]["matched"] == 500 and out["details"]["labels"]["unmatched"] == 0
    assert out["decided_in_turn"] == ["f1.csv"]
    assert book.status(shas["f1.csv"]) == "done" and (paths.processed / "f1.csv").exists()
    assert book.status(shas["f2.csv"]) == "waiting" and after.exists()  # it arrived after the labels file
    assert not list(paths.quarantine.glob("l1*"))
    said = (paths.logs / "pipeline.log").read_text()
    assert "deciding f1.csv first: it arrived before l1.csv" in said
    # the features files' own runs come later: f1's finds it decided, f2's predicts it
    assert run("late", first)["decision"] == "duplicate"
    assert run("late", after)["decision"] == "predict_only"


def _two_kept_for_labels(spec, files: int):
    """A first model from f0.csv, then f1.csv and f2.csv predicted and kept for their labels; returns the incoming
    and labels folders, the pipeline's ledger and the ``files`` frames (ids from 1000 × their index)."""
    folder, labels_folder = incoming("late"), pipeline_paths(spec).labels
    paths = pipeline_paths(spec)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(files)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    for i in (1, 2):
        assert run("late", write_csv(features(frames[i]), folder, f"f{i}.csv"))["decision"] == "predict_only"
    return folder, labels_folder, ledger(paths), frames


def _announced(book, path, name: str, at: float) -> None:
    """A file given modification time ``at`` and announced as the watcher does."""
    os.utime(path, (at, at))
    book.arrive(sha256_of(path), name, arrival_time(path.stat().st_mtime_ns))


def test_a_features_file_of_the_same_moment_and_a_labels_file_dropped_again_from_quarantine_wait_for_it(
        prefect_server, late_spec):  # noqa: F811
    """A features file and its labels with the same modification time (unpacked from a zip, copied with `cp -p`)
    are decided features first. A labels file quarantined for coming before its features, moved back after them
    (its modification time the old one), is decided after them: from when it came back. A features file moved
    out while waiting is passed over without holding back the ones behind it."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    book = ledger(paths)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(4)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    now = os.stat(folder).st_mtime - 100  # written a while ago
    same = write_csv(features(frames[1]), folder, "f1.csv")
    its = write_csv(labels(frames[1]), labels_folder, "l1.csv")
    _announced(book, same, "f1.csv", now + 1)
    _announced(book, its, "labels/l1.csv", now + 1)  # the same moment
    out = run("late", its)
    assert out["decision"] != "rejected_input" and out["details"]["labels"]["matched"] == 500, out["reason"]
    assert out["decided_in_turn"] == ["f1.csv"]

    early = write_csv(labels(frames[3]), labels_folder, "l3.csv")  # before its features: quarantined
    _announced(book, early, "labels/l3.csv", now + 2)
    assert run("late", early)["decision"] == "rejected_input"
    gone = write_csv(features(frames[2]), folder, "moved.csv")  # will be moved out before its turn
    late = write_csv(features(frames[3]), folder, "f3.csv")
    _announced(book, gone, "moved.csv", now + 3)
    _announced(book, late, "f3.csv", now + 4)
    gone.rename(folder.parent / "moved-out.csv")
    back = (paths.quarantine / "l3.csv").rename(labels_folder / "l3.csv")  # keeps its old modification time
    assert back.stat().st_mtime == now + 2
    book.arrive(sha256_of(back), "labels/l3.csv", arrival_time(back.stat().st_mtime_ns), labels_folder, at=back)
    again = run("late", back)
    assert again["decision"] != "rejected_input" and again["details"]["labels"]["matched"] == 500, again["reason"]
    assert again["decided_in_turn"] == ["f3.csv"]  # the moved file passed over, not holding f3.csv back
    assert "moved.csv was not decided here" not in (paths.logs / "pipeline.log").read_text()


def test_a_labels_run_started_by_a_worker_gives_the_turn_up_to_a_starved_pipeline(prefect_server, late_spec,  # noqa: F811
                                                                                  monkeypatch):
    """Two features files wait before a labels file; another pipeline's run has waited a minute for a worker and
    the second features file has a queued run. The labels run, started by a worker with its turn budget spent,
    decides the first features file, then gives the turn up: its file stays waiting (held), the features file's
    queued run is sent behind the starved one and decides it, and the labels file, announced again, joins all
    its rows."""
    from prefect.client.orchestration import get_client

    from tests.flows.test_fair_turns import queue_as_the_automation, run_queued, starved_run

    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    book = ledger(paths)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(3)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    now = os.stat(folder).st_mtime
    one, two = (write_csv(features(frames[i]), folder, f"f{i}.csv") for i in (1, 2))
    both = write_csv(labels(frames[1], frames[2]), labels_folder, "l.csv")
    for i, (path, name) in enumerate([(one, "f1.csv"), (two, "f2.csv"), (both, "labels/l.csv")], 1):
        _announced(book, path, name, now + i)
    monkeypatch.setenv("CALMOPS_TURN_BUDGET", "0.001")

    due = datetime.now(UTC) - timedelta(seconds=60)
    with get_client(sync_client=True) as client:
        made = [starved_run(client, due), queue_as_the_automation("late", two, due)]
    try:
        held = run_queued(queue_as_the_automation("late", both))
        assert held["decision"] == "held" and held["decided_in_turn"] == ["f1.csv"], held["reason"]
        assert held["details"]["turn_given_up"]["to"] == ["starved"] and held["details"]["held_behind"] == "f2.csv"
        assert book.status(sha256_of(both)) == "waiting" and both.exists()
        assert book.status(sha256_of(two)) == "waiting"
        with get_client(sync_client=True) as client:
            queued = client.read_flow_run(made[1].id)
        assert "behind pipeline(s) starved" in queued.state.message
        assert run_queued(queued)["decision"] == "predict_only"  # f2.csv, when a worker takes its run
        monkeypatch.delenv("CALMOPS_TURN_BUDGET")
        joined = run("late", both)  # announced again
        assert joined["decision"] != "rejected_input" and joined["details"]["labels"]["matched"] == 1000
    finally:
        with get_client(sync_client=True) as client:
            for r in made:
                client.delete_flow_run(r.id)


def test_a_labels_file_whose_run_was_killed_is_counted_orphaned_and_decided_before_a_newer_one(prefect_server,
                                                                                              late_spec):  # noqa: F811
    """l1's run was killed while it decided it (its claim orphaned); l2 came after. `calmops status` counts l1
    as an orphaned claim (it counted nothing), and l2's run decides l1 first (it passed over it)."""
    import sqlite3
    import subprocess

    from calmops.deployments.cli import _summaries

    folder, labels_folder, book, frames = _two_kept_for_labels(late_spec, 3)
    now = os.stat(folder).st_mtime - 100
    killed, newer = (write_csv(labels(frames[i]), labels_folder, f"l{i}.csv") for i in (1, 2))
    _announced(book, killed, "labels/l1.csv", now + 1)
    _announced(book, newer, "labels/l2.csv", now + 2)
    digest = sha256_of(killed)
    assert book.claim(digest, "labels/l1.csv", "run")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(book.path) as con:  # its process was killed: the claim is orphaned
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE sha256=?", (dead.pid, digest))
    assert _summaries(["late"])[0]["files_orphaned"] == 1
    out = run("late", newer)
    assert out["decision"] != "rejected_input" and out["decided_in_turn"] == ["labels/l1.csv"], out["reason"]
    assert book.status(digest) == "done" and _summaries(["late"])[0]["files_orphaned"] == 0


def test_a_features_file_that_came_after_a_labels_file_is_decided_after_it_whichever_run_starts_first(
        prefect_server, late_spec):  # noqa: F811
    """l1 (the labels of f1) comes, then f2: f2's run takes the turn first and decides l1 before f2, so f2 is
    predicted by the model l1's labels made, as their arrival says (f2 was decided first under load)."""
    folder, labels_folder = incoming("late"), pipeline_paths(late_spec).labels
    paths = pipeline_paths(late_spec)
    book = ledger(paths)
    frames = [batch(500, 8.0, seed, 1000 * seed) for seed in range(3)]
    assert run("late", write_csv(frames[0], folder, "f0.csv"))["decision"] == "train"
    assert run("late", write_csv(features(frames[1]), folder, "f1.csv"))["decision"] == "predict_only"
    now = os.stat(folder).st_mtime - 100
    first = write_csv(labels(frames[1]), labels_folder, "l1.csv")
    then = write_csv(features(frames[2]), folder, "f2.csv")
    _announced(book, first, "labels/l1.csv", now + 1)
    _announced(book, then, "f2.csv", now + 2)
    shas = {"l1": sha256_of(first), "f2": sha256_of(then)}
    out = run("late", then)
    assert out["decision"] == "predict_only" and out["decided_in_turn"] == ["labels/l1.csv"], out["reason"]
    claimed = {e["sha256"]: e["claimed_at"] for e in book.entries()}
    assert book.status(shas["l1"]) == "done" and claimed[shas["l1"]] < claimed[shas["f2"]]
    assert "deciding labels/l1.csv first: it arrived before the next features file" in \
        (paths.logs / "pipeline.log").read_text()


def test_a_pause_given_while_a_features_run_decides_labels_files_first_stops_it_before_the_next_file(
        prefect_server, late_spec, monkeypatch):  # noqa: F811
    """l1 and l2 came before f2; f2's run decides l1, and the pipeline is paused meanwhile (`calmops pause`, as
    the first labels file is decided): l2 and f2 are not decided, and wait for the resume."""
    from calmops.core.pause import pause, resume
    from calmops.flows import labels as labels_flow

    folder, labels_folder, book, frames = _two_kept_for_labels(late_spec, 4)
    now = os.stat(folder).st_mtime - 100
    one, two = (write_csv(labels(frames[i]), labels_folder, f"l{i}.csv") for i in (1, 2))
    last = write_csv(features(frames[3]), folder, "f3.csv")
    for i, (path, name) in enumerate([(one, "labels/l1.csv"), (two, "labels/l2.csv"), (last, "f3.csv")], 1):
        _announced(book, path, name, now + i)
    decide = labels_flow._decide

    def decide_then_pause(*args, **kwargs):  # the user types `calmops pause late` while l1 is decided
        try:
            return decide(*args, **kwargs)
        finally:
            pause("late")

    monkeypatch.setattr(labels_flow, "_decide", decide_then_pause)
    out = run("late", last)
    assert out["decision"] == "held" and out["decided_in_turn"] == ["labels/l1.csv"], out
    assert book.status(sha256_of(two)) == "waiting" and book.status(sha256_of(last)) == "waiting"
    monkeypatch.setattr(labels_flow, "_decide", decide)
    resume("late")
    assert run("late", last)["decided_in_turn"] == ["labels/l2.csv"]
