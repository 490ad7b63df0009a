"""CalmOps' flow runs in given states, as the Prefect API lists them: the one query behind the watcher's "is this
file's run still live", the turn's cancelling of redundant runs and the watchdog's stall check."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from calmops.core.names import TAG, pipeline_tag


def runs_in_states(client: Any, states: Iterable[Any], *, pipeline: str | None = None,
                   limit: int | None = None) -> list[Any]:
    """The flow runs of ``pipeline`` (of every CalmOps pipeline when None) whose state type is one of ``states``
    (Prefect ``StateType``s), through a sync Prefect ``client``; at most ``limit`` (the API's default when None)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )

    tag = pipeline_tag(pipeline) if pipeline else TAG
    flow_run_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]),
                                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
    return client.read_flow_runs(flow_run_filter=flow_run_filter, **({"limit": limit} if limit is not None else {}))


def file_in(run: Any, folder: Path) -> str | None:
    """The name of the file ``run`` was made for (its ``path`` parameter) when that file is in ``folder`` (resolved
    as given); None for a run of another folder, or with no file (a scheduled scan)."""
    raw = run.parameters.get("path")
    if not raw:
        return None
    path = Path(str(raw))
    return path.name if path.parent.resolve() == folder else None
