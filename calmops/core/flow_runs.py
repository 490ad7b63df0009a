"""CalmOps' flow runs in given states, as the Prefect API lists them: the one query behind the watcher's "is this
file's run still live", the turn's cancelling of redundant runs, the fair turns and the watchdog's stall
check."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calmops.core.names import TAG, kind_tag, pipeline_tag
from calmops.core.paging import PAGE
from calmops.core.store import ledger_name, pipeline_paths, read_spec

if TYPE_CHECKING:
    from calmops.core.spec import PipelineSpec



def runs_in_states(client: Any, states: Iterable[Any], *, pipeline: str | None = None,
                   limit: int | None = None, page: int = PAGE, due_before: Any = None) -> list[Any]:
    """The flow runs of ``pipeline`` (of every CalmOps pipeline when None) whose state type is one of ``states``
    (Prefect ``StateType``s), through a sync Prefect ``client``: all of them, read ``page`` runs a request (a
    burst can queue more runs than the API returns at once), or the first ``limit``, in the API's default order
    (by id, which is random: with ``limit``, narrow the query so the runs wanted are all in it). With
    ``due_before`` (a datetime), only runs expected to start by then: not the future runs Prefect's scheduler keeps
    for a scheduled scan (up to a hundred per deployment). A run listed on two pages (a run made while reading
    shifts the pages) is returned once."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    tags = FlowRunFilterTags(any_=_runs_tags(pipeline)) if pipeline else FlowRunFilterTags(all_=[TAG])
    flow_run_filter = FlowRunFilter(tags=tags,
                                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))),
                                    expected_start_time=FlowRunFilterExpectedStartTime(before_=due_before)
                                    if due_before is not None else None)
    found: dict[Any, Any] = {}
    offset = 0
    while limit is None or len(found) < limit:
        want = page if limit is None else min(page, limit - len(found))
        batch = client.read_flow_runs(flow_run_filter=flow_run_filter, sort=FlowRunSort.ID_DESC, limit=want,
                                      offset=offset)
        for run in batch:
            found.setdefault(run.id, run)
        if len(batch) < want:
            break
        offset += len(batch)
    if pipeline:  # the runs of the kind's deployment (prefect.yaml) are the kind's: theirs by parameter
        return [run for run in found.values() if run.parameters.get("pipeline") == pipeline]
    return list(found.values())


def mark_crashed(run_ids: Iterable[str], message: str) -> list[str]:
    """Mark Crashed each of these flow runs that Prefect still calls Running or Pending, through the server's rules
    (which give the deployment's concurrency slot back): runs whose processes were stopped and cannot report their
    end. Returns the ids marked; a run that ended first keeps its state. Raises when the server does not answer."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Crashed

    marked = []
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(run_id)
            if run.state is None or run.state.type not in (StateType.RUNNING, StateType.PENDING):
                continue
            if client.set_flow_run_state(run_id, Crashed(message=message)).status == SetStateStatus.ACCEPT:
                marked.append(run_id)
    return marked


def _runs_tags(pipeline: str) -> list[str]:
    """The tags a run of ``pipeline`` carries one of: the pipeline's, on a run of its own deployment (``calmops
    deploy``), and its kind's, on a run of the kind's deployment (``prefect deploy`` from prefect.yaml: a trigger
    cannot tag a run per pipeline, whose name is only in its parameters)."""
    try:
        return [pipeline_tag(pipeline), kind_tag(read_spec(pipeline).kind)]
    except Exception:  # noqa: BLE001 - a broken or missing spec: its own deployment's runs still count
        return [pipeline_tag(pipeline)]


def file_in(run: Any, folder: Path) -> str | None:
    """The name of the file ``run`` was made for (its ``path`` parameter) when that file is in ``folder`` (resolved
    as given); None for a run of another folder, or with no file (a scheduled scan)."""
    raw = run.parameters.get("path")
    if not raw:
        return None
    path = Path(str(raw))
    return path.name if path.parent.resolve() == folder else None


def file_run_name(pipeline: str, path: Path, kind: str | None = None, *, spec: PipelineSpec | None = None) -> str:
    """The name of a file's flow run: kind, pipeline and file as the ledger and ``calmops status`` name it, e.g.
    ``stream/credit/2024-05.csv``, ``stream/credit/labels/2024-05.csv`` for a file of the labels folder
    (``spec``, ``kind``: the pipeline's, read from its spec file when not given)."""
    try:
        spec = spec or read_spec(pipeline)
        name, kind = ledger_name(pipeline_paths(spec), path), kind or spec.kind
    except Exception:  # noqa: BLE001 - a name is no reason to fail: the run itself says what is wrong
        name = path.name
    return f"{kind or 'stream'}/{pipeline}/{name}"

