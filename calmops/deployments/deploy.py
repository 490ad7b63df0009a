"""Prefect deployments and automations, one set per pipeline, kept in step with the pipeline specs.

Per pipeline ``<name>`` of kind ``<kind>``:

* deployment ``calmops-<kind>/<name>`` of the kind's flow, in the process work pool ``calmops``, with
  a concurrency limit of one that *enqueues* (runs of one pipeline are serialized, pipelines run in
  parallel), and a trigger on the event ``calmops.file.arrived`` whose resource is
  ``calmops.pipeline.<name>``; the trigger passes the pipeline, the file's path and its SHA-256, templated
  from the event, as the run's parameters;
* when the spec has a ``schedule`` (cron like ``*/10 * * * *`` or an interval like ``300``, ``90s``,
  ``5m``, ``1h``): deployment ``calmops-scan/<name>`` of :func:`calmops.deployments.watcher.scan_flow`, which
  emits the same event for every complete file waiting in the incoming folder (for network shares whose
  file events are unreliable); the file's run still goes through the trigger and the concurrency limit.

Automations created for a deployment's triggers are *owned* by it (``prefect.deployment.<id>``) but are
not removed when the deployment is deleted, so :func:`delete_pipeline_deployments` deletes them
explicitly, by owner and by name.

Deployments use module entrypoints (``calmops.flows.stream.stream_flow``): the worker imports the
installed package, so there is no code to pull and no working directory to set.

One scheme serves a pipeline. While prefect.yaml's deployment for the pipeline's kind exists (``prefect deploy
--all``: ``calmops-<kind>/<kind>``, triggered by every file event of that kind), that deployment serves it:
:func:`deploy_pipeline` makes no deployment of the pipeline's own and removes one left from before (both would
start a run for every file); only the scheduled scan, which announces files and starts no run itself, is still
made. Nothing announces the files of a pipeline both schemes would run (:mod:`calmops.core.schemes`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from calmops.core.kinds import KINDS
from calmops.core.names import EVENT, PIPELINE_PREFIX, TAG, kind_tag, pipeline_tag, resource_id
from calmops.core.paging import every
from calmops.core.schemes import is_kind_deployment
from calmops.core.settings import get_settings
from calmops.core.spec import parse_schedule

SCAN_FLOW_NAME = "calmops-scan"


def work_pool_name() -> str:
    return get_settings().work_pool


def automation_name(pipeline: str) -> str:
    return f"calmops-file-arrived-{pipeline}"


def flow_name(kind: str) -> str:
    return KINDS[kind].flow_name


def trigger_parameters(pipeline: str) -> dict[str, str]:
    """The run's parameters, templated from the event by the automation (Jinja)."""
    return {
        "pipeline": pipeline,
        "path": "{{ event.resource['calmops.file.path'] }}",
        "sha256": "{{ event.resource['calmops.file.sha256'] }}",
    }


def file_trigger(pipeline: str):
    """Run the pipeline's deployment once per ``calmops.file.arrived`` event about this pipeline only."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=automation_name(pipeline),
        description=f"Run pipeline {pipeline} on each complete file in its incoming folder",
        expect={EVENT},
        match={"prefect.resource.id": resource_id(pipeline)},
        posture="Reactive",
        threshold=1,
        within=timedelta(0),
        parameters=trigger_parameters(pipeline),
    )


@dataclass
class DeploymentSummary:
    pipeline: str
    deployment: str
    deployment_id: str
    automations: list[str] = field(default_factory=list)
    scan_deployment: str | None = None
    served_by: str | None = None  # prefect.yaml's deployment for the pipeline's kind, when that one serves it
    removed: list[str] = field(default_factory=list)  # the pipeline's own deployments removed in its favour

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- work pool -------------------------------------------------------------------------------


def ensure_work_pool(name: str | None = None) -> str:
    """Create the process work pool if it is missing (what ``prefect work-pool create --type process`` does)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    name = name or work_pool_name()
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="CalmOps: one process per flow run on the machine of the worker",
                ))
            except ObjectAlreadyExists:
                pass
    return name


