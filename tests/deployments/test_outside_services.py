"""Services started outside ``calmops up``: the ``prefect deploy --all`` route of docs/operations.md, where the user
runs ``prefect worker start --pool calmops`` and ``calmops watch`` by hand. ``calmops status`` shows them running,
and ``calmops up`` starts no second watcher (two announce every file twice) or worker beside them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from urllib.parse import quote

import pytest
from rich.console import Console
from typer.testing import CliRunner

from calmops.deployments import stack
from calmops.deployments.cli import app
from calmops.deployments.quickhttp import post
from tests.deployments.test_watcher import Recorder, make_watcher, until
from tests.e2e.stack import free_port

runner = CliRunner()


@pytest.fixture
def prefect_api(prefect_server, calmops_home, monkeypatch):
    """The session's Prefect server as the one ``PREFECT_API_URL`` names (no server of this host's stack runs), a
    work pool of this test's own; the environment as it was afterwards (the CLI's prepare() sets variables)."""
    from prefect.settings import PREFECT_API_URL

    saved = dict(os.environ)
    url = PREFECT_API_URL.value().rstrip("/")
    monkeypatch.setenv("PREFECT_API_URL", url)
    monkeypatch.setenv("CALMOPS_PREFECT_PORT", str(free_port()))  # the stack's own port: not the server's
    pool = f"by-hand-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CALMOPS_WORK_POOL", pool)
    assert post(f"{url}/work_pools/", {"name": pool, "type": "process"})[0] == 201
    yield url, pool
    os.environ.clear()
    os.environ.update(saved)


def heartbeat(url: str, pool: str, worker: str) -> None:
    """What a running worker does every 30 s (``prefect worker start``: its first one as it starts). Like Prefect's
    client, a 503 (the server's database busy for a moment, as a loaded test server's SQLite can be) is tried again."""
    for attempt in range(6):
        code, _ = post(f"{url}/work_pools/{quote(pool)}/workers/heartbeat",
                       {"name": worker, "heartbeat_interval_seconds": 30})
        if code != 503:
            break
        time.sleep(0.5 * 2 ** attempt)
    assert code == 204, code


def test_a_worker_started_by_hand_shows_running_in_status_with_its_name(prefect_api):
    """`prefect worker start --pool calmops` run by hand polled the pool while `calmops status` said its worker was
    stopped. Prefect knows it: online on the stack's work pool, it is shown running, started outside calmops up,
    with its name where a pid would be; in --json as keys added to the worker's row."""
    url, pool = prefect_api
    assert not stack.status()["worker"]["healthy"]  # no worker on the pool yet
    heartbeat(url, pool, f"{stack.own_worker_prefix()}4242")  # the stack's own worker, whose pid file is gone:
    assert not stack.status()["worker"]["healthy"]  # a worker that stopped, not one run by hand
    heartbeat(url, pool, "calmops-otherhost-77")  # another host's stack worker: not this host's
    assert not stack.status()["worker"]["healthy"]

    heartbeat(url, pool, "my-worker")

    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)["stack"]
    worker = state["services"]["worker"]
    assert state["up"] and worker["healthy"] and worker["outside"], worker
    assert worker["pid"] is None and worker["names"] == ["my-worker"], worker
    assert not state["services"]["watcher"]["healthy"]  # nothing else is taken for running
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if line.strip().startswith("worker"))
    assert "my-worker" in row and "healthy (started outside calmops up)" in " ".join(row.split()), table.output


def test_status_asks_prefect_for_workers_only_while_it_answers(calmops_home, monkeypatch):
    """With the stack down nothing is asked: `calmops status` stays as fast as before."""
    asked = []
    monkeypatch.setattr(stack, "outside_workers", lambda *args: asked.append(args) or ["anyone"])
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")  # nothing listens
    worker = stack.status()["worker"]
    assert not worker["healthy"] and not worker.get("outside") and not asked


def test_up_does_not_start_a_second_watcher_beside_one_run_by_hand(prefect_api):
    """`calmops watch` ran (the prefect deploy --all route) and `calmops up` started the stack's watcher beside it:
    every file announced twice. `up` sees the fresh heartbeat, says so and starts none; the one by hand goes on."""
    from calmops.core.settings import get_settings
    from calmops.deployments.operations_cli import bring_up

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    beat = stack.heartbeat_file(settings)
    console = Console(record=True, width=200)
    try:
        with make_watcher(Recorder(), heartbeat_file=beat):
            until(beat.exists)
            bring_up(console, ("watcher",))
            said = " ".join(console.export_text().split())
            assert "watcher: not started: a watcher started outside calmops up" in said, said
            assert stack.running_pid(settings, "watcher") is None, said
            time.sleep(2.5)  # its next beat: the file is still its own
            assert stack.status()["watcher"]["outside"]
    finally:
        stack.stop("watcher", settings)


