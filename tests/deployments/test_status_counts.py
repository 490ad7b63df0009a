"""What ``calmops status`` and ``calmops list`` count and print, read from local state only (no Prefect, no
MLflow run): the file others are held behind, the waiting, pending, running and quarantined files, an existing
pipeline given to ``calmops create`` again, and tables whose names and values are never cut short."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calmops.core.store import (
    Ledger,
    arrival_time,
    ledger,
    pipeline_paths,
    save_spec,
    sha256_of,
    spec_from_dict,
)
from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC

runner = CliRunner()


def _status(name: str) -> dict:
    result = runner.invoke(app, ["status", name, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _drop(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _arrived(book: Ledger, path: Path) -> str:
    sha = sha256_of(path)
    book.arrive(sha, path.name, arrival_time(path.stat().st_mtime_ns))
    return sha


def _failed(book: Ledger, path: Path) -> str:
    """A file whose run failed: pending in the ledger, still in incoming."""
    sha = _arrived(book, path)
    assert book.claim(sha, path.name, run_id="run-1")
    book.release(sha)
    return sha


def test_a_file_moved_out_of_incoming_is_no_longer_held_behind_nor_pending(stream_spec):
    """docs/operations.md: held files go once that file is moved out of the incoming folder; the pipeline's
    turn passes over it (calmops.flows.common.run_in_order), so status must not name it any more, and relaunch
    (the watcher's scan) does not see it either."""
    from calmops.deployments.watcher import waiting_files

    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    bad = _drop(paths.incoming, "bad.csv", "x1,x2,x3,y\n1,2,3,0\n")
    bad_sha = _failed(book, bad)
    _arrived(book, _drop(paths.incoming, "c.csv", "x1,x2,x3,y\n4,5,6,1\n"))
    before = _status("sea")
    assert before["held_behind"] == "bad.csv" and before["files_pending"] == 1

    bad.rename(paths.root / "bad.csv")  # the remedy the docs give
    after = _status("sea")
    assert after["held_behind"] is None and after["files_pending"] == 0, after
    assert after["files_waiting"] == 1  # c.csv, which the next run decides
    assert book.status(bad_sha) == "pending"  # the ledger row is kept as it was
    text = runner.invoke(app, ["status", "sea"]).stdout
    assert re.search(r"^ *held behind +- *$", text, re.MULTILINE), text
    assert waiting_files("sea") == [paths.incoming / "c.csv"]  # what 'calmops relaunch --local' would run


def test_waiting_counts_only_files_a_run_may_take_that_are_not_pending_or_running(stream_spec):
    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    _drop(paths.incoming, "new.csv", "x1,x2,x3,y\n1,2,3,0\n")
    for name in (".hidden.csv", "upload.csv.part", "notes.txt~"):  # names the watcher never takes
        _drop(paths.incoming, name, "x1,x2,x3,y\n1,2,3,0\n")
    (paths.incoming / "sub").mkdir()
    _failed(book, _drop(paths.incoming, "pending.csv", "x1,x2,x3,y\n2,2,2,1\n"))
    running = _drop(paths.incoming, "running.csv", "x1,x2,x3,y\n3,3,3,1\n")
    assert book.claim(sha256_of(running), running.name, run_id="run-2")  # held by this live process
    data = _status("sea")
    assert (data["files_waiting"], data["files_pending"], data["files_running"]) == (1, 1, 1), data


def test_quarantined_counts_files_not_sidecars_left_behind(stream_spec):
    """docs/late-labels.md: a quarantined file may be dropped in again; its sidecar stays as a record."""
    from calmops.core.store import quarantine

    paths = pipeline_paths(stream_spec)
    for name in ("early-labels.csv", "broken.csv"):
        quarantine(paths, _drop(paths.incoming, name, f"{name}\n"), None, "refused")
    assert _status("sea")["files_quarantined"] == 2
    (paths.quarantine / "early-labels.csv").rename(paths.incoming / "early-labels.csv")
    assert (paths.quarantine / "early-labels.csv.reason.json").exists()
    assert _status("sea")["files_quarantined"] == 1


def test_create_of_an_existing_pipeline_says_it_exists_before_asking_mlflow(stream_spec, tmp_path, monkeypatch):
    """Even when MLflow has a registered model of that name (an existing pipeline has one), the error is that
    the pipeline exists, with or without --adopt, and --adopt renames nothing."""
    from calmops.core import registry

    migrated = []
    monkeypatch.setattr(registry, "aliases", lambda name: {"champion": 3})
    monkeypatch.setattr(registry, "legacy_champion", lambda name: 2)
    monkeypatch.setattr(registry, "migrate_model_name", migrated.append)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(STREAM_SPEC))
    for extra in ([], ["--adopt"]):
        result = runner.invoke(app, ["create", str(spec), *extra])
        assert result.exit_code == 1
        assert "pipeline 'sea' exists already" in result.stderr and "--adopt" not in result.stderr, result.stderr
        assert "calmops update" in result.stderr
    assert migrated == []


