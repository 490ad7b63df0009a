"""Runs that wait and never start: found by the watcher and recovered, so a file never waits silently.

A run of a pipeline's file (scheduled scans are left alone) is *stalled* when it has waited to start for
longer than ``after`` seconds and

* its deployment no longer exists (no worker can start it), or
* it waits for its pipeline's slot (AwaitingConcurrencySlot) or was handed to a worker and never started
  (Pending), and no run of its pipeline has run in that time: nothing ahead of it makes progress (a run left
  Pending, e.g. after a worker-side 503, keeps the slot to itself), or
* it is Scheduled or Late and no file run of any pipeline has run in that time: the worker takes nothing (a
  run that waits for a free worker slot while other pipelines' runs are busy is not stalled). The worker
  itself is then stuck (hung, or polling without submitting), unless the run's work queue or pool is paused.

A run left Pending by this host's worker when it exited (or was stopped as stuck) is stalled one check later,
however short its wait: the watchdog notes the runs Pending when it finds the worker gone (or stops it), and
those still Pending since the same moment at its next check were taken by that worker: no other worker starts a
run one took, and it holds its pipeline's slot. (A live worker's run leaves Pending within seconds; no clocks
are compared.)

Recovery cancels the stalled run (which gives its pipeline's slot back; a run whose deployment is gone, which
Prefect's server may refuse to cancel, is deleted), counts it in the pipeline's
``state/recovered_runs.json`` (``calmops status NAME`` shows the count and the last reason) and lets the
watcher announce the pipeline's waiting files again: the ledger keeps every file exactly once whatever runs.
A stuck worker of this machine's stack is restarted; while that restart is under way, and for ``after``
seconds once it is done, the new worker is not called stuck and the runs it is to take are left waiting. So is
a worker ``calmops up`` started that has exited (a Prefect worker gives up when its server or the server's
database stays out of reach for half a minute); one run by a supervisor (``calmops service`` under PM2 or
systemd) is left to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from calmops.core.errors import listed
from calmops.core.flow_runs import runs_in_states
from calmops.core.names import TAG
from calmops.core.paging import every
from calmops.core.pids import running
from calmops.core.settings import Settings, get_settings
from calmops.core.store import Claim, pipeline_paths, read_spec, stamp_seconds, write_atomic

log = logging.getLogger("calmops.watcher")

STALL_AFTER = 300.0  # seconds a run may wait to start while its pipeline does nothing
RECORD = "recovered_runs.json"
RESTARTS = "worker_restarts.json"
LISTED = 200  # runs read per query to the Prefect API, for each state the watchdog looks at


@dataclass(frozen=True)
class Stalled:
    pipeline: str
    run_id: str
    run_name: str
    state: str
    waited: float  # seconds
    reason: str
    deployment_gone: bool = False  # no worker can ever start it
    worker_stuck: bool = False  # the worker takes nothing from a queue that is not paused
    dead: bool = False  # Running, but its process is gone: marked Crashed


def _waiting_since(run: Any) -> datetime:
    """When the run started waiting: its creation or its scheduled time, whichever is later; for a Pending run
    the moment it became Pending."""
    if run.state.type.value == "PENDING" and run.state.timestamp:
        return run.state.timestamp
    scheduled = run.expected_start_time or run.created
    return max(run.created, scheduled) if run.created else scheduled


def find_stalled(after: float = STALL_AFTER, now: datetime | None = None,
                 taken: Taken | None = None) -> list[Stalled]:
    """The CalmOps flow runs that are stalled now (see the module docstring); asks the Prefect API. ``taken``: the
    runs Pending when this host's worker was last found gone (see :func:`stalled_among`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=after)
    with get_client(sync_client=True) as client:
        # the runs due by the cutoff, not the scheduled scans' future runs (hundreds of them, listed in random id
        # order, they could leave a waiting file's run out of the listing); Pending runs are few, all of them
        queued = runs_in_states(client, [StateType.PENDING], limit=LISTED)
        queued += [r for r in runs_in_states(client, [StateType.SCHEDULED], limit=LISTED, due_before=cutoff)
                   if r.id not in {q.id for q in queued}]
        if not any(_waiting_since(r) < cutoff or _handed_to(r, taken) for r in queued):
            return []
        running = runs_in_states(client, [StateType.RUNNING], limit=LISTED)
        ended = client.read_flow_runs(flow_run_filter=FlowRunFilter(  # the latest first: a long burst is
            tags=FlowRunFilterTags(all_=[TAG]), end_time=FlowRunFilterEndTime(after_=cutoff)),
            sort=FlowRunSort.END_TIME_DESC, limit=LISTED)
        paused = _paused_queues(client)
        wanted = list({r.deployment_id for r in queued if r.deployment_id and _waiting_since(r) < cutoff})
        existing = {d.id for d in every(client.read_deployments,
                                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=wanted)))} \
            if wanted else set()
    # a run cancelled before it started (by this watchdog, or by a turn that decided its file) has ended without
    # running (Prefect stamps its start and end all the same): it is no sign of a worker taking runs
    progress = [r for r in [*running, *ended] if "path" in r.parameters and r.run_count > 0]
    return stalled_among(queued, {r.parameters.get("pipeline") for r in progress}, existing, now, after,
                         worker_idle=not progress, paused=paused,
                         busy_deployments={r.deployment_id for r in progress if r.deployment_id},
                         taken=taken)


