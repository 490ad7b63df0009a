"""When a pipeline's turn gives way to the other pipelines.

A run that holds its pipeline's turn decides, after its own file, the files that arrived behind it. Under a
long burst into one pipeline that keeps one flow run, and its worker slot, busy for minutes, while the runs of
other pipelines wait for a slot (with two slots, two bursting pipelines starve a third one completely).

So once a run that a worker started has held the turn for ``CALMOPS_TURN_BUDGET`` seconds (60 by default; 0
never gives way) and has decided a file (its own or one that arrived before it), it ends its turn before the
next file when both hold:

* another pipeline waits for a worker: it has a run due for at least :data:`DUE_FOR` seconds that no worker
  has started (Prefect shows it Scheduled or Late), and none of its runs is running. A run that waits for
  something a free worker slot does not give (its pipeline's turn, its deployment's concurrency slot, a retry
  its own process will make) does not count: giving way would not help it;
* no file left has a run that has started (it takes the turn next anyway) or that waits for a retry its own
  process will make.

The files left are then handed over to a run that waits for a worker like the others, the run's own file among
them when the turn ends before it (the run then ends ``held``, its file *waiting*). A file has a queued run of its
own when it arrived as an event: the run of the oldest file left takes the turn when a worker is free. Files
found by a scan (waiting at ``calmops up``, or moved in before the watcher watched a new pipeline's folder) have
none, since a scan announces only the oldest: the turn then announces the oldest file left itself (the
watcher's event, so its run is made by the pipeline's automation like any other) and ends. Either way the run that takes the turn
decides the files left, oldest first, as every run does, so arrival order and "each file once" hold as before.
Should that event be lost, the watcher's next scan announces the file, as it does for any file without a run.
While the pipeline has its own deployment beside prefect.yaml's for its kind (each would start a run for the
event, :mod:`calmops.core.schemes`), or that cannot be told, the turn announces nothing and goes on deciding.
The watcher announces none of the pipeline's files while both deployments exist; when it cannot tell, it
announces them (a second run of a file is answered a duplicate), where a turn, which can simply go on, does not.

Workers take the runs that are due first, and this pipeline's queued runs were made before the waiting
pipeline's: so the turn also schedules its pipeline's queued runs again for now (Prefect shows them Scheduled,
"behind pipeline(s) …"), the run of the oldest file left first, and the waiting pipelines' runs go first.
Nothing is cancelled: the files left stay *waiting* in the ledger, each with the run it had. Prefect's server
would let a run that a worker has just taken be scheduled again, so each run is read right before it is moved
and left alone once taken.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from calmops.core.flow_runs import file_in, runs_in_states
from calmops.core.logs import RunLog
from calmops.core.names import EVENT, file_resource
from calmops.core.pause import paused
from calmops.core.schemes import both_schemes, scheme_advice, two_runs

logger = logging.getLogger("calmops.flows")  # before a run has its RunLog

DEFAULT_BUDGET = 60.0  # seconds a run holds its pipeline's turn before it gives way to starving pipelines
DUE_FOR = 5.0  # seconds a run must have been due, unstarted, to count as waiting for a worker (polls are 0.5 s)
CHECK_EVERY = 5.0  # seconds between two looks at the Prefect API once the budget is spent
#: the names Prefect gives a Scheduled-type run that waits for a worker slot and nothing else (not AwaitingRetry,
#: AwaitingConcurrencySlot or Paused)
FOR_A_WORKER = frozenset({"Scheduled", "Late"})
#: the turn's own queued runs it may move: those and the ones its deployment's limit bounced while the turn was
#: held (a worker takes them once it ends); a run AwaitingRetry belongs to the process that makes the retry
MOVABLE = FOR_A_WORKER | {"AwaitingConcurrencySlot"}
#: the least time between two queued runs a turn schedules again: workers take them in arrival order of their files
IN_TURN = timedelta(milliseconds=1)
_said_two_runs: dict[str, list[str]] = {}  # pipeline -> the deployments that would each run a file announced


def turn_budget() -> float:
    """``CALMOPS_TURN_BUDGET`` in seconds; 0 or less: never give way. Unset, or not a number: the default (a
    tuning knob spelt wrong must not fail every run: the warning names it)."""
    raw = os.environ.get("CALMOPS_TURN_BUDGET", "").strip()
    try:
        return float(raw) if raw else DEFAULT_BUDGET
    except ValueError:
        logger.warning("CALMOPS_TURN_BUDGET=%r is not a number of seconds; using %.0f s (0: a run keeps its "
                       "pipeline's turn until its queue is empty)", raw, DEFAULT_BUDGET)
        return DEFAULT_BUDGET


def started_by_a_worker() -> bool:
    """Whether the running flow run is a deployment's, started by a worker: only such a run holds a worker slot
    that giving way frees. A run by hand (``calmops run``, ``calmops relaunch --local``) keeps its turn: it
    frees nothing by ending it, and with the stack down nothing would decide the files it left."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