LONG = ("agrawal-recurrent-long-name", "agrawal-recurrent-long-name-2")


@pytest.fixture
def long_names(calmops_home):
    for name in LONG:
        save_spec(spec_from_dict(dict(STREAM_SPEC, name=name)), create=True)
    return LONG


def _lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line.split()]


@pytest.mark.parametrize("command", [["status"], ["list"], ["status", LONG[0]]])
def test_tables_piped_at_80_columns_cut_no_name_or_value(long_names, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, command)  # CliRunner's stdout is not a terminal, as in a pipe or CI
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text, text
    if command[0] == "list" or len(command) == 1:
        assert _lines_with(text, LONG[0]) and _lines_with(text, LONG[1]), text  # each whole, on its row
    if command == ["status"]:
        assert "quarantined" in text.split()
    if len(command) == 2:
        assert str(pipeline_paths(spec_from_dict(dict(STREAM_SPEC, name=LONG[0]))).incoming) in text.split()


def test_a_short_name_keeps_the_pipelines_table_within_80_columns(stream_spec, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = runner.invoke(app, ["status"]).stdout
    table = text[text.index("pipelines"):]
    assert "quarantined" in table.split() and "…" not in table
    assert max(map(len, table.splitlines())) <= 80, table


def test_a_narrow_terminal_folds_a_long_name_instead_of_cutting_it(long_names, monkeypatch):
    from rich.console import Console
    from rich.table import Table

    from calmops.deployments import console as console_mod

    out = StringIO()
    monkeypatch.setattr(console_mod, "console", Console(file=out, width=30, force_terminal=True, color_system=None),
                        raising=False)
    table = Table("pipeline", "last decision")
    table.add_row(LONG[1], "retrain_rejected_by_threshold")
    console_mod.print_table(table)
    text = out.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 30, text
    cells = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]  # the body's rows
    assert ["".join(column).replace(" ", "") for column in zip(*cells)] == [LONG[1], "retrain_rejected_by_threshold"]


def test_an_orphaned_claim_counts_only_while_its_file_is_in_incoming(stream_spec):
    """A run killed while deciding a file leaves its claim orphaned: status counts it, since the next run takes
    it again. Once the file is moved out of incoming (the remedy for a file that kills its run), no run takes it
    again, so status must stop counting it, as it stops naming the file held behind."""
    import sqlite3
    import subprocess

    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    path = _drop(paths.incoming, "killer.csv", "x1,x2,x3,y\n1,2,3,0\n")
    sha = _arrived(book, path)
    assert book.claim(sha, path.name, run_id="run-1")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(book.path) as con:  # its run's process has ended (kill -9)
        con.execute("UPDATE files SET owner_pid=?, owner_start=NULL WHERE sha256=?", (dead.pid, sha))
    orphaned = _status("sea")
    assert orphaned["files_orphaned"] == 1
    assert orphaned["files_waiting"] == 0  # one file, counted once: not also as waiting
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    overview = CliRunner().invoke(app, ["status"])  # the table has no column for it: a line says so
    assert overview.exit_code == 0 and "sea: 1 file(s) whose run stopped while deciding" in overview.output, \
        overview.output

    path.rename(paths.root / path.name)
    after = _status("sea")
    assert after["files_orphaned"] == 0, after
    assert book.states()[sha] == "orphaned"  # the ledger row is kept as it was