@dataclass(frozen=True)
class Taken:
    """The runs Pending when this host's worker was found gone (or stopped as stuck): run id → the moment it
    became Pending, as Prefect's server stamped it."""

    worker: str  # the worker, as messages name it
    runs: dict[str, Any]


_NEVER = object()  # no Pending moment: a run that was not Pending when the runs taken were noted


def _handed_to(run: Any, taken: Taken | None) -> bool:
    """Whether ``run`` is still Pending since the moment it was when ``taken`` was noted."""
    return (taken is not None and run.state.type.value == "PENDING"
            and taken.runs.get(str(run.id), _NEVER) == run.state.timestamp)


def _note_taken(worker: str) -> None:
    """Note the runs Pending now, taken by ``worker`` (gone, or about to be stopped): those still Pending since the
    same moment at the next check are stalled (:func:`recover_stalled`)."""
    global _taken
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            pending = runs_in_states(client, [StateType.PENDING], limit=LISTED)
    except Exception:  # the stall bound recovers them all the same, later
        log.warning("could not list the runs %s had taken", worker, exc_info=True)
        return
    _taken = Taken(worker, {str(r.id): r.state.timestamp for r in pending})


def _paused_queues(client: Any) -> set[str] | None:
    """Names of the paused work queues of CalmOps' pool; None when the whole pool is paused (or unknown)."""
    from prefect.exceptions import ObjectNotFound

    pool = get_settings().work_pool
    try:
        if client.read_work_pool(pool).is_paused:
            return None
        return {q.name for q in client.read_work_queues(work_pool_name=pool) if q.is_paused}
    except ObjectNotFound:
        return None