# -- create / update ---------------------------------------------------------------------------


def _concurrency_one():
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def _job_variables(entrypoint: str) -> dict[str, Any]:
    """Runs start through the warm runner (``calmops.deployments.warm``), cold when none is running. The engine
    imports the flow from ``entrypoint`` (``PREFECT__FLOW_ENTRYPOINT``, as under Prefect's own runner) instead of
    first reading the deployment for it: one client and one API call less before the run starts. The deployments
    have no pull steps (module entrypoints of the installed package), so nothing else is skipped."""
    from calmops.deployments.warm import client_command

    return {"command": client_command(), "env": {"PREFECT__FLOW_ENTRYPOINT": entrypoint}}


class RunInFlight(RuntimeError):
    """A deployment to remove still has a run in flight (removing it would leave that run unable to end)."""


#: seconds :func:`deploy_pipeline` lets a run of a pipeline's own deployment finish before removing it
RETIRE_WAIT = 120.0


def kind_deployments(kind: str | None = None) -> list[Any]:
    """The per-kind deployments ``prefect deploy --all`` makes from prefect.yaml (``calmops-<kind>/<kind>``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, DeploymentFilterTags

    kinds = [kind] if kind else list(KINDS)
    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=kinds), tags=DeploymentFilterTags(all_=[TAG])))
    return [d for d in found if is_kind_deployment(d.name, d.tags)]


def _retire_own(name: str, wait: float) -> list[str]:
    """Remove the pipeline's own run deployments (and their automations), letting a run in flight finish for up to
    ``wait`` seconds first; :class:`RunInFlight` when one is still running then (nothing removed)."""
    own = [d for d in _deployments_of(name) if d.flow_name != SCAN_FLOW_NAME]
    deadline = time.monotonic() + wait
    while (busy := running_runs([str(d.id) for d in own])) and time.monotonic() < deadline:
        time.sleep(1.0)
    if busy:
        names = ", ".join(f"{d.flow_name}/{d.name}" for d in own)
        raise RunInFlight(f"{names} still has run(s) {', '.join(r.name for r in busy)} in flight after {wait:.0f} s; "
                          f"run 'calmops deploy {name}' again once they end (the watcher announces no file of "
                          f"{name} meanwhile)")
    for d in own:
        _delete_deployment(d.id)
    return [f"{d.flow_name}/{d.name}" for d in own]


def prune_automations() -> list[str]:
    """Delete CalmOps file-arrival automations whose deployment no longer exists (names of those removed)."""
    from prefect.client.orchestration import get_client

    removed = []
    with get_client(sync_client=True) as client:
        existing = {str(d.id) for d in every(client.read_deployments)}  # all: one missed would lose its automation
        for a in every(client.read_automations):
            if not a.name.startswith("calmops-file-arrived-"):
                continue
            targets = {str(getattr(action, "deployment_id", None)) for action in a.actions}
            if targets and not targets & existing and not any(_exists(client, t) for t in targets):
                client.delete_automation(a.id)
                removed.append(a.name)
    return removed


def _exists(client: Any, deployment_id: str) -> bool:
    """Asked one by one before an automation is deleted: pages read while deployments change can miss one."""
    from uuid import UUID

    from prefect.exceptions import ObjectNotFound

    try:
        client.read_deployment(UUID(deployment_id))
    except (ObjectNotFound, ValueError):
        return False
    return True


def deploy_pipeline(name: str, *, pool: str | None = None, wait: float = RETIRE_WAIT) -> DeploymentSummary:
    """Create or update the pipeline's deployment(s) and automation from its current spec (idempotent).

    While prefect.yaml's deployment for the pipeline's kind exists, that one serves the pipeline
    (``served_by``): no deployment of its own is made, and one left from before is removed (``removed``; a run of
    it in flight gets ``wait`` seconds to finish first, else :class:`RunInFlight`)."""
    from prefect.deployments.runner import EntrypointType

    from calmops.core.store import read_spec
    from calmops.flows import flow_for

    spec = read_spec(name)
    tags = [TAG, pipeline_tag(name), kind_tag(spec.kind)]
    pool = ensure_work_pool(pool)
    per_kind = kind_deployments(spec.kind)
    if per_kind:
        served_by = per_kind[0]
        summary = DeploymentSummary(name, f"{flow_name(spec.kind)}/{served_by.name}", str(served_by.id),
                                    served_by=f"{flow_name(spec.kind)}/{served_by.name}",
                                    removed=_retire_own(name, wait))
    else:
        flow = flow_for(spec.kind)
        deployment = flow.to_deployment(
            name=name,
            description=f"CalmOps {spec.kind} pipeline {name}: one run per file arriving in its incoming folder",
            tags=tags,
            parameters={"pipeline": name},
            concurrency_limit=_concurrency_one(),
            triggers=[file_trigger(name)],
            work_pool_name=pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.job_variables = _job_variables(deployment.entrypoint)
        deployment_id = deployment.apply()
        # a kind change leaves the old kind's deployment behind: remove it (and its automation)
        for other in _deployments_of(name):
            if other.id != deployment_id and other.flow_name != SCAN_FLOW_NAME:
                _delete_deployment(other.id)
        summary = DeploymentSummary(name, f"{flow.name}/{name}", str(deployment_id), [automation_name(name)])
    schedule = parse_schedule(spec.schedule)
    scan = _scan_deployment_of(name)
    if schedule:
        from calmops.deployments.watcher import scan_flow

        if scan is not None:  # re-applying with another schedule would keep the old one too
            _delete_deployment(scan.id)
        scan_deployment = scan_flow.to_deployment(
            name=name, description=f"Scan {name}'s incoming folder on a schedule and announce waiting files",
            tags=tags, parameters={"pipeline": name}, work_pool_name=pool,
            concurrency_limit=_concurrency_one(), entrypoint_type=EntrypointType.MODULE_PATH,
            **schedule,
        )
        scan_deployment.job_variables = _job_variables(scan_deployment.entrypoint)
        scan_deployment.apply()
        summary.scan_deployment = f"{SCAN_FLOW_NAME}/{name}"
    elif scan is not None:
        _delete_deployment(scan.id)
    return summary


def why_not_deployed(name: str, exc: Exception) -> str:
    """What kept a pipeline from being deployed, and what to do, in a sentence (an error of :func:`deploy_all`)."""
    from calmops.core.spec import SpecError

    said = " ".join(str(exc).split())
    if isinstance(exc, SpecError):
        return (f"its spec cannot be read ({said}); its deployment, if it had one, is left as it was: mend the spec, "
                f"or 'calmops update {name} SPEC.yaml' (its earlier versions are in its spec_history folder), then "
                f"run 'calmops deploy {name}'")
    return (f"deploying it failed ({said or type(exc).__name__}); its deployment, if it had one, may be left as it "
            f"was: once the cause is mended, run 'calmops deploy {name}' ('calmops --debug deploy {name}' shows the "
            "traceback)")


def deploy_all(*, prune: bool = True, pool: str | None = None) -> dict[str, Any]:
    """Deployments for every pipeline; with ``prune``, remove CalmOps deployments of deleted pipelines. A pipeline
    that cannot be deployed does not stop the others: ``errors`` says, for each, why and what to do."""
    from calmops.core.store import list_pipelines

    names = list_pipelines()
    done, errors, in_flight = [], {}, []
    for name in names:
        try:
            done.append(deploy_pipeline(name, pool=pool).to_dict())
        except RunInFlight as exc:  # said in a plain sentence
            errors[name] = str(exc)
            in_flight.append(name)
        except Exception as exc:  # noqa: BLE001 - one bad spec must not stop the others
            errors[name] = why_not_deployed(name, exc)
    removed = []
    if prune:
        for orphan in sorted(set(deployed_pipelines()) - set(names)):
            delete_pipeline_deployments(orphan)
            removed.append(orphan)
        prune_automations()
    return {"deployed": done, "errors": errors, "removed": removed, "in_flight": in_flight}


# -- read ------------------------------------------------------------------------------------


@dataclass
class _Deployment:
    id: Any
    name: str
    flow_name: str


def _deployments_of(pipeline: str) -> list[_Deployment]:
    """Every deployment CalmOps made for the pipeline (any kind, and the scan deployment)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterId,
    )

    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[pipeline_tag(pipeline)])))
        flows = {}
        if found:
            flows = {f.id: f.name for f in client.read_flows(
                flow_filter=FlowFilter(id=FlowFilterId(any_=list({d.flow_id for d in found}))))}
    return [_Deployment(d.id, d.name, flows.get(d.flow_id, "")) for d in found if d.name == pipeline]