def test_a_file_name_with_a_line_break_or_an_escape_code_is_shown_escaped(stream_spec):
    """Incoming folders may be writable by other teams (docs/security.md): a name must not colour the terminal
    or forge a line of `calmops status`."""
    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    evil = "evil\nname\x1b[31m.csv"
    path = _drop(paths.incoming, evil, "x1,x2,x3,y\n1,2,3,0\n")
    sha = _arrived(book, path)
    assert book.claim(sha, evil, run_id="run-1")
    book.finish(sha, "no_drift")
    text = runner.invoke(app, ["status", "sea"], env={"COLUMNS": "200"}).stdout
    assert "\x1b" not in text and "evil\nname" not in text, repr(text)
    assert "evil\\nname\\x1b[31m.csv" in text, text
    assert _status("sea")["last_file"] == evil  # JSON keeps the name as it is (escaped by JSON itself)


def test_on_a_host_of_workers_the_servers_its_variables_name_are_shown_there_not_stopped(calmops_home, monkeypatch):
    """A host that runs a worker but neither server reaches them through PREFECT_API_URL and MLFLOW_TRACKING_URI:
    ``calmops status`` shows each at that URL, healthy when it answers, instead of this host's unused defaults
    as stopped."""
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from calmops.core.settings import get_settings

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response({"/health": 200, "/api/health": 503}.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    # the other host: MLflow's /health answers, Prefect's /api/health says 503 (up, its database is not)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = ThreadingHTTPServer(("127.0.0.1", 0), Health)  # bound, never served: nothing answers there
    mlflow_url = prefect_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        monkeypatch.setenv("PREFECT_API_URL", prefect_url + "/api")
        settings = get_settings()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        settings.pid_file("worker").write_text(str(os.getpid()))  # a live process: this host runs a worker
        data = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["stack"]["services"]
        assert (data["mlflow"]["url"], data["mlflow"]["healthy"], data["mlflow"]["elsewhere"]) == (mlflow_url, True,
                                                                                           "another host")
        assert (data["prefect"]["url"], data["prefect"]["healthy"], data["prefect"]["answer"]) == (prefect_url, False, 503)
        table = runner.invoke(app, ["status"], terminal_width=200).stdout
        assert re.search(rf"mlflow\s+{re.escape(mlflow_url)}\s+-\s+healthy \(another host\)", table), table
        assert re.search(rf"prefect\s+{re.escape(prefect_url)}\s+-\s+answers 503 \(another host\)", table), table
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.server_address[1]}")
        table = runner.invoke(app, ["status"], terminal_width=200).stdout
        assert re.search(r"mlflow\s+\S+\s+-\s+not answering \(another host\)", table), table
        from calmops.deployments import stack

        own = stack.services()["mlflow"]  # this host's own server, named another way, and stopped: not elsewhere
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://localhost:{own.port}")
        table = runner.invoke(app, ["status"], terminal_width=200).stdout
        assert re.search(rf"mlflow\s+{re.escape(own.url)}\s+-\s+stopped\s", table), table
        # on this host's own port, answering, but not started from this run folder (two run folders, one machine)
        monkeypatch.setenv("CALMOPS_MLFLOW_PORT", str(server.server_address[1]))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://localhost:{server.server_address[1]}")
        table = runner.invoke(app, ["status"], terminal_width=200).stdout
        assert re.search(r"mlflow\s+\S+\s+-\s+healthy \(another run folder\)", table), table
    finally:
        server.shutdown()
        server.server_close()
        silent.server_close()