@dataclass(frozen=True)
class GiveWay:
    """Why a turn ends early: the pipelines waiting for a worker, the queued run that takes the turn next (None:
    no file left has one, and the turn announces ``announce``, the oldest file left), and every queued run of
    this pipeline (sent behind the waiting pipelines' runs when the turn ends)."""

    starving: tuple[str, ...]
    next_run: str | None
    queued: tuple[Any, ...]
    announce: str | None = None

    def reason(self, held: float) -> str:
        after = (f"flow run {self.next_run} takes the turn after them" if self.next_run else
                 f"{self.announce} is announced (no file left had a run of its own), and its run takes the turn "
                 "after them")
        return (f"giving the pipeline's turn up after {held:.0f} s: pipeline(s) {', '.join(self.starving)} wait "
                f"for a worker; {after} and decides the files left")


def _due(run: Any, now: datetime) -> bool:
    when = run.next_scheduled_start_time or run.expected_start_time
    return when is None or when <= now - timedelta(seconds=DUE_FOR)


def _named(run: Any, names: frozenset[str]) -> bool:
    """Whether ``run`` is in a Scheduled-type state with one of these ``names``."""
    from prefect.client.schemas.objects import StateType

    return run.state is not None and run.state.type == StateType.SCHEDULED and run.state.name in names


def give_way(runs: list[Any], pipeline: str, incoming: Path, left: Sequence[str],
             now: datetime | None = None) -> GiveWay | None:
    """Whether ``pipeline``'s turn should end now, given the ``runs`` of every CalmOps pipeline that are
    scheduled, pending or running, and the names of the files ``left`` in the pipeline's queue, oldest first."""
    from prefect.client.schemas.objects import StateType

    now = now or datetime.now(UTC)
    started: set[str] = set()
    queued: dict[str, list[Any]] = {}
    for run in runs:
        owner = str(run.parameters.get("pipeline") or "")
        if run.state is None or not owner:
            continue
        if run.state.type == StateType.SCHEDULED:
            queued.setdefault(owner, []).append(run)
        else:
            started.add(owner)
    starving = tuple(sorted(name for name, waiting in queued.items() if name != pipeline and name not in started
                            and any(_named(r, FOR_A_WORKER) and _due(r, now) for r in waiting)
                            and paused(name) is None))  # a paused pipeline's runs would only end held
    if not starving:
        return None
    folder = incoming.resolve()
    # file runs a worker will take once the turn ends (a scheduled scan keeps its time), the run of the oldest
    # file left first: the API lists runs by id, not by their files' arrival, and the first one scheduled again is the one
    # a worker takes next; runs of no file left go last
    place = {name: i for i, name in enumerate(left)}
    mine = sorted((r for r in queued.get(pipeline, []) if r.parameters.get("path") and _named(r, MOVABLE)),
                  key=lambda r: place.get(file_in(r, folder) or "", len(place)))
    if mine and file_in(mine[0], folder) in place:
        return GiveWay(starving, mine[0].name, tuple(mine))
    if any(file_in(r, folder) in left for r in runs if r.parameters.get("pipeline") == pipeline):
        return None  # a run of a file left has started (it waits for this turn) or makes its own retry
    return GiveWay(starving, None, tuple(mine), announce=left[0])