def _scan_deployment_of(pipeline: str) -> _Deployment | None:
    return next((d for d in _deployments_of(pipeline) if d.flow_name == SCAN_FLOW_NAME), None)


def deployed_pipelines() -> list[str]:
    """Names of pipelines that have CalmOps deployments on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    with get_client(sync_client=True) as client:
        found = every(client.read_deployments, deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])))
    return sorted({t.removeprefix(PIPELINE_PREFIX) for d in found for t in d.tags if t.startswith(PIPELINE_PREFIX)})


def automations_of(pipeline: str) -> list[Any]:
    """Automations that start this pipeline: by our name, or owned by one of its deployments."""
    from prefect.client.orchestration import get_client

    ids = {str(d.id) for d in _deployments_of(pipeline)}
    with get_client(sync_client=True) as client:
        found = {a.id: a for a in client.read_automations_by_name(automation_name(pipeline))}
        for deployment_id in ids:
            for a in client.read_resource_related_automations(f"prefect.deployment.{deployment_id}"):
                found[a.id] = a
    return list(found.values())


def describe(pipeline: str) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "deployments": [f"{d.flow_name}/{d.name}" for d in _deployments_of(pipeline)],
        "automations": [a.name for a in automations_of(pipeline)],
    }


# -- delete ------------------------------------------------------------------------------------


def _delete_deployment(deployment_id: Any) -> None:
    """Delete the deployment, its scheduled runs (the server does that) and the automations it owns."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for a in client.read_resource_related_automations(f"prefect.deployment.{deployment_id}"):
            client.delete_automation(a.id)
        client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
        try:
            client.delete_deployment(deployment_id)
        except ObjectNotFound:
            pass