def test_status_while_the_state_database_is_down_answers_soon_with_the_counts_unknown(stream_spec, monkeypatch):
    """A PostgreSQL state database that does not answer (nothing listens at its address here): `status` and
    `list` answer within seconds (a run waits a minute for a restart; a command that reads does not), show
    what is known elsewhere (kind, quarantine) and mark the ledger's counts unknown, in --json as null."""
    import time

    from tests.e2e.stack import free_port

    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", f"postgresql://calmops@127.0.0.1:{free_port()}/calmops")
    began = time.monotonic()
    text = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert time.monotonic() - began < 30
    assert "warning: sea: the state database does not answer (OperationalError" in text.output, text.output
    row = next(line for line in text.output.splitlines() if line.lstrip().startswith("sea"))
    assert row.split()[1] == "stream" and "?" in row.split(), row
    data = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert data["files_waiting"] is None and data["files_done"] is None and data["files_quarantined"] == 0
    assert data["state_unreadable"].startswith("the state database does not answer")
    # unknown where the ledger would say; a field that does not apply to this pipeline is not "unknown"
    assert "files_waiting" in data["unknown"] and "awaiting_labels" not in data["unknown"], data["unknown"]
    detail = runner.invoke(app, ["status", "sea"], env={"COLUMNS": "200"}).output
    fields = [line.strip() for line in detail.splitlines()]
    assert {line.split()[-1] for line in fields if line.startswith(("waiting", "done"))} == {"?"}, detail
    assert [line.split()[-1] for line in fields if line.startswith("rows awaiting labels")] == ["-"], detail
    listed = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "sea" in listed.output and "?" in listed.output, listed.output


def test_history_while_the_state_database_is_down_says_so_soon(stream_spec, monkeypatch):
    """`history` reads the ledger: with the state database down it answers within seconds, in one line that names
    the state database and says what to do (it waited a minute, then printed the driver's error and a hint to
    debug)."""
    import time

    from tests.e2e.stack import free_port

    monkeypatch.setenv("CALMOPS_STATE_DATABASE_URL", f"postgresql://calmops@127.0.0.1:{free_port()}/calmops")
    began = time.monotonic()
    said = runner.invoke(app, ["history", "sea"])
    assert time.monotonic() - began < 30
    assert said.exit_code == 1, said.output
    assert "error: the state database does not answer (OperationalError" in said.stderr, said.stderr
    assert "hint: start it, or mend state_database_url" in said.stderr and "--debug" not in said.stderr, said.stderr
    as_json = runner.invoke(app, ["history", "sea", "--json"])
    assert json.loads(as_json.stdout)["error"].startswith("the state database does not answer"), as_json.stdout


def test_status_with_the_registry_out_of_reach_says_the_champion_is_unknown_not_none(stream_spec, monkeypatch):
    """MLflow's backend store in a database of its own and no MLflow server running: the champion is unknown
    (`?`, null with `registry_unreadable` in --json), where a `-` read as "no champion"."""
    monkeypatch.setenv("CALMOPS_MLFLOW_BACKEND_STORE_URI", "postgresql://calmops@127.0.0.1:1/mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    text = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "warning: the MLflow server is not running" in text.output and "champions are unknown" in text.output
    row = next(line for line in text.output.splitlines() if line.lstrip().startswith("sea"))
    assert row.split()[2] == "?", row
    data = json.loads(runner.invoke(app, ["status", "sea", "--json"]).stdout)
    assert data["champion_version"] is None and data["aliases"] is None and data["registry_unreadable"]
    assert data["files_waiting"] == 0  # the ledger was read: only the champion is unknown


def test_a_ledger_file_that_cannot_be_read_marks_its_own_pipeline_only(stream_spec):
    """SQLite keeps a ledger per pipeline: one that cannot be read (here not a database at all) makes that
    pipeline's counts unknown, named with why, and leaves the others' counts as they are."""
    other = spec_from_dict({**STREAM_SPEC, "name": "other"})
    save_spec(other, create=True)
    _drop(pipeline_paths(other).incoming, "w.csv", "x1,x2,x3,y\n1,2,3,0\n")
    broken = pipeline_paths(stream_spec).root / "ledger.sqlite"
    broken.write_bytes(b"not a database, " * 100)
    text = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    said = " ".join(text.output.split())
    assert f"warning: sea: its ledger could not be read (DamagedFile: {broken}: file is not a database" in said, said
    rows = {line.split()[0]: line.split() for line in text.output.splitlines() if line.lstrip().startswith(("sea", "other"))}
    assert "?" in rows["sea"] and "?" not in rows["other"] and rows["other"][4] == "1", rows


def test_one_pipelines_broken_spec_is_said_in_its_row_and_update_mends_it(stream_spec, tmp_path):
    """A spec.yaml broken in place (an editor, a bad merge) made `status` and `list` fail for every pipeline of
    the stack, and `update` refused to replace it: the broken one's row now says why with every value unknown,
    the others are shown, and `update` writes the new spec."""
    other = save_spec(spec_from_dict({**STREAM_SPEC, "name": "fraud"}), create=True)
    broken = pipeline_paths(stream_spec).spec_file
    broken.write_text("name: sea\nkind: [stream\n")
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["status", "--json"]).stdout)["pipelines"]}
    assert rows["sea"]["spec_unreadable"].startswith(f"{broken}: not valid YAML")
    assert rows["sea"]["kind"] is None and "files_done" in rows["sea"]["unknown"]
    # what does not depend on the spec is read as for any pipeline: here, a registry with no model of it yet
    assert "champion_version" not in rows["sea"]["unknown"] and rows["sea"]["aliases"] == rows["fraud"]["aliases"]
    assert rows["fraud"]["spec_unreadable"] is None and rows["fraud"]["kind"] == "stream"
    assert other.root.name == "fraud"
    for command in (["status"], ["list"]):
        shown = runner.invoke(app, command)
        assert shown.exit_code == 0, shown.output
        assert "fraud" in shown.stdout and "warning: sea:" in shown.stdout and "calmops update sea" in shown.stdout
    spec_file = tmp_path / "sea.yaml"
    spec_file.write_text(yaml.safe_dump(STREAM_SPEC))
    mended = runner.invoke(app, ["update", "sea", str(spec_file)])
    assert mended.exit_code == 0, mended.output
    assert _status("sea")["kind"] == "stream" and _status("sea")["spec_unreadable"] is None