def stalled_among(queued: list[Any], busy: set[str], deployments: set[Any], now: datetime,
                  after: float, *, worker_idle: bool = True, paused: set[str] | None = frozenset(),
                  busy_deployments: set[Any] = frozenset(),
                  taken: Taken | None = None) -> list[Stalled]:
    """Which of the ``queued`` flow runs are stalled, given the pipelines whose file runs ran in the last
    ``after`` seconds (``busy``) and their deployments (``busy_deployments``), whether no file run ran at all
    then (``worker_idle``), the ids of the deployments that exist and the paused work queues (``None``: the pool
    is paused). A pipeline whose run was handed to a worker (Pending) less than ``after`` seconds ago is busy
    too: the runs behind it wait their turn. A run waiting for its deployment's slot while another pipeline's
    run of that deployment makes progress waits its turn as well (a kind's deployment from prefect.yaml runs
    every pipeline of the kind, one at a time). A run still Pending since the moment it was when ``taken`` was
    noted (this host's worker was found gone, or stopped as stuck, one check ago) was taken by that worker:
    stalled however short its wait (the runs behind it wait their turn: cancelling it gives the slot back)."""
    busy = busy | {r.parameters.get("pipeline") for r in queued if r.state.type.value == "PENDING"
                   and (now - _waiting_since(r)).total_seconds() <= after}
    found = []
    for run in queued:
        pipeline = run.parameters.get("pipeline")
        waited = (now - _waiting_since(run)).total_seconds()
        if not pipeline or "path" not in run.parameters:
            continue  # not a file's run (a scheduled scan)
        gone = run.deployment_id is None or run.deployment_id not in deployments
        if _handed_to(run, taken):
            found.append(Stalled(pipeline, str(run.id), run.name, run.state.name, waited,
                                 f"{run.state.name} for {waited:.0f} s: it was taken by {taken.worker}, and no "
                                 "other worker starts a run one took", deployment_gone=gone))
            continue
        if waited <= after:
            continue  # not waiting long yet
        behind_its_pipeline = run.state.type.value == "PENDING" or run.state.name == "AwaitingConcurrencySlot"
        stuck = False  # the worker takes nothing from a queue it could take from
        if gone:
            reason = "its deployment no longer exists"
        elif pipeline in busy or (behind_its_pipeline and run.deployment_id in busy_deployments):
            continue  # waiting its turn behind a run that is making progress
        elif behind_its_pipeline:
            reason = f"no run of {pipeline} has run for {after:.0f} s"
        elif worker_idle:
            reason = f"no run of any pipeline has run for {after:.0f} s"
            stuck = paused is not None and run.work_queue_name not in paused
        else:
            continue  # waiting for a free worker slot while other pipelines' runs are busy
        found.append(Stalled(pipeline, str(run.id), run.name, run.state.name, waited,
                             f"{run.state.name} for {waited:.0f} s and {reason}", deployment_gone=gone,
                             worker_stuck=stuck))
    return found


def find_dead() -> list[Stalled]:
    """File runs Prefect still calls Running whose process is gone: the ledger holds their claim as orphaned
    (its owner process ended on this host, or its heartbeat stopped on any host: a worker or its host died
    mid-run), or they hold no claim and have decided nothing for longer than the ledger's lease (the run ended,
    giving its claim back or deciding its file, while Prefect's server was out of reach to hear of it). Nobody
    will report their end, and each holds its pipeline's slot until its lease runs out."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from calmops.core.store import has_ledger, ledger

    with get_client(sync_client=True) as client:
        running = runs_in_states(client, [StateType.RUNNING], limit=LISTED)
    found = []
    for run in running:
        pipeline = run.parameters.get("pipeline")
        if not pipeline or "path" not in run.parameters:
            continue
        try:
            paths = pipeline_paths(read_spec(pipeline))
            book = ledger(paths) if has_ledger(paths) else None
            held = [e for e in book.entries() if e["run_id"] == str(run.id)] if book else []
            states = book.states() if held else {}
        except Exception:
            log.debug("could not read the ledger of %s", pipeline, exc_info=True)
            continue
        why = _why_dead(held, states, book.lease if book else 0.0, time.time())
        if why:
            found.append(Stalled(pipeline, str(run.id), run.name, run.state.name, 0.0, f"Running, but {why}",
                                 dead=True))
    return found


def _why_dead(held: list[dict[str, Any]], states: dict[str, str], lease: float, now: float) -> str | None:
    """Why a run Prefect calls Running has ended, from the ledger entries that name it (``held``), or None."""
    if not held or any(states.get(e["sha256"]) == "in_progress" for e in held):
        return None  # nothing of its own yet (waiting for its turn), or a live claim: it runs
    decided = [e["file"] for e in held if states.get(e["sha256"]) == "done"]
    before = f"; it had decided {listed(decided, most=5)}" if decided else "; it had decided no file"
    if orphaned := [e["file"] for e in held if states.get(e["sha256"]) == "orphaned"]:
        return (f"its process is gone (the claim of {orphaned[0]} is orphaned: the pipeline's next run decides it)"
                f"{before}")
    last = max((t for e in held if (t := stamp_seconds(e["updated"])) is not None), default=None)
    if last is None or now - last <= lease:
        return None  # between two files of its turn, or reporting its end
    if not all(Claim.of(e).owner_ended() for e in held):
        return None  # its process still runs (rerunning pending files, giving way), or runs on another host
    return (f"its process has ended, holding no claim, {now - last:.0f} s after it last decided (it ended while "
            f"Prefect's server could not hear of it){before}")


def cancel(stalled: Stalled) -> None:
    """Cancel the run. A run whose deployment was deleted, Prefect's server may refuse to cancel (it fails to
    release the slot of the deployment's concurrency limit, deleted with it: 500): such a run can never start,
    so it is deleted instead, as the server itself deletes the Scheduled runs of a deleted deployment."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        if stalled.dead:  # through the server's rules, which give the pipeline's slot back
            from prefect.states import Crashed

            client.set_flow_run_state(stalled.run_id, Crashed(message=f"calmops watcher: {stalled.reason}"))
            return
        try:
            client.set_flow_run_state(stalled.run_id, Cancelled(message=f"calmops watcher: stalled ({stalled.reason})"),
                                      force=True)
        except PrefectHTTPStatusError as exc:
            if not stalled.deployment_gone or exc.response.status_code < 500:
                raise
            log.warning("Prefect could not cancel %s (%s); its deployment is gone: deleting the run", stalled.run_name,
                        exc.response.status_code)
            client.delete_flow_run(stalled.run_id)