def delete_pipeline_deployments(pipeline: str, wait: float = 0.0) -> dict[str, Any]:
    """Remove every deployment, automation and scheduled or waiting run CalmOps made for the pipeline. With
    ``wait``, a run in flight gets up to that many seconds to finish before its deployment goes: deleting a
    deployment deletes its concurrency limit, and a run still holding the limit's slot can then never end (its
    final state is refused and Prefect shows it Running for good). ``still_running`` names the runs that did
    not finish in time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deployments = _deployments_of(pipeline)
    automations = automations_of(pipeline)
    removed_runs = 0
    with get_client(sync_client=True) as client:
        for a in automations:  # first, so that no new run is created while we clean up
            client.delete_automation(a.id)
        if deployments:
            waiting = every(  # all of them (a burst queues more than a page), read before any is deleted
                client.read_flow_runs,
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id for d in deployments])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING]))),
            )
            for run in waiting:
                client.delete_flow_run(run.id)
                removed_runs += 1
    ids = [str(d.id) for d in deployments]
    deadline = time.monotonic() + wait
    while (busy := running_runs(ids)) and time.monotonic() < deadline:
        time.sleep(1.0)
    for d in deployments:
        _delete_deployment(d.id)
    return {"pipeline": pipeline, "deployments": [f"{d.flow_name}/{d.name}" for d in deployments],
            "deployment_ids": ids, "automations": [a.name for a in automations],
            "waiting_runs_deleted": removed_runs, "still_running": [r.name for r in busy]}


def running_runs(deployment_ids: list[str]) -> list[Any]:
    """Runs of these deployments that are running now (they may outlive their deployment)."""
    if not deployment_ids:
        return []
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[UUID(i) for i in deployment_ids]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))))