@pytest.mark.timeout(60)  # without the refusal it would watch on until stopped
def test_calmops_watch_refuses_to_start_beside_another_calmops_watch(prefect_api):
    """Two `calmops watch` on one run folder announce every file twice: the second says a watcher runs already."""
    from calmops.core.settings import get_settings

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    beat = stack.heartbeat_file(settings)
    with make_watcher(Recorder(), heartbeat_file=beat):
        until(beat.exists)
        result = runner.invoke(app, ["watch"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert "a watcher is running already" in said and "announce every file twice" in said, said


@pytest.mark.timeout(120)
def test_of_two_watchers_started_at_the_same_moment_one_watches_and_the_other_says_why_it_did_not(prefect_api):
    """`calmops up` and `calmops watch` at the same moment both find no heartbeat yet: without more, both would
    watch and announce every file twice. One holds the run folder's watch lock; the other exits 1 saying a
    watcher runs already; and once the first is stopped, a watcher starts again (the lock goes with its
    process)."""
    import sys

    from calmops.core.settings import get_settings

    settings = get_settings()
    beat = stack.heartbeat_file(settings)
    cmd = [sys.executable, "-m", "calmops.deployments.watcher", "--heartbeat", str(beat)]
    env = {**os.environ, "CALMOPS_HOME": str(settings.home)}
    pair = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        until(lambda: any(p.poll() is not None for p in pair), timeout=60)
        ended = next(p for p in pair if p.poll() is not None)
        kept = next(p for p in pair if p is not ended)
        said = " ".join(ended.communicate(timeout=10)[1].split())
        assert ended.returncode == 1, said
        assert "not started: a watcher is running already" in said and "announce every file twice" in said, said
        until(beat.exists, timeout=60)
        time.sleep(1.0)
        assert kept.poll() is None  # the other one watches on
        result = runner.invoke(app, ["watch"])  # a third, by hand, is refused too
        assert result.exit_code == 1 and "a watcher is running already" in " ".join(result.output.split())
    finally:
        for p in pair:
            p.terminate()
            p.communicate(timeout=30)
    again = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(beat.exists, timeout=60)  # stopped, the first let go of the lock
        assert again.poll() is None
    finally:
        again.terminate()
        again.communicate(timeout=30)


@pytest.mark.timeout(120)
def test_calmops_watch_beside_a_watcher_that_holds_the_lock_but_wrote_no_heartbeat_yet_is_refused(prefect_api):
    """The moment between a watcher taking the run folder's watch lock and its first heartbeat: a `calmops watch`
    then finds no heartbeat, and the lock refuses it, saying so."""
    from calmops.core.settings import get_settings

    lock = stack.heartbeat_file(get_settings()).with_name(stack.WATCH_LOCK)
    held = stack.only_watcher(lock)
    try:
        result = runner.invoke(app, ["watch"])
    finally:
        os.close(held)
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert f"a watcher is running already on {lock.parent} (it holds {lock})" in said, said


@pytest.mark.timeout(180)
def test_calmops_up_and_a_watcher_by_hand_at_the_same_moment_leave_one_watcher_and_up_says_which(prefect_api):
    """`calmops up` starting its watcher while one is started by hand: whichever holds the watch lock watches, the
    other exits; `up` says either that its own runs, or that one started outside runs (never that the watcher
    did not start, nor that its own runs when it was the one that gave way)."""
    import sys

    from calmops.core.settings import get_settings
    from calmops.deployments.operations_cli import bring_up

    settings = get_settings()
    beat = stack.heartbeat_file(settings)
    cmd = [sys.executable, "-m", "calmops.deployments.watcher", "--heartbeat", str(beat)]
    by_hand = subprocess.Popen(cmd, env={**os.environ, "CALMOPS_HOME": str(settings.home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    console = Console(record=True, width=300)
    try:
        bring_up(console, ("watcher",))
        said = " ".join(console.export_text().split())
        time.sleep(3.0)  # the one that gave way has exited by now
        ours = stack.running_pid(settings, "watcher")
        assert (by_hand.poll() is None) != bool(ours), said  # exactly one watches
        if ours:
            assert "watcher: running" in said, said
        else:
            assert "watcher: not started: a watcher started outside calmops up" in said, said
        assert "did not start" not in said, said
    finally:
        stack.stop("watcher", settings)
        by_hand.terminate()
        by_hand.wait(30)


def test_a_heartbeat_left_by_a_killed_watcher_is_not_a_watcher_running(calmops_home):
    """A watcher killed with `kill -9` leaves its heartbeat behind, fresh for a while: it names its writer, which
    has ended, so neither `calmops status` nor `calmops up` takes it for a watcher run by hand."""
    from calmops.core.settings import get_settings

    settings = get_settings()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    stack.heartbeat_file(settings).write_text(f"{time.time():.0f} {gone.pid}\n")
    assert not stack.status()["watcher"]["healthy"]
    assert stack.outside("watcher", settings) is None


def test_up_starts_the_stacks_worker_beside_one_run_by_hand_and_says_so(prefect_api):
    """A worker started by hand polls the pool: `up` says so and starts its own beside it all the same (a second
    worker only adds slots; it announces nothing, so no file is run twice), so that a worker that has gone (Prefect
    counts it online for up to 90 s) or another host's cannot leave this host without one."""
    from calmops.core.settings import get_settings
    from calmops.deployments.operations_cli import bring_up

    url, pool = prefect_api
    heartbeat(url, pool, "my-worker")
    settings = get_settings()
    console = Console(record=True, width=200)
    try:
        bring_up(console, ("worker",))
        said = " ".join(console.export_text().split())
        assert f"note: worker(s) started outside calmops up poll the work pool '{pool}': my-worker; the stack's own " \
            "worker polls the pool beside it" in said, said
        assert stack.running_pid(settings, "worker") is not None, said
    finally:
        stack.stop("worker", settings)