def record_file(pipeline: str) -> Path:
    return pipeline_paths(read_spec(pipeline)).state / RECORD


def _read_count(path: Path) -> dict[str, Any]:
    """A count record, ``{"count": n, "last": {...}}`` (count 0 when there is none yet)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"count": 0, "last": None}


def _add_count(path: Path, **last: Any) -> None:
    """One more in the count record at ``path``, with ``last`` (stamped with the time) as the latest."""
    last = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **last}
    write_atomic(path, json.dumps({"count": int(_read_count(path).get("count", 0)) + 1, "last": last}))


def recovered(pipeline: str) -> dict[str, Any]:
    """``{"count": n, "last": {...}}`` of a pipeline's recovered runs (count 0 when none)."""
    return _read_count(record_file(pipeline))


def _record(stalled: Stalled) -> None:
    _add_count(record_file(stalled.pipeline), run=stalled.run_name, run_id=stalled.run_id, reason=stalled.reason)


def worker_restarts(settings: Settings | None = None) -> dict[str, Any]:
    """``{"count": n, "last": {...}}`` of the watcher's restarts of this machine's worker (count 0 when none)."""
    return _read_count((settings or get_settings()).run_dir / RESTARTS)


_restarted_at = -float("inf")  # monotonic time this process last finished restarting the worker
_taken: Taken | None = None  # the runs Pending when this host's worker was last found gone: see _note_taken
_restarting: threading.Thread | None = None


def worker_settling(after: float = STALL_AFTER) -> bool:
    """Whether this process is restarting the worker, or finished less than ``after`` seconds ago: the new
    worker gets that long to take the waiting runs before it can be called stuck (on a busy machine a worker
    can take a minute to start; restarting it again meanwhile would only start the wait over)."""
    return (_restarting is not None and _restarting.is_alive()) or time.monotonic() - _restarted_at < after


def restart_worker(reason: str, after: float = STALL_AFTER, dead: int | None = None) -> threading.Thread | None:
    """Restart the worker of this machine's stack in the background (stop, start, wait until it polls),
    unless a restart is under way or ended less than ``after`` seconds ago, or the stack runs no worker here (a
    worker on another host, or one ``calmops service`` runs, is its own supervisor's to restart; ``dead``: the
    pid of this host's worker, which has exited, see :func:`revive_dead_worker`). Returns the thread doing it,
    or None."""
    global _restarting
    from calmops.deployments import stack

    settings = get_settings()
    pid = dead if dead is not None else stack.running_pid(settings, "worker")
    if worker_settling(after) or pid is None:
        return None
    if stack.supervised_file(settings, "worker").exists():
        log.warning("the worker takes no runs (%s); its supervisor (PM2, systemd) runs it: restart it there", reason)
        return None
    if dead is None:  # the runs it took and left Pending: noted before it is stopped (a dead one's, when found)
        _note_taken(f"the stuck worker (pid {pid}), stopped")
    _add_count(settings.run_dir / RESTARTS, reason=reason)
    log.warning("the worker takes no runs (%s): restarting it", reason)

    def restart() -> None:
        global _restarted_at, _revive_failed, _alive_worker
        try:
            stack.stop("worker", settings, grace=5.0)
            stack.start("worker", settings)
            log.info("worker restarted")
            _revive_failed = False
            try:
                _alive_worker = settings.pid_file("worker").read_text()  # seen running: the one it started
            except OSError:
                pass
        except Exception:
            log.exception("could not restart the worker (tried again in %.0f s); 'calmops up' starts it", after)
            _revive_failed = True  # its pid file is gone with it: the next check tries again all the same
        finally:
            _restarted_at = time.monotonic()

    _restarting = threading.Thread(target=restart, name="calmops-worker-restart", daemon=True)
    _restarting.start()
    return _restarting


