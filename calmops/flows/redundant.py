"""Flow runs a pipeline's turn has made redundant, cancelled before they start.

Every file event makes a flow run. In arrival order the run that holds the pipeline's turn decides every file
that is waiting, so the runs made for those files would start only to find them done. Each would still take a
worker slot and the pipeline's one concurrency slot for the seconds a run takes to start, in front of the runs
of files that arrived after them. The turn cancels them instead, with the run that decided the file in the
reason: the Prefect UI shows the file's run as *Decided by another run* (a Cancelled state under a name of its
own, with the deciding run in its message), not as a second decision nor as a cancellation someone made.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from calmops.core.flow_runs import file_in, file_run_name, runs_in_states
from calmops.core.logs import RunLog
from calmops.core.names import DECIDED_ELSEWHERE
from calmops.core.store import read_spec


def cancel_redundant_runs(pipeline: str, incoming: Path, decided: Mapping[str, str], by: str | None,
                          log: RunLog) -> list[str]:
    """Cancel the pipeline's flow runs that have not started yet (Scheduled, Late, AwaitingConcurrencySlot)
    and were made for one of the ``decided`` files (name in ``incoming`` → the SHA-256 of the content decided):
    a run whose event gave its file's SHA-256 (the watcher's do) when it is that content, whether or not a
    file of that name is in the folder now; a run without one (made by hand) when its file has left the folder
    (a file of the same name that arrived again keeps its run). Each cancelled run is named after its file, as the
    run that decides a file is (``stream/credit/2024-05.csv``), so the Prefect UI and the pipeline's log say
    which file it was made for. Returns the names of the runs cancelled. Never raises:
    a run left waiting costs seconds (it finds its file done and ends), a failed turn would cost a decision."""
    if not decided:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.states import Cancelled

    folder = incoming.resolve()
    try:
        spec = read_spec(pipeline)  # once for every run named below
    except Exception:  # noqa: BLE001 - a name is no reason to fail the turn
        spec = None
    message = f"{'flow run ' + by if by else 'another run'} decided its file first, in the pipeline's turn"
    cancelled = []
    try:
        with get_client(sync_client=True) as client:
            waiting = runs_in_states(client, [StateType.SCHEDULED], pipeline=pipeline)
            for run in waiting:
                name = file_in(run, folder)
                if name not in decided:
                    continue  # another file's run
                made_for = run.parameters.get("sha256")
                if (made_for and made_for != decided[name]) or (not made_for and (folder / name).exists()):
                    continue  # made for other bytes under that name (arrived again): still to be decided
                try:
                    result = client.set_flow_run_state(run.id, Cancelled(message=message, name=DECIDED_ELSEWHERE))
                except (ObjectNotFound, PrefectHTTPStatusError):
                    continue  # deleted or changed meanwhile
                if result.status == SetStateStatus.ACCEPT:
                    cancelled.append(_named_for_its_file(client, run, file_run_name(pipeline, folder / name, spec=spec)))
    except Exception as exc:  # noqa: BLE001 - the API is down or slow: the runs end by themselves
        log.warning("could not cancel the waiting runs of files decided already: %s: %s", type(exc).__name__, exc)
    if cancelled:
        log.info("cancelled %d waiting run(s) of files decided in this turn: %s", len(cancelled), ", ".join(cancelled))
    return cancelled


def _named_for_its_file(client, run, name: str) -> str:
    """Rename a run made by a file's event (Prefect gives it a random name) after its file (``name``); its name
    as it is when renaming fails (the cancellation stands)."""
    try:
        client.update_flow_run(run.id, name=name)
    except Exception:  # noqa: BLE001 - the name is a courtesy
        return run.name
    return name