def should_give_way(pipeline: str, incoming: Path, left: Sequence[str], log: RunLog,
                    me: str | None = None) -> GiveWay | None:
    """:func:`give_way` on the runs the Prefect API lists now, but ``me`` (the flow run holding the turn: its own
    file may still be among those left, and it is no run that waits for the turn); None (keep the turn) when it
    cannot tell."""
    if not left:
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            runs = runs_in_states(client, [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING])
    except Exception as exc:  # noqa: BLE001 - the API is down or slow: keep deciding, as before
        log.warning("could not tell whether other pipelines wait for a worker: %s: %s", type(exc).__name__, exc)
        return None
    return give_way([r for r in runs if str(r.id) != me], pipeline, incoming, left)


def step_back(way: GiveWay, log: RunLog) -> int:
    """Schedule this pipeline's queued runs again for now, behind the runs that have waited longer for a worker
    (workers take the runs that are due first), each a moment after the one before it in ``way.queued`` (the
    run of the oldest file left first, so it is the one that takes the turn). Returns how many were moved. Each
    run is read right before it is moved: one a worker took meanwhile is left to run (the server would accept
    Scheduled over Pending or Running, and a worker would start the run a second time). Never raises: at worst the pipeline's next run
    starts first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Scheduled

    moved = 0
    message = f"behind pipeline(s) {', '.join(way.starving)}, which waited for a worker"
    when = datetime.now(UTC) - IN_TURN
    try:
        with get_client(sync_client=True) as client:
            for run in way.queued:
                if not _named(client.read_flow_run(run.id), MOVABLE):
                    continue  # a worker took it (or it was cancelled) since the runs were listed
                when = max(datetime.now(UTC), when + IN_TURN)  # strictly after the run before it
                result = client.set_flow_run_state(run.id, Scheduled(scheduled_time=when, message=message))
                moved += result.status == SetStateStatus.ACCEPT
    except Exception as exc:  # noqa: BLE001 - the API is down or slow
        log.warning("could not schedule the pipeline's waiting runs behind the others: %s: %s",
                    type(exc).__name__, exc)
    return moved


def announce(pipeline: str, kind: str, file: Path, sha256: str, log: RunLog) -> bool:
    """Send the watcher's event for ``file``, so that the pipeline's automation makes a run for it. False (and
    the turn goes on) when the event could not be queued for sending, and when the event would start two runs
    (the pipeline's own deployment and prefect.yaml's for its kind both exist, see :mod:`calmops.core.schemes`:
    the watcher announces none of its files then either), or it cannot be told whether it would (the watcher
    announces then; a turn need not, it goes on deciding)."""
    from prefect.events import emit_event

    try:
        both = both_schemes().conflict(pipeline, kind)
    except Exception as exc:  # noqa: BLE001 - the API is down or slow: keep deciding, as before
        log.warning("could not tell which deployments would run %s, so it is not announced to give the turn up: "
                    "%s: %s", file.name, type(exc).__name__, exc)
        return False
    if both:
        if _said_two_runs.get(pipeline) != both:  # once while it lasts (a look every CHECK_EVERY seconds)
            log.warning("not announcing %s to give pipeline %s's turn up: %s; the turn goes on (%s)", file.name,
                        pipeline, two_runs(both), scheme_advice(pipeline, both))
        _said_two_runs[pipeline] = both
        return False
    _said_two_runs.pop(pipeline, None)
    try:
        size = file.stat().st_size
        emit_event(event=EVENT, resource=file_resource(pipeline, kind, file, size, sha256))
    except Exception as exc:  # noqa: BLE001 - moved away meanwhile, or no events client: keep the turn
        log.warning("could not announce %s to give the turn up: %s: %s", file.name, type(exc).__name__, exc)
        return False
    return True