_alive_worker: str | None = None  # the worker's pid file while this process saw the worker it names run
_dead_worker: str | None = None  # the worker's pid file when that worker was first found gone
_revive_failed = False  # this process's last start of the worker failed (and took the pid file with it)


def revive_dead_worker(after: float = STALL_AFTER) -> threading.Thread | None:
    """Start this host's worker again when it has exited: the worker its pid file names, which this process saw
    run at an earlier check (a pid file left from before a reboot is not followed: the user may run a worker of
    their own), is gone at two checks in a row; or this process's last start of it failed. A worker whose
    supervisor restarts it (``calmops service``: :func:`calmops.deployments.stack.supervised_file`) is left to
    it. Returns the restarting thread, or None."""
    global _alive_worker, _dead_worker
    from calmops.deployments import stack

    settings = get_settings()
    if stack.supervised_file(settings, "worker").exists():
        _alive_worker = _dead_worker = None
        return None
    try:
        recorded = settings.pid_file("worker").read_text()
        pid = int(recorded.strip() or 0)
    except (OSError, ValueError):
        recorded, pid = None, 0
    if recorded is not None and pid > 0 and running(pid, None):  # a zombie counts as exited
        _alive_worker, _dead_worker = recorded, None
        return None
    if not _revive_failed and (recorded is None or recorded != _alive_worker):
        return None  # no worker here, or one this process never saw run
    if not _revive_failed and _dead_worker != recorded:  # first seen gone: started at the next check
        _dead_worker = recorded
        log.warning("the worker (pid %s) has exited; it is started again at the next check", pid)
        _note_taken(f"the worker (pid {pid}), which exited")
        return None
    restarting = restart_worker(f"it exited (pid {pid}); see {stack.log_file(settings, 'worker')}", after, dead=pid)
    if restarting is not None:
        _dead_worker = None
    return restarting


def recover_stalled(after: float = STALL_AFTER) -> list[Stalled]:
    """Start a worker of this host's stack that exited again, cancel every stalled run and record it, and
    restart a stuck worker; returns the runs (the caller announces their pipelines' files). The runs a worker
    found gone (or stopped as stuck) at the last check had taken are stalled if they are still Pending."""
    global _taken
    taken, _taken = _taken, None  # noted at the last check: this check decides on them
    revive_dead_worker(after)
    done = []
    found = find_stalled(after, taken=taken) + find_dead()
    if worker_settling(after):  # the restarted worker takes them; cancelling them now would only add runs
        found = [s for s in found if not s.worker_stuck]
    elif stuck := next((s for s in found if s.worker_stuck), None):
        restart_worker(stuck.reason, after)
    for stalled in found:
        try:
            cancel(stalled)
        except Exception:
            log.exception("could not cancel the stalled run %s of %s", stalled.run_name, stalled.pipeline)
            continue
        try:
            _record(stalled)
        except Exception:  # noqa: BLE001 - a pipeline deleted meanwhile has no state folder to write to
            log.warning("stalled run %s of %s not counted (pipeline gone?)", stalled.run_name, stalled.pipeline)
        log.warning("recovered a %s run of %s: %s was %s; it waits no more, and its files are announced again",
                    "dead" if stalled.dead else "stalled", stalled.pipeline, stalled.run_name, stalled.reason)
        done.append(stalled)
    return done