def test_the_last_file_is_the_last_one_decided_not_one_still_running(stream_spec):
    """While a run decides b.csv, `status` and `list` name a.csv, decided before it, with its decision (b.csv has
    none yet: it is counted as running); once b.csv's run has failed, b.csv and `failed`."""
    paths = pipeline_paths(stream_spec)
    book = ledger(paths)
    first = _drop(paths.incoming, "a.csv", "x1,x2,x3,y\n1,2,3,0\n")
    sha = _arrived(book, first)
    assert book.claim(sha, "a.csv", run_id="run-1")
    book.finish(sha, "train")
    running = _drop(paths.incoming, "b.csv", "x1,x2,x3,y\n2,2,2,1\n")
    assert book.claim(_arrived(book, running), "b.csv", run_id="run-2")  # held by this live process
    data = _status("sea")
    assert (data["last_file"], data["last_decision"], data["files_running"]) == ("a.csv", "train", 1), data
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == "sea"]
    assert (row["last_file"], row["last_decision"]) == ("a.csv", "train"), row
    book.release(sha256_of(running))  # its run failed: pending, to be run again
    data = _status("sea")
    assert (data["last_file"], data["last_decision"], data["files_running"]) == ("b.csv", "failed", 0), data


def test_the_overview_shows_the_labels_files_waiting_as_status_name_counts_them(calmops_home, monkeypatch):
    """docs/late-labels.md: labels files wait in the labels folder, not in incoming. With two there (the pipeline
    paused, say), `status credit` says `labels waiting 2`; the overview's table counts the incoming folder in its
    waiting column (0 here), so a line under it says the labels files are there, as many as `status credit` and
    both `--json` count."""
    spec = spec_from_dict({**STREAM_SPEC, "name": "credit", "labels": {"join_on": ["id"]}})
    save_spec(spec, create=True)
    save_spec(spec_from_dict(dict(STREAM_SPEC)), create=True)  # a pipeline without labels: no line for it
    paths = pipeline_paths(spec)
    for name in ("l1.csv", "l2.csv"):
        _drop(paths.labels, name, "id,y\n1,0\n")
    assert runner.invoke(app, ["pause", "credit"]).exit_code == 0
    detail = _status("credit")
    assert (detail["files_waiting"], detail["labels_waiting"]) == (0, 2)
    overview = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["pipelines"]
    assert {row["name"]: row["labels_waiting"] for row in overview} == {"credit": 2, "sea": None}
    monkeypatch.setenv("COLUMNS", "80")
    text = runner.invoke(app, ["status"]).stdout
    assert "credit: 2 labels file(s) waiting in its labels folder" in " ".join(text.split()), text
    assert "sea:" not in text, text
